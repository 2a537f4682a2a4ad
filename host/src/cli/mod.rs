//! The `nodecache` command line.

mod args;
mod commands;
mod docs;
mod node;
mod policy;
mod query;

pub use args::Cli;
use clap::Parser;

/// Exit status: 0 success, 1 runtime error, 2 usage error, 3 nodes without data.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub error: anyhow::Error,
}

impl From<anyhow::Error> for Failure {
    /// A runtime error, except a policy's refusal of its settings (`--set`
    /// or the cluster file's `[policy]` table), which is the operator's
    /// usage error wherever it is found.
    fn from(error: anyhow::Error) -> Self {
        let bad_settings = error.chain().any(|cause| {
            matches!(
                cause.downcast_ref(),
                Some(crate::model::PolicyFailure::BadConfig(_))
            ) || cause.is::<crate::model::UnknownSettings>()
        });
        Failure {
            code: if bad_settings { 2 } else { 1 },
            error,
        }
    }
}

impl Failure {
    pub fn usage(error: anyhow::Error) -> Self {
        Failure { code: 2, error }
    }
}

/// Parses the command line, runs it, and returns the exit status.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return error.exit_code();
        }
    };
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("nodecache: cannot start the async runtime: {error}");
            return 1;
        }
    };
    // The command runs as a task on a worker thread, not on this thread:
    // tasks it spawns (one per member) then start on the workers' own
    // queues instead of each waking a parked worker across threads.
    let command = runtime.block_on(async {
        tokio::spawn(commands::run(cli))
            .await
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
    });
    match command {
        Ok(()) => 0,
        Err(failure) => {
            // The last gate: whatever an error quotes, from wherever, is
            // printed line by line through the one sanitiser.
            let text = format!("{:#}", failure.error);
            for line in text.lines() {
                eprintln!("nodecache: {}", crate::format::for_terminal(line, 4000));
            }
            failure.code
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("NODECACHE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
