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
    /// The node name is not a member's (or not a name at all).
    InvalidNode(String),
    /// The capability is not granted for this node in this call.
    NotGranted(String),
    /// Probing this machine failed.
    ProbeFailed(String),
    /// The member could not be reached (connection, TLS, a certificate not pinned).
    Unreachable(String),
    /// The member did not answer within the cluster file's deadline.
    TimedOut(String),
    /// The member answered with an error (its status and message).
    RemoteError(String),
    /// The member's answer is not a resources document, or too large.
    BadResponse(String),
    /// The cache could not be written or removed.
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
    /// The `api.Resources` JSON, exactly as received or probed.
    pub body: String,
    /// Digest of the node's hardware identity; empty under contract 0.1, which has none.
    pub validator: String,
}

/// What a conditional fetch found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The node's hardware still matches the validator asked with: the
    /// cache entry holds (restamp it).
    NotModified,
    /// The node's current document.
    Modified(Document),
}

/// A cache entry as stored by the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// The `api.Resources` JSON the entry holds.
    pub document: String,
    /// Milliseconds since the entry was written or restamped.
    pub age_ms: u64,
    /// The hardware digest it was written with (none from contract 0.1).
    pub validator: Option<String>,
}

/// Why a cache entry exists but cannot be used: a miss, for every shipped policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheFault {
    /// The entry is damaged (torn, wrong node, digest mismatch).
    Corrupt(String),
    /// The entry could not be read (permissions, not a regular file).
    Unreadable(String),
}

/// Where a node's document came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A cache entry the policy judged fresh.
    Cache,
    /// A cache entry the node just confirmed unchanged.
    Revalidated,
    /// This machine, probed now.
    Local,
    /// The member, fetched now.
    Remote,
    /// A cache entry served because a refresh failed (say why in
    /// [`NodeResources::refresh_error`]).
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
    /// The `api.Resources` JSON, byte for byte one the host lent in this call.
    pub document: String,
    /// Where it came from; the host checks it against what it lent.
    pub source: Source,
    /// How old it is: 0 when probed or fetched now, the entry's age otherwise.
    pub age_ms: u64,
    /// Why a refresh failed, when a stale entry is served instead.
    pub refresh_error: Option<HostError>,
}

/// Cores of one node that have identical flags.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct CoreGroup {
    /// How many cores have exactly these flags.
    pub cores: u32,
    /// Sorted, unique flag names separated by one space (as contract 0.2
    /// carries them: one string per group, not one per flag); see [`CoreGroup::flags`].
    pub flags: String,
}

impl CoreGroup {
    /// A group of `cores` cores with `flags` (sorted and made unique here).
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

/// A node's CPUs as the intersection needs them: its architecture and its
/// cores grouped by identical flags (the host makes it from the document).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct CpuSummary {
    /// Incus's architecture name (`x86_64`, `aarch64`).
    pub architecture: String,
    /// The cores, grouped by identical flags.
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
    /// The fewest physical address bits of the node's sockets (the
    /// document's `address_sizes`): a guest's `phys-bits` must fit every
    /// node it may run on. `None` when the document does not say.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub physical_bits: Option<u32>,
}

/// A node's hypervisor set, as its document carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct HypervisorSummary {
    /// Flags a migratable guest can be given, sorted, unique, separated by
    /// one space (Linux names; feature-MSR bits by QEMU's name); empty when
    /// `unavailable` says why there is no set.
    pub flags: String,
    /// Why the node has no hypervisor set (no /dev/kvm, not a nodecache node).
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub unavailable: Option<String>,
}

impl HypervisorSummary {
    /// The flag names, in order.
    pub fn flags(&self) -> impl Iterator<Item = &str> + Clone {
        self.flags.split_ascii_whitespace()
    }
}

/// A node the host resolved through `get-node-resources`, as
/// `cluster-cpu-flags` receives it: provenance and CPU summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedNode {
    /// Where its document came from.
    pub source: Source,
    /// How old the document is.
    pub age_ms: u64,
    /// Why a refresh failed, for a stale node.
    pub refresh_error: Option<HostError>,
    /// Its CPUs.
    pub cpu: CpuSummary,
}

/// One member's outcome, handed to `cluster-cpu-flags`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    /// The member's name.
    pub name: String,
    /// Its resolved CPUs, or why it has no data.
    pub outcome: Result<ResolvedNode, HostError>,
}

/// How a node took part in the intersection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeVerdict {
    /// Its flags took part.
    Included,
    /// Another architecture than the one asked for (its own, named).
    ExcludedArch(String),
    /// It has no data (why); the host then refuses the answer unless
    /// partial answers were asked for.
    NoData(String),
}

/// One node's verdict in [`ClusterFlags`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeOutcome {
    /// The member's name.
    pub name: String,
    /// How it took part.
    pub verdict: NodeVerdict,
}

/// What `cluster-cpu-flags` answers: the flags every core of every
/// included node has, and each node's verdict (exactly one per node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterFlags {
    /// The architecture intersected.
    pub architecture: String,
    /// The common flags, sorted.
    pub flags: Vec<String>,
    /// Every node, once.
    pub nodes: Vec<NodeOutcome>,
}

/// A setting the policy reads (`--set NAME=VALUE`, the cluster file's
/// `[policy]` table); the host refuses settings no policy parameter names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    /// The key, e.g. `max-age`.
    pub name: String,
    /// Its value when unset, as text (`24h`).
    pub default_value: String,
    /// One line for `nodecache policy list`.
    pub description: String,
}

/// What `describe` answers: who the policy is and what it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    /// A short name (`default`, `revalidate`).
    pub name: String,
    /// Its own version, shown in `policy list` and `GET /1.0`.
    pub version: String,
    /// Every setting it reads.
    pub parameters: Vec<Parameter>,
}

/// Why the policy could not produce a node's document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// The node has no data: the host's error, passed on.
    Unavailable(HostError),
    /// A setting could not be read (the operator's error: exit 2).
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

/// How loud a [`crate::Host::log`] line is; the host logs it under the
/// policy's name at this level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Parameter {
    /// A parameter from its name, default and description.
    pub fn new(name: &str, default_value: &str, description: &str) -> Parameter {
        Parameter {
            name: name.into(),
            default_value: default_value.into(),
            description: description.into(),
        }
    }
}
