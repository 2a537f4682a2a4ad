//! What each subcommand does.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, anyhow};

use super::Failure;
use super::args::{Cli, Command, FlagsFormat, PolicyCommand, ProbeSource};
use crate::capabilities::Capabilities;
use crate::cluster::Cluster;
use crate::cpu_flags::cpu_flags;
use crate::format;
use crate::gather::DEFAULT_CONCURRENCY;
use crate::model::PolicyFailure;
use crate::node_name::NodeName;
use crate::probe;
use crate::remote::RemoteFetcher;
use crate::runtime::{Limits, PolicyRuntime};
use crate::store::CacheStore;

pub async fn run(cli: Cli) -> Result<(), Failure> {
    let config = parse_settings(&cli.settings)?;
    match &cli.command {
        Command::Resources { node } => resources(&cli, config, node.as_deref()).await,
        Command::CpuFlags {
            format,
            arch,
            allow_partial,
        } => {
            let arch = arch.clone().unwrap_or_else(|| std::env::consts::ARCH.to_string());
            cpu_flags_command(&cli, config, *format, &arch, *allow_partial).await
        }
        Command::Probe { source } => probe_command(*source).await,
        Command::Policy {
            command: PolicyCommand::Check { file },
        } => policy_check(file).await,
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
    cluster: &Cluster,
) -> anyhow::Result<Arc<Capabilities>> {
    let root = match &cli.cache_dir {
        Some(dir) => dir.clone(),
        None => CacheStore::default_root()?,
    };
    let urls = cluster
        .members
        .iter()
        .filter_map(|m| Some((m.name.clone(), m.url.clone()?)))
        .collect();
    Ok(Arc::new(Capabilities {
        store: CacheStore::new(&root),
        config,
        remote: RemoteFetcher::new(urls),
    }))
}

fn load_policy(cli: &Cli) -> anyhow::Result<PolicyRuntime> {
    match &cli.policy {
        Some(path) => PolicyRuntime::from_file(path, Limits::default()),
        None => PolicyRuntime::default_policy(Limits::default()),
    }
}

async fn resources(cli: &Cli, config: BTreeMap<String, String>, node: Option<&str>) -> Result<(), Failure> {
    let cluster = Cluster::this_machine();
    let member = match node {
        None => cluster.local().context("the cluster has no local member")?,
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
    let capabilities = capabilities(cli, config, &cluster)?;
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
    config: BTreeMap<String, String>,
    output: FlagsFormat,
    arch: &str,
    allow_partial: bool,
) -> Result<(), Failure> {
    let cluster = Cluster::this_machine();
    let capabilities = capabilities(cli, config, &cluster)?;
    let runtime = load_policy(cli)?;
    let report = cpu_flags(&runtime, capabilities, &cluster, arch, DEFAULT_CONCURRENCY).await?;
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
    let cluster = Cluster::this_machine();
    let capabilities = Arc::new(Capabilities {
        store: CacheStore::new(&std::env::temp_dir().join("nodecache-policy-check")),
        config: BTreeMap::new(),
        remote: RemoteFetcher::new(
            cluster
                .members
                .iter()
                .filter_map(|m| Some((m.name.clone(), m.url.clone()?)))
                .collect(),
        ),
    });
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
