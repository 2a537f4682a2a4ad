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

/// Why a node has no document: what the host could not do for the policy,
/// or (host side only) the policy's own call failing for that node. One
/// type for the host and every policy; each contract module converts it at
/// the WIT edge.
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
    /// The policy's call for this node failed (a trap, its instruction
    /// budget, its memory cap, its deadline): that node has no data; the
    /// others are unaffected. Made by the host only; no contract carries
    /// it, so a policy sees it as `bad-response`.
    PolicyFailed(String),
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, detail) = match self {
            HostError::InvalidNode(m) => ("invalid node", m),
            HostError::NotGranted(m) => ("not granted", m),
            HostError::ProbeFailed(m) => ("probe failed", m),
            HostError::Unreachable(m) => ("unreachable", m),
            HostError::TimedOut(m) => ("timed out", m),
            HostError::RemoteError(m) => ("remote error", m),
            HostError::BadResponse(m) => ("bad response", m),
            HostError::Storage(m) => ("storage", m),
            HostError::PolicyFailed(m) => ("policy failed", m),
        };
        write!(f, "{kind}: {detail}")
    }
}

impl std::error::Error for HostError {}

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

/// Where a node's document came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    /// A cache entry the node just confirmed unchanged.
    Revalidated,
    Local,
    Remote,
    Stale,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Cache => "cache",
            Source::Revalidated => "revalidated",
            Source::Local => "local",
            Source::Remote => "remote",
            Source::Stale => "stale",
        })
    }
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

/// How a node took part in the intersection.
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

/// Why the policy could not produce a node's document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    Unavailable(HostError),
    BadConfig(String),
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyError::Unavailable(error) => write!(f, "{error}"),
            PolicyError::BadConfig(why) => write!(f, "bad policy configuration: {why}"),
        }
    }
}

impl std::error::Error for PolicyError {}

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
