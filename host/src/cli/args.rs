//! Command-line arguments (clap).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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

    /// A policy component to use instead of the embedded default.
    #[arg(long, global = true, env = "NODECACHE_POLICY", value_name = "FILE.wasm")]
    pub policy: Option<PathBuf>,

    /// A policy parameter, e.g. --set max-age=1h (see `nodecache policy check`).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub settings: Vec<String>,

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
        node: Option<String>,
    },
    /// Print the CPU flags every core of every node shares.
    CpuFlags {
        #[arg(long, value_enum, default_value_t = FlagsFormat::List)]
        format: FlagsFormat,
        /// Architecture to intersect (default: this machine's).
        #[arg(long, value_name = "ARCH")]
        arch: Option<String>,
        /// Compute over the nodes that have data instead of failing (exit 3) when some have none.
        #[arg(long)]
        allow_partial: bool,
    },
    /// Print this machine's CPU flags straight from the hardware, without policy or cache.
    Probe {
        #[arg(long, value_enum, default_value_t = ProbeSource::Kernel)]
        source: ProbeSource,
    },
    /// Inspect policy components.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Load a policy and print its description and contract version, or why it is rejected.
    Check {
        /// The component to check.
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlagsFormat {
    /// One flag per line, sorted.
    List,
    /// Flags plus every node's provenance.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProbeSource {
    /// /proc/cpuinfo, as the kernel reports it.
    Kernel,
    /// CPUID, read on every CPU.
    Cpuid,
    /// What CPUID reports and the kernel hides, and the reverse.
    Both,
}
