//! The `nodecache` command line: [`args`] (clap), resolved once into a
//! [`context`], dispatched here to one handler per command ([`query`],
//! [`node`], [`trust`], [`cluster`], [`policy`], [`docs`]), which print
//! through [`print`].

mod args;
mod check;
mod cluster;
mod complete;
mod context;
mod docs;
mod failure;
mod history;
mod manual;
mod node;
mod policy;
mod print;
mod query;
mod trust;

pub use args::Cli;
use args::{ClusterCommand, Command, PolicyCommand};
use context::Context;
pub use failure::Failure;

/// Runs one parsed command line.
async fn run(cli: Cli) -> Result<(), Failure> {
    let context = Context::new(&cli);
    match cli.command {
        Command::Resources {
            all: true, format, ..
        } => query::resources_all(&context, format).await,
        Command::Resources {
            node,
            all: false,
            format,
        } => query::resources(&context, node.as_deref(), format).await,
        Command::CpuFlags {
            format,
            baseline,
            level,
            explain,
            group,
            arch,
            allow_partial,
            require_hypervisor,
            drop_fragile,
            model_name,
            apply,
            yes,
        } => {
            let options = query::FlagsOptions {
                output: crate::outputs::output::FlagsOutput {
                    format: format.into(),
                    baseline,
                    level,
                    explain,
                    require_hypervisor,
                    drop_fragile,
                    model_name,
                    this_node: None,
                    nfd_valid_for: crate::outputs::output::NFD_VALID_FOR,
                },
                arch,
                allow_partial,
                group,
                apply: apply.then_some(query::Apply { yes }),
            };
            query::cpu_flags(&context, options).await
        }
        Command::CanRun {
            flags,
            from,
            group,
            format,
        } => {
            let guest = match (flags, from) {
                (Some(flags), _) => query::Guest::Flags(flags),
                (None, Some(node)) => query::Guest::HostCpuOf(node),
                (None, None) => unreachable!("clap requires one of --flags and --from"),
            };
            query::can_run(&context, guest, group.as_deref(), format.into()).await
        }
        Command::Probe { source } => node::probe(source).await,
        Command::Serve(args) => node::serve(&context, &args).await,
        Command::Identity { pem, fingerprint } => trust::identity(&context, pem, fingerprint),
        Command::Trust { command } => trust::trust(&context, &command),
        Command::History {
            node,
            all,
            since,
            format,
        } => history::history(
            &context,
            history::HistoryQuery {
                node,
                all,
                since,
                format,
            },
        ),
        Command::Check { group, since } => check::check(&context, group.as_deref(), &since).await,
        Command::Cluster {
            command: ClusterCommand::Status { format },
        } => cluster::status(&context, format).await,
        Command::Cluster {
            command:
                ClusterCommand::AcceptCertificate {
                    node,
                    fingerprint,
                    yes,
                },
        } => cluster::accept_certificate(&context, &node, fingerprint.as_deref(), yes).await,
        Command::Policy {
            command: PolicyCommand::Check { policy },
        } => policy::check(&context, &policy).await,
        Command::Policy {
            command: PolicyCommand::List,
        } => policy::list(&context).await,
        Command::Completions { shell } => docs::completions(shell),
        Command::Manpage { subcommand } => docs::manpage(subcommand.as_deref()),
    }
}

/// Parses the command line, runs it, and returns the exit status.
pub fn main() -> i32 {
    // A shell asking for completions (`COMPLETE=bash nodecache -- WORDS`)
    // is answered here, and the process exits.
    clap_complete::CompleteEnv::with_factory(manual::command).complete();
    // Parsed from the command the manual completes (examples and exit
    // statuses after each `--help`), not the bare derive.
    let parsed = manual::command()
        .try_get_matches()
        .and_then(|matches| <Cli as clap::FromArgMatches>::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return error.exit_code();
        }
    };
    let kind = match cli.command {
        args::Command::Serve(_) => LogKind::Service,
        args::Command::Check { .. } => LogKind::Monitor,
        _ => LogKind::Command,
    };
    init_logging(cli.verbose, cli.log_format, kind);
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
        tokio::spawn(run(cli))
            .await
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
    });
    match command {
        Ok(()) => 0,
        Err(failure) if failure.is_reported() => failure.code,
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

/// The log on stderr: warnings by default, more with `-v` ([`LogKind`]
/// says what each kind of command shows). `--log-format json`: one JSON
/// object per line, for journald and log shippers.
/// What a command's log is for, which sets what it shows by default.
enum LogKind {
    /// A command a person runs: warnings.
    Command,
    /// `serve`: warnings, and each request, refusal, start and stop.
    Service,
    /// `check`: its one line is the answer, and monitoring systems may
    /// merge stderr into it: errors only.
    Monitor,
}

fn init_logging(verbose: u8, format: args::LogFormat, kind: LogKind) {
    let level = match (verbose, kind) {
        (0, LogKind::Service) => {
            "warn,nodecache::access=info,nodecache::server=info,nodecache::cli::node=info"
        }
        (0, LogKind::Monitor) => "error",
        (0, LogKind::Command) => "warn",
        (1, _) => "info",
        (2, _) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("NODECACHE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        args::LogFormat::Json => builder.json().with_current_span(false).try_init(),
        args::LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}
