//! Command-line arguments (clap).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use clap_complete::ArgValueCandidates;

use super::complete;

use crate::outputs::output::FlagsFormat;

#[derive(Debug, Parser)]
#[command(
    name = "nodecache",
    version,
    about = "Node hardware inventory and the CPU flags every node of a cluster shares",
    long_about = "Node hardware inventory (Incus api.Resources) and the CPU flags every core of every node \
                  shares, so a VM started with them can live-migrate to any node. The cache policy runs as a \
                  sandboxed WebAssembly component; --policy swaps it without rebuilding."
)]
pub struct Cli {
    /// Cache directory (default: $XDG_CACHE_HOME/nodecache, else ~/.cache/nodecache).
    #[arg(long, global = true, env = "NODECACHE_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// The cache policy: an embedded one by name (see `nodecache policy list`;
    /// default: "default") or a component file (a path with / or ending in .wasm).
    #[arg(long, global = true, env = "NODECACHE_POLICY", value_name = "NAME|FILE.wasm")]
    pub policy: Option<String>,

    /// Seed the policy's randomness (per node) so a run can be repeated exactly.
    #[arg(long, global = true, env = "NODECACHE_RANDOM_SEED", value_name = "N")]
    pub random_seed: Option<u64>,

    /// The cluster file (TOML: members, deadlines, certificates); default: this machine alone.
    #[arg(long, global = true, env = "NODECACHE_CLUSTER", value_name = "FILE")]
    pub cluster: Option<PathBuf>,

    /// State directory: server certificate and trust store
    /// (default: $XDG_STATE_HOME/nodecache, else ~/.local/state/nodecache).
    #[arg(long, global = true, env = "NODECACHE_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// A policy parameter, e.g. --set max-age=1h (see `nodecache policy check`).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub settings: Vec<String>,

    /// Ask every node now, whatever the cache holds: the policy finds no
    /// cache entry this run (entries are kept, and replaced by what is
    /// fetched; a node that cannot be asked has no data this run).
    #[arg(long, global = true)]
    pub refresh: bool,

    /// The log's form on stderr: text, or JSON lines (for journald and log shippers).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "NODECACHE_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a node's resources (Incus api.Resources JSON) through the policy and cache.
    Resources {
        /// The member to describe (default: this machine).
        #[arg(conflicts_with = "all", add = ArgValueCandidates::new(complete::members))]
        node: Option<String>,
        /// Every member, asked concurrently.
        #[arg(long)]
        all: bool,
        /// document: the api.Resources JSON (with --all, each member's
        /// outcome with it); json: the document with its source, age and
        /// error; table: one line per node, with its source and age.
        #[arg(long, value_enum, default_value_t = ResourcesFormat::Document)]
        format: ResourcesFormat,
    },
    /// Print the CPU flags every core of every node shares.
    CpuFlags {
        #[arg(long, value_enum, default_value_t = FormatArg::List)]
        format: FormatArg,
        /// The model the qemu, libvirt, incus and proxmox formats build on (default kvm64;
        /// "auto": the named QEMU model closest to what every node's hypervisor
        /// can give a guest, what they lack turned off); its own flags are asked of QEMU.
        #[arg(long, value_name = "MODEL")]
        baseline: Option<String>,
        /// Print the x86-64 level (v1-v4) of the common set and of each node.
        #[arg(long)]
        level: bool,
        /// Show which nodes lack which flags, and which node holds the cluster back.
        #[arg(long)]
        explain: bool,
        /// Compute over the members of this group alone (`groups = [...]` in the cluster file).
        #[arg(long, value_name = "GROUP", add = ArgValueCandidates::new(complete::groups))]
        group: Option<String>,
        /// Architecture to intersect (default: this machine's).
        #[arg(long, value_name = "ARCH")]
        arch: Option<String>,
        /// Compute over the nodes that have data instead of failing (exit 3) when some have none.
        #[arg(long)]
        allow_partial: bool,
        /// Refuse (exit 1) instead of letting a node's host flags stand in
        /// for the hypervisor set it lacks (a plain Incus server, no /dev/kvm).
        #[arg(long)]
        require_hypervisor: bool,
        /// Leave features known to vanish under microcode updates or newer
        /// QEMU machine types (hle, rtm, mpx, tsx-ctrl, ...) out of the guest CPU.
        #[arg(long)]
        drop_fragile: bool,
        /// The custom model's name with --format proxmox (default:
        /// nodecache-cluster, or nodecache-GROUP with --group).
        #[arg(long, value_name = "NAME")]
        model_name: Option<String>,
        /// Set the keys on the Incus cluster group --group names (the cluster
        /// file's `incus = "…"`): shows the change, makes it with --yes.
        #[arg(long, requires = "group")]
        apply: bool,
        /// With --apply: make the change shown.
        #[arg(long, requires = "apply")]
        yes: bool,
    },
    /// Which members can take a guest started with these flags (or with a
    /// node's host CPU), and what each other member lacks.
    #[command(group(clap::ArgGroup::new("guest").required(true).args(["flags", "from"])))]
    CanRun {
        /// The guest's flags, comma-separated (Linux or QEMU names).
        #[arg(long, value_name = "F1,F2,...")]
        flags: Option<String>,
        /// A guest started with this member's host CPU (`-cpu host`).
        #[arg(long, value_name = "NODE", add = ArgValueCandidates::new(complete::members))]
        from: Option<String>,
        /// Only the members of this group.
        #[arg(long, value_name = "GROUP", add = ArgValueCandidates::new(complete::groups))]
        group: Option<String>,
        /// list (a table) or json.
        #[arg(long, value_enum, default_value_t = FormatArg::List)]
        format: FormatArg,
    },
    /// Print this machine's CPU flags straight from the hardware, without policy or cache.
    Probe {
        #[arg(long, value_enum, default_value_t = ProbeSource::Kernel)]
        source: ProbeSource,
    },
    /// Serve this node's GET /1.0 and GET /1.0/resources over HTTPS (mutual
    /// TLS); with a cluster file, the cluster's too. Its policy is
    /// `revalidate` unless --policy says otherwise. Logs one line per request.
    Serve(ServeArgs),
    /// Describe this node's certificate (made on first use): its files,
    /// fingerprint, subject and expiry. `serve` presents it and, named as
    /// a cluster file's client-cert, this node presents it to members.
    Identity {
        /// Print the certificate itself (PEM), to hand to another node.
        #[arg(long, conflicts_with = "fingerprint")]
        pem: bool,
        /// Print only its SHA-256 fingerprint (to compare, or for
        /// `cluster accept-certificate --fingerprint`).
        #[arg(long)]
        fingerprint: bool,
    },
    /// Each node's hardware changes, as the cache saw them: when, how
    /// (probe, fetch), and what changed (flags per core group, microcode,
    /// CPUs, memory, devices, the hypervisor set). No node is asked.
    History {
        /// The node (default: this machine).
        #[arg(conflicts_with = "all", add = ArgValueCandidates::new(complete::members))]
        node: Option<String>,
        /// Every node with a history, members or not.
        #[arg(long)]
        all: bool,
        /// Only changes since T: a time (2026-12-01T12:00:00Z, 2026-12-01,
        /// UTC) or a duration ago (24h, 7d).
        #[arg(long, value_name = "T")]
        since: Option<String>,
        #[arg(long, value_enum, default_value_t = TableFormat::Table)]
        format: TableFormat,
    },
    /// A monitoring check (Nagios plugin conventions): one line, and exit 0
    /// OK, 1 WARNING (a node stale or failing to refresh, or the baseline
    /// lost flags since --since), 2 CRITICAL (a
    /// node with no data), 3 UNKNOWN (nodecache could not answer).
    Check {
        /// Check the members of this group alone.
        #[arg(long, value_name = "GROUP", add = ArgValueCandidates::new(complete::groups))]
        group: Option<String>,
        /// Warn while the baseline has lost flags since T: a time
        /// (2026-12-01T12:00:00Z, 2026-12-01, UTC) or a duration ago (24h, 7d).
        #[arg(long, value_name = "T", default_value = "24h")]
        since: String,
    },
    /// The cluster file's members: their status, and pinning their certificates.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Manage the client certificates `serve` answers.
    Trust {
        #[command(subcommand)]
        command: TrustCommand,
    },
    /// Inspect policy components.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Print a completion script for SHELL (bash, zsh or fish): it asks
    /// nodecache itself, so member and group names come from the cluster
    /// file (`source <(nodecache completions bash)`).
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Print the man page nodecache(1), or nodecache-SUBCOMMAND(1), in roff
    /// (`nodecache manpage cpu-flags | man -l -`).
    Manpage {
        #[arg(value_name = "SUBCOMMAND")]
        subcommand: Option<String>,
    },
}

/// The shells `completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// `serve`'s own options.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, default_value = "[::]:8443", value_name = "ADDR:PORT")]
    pub listen: String,
    /// Server certificate (PEM); default: made in the state directory on first start.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP (loopback addresses only), for tests.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    pub insecure_http: bool,
    /// Serve this recorded document (bare api.Resources or Incus envelope) instead of probing.
    #[arg(long, value_name = "FILE")]
    pub resources_file: Option<PathBuf>,
    /// Close a connection after this long with no request in progress, or
    /// no bytes either way (with a cluster file, at least its request
    /// deadline plus 30 s).
    #[arg(long, default_value = "120s", value_name = "DURATION")]
    pub idle_timeout: String,
    /// Close a connection whose request head has not arrived whole this long
    /// after it began (however the bytes trickle), or that has not started
    /// its first request this long after it opened.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub header_timeout: String,
    /// Connections served at once (1 to 1000000); more wait in the kernel's backlog.
    #[arg(long, default_value_t = 512, value_name = "N", value_parser = connection_cap)]
    pub max_connections: usize,
    /// Connections one client address may hold at once (1 to 1000000); its
    /// next ones are closed at once, so one client cannot take every slot.
    #[arg(long, default_value_t = 64, value_name = "N", value_parser = connection_cap)]
    pub max_connections_per_client: usize,
    /// Also serve GET /metrics (Prometheus text format) in plain HTTP on
    /// this loopback ADDR:PORT, for a scraper on this machine; trusted
    /// clients read /metrics on --listen over mutual TLS in any case.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<String>,
    /// Keep this machine's Kubernetes Node Feature Discovery feature file
    /// (in features.d) current: rewritten atomically when its labels
    /// change (needs a cluster file naming the local member).
    #[arg(long, value_name = "PATH")]
    pub nfd_features_file: Option<PathBuf>,
    /// How often the NFD feature file's answer is computed.
    #[arg(
        long,
        default_value = "5m",
        value_name = "DURATION",
        requires = "nfd_features_file"
    )]
    pub nfd_interval: String,
}

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Trust the certificate(s) in a PEM file (another node's `identity
    /// --pem`, or an Incus client's client.crt).
    Add {
        cert: PathBuf,
        /// What to call it in `trust list` (a node's or a person's name);
        /// given for a certificate already trusted, renames it.
        #[arg(long, value_name = "NAME", value_parser = certificate_name)]
        name: Option<String>,
    },
    /// List trusted certificates: name, subject, SHA-256 fingerprint, expiry.
    List {
        #[arg(long, value_enum, default_value_t = TableFormat::Table)]
        format: TableFormat,
    },
    /// Stop trusting a certificate, by fingerprint or a unique prefix of it.
    Remove { fingerprint: String },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Each member: reachable or not, where its data came from and how old
    /// it is, when its hardware last changed, and the policy's error.
    Status {
        #[arg(long, value_enum, default_value_t = TableFormat::Table)]
        format: TableFormat,
    },
    /// Trust a member's certificate on first use: connect, show its
    /// fingerprint, and on confirmation pin it in the cluster file
    /// (`server-cert`); a member already pinned to another is refused.
    AcceptCertificate {
        /// The member (a `[[member]]` entry of the cluster file).
        #[arg(add = ArgValueCandidates::new(complete::members))]
        node: String,
        /// Pin only if it presents this fingerprint (from `nodecache
        /// identity` on the member): confirmation without a terminal.
        #[arg(long, value_name = "SHA256", conflicts_with = "yes")]
        fingerprint: Option<String>,
        /// Pin whatever it presents, without asking.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Load a policy and print its description and contract version, or why it is rejected.
    Check {
        /// An embedded policy's name, or a component file.
        policy: String,
    },
    /// The embedded policies: name, version, contract and parameters.
    List,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line of text per event.
    Text,
    /// One JSON object per event: time, level, target and fields.
    Json,
}

/// `resources --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ResourcesFormat {
    /// The api.Resources document, as Incus's GET /1.0/resources gives it.
    Document,
    /// The document with where it came from: source, age, error.
    Json,
    /// One line per node: source, age, CPU, cores, memory.
    Table,
}

/// `--format` of the commands that describe things (trust, status, a node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TableFormat {
    /// Aligned columns, for people.
    Table,
    /// JSON, for programs.
    Json,
}

/// `--format`: the outputs' formats, as the command line spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// One flag per line, sorted (Linux names).
    List,
    /// Flags, level and every node's provenance.
    Json,
    /// A QEMU `-cpu` value: the baseline model and the features it lacks, in QEMU's names.
    Qemu,
    /// A libvirt domain `<cpu>` element requiring every common feature, in libvirt's names.
    Libvirt,
    /// The keys of an Incus cluster group's CPU definition (key=value lines).
    Incus,
    /// A Proxmox VE custom CPU model: a cpu-models.conf section (flags,
    /// phys-bits, reported-model), named by --model-name.
    Proxmox,
    /// OpenStack Nova's [libvirt] fragment of nova.conf: cpu_mode,
    /// cpu_models (oldest first), cpu_model_extra_flags.
    Nova,
    /// A KubeVirt VirtualMachine's spec.domain.cpu (model, features) and
    /// the nodeSelector a migration target needs (default baseline: auto).
    Kubevirt,
    /// A Kubernetes Node Feature Discovery feature file for this machine
    /// (features.d): its level, models and groups, the baseline's.
    Nfd,
}

impl From<FormatArg> for FlagsFormat {
    fn from(format: FormatArg) -> FlagsFormat {
        match format {
            FormatArg::List => FlagsFormat::List,
            FormatArg::Json => FlagsFormat::Json,
            FormatArg::Qemu => FlagsFormat::Qemu,
            FormatArg::Libvirt => FlagsFormat::Libvirt,
            FormatArg::Incus => FlagsFormat::Incus,
            FormatArg::Proxmox => FlagsFormat::Proxmox,
            FormatArg::Nova => FlagsFormat::Nova,
            FormatArg::Kubevirt => FlagsFormat::Kubevirt,
            FormatArg::Nfd => FlagsFormat::Nfd,
        }
    }
}

/// `--max-connections`: a count a server can hold (0 would serve no one;
/// 2^61 made the semaphore panic).
fn connection_cap(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?} is not a number of connections from 1 to 1000000"
        )),
    }
}

/// `trust add --name`: refused before anything is read (exit 2).
fn certificate_name(text: &str) -> Result<String, String> {
    crate::server::trust::check_name(text)
        .map(|()| text.to_string())
        .map_err(|e| e.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProbeSource {
    /// /proc/cpuinfo, as the kernel reports it.
    Kernel,
    /// CPUID, read on every CPU.
    Cpuid,
    /// What CPUID reports and the kernel hides, and the reverse.
    Both,
    /// What this node's KVM (with QEMU's additions, migratable) can give a
    /// guest: the set the VM outputs are made from.
    Hypervisor,
}
