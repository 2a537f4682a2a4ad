//! What each subcommand does.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Failure;
use super::args::{Cli, Command, FlagsFormat, PolicyCommand, ProbeSource, TrustCommand};
use crate::capabilities::Capabilities;
use crate::cpu_flags::cpu_flags;
use crate::format;
use crate::gather::DEFAULT_CONCURRENCY;
use crate::membership::Membership;
use crate::model::PolicyFailure;
use crate::node_name::NodeName;
use crate::probe;
use crate::remote::RemoteFetcher;
use crate::runtime::{Limits, PolicyRuntime};
use crate::serve::{ResourcesSource, TlsSetup, serve};
use crate::store::CacheStore;
use crate::trust::{self, TrustStore};

pub async fn run(cli: Cli) -> Result<(), Failure> {
    let settings = parse_settings(&cli.settings)?;
    match &cli.command {
        Command::Serve { .. } => return serve_command(&cli).await,
        Command::Trust { command } => return trust_command(&cli, command),
        Command::Identity => return identity_command(&cli),
        Command::Probe { source } => return probe_command(*source).await,
        Command::Policy {
            command: PolicyCommand::Check { file },
        } => return policy_check(file).await,
        _ => {}
    }
    let membership = match &cli.cluster {
        Some(path) => Membership::load(path).map_err(Failure::usage)?,
        None => Membership::this_machine(),
    };
    let mut config = membership.policy.clone();
    config.extend(settings);
    match &cli.command {
        Command::Resources { node, all: false } => {
            resources(&cli, &membership, config, node.as_deref()).await
        }
        Command::Resources { all: true, .. } => resources_all(&cli, &membership, config).await,
        Command::CpuFlags {
            format,
            arch,
            allow_partial,
        } => {
            let arch = arch.clone().unwrap_or_else(|| std::env::consts::ARCH.to_string());
            cpu_flags_command(&cli, &membership, config, *format, &arch, *allow_partial).await
        }
        Command::Serve { .. }
        | Command::Trust { .. }
        | Command::Identity
        | Command::Probe { .. }
        | Command::Policy { .. } => {
            unreachable!("handled above")
        }
    }
}

fn parse_settings(settings: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    settings
        .iter()
        .map(|setting| match setting.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok((key.trim().to_string(), value.trim().to_string()))
            }
            _ => Err(Failure::usage(anyhow!("--set {setting:?}: expected KEY=VALUE"))),
        })
        .collect()
}

fn capabilities(
    cli: &Cli,
    config: BTreeMap<String, String>,
    membership: &Membership,
) -> anyhow::Result<Arc<Capabilities>> {
    let root = match &cli.cache_dir {
        Some(dir) => dir.clone(),
        None => CacheStore::default_root()?,
    };
    let remote = RemoteFetcher::for_membership(membership)?;
    Ok(Arc::new(Capabilities::new(
        CacheStore::new(&root),
        config,
        remote,
    )))
}

fn load_policy(cli: &Cli) -> anyhow::Result<PolicyRuntime> {
    match &cli.policy {
        Some(path) => PolicyRuntime::from_file(path, Limits::default()),
        None => PolicyRuntime::default_policy(Limits::default()),
    }
}

async fn resources(
    cli: &Cli,
    membership: &Membership,
    config: BTreeMap<String, String>,
    node: Option<&str>,
) -> Result<(), Failure> {
    let cluster = &membership.cluster;
    let member = match node {
        None => cluster
            .local()
            .context("the cluster file names no local member: give a NODE")?,
        Some(name) => {
            let name = NodeName::parse(name).map_err(|e| Failure::usage(e.into()))?;
            cluster.find(&name).ok_or_else(|| {
                Failure::usage(anyhow!(
                    "node \"{name}\" is not a member of the cluster (members: {})",
                    cluster.names()
                ))
            })?
        }
    };
    let capabilities = capabilities(cli, config, membership)?;
    let runtime = load_policy(cli)?;
    let outcome = runtime
        .get_node_resources(capabilities, &member.as_member())
        .await?;
    let resources = outcome.map_err(|failure: PolicyFailure| anyhow!("{}: {failure}", member.name))?;
    let document: crate::api::Resources = serde_json::from_str(&resources.document).with_context(|| {
        format!(
            "{}: the policy returned something that is not a resources document",
            member.name
        )
    })?;
    tracing::info!(node = %member.name, source = %resources.source, age_ms = resources.age_ms, "resources");
    print(&format!(
        "{}\n",
        serde_json::to_string_pretty(&document).context("serialise")?
    ))
}

async fn cpu_flags_command(
    cli: &Cli,
    membership: &Membership,
    config: BTreeMap<String, String>,
    output: FlagsFormat,
    arch: &str,
    allow_partial: bool,
) -> Result<(), Failure> {
    let capabilities = capabilities(cli, config, membership)?;
    let runtime = load_policy(cli)?;
    let progress = progress_bar(membership.cluster.members.len());
    let cluster = &membership.cluster;
    let report = cpu_flags(
        &runtime,
        capabilities,
        cluster,
        arch,
        DEFAULT_CONCURRENCY,
        &progress,
    )
    .await?;
    progress.finish_and_clear();
    let missing: Vec<String> = report
        .nodes_without_data()
        .iter()
        .map(|node| format!("{} ({})", node.name, node.error.as_deref().unwrap_or("no data")))
        .collect();
    if !missing.is_empty() && !allow_partial {
        return Err(Failure {
            code: 3,
            error: anyhow!(
                "no data for {} of {} nodes, so no flag set is safe for them: {} (--allow-partial computes over the rest)",
                missing.len(),
                report.nodes.len(),
                missing.join("; ")
            ),
        });
    }
    if !missing.is_empty() {
        tracing::warn!("partial result: without {}", missing.join("; "));
    }
    match output {
        FlagsFormat::List => print(&format::flag_list(&report.flags)),
        FlagsFormat::Json => print(&format::cpu_flags_json(&report)),
    }
}

async fn probe_command(source: ProbeSource) -> Result<(), Failure> {
    let cpus = tokio::task::spawn_blocking(probe::local_cpu_flags)
        .await
        .context("probe task")?
        .context("cannot probe this machine's CPUs")?;
    let common =
        |pick: &dyn Fn(&probe::CpuFlags) -> Option<BTreeSet<String>>| -> anyhow::Result<Vec<String>> {
            let mut sets = cpus.iter().map(pick);
            let first = sets
                .next()
                .flatten()
                .context("the kernel publishes no CPU flags here (/proc/cpuinfo)")?;
            let shared = sets.try_fold(first, |acc, set| {
                set.map(|set| acc.intersection(&set).cloned().collect::<BTreeSet<_>>())
            });
            Ok(shared
                .context("the kernel publishes no flags for some CPUs")?
                .into_iter()
                .collect())
        };
    let text = match source {
        ProbeSource::Kernel => format::flag_list(&common(&|cpu| cpu.kernel.clone())?),
        ProbeSource::Cpuid => format::flag_list(&common(&|cpu| Some(cpu.cpuid.clone()))?),
        ProbeSource::Both => {
            let hidden: BTreeSet<String> = cpus.iter().flat_map(|cpu| cpu.hidden_by_kernel()).collect();
            let kernel_only: BTreeSet<String> = cpus.iter().flat_map(|cpu| cpu.kernel_only()).collect();
            let list = |set: BTreeSet<String>| format::flag_list(&set.into_iter().collect::<Vec<_>>());
            format!(
                "# CPUID reports, the kernel hides ({}):\n{}# the kernel reports, no CPUID bit names ({}):\n{}",
                hidden.len(),
                list(hidden.clone()),
                kernel_only.len(),
                list(kernel_only.clone()),
            )
        }
    };
    print(&text)
}

async fn policy_check(file: &std::path::Path) -> Result<(), Failure> {
    let runtime = PolicyRuntime::from_file(file, Limits::default())?;
    // describe() touches no capability; the store is never written.
    let store = CacheStore::new(&std::env::temp_dir().join("nodecache-policy-check"));
    let capabilities = Arc::new(Capabilities::new(
        store,
        BTreeMap::new(),
        RemoteFetcher::default(),
    ));
    let info = runtime.describe(capabilities).await?;
    let mut text = format!(
        "{}: ok\npolicy: {} {}\ncontract: {}\nparameters:\n",
        file.display(),
        info.name,
        info.version,
        runtime.contract()
    );
    for parameter in &info.parameters {
        text.push_str(&format!(
            "  {} (default {}): {}\n",
            parameter.name, parameter.default_value, parameter.description
        ));
    }
    print(&text)
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a message.
fn print(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::from(e).context("writing output").into())
        }
        _ => Ok(()),
    }
}

async fn resources_all(
    cli: &Cli,
    membership: &Membership,
    config: BTreeMap<String, String>,
) -> Result<(), Failure> {
    let capabilities = capabilities(cli, config, membership)?;
    let runtime = load_policy(cli)?;
    let members: Vec<_> = membership.cluster.members.iter().map(|m| m.as_member()).collect();
    let progress = progress_bar(members.len());
    let gathered =
        crate::gather::gather(&runtime, capabilities, &members, DEFAULT_CONCURRENCY, &progress).await?;
    progress.finish_and_clear();
    let mut outcomes = Vec::with_capacity(gathered.len());
    for node in gathered {
        let entry = match node.outcome {
            Ok(resources) => serde_json::json!({
                "name": node.member.name.as_str(),
                "source": resources.source.to_string(),
                "age_seconds": resources.age_ms / 1000,
                "error": resources.refresh_error.map(|e| e.to_string()),
                "resources": serde_json::from_str::<serde_json::Value>(&resources.document)
                    .context("the policy returned a document that is not JSON")?,
            }),
            Err(error) => serde_json::json!({
                "name": node.member.name.as_str(), "source": "error", "age_seconds": null,
                "error": error.to_string(), "resources": null,
            }),
        };
        outcomes.push(entry);
    }
    print(&format!(
        "{}\n",
        serde_json::to_string_pretty(&outcomes).context("serialise")?
    ))
}

async fn serve_command(cli: &Cli) -> Result<(), Failure> {
    let Command::Serve {
        listen,
        tls_cert,
        tls_key,
        insecure_http,
        resources_file,
    } = &cli.command
    else {
        unreachable!()
    };
    let address = parse_listen(listen).map_err(Failure::usage)?;
    if *insecure_http && !address.ip().is_loopback() {
        return Err(Failure::usage(anyhow!(
            "--insecure-http is only allowed on a loopback address, not {address}"
        )));
    }
    let source = match resources_file {
        Some(path) => ResourcesSource::from_file(path)?,
        None => ResourcesSource::Probe,
    };
    let tls = if *insecure_http {
        None
    } else {
        let state_dir = state_dir(cli)?;
        let (cert, key) = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            _ => trust::ensure_server_identity(&state_dir)?,
        };
        Some(TlsSetup {
            config: trust::server_config(&cert, &key)?,
            trust: TrustStore::new(&state_dir),
        })
    };
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    eprintln!(
        "nodecache: listening on {}",
        listener.local_addr().context("listener address")?
    );
    serve(listener, source, tls).await?;
    Ok(())
}

fn state_dir(cli: &Cli) -> anyhow::Result<std::path::PathBuf> {
    match &cli.state_dir {
        Some(dir) => Ok(dir.clone()),
        None => trust::default_state_dir(),
    }
}

fn trust_command(cli: &Cli, command: &TrustCommand) -> Result<(), Failure> {
    let store = TrustStore::new(&state_dir(cli)?);
    let text = match command {
        TrustCommand::Add { cert } => store.add(cert)?.iter().map(|f| format!("added {f}\n")).collect(),
        TrustCommand::List => store.list()?.iter().map(|f| format!("{f}\n")).collect(),
        TrustCommand::Remove { fingerprint } => format!("removed {}\n", store.remove(fingerprint)?),
    };
    print(&text)
}

/// A bar on stderr while asking many members; indicatif draws nothing when
/// stderr is not a terminal, so piped output stays clean.
fn progress_bar(members: usize) -> ProgressBar {
    if members < PROGRESS_THRESHOLD {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(members as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} asking nodes {bar:30} {pos}/{len} {elapsed}") {
        bar.set_style(style);
    }
    bar
}

/// Below this many members, a run is too quick for a bar to help.
const PROGRESS_THRESHOLD: usize = 8;

fn identity_command(cli: &Cli) -> Result<(), Failure> {
    let (cert, key) = trust::ensure_server_identity(&state_dir(cli)?)?;
    let der = crate::tls::load_certs(&cert)?.remove(0);
    print(&format!(
        "certificate: {}\nkey: {}\nfingerprint: {}\n",
        cert.display(),
        key.display(),
        crate::tls::fingerprint(der.as_ref())
    ))
}

/// `ADDR:PORT`, or a bare address on Incus's port 8443.
fn parse_listen(listen: &str) -> anyhow::Result<std::net::SocketAddr> {
    if let Ok(address) = listen.parse() {
        return Ok(address);
    }
    let ip: std::net::IpAddr = listen.trim_matches(['[', ']']).parse().map_err(|_| {
        anyhow!("--listen {listen:?}: expected ADDR:PORT or ADDR, e.g. [::]:8443 or 10.0.0.1")
    })?;
    Ok(std::net::SocketAddr::new(ip, DEFAULT_PORT))
}

/// Incus's port.
const DEFAULT_PORT: u16 = 8443;
