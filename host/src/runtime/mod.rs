//! The wasmtime side: one engine, each policy compiled once and
//! pre-instantiated, a fresh sandboxed instance for every call.
//!
//! One module per contract version (`v0_1`), as Zed's extension host does:
//! `contract` decides which one a component was built against.

pub mod contract;
mod sandbox;
pub mod v0_1;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use crate::capabilities::Capabilities;
use crate::model::{ClusterFlags, Member, NodeReport, NodeResources, PolicyFailure, PolicyInfo};
pub use sandbox::Limits;
use sandbox::PluginState;

/// The default policy, built from `plugin/default` when the host is built.
pub const DEFAULT_POLICY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/default_policy.wasm"));

/// Instances that may be alive at once: `gather`'s concurrency plus headroom.
const POOLED_INSTANCES: u32 = 256;
/// Memory, table and stack bytes kept mapped between instances.
const RESIDENT_BYTES: usize = 256 << 10;

/// A loaded policy, ready to instantiate.
pub struct PolicyRuntime {
    engine: Engine,
    pre: v0_1::PolicyPluginPre<PluginState>,
    contract: contract::ContractVersion,
    limits: Limits,
    origin: String,
}

impl PolicyRuntime {
    /// The engine every policy runs on. Instances come from a pool, so a
    /// per-node instantiation reuses memory and fiber stacks instead of
    /// mapping fresh ones; the pool is sized for `gather`'s concurrency.
    pub fn engine(limits: &Limits) -> Result<Engine> {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOLED_INSTANCES)
            .total_core_instances(POOLED_INSTANCES * 8)
            .total_memories(POOLED_INSTANCES * 2)
            .total_tables(POOLED_INSTANCES * 4)
            .total_stacks(POOLED_INSTANCES)
            .max_memory_size(limits.memory_bytes)
            // Reset the first pages by memset instead of madvise: cheaper than
            // the page faults and TLB shootdowns of decommitting them.
            .linear_memory_keep_resident(RESIDENT_BYTES)
            .table_keep_resident(RESIDENT_BYTES)
            .async_stack_keep_resident(RESIDENT_BYTES);
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .concurrency_support(false)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("cannot start wasmtime")
    }

    /// The policy embedded in the binary.
    pub fn default_policy(limits: Limits) -> Result<Self> {
        Self::from_bytes(DEFAULT_POLICY, "the embedded default policy", limits)
    }

    pub fn from_file(path: &Path, limits: Limits) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read policy {}", path.display()))?;
        Self::from_bytes(&bytes, &path.display().to_string(), limits)
    }

    /// Checks, compiles and pre-instantiates a policy; `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str, limits: Limits) -> Result<Self> {
        contract::check_binary_kind(bytes).with_context(|| format!("policy {origin}"))?;
        let engine = Self::engine(&limits)?;
        let component = Component::new(&engine, bytes)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("policy {origin}: not a valid component"))?;
        let contract =
            contract::contract_of(&component, &engine).with_context(|| format!("policy {origin}"))?;
        let mut linker = Linker::new(&engine);
        sandbox::add_wasi(&mut linker)?;
        v0_1::add_to_linker(&mut linker)?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("policy {origin}: its imports cannot be satisfied"))?;
        let pre = v0_1::PolicyPluginPre::new(instance_pre)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("policy {origin}: it lacks an export of contract {contract}"))?;
        Ok(PolicyRuntime {
            engine,
            pre,
            contract,
            limits,
            origin: origin.to_string(),
        })
    }

    pub fn contract(&self) -> &contract::ContractVersion {
        &self.contract
    }

    async fn instantiate(
        &self,
        capabilities: Arc<Capabilities>,
    ) -> Result<(Store<PluginState>, v0_1::PolicyPlugin)> {
        let mut store = Store::new(&self.engine, PluginState::new(capabilities, &self.limits));
        sandbox::apply_limits(&mut store, &self.limits)?;
        let plugin = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(anyhow::Error::from)
            .with_context(|| format!("policy {}: instantiation failed", self.origin))?;
        Ok((store, plugin))
    }

    /// Runs `call` on a fresh instance, bounded by the call deadline; a trap is an error of this call.
    async fn with_instance<R>(
        &self,
        capabilities: Arc<Capabilities>,
        what: &str,
        call: impl AsyncFnOnce(&mut Store<PluginState>, &v0_1::PolicyPlugin) -> wasmtime::Result<R>,
    ) -> Result<R> {
        let deadline = self.limits.call_deadline;
        let run = async {
            let (mut store, plugin) = self.instantiate(capabilities).await?;
            call(&mut store, &plugin)
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
    ) -> Result<Result<NodeResources, PolicyFailure>> {
        let node = v0_1::member_to_wit(member);
        self.with_instance(
            capabilities,
            &format!("get-node-resources({})", member.name),
            async |store, plugin| {
                let result = plugin
                    .nodecache_policy_policy()
                    .call_get_node_resources(store, &node)
                    .await?;
                Ok(result
                    .map(v0_1::node_resources_from_wit)
                    .map_err(v0_1::policy_error_from_wit))
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
        let reports: Vec<_> = reports.iter().map(v0_1::report_to_wit).collect();
        self.with_instance(capabilities, "cluster-cpu-flags", async |store, plugin| {
            let result = plugin
                .nodecache_policy_policy()
                .call_cluster_cpu_flags(store, &reports, architecture)
                .await?;
            Ok(v0_1::cluster_flags_from_wit(result))
        })
        .await
    }

    pub async fn describe(&self, capabilities: Arc<Capabilities>) -> Result<PolicyInfo> {
        self.with_instance(capabilities, "describe", async |store, plugin| {
            let info = plugin.nodecache_policy_policy().call_describe(store).await?;
            Ok(v0_1::policy_info_from_wit(info))
        })
        .await
    }
}

fn seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::RemoteFetcher;
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
        let mut bytes = DEFAULT_POLICY.to_vec();
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
        assert_eq!(runtime.contract().to_string(), "nodecache:policy@0.1.0");
        let info = runtime.describe(capabilities(dir.path())).await.unwrap();
        assert_eq!(info.name, "default");
    }

    #[test]
    fn another_contract_version_is_rejected_by_name() {
        let bytes = patched_default("nodecache:policy/policy@0.1.0", "nodecache:policy/policy@0.9.0");
        let error = PolicyRuntime::from_bytes(&bytes, "patched.wasm", Limits::default())
            .err()
            .unwrap();
        let message = format!("{error:#}");
        assert!(message.contains("patched.wasm"), "{message}");
        assert!(
            message.contains("built against contract nodecache:policy@0.9.0"),
            "{message}"
        );
        assert!(message.contains("accepts nodecache:policy@0.1.x"), "{message}");
    }

    #[test]
    fn a_component_without_the_policy_export_is_rejected() {
        let bytes = patched_default("nodecache:policy/policy@0.1.0", "nodecache:policy/polizy@0.1.0");
        let error = PolicyRuntime::from_bytes(&bytes, "other.wasm", Limits::default())
            .err()
            .unwrap();
        assert!(
            format!("{error:#}").contains("does not export nodecache:policy/policy"),
            "{error:#}"
        );
    }

    #[tokio::test]
    async fn a_policy_out_of_fuel_is_an_error_of_that_call() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            fuel: 1_000,
            ..Limits::default()
        };
        let runtime = PolicyRuntime::default_policy(limits).unwrap();
        let error = runtime.describe(capabilities(dir.path())).await.unwrap_err();
        assert!(format!("{error:#}").contains("instruction budget"), "{error:#}");
        // The trap poisons nothing: the next call gets a fresh instance with its
        // own budget, and fails the same way instead of on a broken pool or store.
        let again = runtime.describe(capabilities(dir.path())).await.unwrap_err();
        assert!(format!("{again:#}").contains("instruction budget"), "{again:#}");
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
            message.contains("the embedded default policy") && message.contains("exceeds the limit"),
            "{message}"
        );
    }
}
