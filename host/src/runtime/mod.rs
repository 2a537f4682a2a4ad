//! The wasmtime side: one engine, each policy compiled once and
//! pre-instantiated, a fresh sandboxed instance for every call.
//!
//! One module per contract version (`v0_1`, `v0_2`), as Zed's extension
//! host does: [`contract`] reads which one a component was built against,
//! [`VersionedPre`] dispatches every call to that module, and each module
//! converts its bindings into the host's one `model`, so nothing above this
//! module knows there is more than one contract. [`embedded`] is the shelf
//! of policies built into the binary.

pub(crate) mod artifacts;
pub mod capabilities;
pub(crate) mod contract;
pub mod embedded;
mod lent;
mod sandbox;
pub(crate) mod slot;
pub(crate) mod v0_1;
pub(crate) mod v0_2;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use crate::model::{ClusterFlags, Member, NodeReport, NodeResources, PolicyError, PolicyInfo};
use crate::runtime::capabilities::{Capabilities, Grant};
pub use sandbox::Limits;
use sandbox::PluginState;

/// Instances alive at once when the caller does not say: `gather`'s
/// concurrency (384) plus headroom for `serve`'s requests beside it.
pub const DEFAULT_INSTANCES: u32 = 512;
/// Memory, table and stack bytes kept mapped between instances.
const RESIDENT_BYTES: usize = 256 << 10;
/// Components smaller than this initialise each instance's memory by copy
/// (their data segments can be no larger), not by mapping an image.
const COPY_INIT_BELOW: usize = 1 << 20;
/// The guard after each memory when there is no pool: small, because the
/// address space is what ran out.
const GUARD_BYTES_WITHOUT_POOL: u64 = 64 << 10;

/// How policies are loaded: their limits, how many instances may be alive
/// at once (the pool is sized to the work: one for a one-node question), and
/// where compiled policies are kept between runs.
#[derive(Debug, Clone)]
pub struct Loader {
    pub limits: Limits,
    pub instances: u32,
    pub artifacts: Option<artifacts::ArtifactCache>,
}

impl Default for Loader {
    fn default() -> Self {
        Loader {
            limits: Limits::default(),
            instances: DEFAULT_INSTANCES,
            artifacts: None,
        }
    }
}

impl Loader {
    /// `--policy`: an embedded policy's name or a component file; `None` is the default.
    pub fn load(&self, choice: Option<&str>) -> Result<PolicyRuntime> {
        let choice = choice.unwrap_or(embedded::DEFAULT);
        if embedded::is_name(choice) {
            let policy = embedded::find(choice)?;
            self.load_bytes(policy.component, &format!("\"{choice}\" (embedded)"))
        } else {
            self.load_file(Path::new(choice))
        }
    }

    pub fn load_file(&self, path: &Path) -> Result<PolicyRuntime> {
        let bytes = crate::operator_file::read_file(path, "policy", crate::operator_file::POLICY_BYTES)?;
        self.load_bytes(&bytes, &path.display().to_string())
    }

    /// Checks, compiles (or takes from the artifact cache) and
    /// pre-instantiates a policy; `origin` names it in errors.
    pub fn load_bytes(&self, bytes: &[u8], origin: &str) -> Result<PolicyRuntime> {
        contract::check_binary_kind(bytes).with_context(|| format!("policy {origin}"))?;
        let engine = PolicyRuntime::engine(&self.limits, self.instances, bytes.len())?;
        let component = match &self.artifacts {
            Some(cache) => cache.component(&engine, bytes).map(|(component, obtained)| {
                tracing::debug!(policy = origin, ?obtained, "loaded");
                component
            }),
            None => Component::new(&engine, bytes).map_err(anyhow::Error::from),
        }
        .with_context(|| format!("policy {origin}: not a valid component"))?;
        let contract =
            contract::contract_of(&component, &engine).with_context(|| format!("policy {origin}"))?;
        let mut linker = Linker::new(&engine);
        sandbox::add_wasi(&mut linker)?;
        let pre = VersionedPre::new(&contract, &mut linker, &component).with_context(|| {
            format!("policy {origin}: its imports or exports do not match contract {contract}")
        })?;
        Ok(PolicyRuntime {
            engine,
            pre,
            contract,
            limits: self.limits.clone(),
            origin: origin.to_string(),
            calls: std::sync::atomic::AtomicU64::new(0),
        })
    }
}

/// A pre-instantiated component of one contract version.
enum VersionedPre {
    V0_1(v0_1::Pre),
    V0_2(v0_2::Pre),
}

impl VersionedPre {
    fn new(
        contract: &contract::ContractVersion,
        linker: &mut Linker<PluginState>,
        component: &Component,
    ) -> Result<Self> {
        Ok(match (contract.major, contract.minor) {
            v0_1::MINOR => VersionedPre::V0_1(v0_1::Pre::new(linker, component)?),
            v0_2::MINOR => VersionedPre::V0_2(v0_2::Pre::new(linker, component)?),
            _ => anyhow::bail!("contract {contract} has no runtime module"),
        })
    }
}

/// A loaded policy, ready to instantiate.
pub struct PolicyRuntime {
    engine: Engine,
    pre: VersionedPre,
    contract: contract::ContractVersion,
    limits: Limits,
    origin: String,
    /// Calls started on this policy (`serve`'s metrics).
    calls: std::sync::atomic::AtomicU64,
}

impl PolicyRuntime {
    /// The engine a policy runs on. Instances come from a pool of
    /// `instances` slots, so a per-node instantiation reuses memory and fiber
    /// stacks instead of mapping fresh ones. Where the pool's address space
    /// cannot be reserved (a low `ulimit -v`), instances are allocated on
    /// demand, each memory reserving only its cap instead of 4 GiB of guard
    /// region: slower per call (explicit bounds checks), but it runs.
    ///
    /// A small component's memory is initialised by copying its data (a
    /// Rust policy's is two pages), a large one's by mapping a copy-on-write
    /// image: mapping costs a system call and a TLB shootdown per instance,
    /// which for the default policy was a tenth of a cold 1,000-member
    /// run's CPU (0.68 -> 0.59 s), while copying a componentize-py
    /// policy's 18 MB would cost more than mapping it.
    pub fn engine(limits: &Limits, instances: u32, component_bytes: usize) -> Result<Engine> {
        let instances = instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        // Per instance: the shelf's Rust components have one core instance,
        // memory and table; a componentize-py component has about twenty
        // core instances and several memories and tables. The floors let one
        // such instance run in a one-instance pool.
        pool.total_component_instances(instances)
            .total_core_instances(instances * 8 + 24)
            .total_memories(instances * 2 + 6)
            .total_tables(instances * 4 + 12)
            .total_stacks(instances)
            .max_memory_size(limits.memory_bytes)
            // Reset the first pages by memset instead of madvise: cheaper than
            // the page faults and TLB shootdowns of decommitting them.
            .linear_memory_keep_resident(RESIDENT_BYTES)
            .table_keep_resident(RESIDENT_BYTES)
            .async_stack_keep_resident(RESIDENT_BYTES);
        // Reset only the pages an instance touched (Linux 6.7+, PAGEMAP_SCAN;
        // elsewhere the memset above): a policy's stack sits low in its
        // memory and is mostly untouched, and memsetting it made every slot
        // ever used cost the whole 256 KiB. With it, a cold 1,000-member run
        // asking 256 members at once peaked at 72 MB instead of 121 MB.
        pool.pagemap_scan(wasmtime::Enabled::Auto);
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .concurrency_support(false)
            .memory_init_cow(component_bytes >= COPY_INIT_BELOW);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        match Engine::new(&config) {
            Ok(engine) => Ok(engine),
            Err(error) => {
                tracing::warn!("no instance pool ({error}); allocating instances on demand");
                config
                    .allocation_strategy(InstanceAllocationStrategy::OnDemand)
                    .memory_reservation(limits.memory_bytes as u64)
                    .memory_guard_size(GUARD_BYTES_WITHOUT_POOL);
                Engine::new(&config)
                    .map_err(anyhow::Error::from)
                    .context("cannot start wasmtime")
            }
        }
    }

    /// The embedded default policy.
    pub fn default_policy(limits: Limits) -> Result<Self> {
        Self::embedded(embedded::DEFAULT, limits)
    }

    /// A policy of the embedded shelf, by name.
    pub fn embedded(name: &str, limits: Limits) -> Result<Self> {
        Loader {
            limits,
            ..Loader::default()
        }
        .load(Some(name))
    }

    pub fn from_file(path: &Path, limits: Limits) -> Result<Self> {
        Loader {
            limits,
            ..Loader::default()
        }
        .load_file(path)
    }

    /// Checks, compiles and pre-instantiates a policy; `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str, limits: Limits) -> Result<Self> {
        Loader {
            limits,
            ..Loader::default()
        }
        .load_bytes(bytes, origin)
    }

    pub fn contract(&self) -> &contract::ContractVersion {
        &self.contract
    }

    /// Where the policy came from, as errors name it.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// How many calls were started on this policy.
    pub fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `call` on a fresh instance lent `grant`, bounded by the call
    /// deadline; a trap is an error of this call, naming the policy.
    async fn with_instance<R>(
        &self,
        capabilities: Arc<Capabilities>,
        grant: Grant,
        what: &str,
        call: impl AsyncFnOnce(&mut Store<PluginState>, &VersionedPre) -> wasmtime::Result<R>,
    ) -> Result<R> {
        let deadline = self.limits.call_deadline;
        self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let run = async {
            let mut store = Store::new(&self.engine, PluginState::new(capabilities, grant, &self.limits));
            sandbox::apply_limits(&mut store, &self.limits)?;
            call(&mut store, &self.pre)
                .await
                .map_err(|e| sandbox::describe_trap(e, &store))
                .with_context(|| format!("policy {}: {what} failed", self.origin))
        };
        tokio::time::timeout(deadline, run).await.map_err(|_| {
            anyhow::anyhow!(
                "policy {}: {what} ran past its {} deadline",
                self.origin,
                seconds(deadline)
            )
        })?
    }

    pub async fn get_node_resources(
        &self,
        capabilities: Arc<Capabilities>,
        member: &Member,
    ) -> Result<Result<NodeResources, PolicyError>> {
        let what = format!("get-node-resources({})", member.name);
        self.with_instance(
            capabilities,
            Grant::for_node(member),
            &what,
            async |store, pre| {
                let answer = match pre {
                    VersionedPre::V0_1(pre) => pre.get_node_resources(store, member).await?,
                    VersionedPre::V0_2(pre) => pre.get_node_resources(store, member).await?,
                };
                let Ok(mut resources) = answer else {
                    return Ok(answer);
                };
                if let Err(why) = store.data().lent.check(&resources) {
                    return Err(wasmtime::Error::msg(why));
                }
                resources.summary = store.data().lent.summary_of(&resources.document);
                Ok(Ok(resources))
            },
        )
        .await
    }

    pub async fn cluster_cpu_flags(
        &self,
        capabilities: Arc<Capabilities>,
        reports: &[NodeReport],
        architecture: &str,
    ) -> Result<ClusterFlags> {
        self.with_instance(
            capabilities,
            Grant::none(),
            "cluster-cpu-flags",
            async |store, pre| match pre {
                VersionedPre::V0_1(pre) => pre.cluster_cpu_flags(store, reports, architecture).await,
                VersionedPre::V0_2(pre) => pre.cluster_cpu_flags(store, reports, architecture).await,
            },
        )
        .await
    }

    pub async fn describe(&self, capabilities: Arc<Capabilities>) -> Result<PolicyInfo> {
        self.with_instance(
            capabilities,
            Grant::none(),
            "describe",
            async |store, pre| match pre {
                VersionedPre::V0_1(pre) => pre.describe(store).await,
                VersionedPre::V0_2(pre) => pre.describe(store).await,
            },
        )
        .await
    }
}

fn seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::remote::RemoteFetcher;
    use crate::store::CacheStore;

    fn capabilities(dir: &Path) -> Arc<Capabilities> {
        Arc::new(Capabilities::new(
            CacheStore::new(dir),
            Default::default(),
            RemoteFetcher::default(),
        ))
    }

    /// The default policy with one string of its binary replaced by another of the same length.
    fn patched_default(from: &str, to: &str) -> Vec<u8> {
        assert_eq!(from.len(), to.len());
        let mut bytes = embedded::find(embedded::DEFAULT).unwrap().component.to_vec();
        let mut replaced = 0;
        let mut at = 0;
        while let Some(offset) = bytes[at..].windows(from.len()).position(|w| w == from.as_bytes()) {
            let start = at + offset;
            bytes[start..start + from.len()].copy_from_slice(to.as_bytes());
            at = start + from.len();
            replaced += 1;
        }
        assert!(replaced > 0, "{from} not found in the component");
        bytes
    }

    #[tokio::test]
    async fn the_default_policy_describes_itself() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = PolicyRuntime::default_policy(Limits::default()).unwrap();
        assert_eq!(runtime.contract().to_string(), "nodecache:policy@0.2.0");
        let info = runtime.describe(capabilities(dir.path())).await.unwrap();
        assert_eq!(info.name, "default");
    }

    #[tokio::test]
    async fn policies_of_both_contracts_load_side_by_side_and_answer() {
        let dir = tempfile::tempdir().unwrap();
        let pinned = PolicyRuntime::embedded("pinned", Limits::default()).unwrap();
        let default = PolicyRuntime::default_policy(Limits::default()).unwrap();
        assert_eq!(pinned.contract().to_string(), "nodecache:policy@0.1.0");
        assert_eq!(default.contract().to_string(), "nodecache:policy@0.2.0");
        for runtime in [&pinned, &default] {
            let me = Member {
                name: crate::node_name::NodeName::parse("me").unwrap(),
                local: true,
                offline: None,
            };
            let got = runtime
                .get_node_resources(capabilities(dir.path()), &me)
                .await
                .unwrap()
                .unwrap();
            assert!(got.document.contains("\"architecture\""), "{}", runtime.origin());
        }
        assert_eq!(
            pinned.describe(capabilities(dir.path())).await.unwrap().name,
            "pinned"
        );
    }

    #[test]
    fn another_contract_version_is_rejected_by_name() {
        let bytes = patched_default("nodecache:policy/policy@0.2.0", "nodecache:policy/policy@0.9.0");
        let error = PolicyRuntime::from_bytes(&bytes, "patched.wasm", Limits::default())
            .err()
            .unwrap();
        let message = format!("{error:#}");
        assert!(message.contains("patched.wasm"), "{message}");
        assert!(
            message.contains("built against contract nodecache:policy@0.9.0"),
            "{message}"
        );
        assert!(
            message.contains("accepts nodecache:policy@0.1.x, nodecache:policy@0.2.x"),
            "{message}"
        );
    }

    #[test]
    fn a_component_without_the_policy_export_is_rejected() {
        let bytes = patched_default("nodecache:policy/policy@0.2.0", "nodecache:policy/polizy@0.2.0");
        let error = PolicyRuntime::from_bytes(&bytes, "other.wasm", Limits::default())
            .err()
            .unwrap();
        assert!(
            format!("{error:#}").contains("does not export nodecache:policy/policy"),
            "{error:#}"
        );
    }

    /// `n` included nodes, each with its own flag list: work for the
    /// intersection that grows with `n`.
    fn reports(n: usize) -> Vec<crate::model::NodeReport> {
        use crate::api::cpu_summary::{CoreGroup, CpuSummary};
        (0..n)
            .map(|i| crate::model::NodeReport {
                name: format!("n{i}"),
                outcome: Ok(crate::model::ResolvedNode {
                    source: crate::model::Source::Cache,
                    age_ms: 0,
                    refresh_error: None,
                    cpu: CpuSummary {
                        architecture: "x86_64".into(),
                        core_groups: vec![CoreGroup::new(1, &["fpu", "sse2", &format!("only{i}")])],
                        hypervisor: None,
                        vendor: None,
                        physical_bits: None,
                    },
                }),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_policy_out_of_fuel_is_an_error_of_that_call_only() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            fuel: 2_000_000,
            ..Limits::default()
        };
        let runtime = PolicyRuntime::default_policy(limits).unwrap();
        let small = runtime
            .cluster_cpu_flags(capabilities(dir.path()), &reports(2), "x86_64")
            .await
            .unwrap();
        assert_eq!(small.flags, ["fpu", "sse2"]);
        let error = runtime
            .cluster_cpu_flags(capabilities(dir.path()), &reports(20_000), "x86_64")
            .await
            .unwrap_err();
        assert!(format!("{error:#}").contains("instruction budget"), "{error:#}");
        // The trap poisons nothing: the next call gets a fresh instance with
        // a full budget of its own, and succeeds.
        let again = runtime
            .cluster_cpu_flags(capabilities(dir.path()), &reports(2), "x86_64")
            .await
            .unwrap();
        assert_eq!(again, small);
    }

    #[test]
    fn a_memory_cap_below_the_policys_needs_fails_cleanly_at_load() {
        let limits = Limits {
            memory_bytes: 64 << 10,
            ..Limits::default()
        };
        let error = PolicyRuntime::default_policy(limits).err().unwrap();
        let message = format!("{error:#}");
        assert!(
            message.contains("\"default\" (embedded)") && message.contains("exceeds the limit"),
            "{message}"
        );
    }
}
