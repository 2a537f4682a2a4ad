//! Dispatch, and what the subcommands share: settings, the cluster file,
//! capabilities, the policy, and writing to stdout.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, anyhow};

use super::Failure;
use super::args::{Cli, Command, PolicyCommand};
use super::{docs, node, policy, query};
use crate::capabilities::Capabilities;
use crate::flags::output::{FlagsFormat, FlagsOutput};
use crate::membership::Membership;
use crate::remote::RemoteFetcher;
use crate::runtime::artifacts::ArtifactCache;
use crate::runtime::{Limits, Loader, PolicyRuntime};
use crate::store::CacheStore;

pub async fn run(cli: Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Resources { node, all } => {
            let (membership, config) = cluster_setup(&cli).await?;
            if *all {
                query::resources_all(&cli, &membership, config).await
            } else {
                query::resources(&cli, &membership, config, node.as_deref()).await
            }
        }
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
            apply,
            yes,
        } => {
            if *apply && *format != FlagsFormat::Incus {
                return Err(Failure::usage(anyhow!(
                    "--apply sets Incus keys: use it with --format incus"
                )));
            }
            let (membership, config) = cluster_setup(&cli).await?;
            let membership = in_group(membership, group.as_deref())?;
            let arch = arch.clone().unwrap_or_else(|| std::env::consts::ARCH.to_string());
            crate::flags::output::check_arch(&arch).map_err(|why| Failure::usage(anyhow!(why)))?;
            let output = FlagsOutput {
                format: *format,
                baseline: baseline.clone(),
                level: *level,
                explain: *explain,
                require_hypervisor: *require_hypervisor,
                drop_fragile: *drop_fragile,
            };
            output.check(&arch).map_err(|why| Failure::usage(anyhow!(why)))?;
            let keys =
                query::cpu_flags_command(&cli, &membership, config, output, &arch, *allow_partial).await?;
            // clap makes --apply require --group.
            if let (true, Some(group)) = (*apply, group.as_deref()) {
                let shown = crate::incus_group::apply(&membership, group, &keys, *yes).await?;
                eprint!("{shown}");
            }
            Ok(())
        }
        Command::CanRun {
            flags,
            from,
            group,
            format,
        } => {
            if !matches!(format, FlagsFormat::List | FlagsFormat::Json) {
                return Err(Failure::usage(anyhow!(
                    "can-run prints a table or JSON: --format list or json"
                )));
            }
            let (membership, config) = cluster_setup(&cli).await?;
            let membership = in_group(membership, group.as_deref())?;
            let guest = match (flags, from) {
                (Some(flags), _) => query::Guest::Flags(flags.clone()),
                (None, Some(node)) => query::Guest::HostCpuOf(node.clone()),
                (None, None) => unreachable!("clap requires one of --flags and --from"),
            };
            query::can_run_command(&cli, &membership, config, guest, *format).await
        }
        Command::Probe { source } => node::probe_command(*source).await,
        Command::Serve(args) => node::serve_command(&cli, args).await,
        Command::Identity => node::identity_command(&cli),
        Command::Trust { command } => node::trust_command(&cli, command),
        Command::Policy {
            command: PolicyCommand::Check { policy },
        } => policy::policy_check(&cli, policy).await,
        Command::Policy {
            command: PolicyCommand::List,
        } => policy::policy_list(&cli).await,
        Command::Completions { shell } => docs::completions(*shell),
        Command::Manpage { subcommand } => docs::manpage(subcommand.as_deref()),
    }
}

/// The cluster file (or this machine alone) and the policy parameters:
/// the file's `[policy]` table, overridden by `--set`.
/// With `incus = "…"`, Incus's member list is read here, on every run.
pub(super) async fn cluster_setup(cli: &Cli) -> Result<(Membership, BTreeMap<String, String>), Failure> {
    let (file, config) = cluster_file(cli)?;
    Ok((with_incus_members(&file).await?, config))
}

/// The cluster file's members with those its Incus cluster lists (the
/// file alone without `incus = "…"`).
pub(super) async fn with_incus_members(file: &Membership) -> Result<Membership, Failure> {
    let mut membership = file.clone();
    crate::incus_members::add_members(&mut membership)
        .await
        .context("reading the members of the Incus cluster")?;
    Ok(membership)
}

/// The cluster file as written (Incus's members not yet read).
pub(super) fn cluster_file(cli: &Cli) -> Result<(Membership, BTreeMap<String, String>), Failure> {
    let settings = parse_settings(&cli.settings)?;
    let membership = match &cli.cluster {
        Some(path) => Membership::load(path).map_err(Failure::usage)?,
        None => Membership::this_machine(),
    };
    let mut config = membership.policy.clone();
    config.extend(settings);
    Ok((membership, config))
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

pub(super) fn capabilities(
    cli: &Cli,
    config: BTreeMap<String, String>,
    membership: &Membership,
) -> anyhow::Result<Arc<Capabilities>> {
    let root = cache_root(cli)?;
    let remote = RemoteFetcher::for_membership(membership)?;
    Ok(Arc::new(
        Capabilities::new(CacheStore::new(&root), config, remote).with_random_seed(cli.random_seed),
    ))
}

fn cache_root(cli: &Cli) -> anyhow::Result<std::path::PathBuf> {
    match &cli.cache_dir {
        Some(dir) => Ok(dir.clone()),
        None => CacheStore::default_root(),
    }
}

/// The policy `--policy` names (the default one without it), with a pool
/// for `instances` at once and limits fit for `membership`'s fetch
/// deadline, compiled only when no trusted artifact of it is kept under
/// `<cache-dir>/compiled/`; and the capabilities it is lent. A setting the
/// policy does not declare (a typo such as `max_age`) is a usage error
/// naming the keys it knows, never silently ignored.
pub(super) async fn policy_and_capabilities(
    cli: &Cli,
    membership: &Membership,
    config: BTreeMap<String, String>,
    instances: usize,
) -> Result<(Arc<PolicyRuntime>, Arc<Capabilities>), Failure> {
    let mut loader = loader(cli, instances);
    loader.limits = Limits::for_fetch_deadline(membership.deadline);
    let runtime = loader.load(cli.policy.as_deref())?;
    let capabilities = capabilities(cli, config, membership)?;
    let info = runtime.describe(capabilities.clone()).await?;
    info.check_settings(runtime.origin(), capabilities.config.keys())?;
    Ok((Arc::new(runtime), capabilities))
}

pub(super) fn loader(cli: &Cli, instances: usize) -> Loader {
    let artifacts = cache_root(cli)
        .and_then(|root| ArtifactCache::open(&root.join("compiled")))
        .map_err(|e| tracing::warn!("not keeping compiled policies: {e:#}"))
        .ok();
    Loader {
        instances: u32::try_from(instances).unwrap_or(u32::MAX),
        artifacts,
        ..Loader::default()
    }
}

/// `--group G`: the membership narrowed to G's members.
fn in_group(mut membership: Membership, group: Option<&str>) -> Result<Membership, Failure> {
    if let Some(group) = group {
        membership.cluster = membership
            .cluster
            .in_group(group)
            .map_err(|e| Failure::usage(anyhow!(e)))?;
    }
    Ok(membership)
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a message.
pub(super) fn print(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::from(e).context("writing output").into())
        }
        _ => Ok(()),
    }
}
