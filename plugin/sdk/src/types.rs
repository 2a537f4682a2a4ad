//! What a policy and the host exchange. These mirror the newest contract
//! (`wit/v0.2.0`); each version module converts its bindings to and from
//! them at the WIT edge, so policy code has one vocabulary.

/// A cluster member as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Validated by the host: 1-63 of `A-Za-z0-9._-`.
    pub name: String,
    /// The machine the host runs on: probed, never fetched.
    pub local: bool,
}

/// Why the host could not do what the policy asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    InvalidNode(String),
    /// The capability is not granted for this node in this call.
    NotGranted(String),
    ProbeFailed(String),
    Unreachable(String),
    TimedOut(String),
    RemoteError(String),
    BadResponse(String),
    Storage(String),
}

/// A node's resources document and its validator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub body: String,
    /// Digest of the node's hardware identity; empty under contract 0.1, which has none.
    pub validator: String,
}

/// What a conditional fetch found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    NotModified,
    Modified(Document),
}

/// A cache entry as stored by the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    pub document: String,
    /// Milliseconds since the entry was written or restamped.
    pub age_ms: u64,
    pub validator: Option<String>,
}

/// Why a cache entry exists but cannot be used: a miss, for every shipped policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheFault {
    Corrupt(String),
    Unreadable(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    /// A cache entry the node just confirmed unchanged.
    Revalidated,
    Local,
    Remote,
    Stale,
}

/// What `get-node-resources` hands back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeResources {
    pub document: String,
    pub source: Source,
    pub age_ms: u64,
    pub refresh_error: Option<HostError>,
}

/// Cores of one node that have identical flags.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct CoreGroup {
    pub cores: u32,
    /// Sorted, unique flag names separated by one space (as contract 0.2
    /// carries them: one string per group, not one per flag); see [`CoreGroup::flags`].
    pub flags: String,
}

impl CoreGroup {
    pub fn new<S: AsRef<str>>(cores: u32, flags: &[S]) -> CoreGroup {
        let mut sorted: Vec<&str> = flags.iter().map(AsRef::as_ref).collect();
        sorted.sort_unstable();
        sorted.dedup();
        CoreGroup {
            cores,
            flags: sorted.join(" "),
        }
    }

    /// The flag names, in order.
    pub fn flags(&self) -> impl Iterator<Item = &str> + Clone {
        self.flags.split_ascii_whitespace()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct CpuSummary {
    pub architecture: String,
    pub core_groups: Vec<CoreGroup>,
    /// What the node's hypervisor can give a migratable guest, when its
    /// document says (nodecache's `nodecache_hypervisor` extension). The
    /// host keeps it beside the summary; contract 0.2 does not pass it to a
    /// policy, which intersects the CPUs' flags as Incus does.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub hypervisor: Option<HypervisorSummary>,
    /// The CPU vendor of the node's first socket (`GenuineIntel`,
    /// `AuthenticAMD`), as the document's `vendor` field says.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub vendor: Option<String>,
}

/// A node's hypervisor set, as its document carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct HypervisorSummary {
    /// Flags a migratable guest can be given, sorted, unique, separated by
    /// one space (Linux names; feature-MSR bits by QEMU's name); empty when
    /// `unavailable` says why there is no set.
    pub flags: String,
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub unavailable: Option<String>,
}

impl HypervisorSummary {
    /// The flag names, in order.
    pub fn flags(&self) -> impl Iterator<Item = &str> + Clone {
        self.flags.split_ascii_whitespace()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedNode {
    pub source: Source,
    pub age_ms: u64,
    pub refresh_error: Option<HostError>,
    pub cpu: CpuSummary,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    pub name: String,
    pub outcome: Result<ResolvedNode, HostError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeVerdict {
    Included,
    ExcludedArch(String),
    NoData(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeOutcome {
    pub name: String,
    pub verdict: NodeVerdict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterFlags {
    pub architecture: String,
    pub flags: Vec<String>,
    pub nodes: Vec<NodeOutcome>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    pub name: String,
    pub default_value: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    pub name: String,
    pub version: String,
    pub parameters: Vec<Parameter>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    Unavailable(HostError),
    BadConfig(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Parameter {
    pub fn new(name: &str, default_value: &str, description: &str) -> Parameter {
        Parameter {
            name: name.into(),
            default_value: default_value.into(),
            description: description.into(),
        }
    }
}
