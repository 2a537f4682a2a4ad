//! What concerns this node alone: probing it and serving it (its
//! certificate and trust store are [`super::trust`]'s).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow};

use nodecache_policy_sdk::intersect::common_to_all;

use super::args::{ProbeSource, ServeArgs};
use super::context::{Context, Members};
use super::failure::Failure;
use super::print::print;
use crate::cluster::service::ClusterApi;
use crate::format;
use crate::machine::probe;
use crate::runtime::slot::PolicySlot;
use crate::runtime::{DEFAULT_INSTANCES, Limits};
use crate::server::listen::ConnectionLimits;
use crate::server::{ResourcesSource, Service, TlsSetup, serve as serve_until_stopped};

pub(super) async fn probe(source: ProbeSource) -> Result<(), Failure> {
    let cpus = tokio::task::spawn_blocking(probe::local_cpu_flags)
        .await
        .context("probe task")?
        .context("cannot probe this machine's CPUs")?;
    // Flags every CPU has, from one source.
    let common = |pick: &dyn Fn(&probe::CpuFlags) -> Option<&BTreeSet<String>>| {
        if cpus.first().and_then(pick).is_none() {
            anyhow::bail!("the kernel publishes no CPU flags here (/proc/cpuinfo)");
        }
        let sets: Option<Vec<&BTreeSet<String>>> = cpus.iter().map(pick).collect();
        let sets = sets.context("the kernel publishes no flags for some CPUs")?;
        let common = common_to_all(sets.into_iter().map(|set| set.iter().map(String::as_str)));
        Ok::<_, anyhow::Error>(common.unwrap_or_default())
    };
    let text = match source {
        ProbeSource::Kernel => format::flag_list(common(&|cpu| cpu.kernel.as_ref())?),
        ProbeSource::Cpuid => format::flag_list(common(&|cpu| Some(&cpu.cpuid))?),
        ProbeSource::Hypervisor => hypervisor_set().await?,
        ProbeSource::Both => {
            let hidden: BTreeSet<String> = cpus.iter().flat_map(|cpu| cpu.hidden_by_kernel()).collect();
            let kernel_only: BTreeSet<String> = cpus.iter().flat_map(|cpu| cpu.kernel_only()).collect();
            format!(
                "# CPUID reports, the kernel hides ({}):\n{}# the kernel reports, no CPUID bit names ({}):\n{}",
                hidden.len(),
                format::flag_list(&hidden),
                kernel_only.len(),
                format::flag_list(&kernel_only),
            )
        }
    };
    print(&text)
}

/// `probe --source hypervisor`: what this node's KVM can give a guest.
async fn hypervisor_set() -> Result<String, Failure> {
    let set = tokio::task::spawn_blocking(probe::hypervisor::probe)
        .await
        .context("probe task")?;
    match (set.flags, set.unavailable) {
        (Some(flags), _) => Ok(format::flag_list(&flags)),
        (None, why) => Err(anyhow!("this node has no hypervisor set: {}", why.unwrap_or_default()).into()),
    }
}

pub(super) async fn serve(context: &Context, args: &ServeArgs) -> Result<(), Failure> {
    let ServeArgs {
        listen,
        tls_cert,
        tls_key,
        insecure_http,
        resources_file,
        idle_timeout,
        header_timeout,
        max_connections,
        max_connections_per_client,
        metrics_listen,
        nfd_features_file,
        nfd_interval,
    } = args;
    let nfd_interval = positive_duration("--nfd-interval", nfd_interval)?;
    if nfd_features_file.is_some() && !context.has_cluster_file() {
        return Err(Failure::usage(anyhow!(
            "--nfd-features-file describes this machine in its cluster: give --cluster (a file naming the local member)"
        )));
    }
    let address = parse_listen(listen).map_err(Failure::usage)?;
    let idle = positive_duration("--idle-timeout", idle_timeout)?;
    let header = positive_duration("--header-timeout", header_timeout)?;
    let metrics_address = match metrics_listen {
        Some(text) => Some(parse_metrics_listen(text).map_err(Failure::usage)?),
        None => None,
    };
    if *insecure_http && !address.ip().is_loopback() {
        return Err(Failure::usage(anyhow!(
            "--insecure-http is only allowed on a loopback address, not {address}"
        )));
    }
    let source = match resources_file {
        Some(path) => ResourcesSource::from_file(path)?,
        None => ResourcesSource::probe(),
    };
    // The policy (reloaded when its file changes or on SIGHUP), and the
    // cluster it answers for when given a cluster file.
    let written = context.cluster_file()?;
    // This node's own answers need no Incus: while Incus does not answer,
    // serve starts with the file's members and its cluster endpoints say
    // the cluster is unavailable, until Incus answers (read per request).
    let members = Members {
        file: match written.with_incus_members().await {
            Ok(file) => file,
            Err(failure) if written.file.incus.is_some() => {
                tracing::warn!(
                    "{:#}; serving this node, and the cluster once Incus answers",
                    failure.error
                );
                written.file.clone()
            }
            Err(failure) => return Err(failure),
        },
        config: written.config.clone(),
        ungrouped: None,
    };
    // A cluster request may be quiet for its whole deadline: never cut it.
    let idle = match context.has_cluster_file() {
        true => idle.max(ClusterApi::request_deadline(members.file.deadline) + Duration::from_secs(30)),
        false => idle,
    };
    let limits = ConnectionLimits {
        idle,
        header,
        max_connections: *max_connections,
        max_per_client: *max_connections_per_client,
    };
    let tls = if *insecure_http {
        None
    } else {
        let state_dir = context.state_dir()?;
        let (cert, key) = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            _ => crate::net::identity::ensure_server_identity(&state_dir)?,
        };
        Some(TlsSetup {
            config: crate::net::tls::server_config(&cert, &key)?,
            trust: crate::server::trust::TrustStore::new(&state_dir),
        })
    };
    let capabilities = context.capabilities(&members)?;
    let mut loader = context.loader(DEFAULT_INSTANCES as usize);
    loader.limits = Limits::for_fetch_deadline(members.file.deadline);
    // A long-running server keeps answering from its cache: by default it
    // revalidates (a member is asked every 5 minutes whether its hardware
    // changed, a 304 when not), so a changed node shows within minutes, not
    // after the default policy's 24 h. --policy chooses otherwise.
    let choice = context
        .policy
        .clone()
        .or_else(|| Some(SERVE_DEFAULT_POLICY.to_string()));
    let policy = Arc::new(PolicySlot::load(choice, loader, capabilities.clone()).await?);
    policy.watch()?;
    let cluster = context
        .has_cluster_file()
        .then(|| Arc::new(ClusterApi::new(written.file, capabilities, policy.clone())));
    if let (Some(path), Some(cluster)) = (nfd_features_file, &cluster) {
        if cluster.this_node().is_none() {
            return Err(Failure::usage(anyhow!(
                "--nfd-features-file describes this machine: the cluster file must name the local member (local = \"NAME\")"
            )));
        }
        let keeper = crate::server::nfd_file::NfdFile {
            path: path.clone(),
            interval: nfd_interval,
            cluster: cluster.clone(),
        };
        tokio::spawn(keeper.keep());
    }
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    let metrics_listener = match metrics_address {
        Some(address) => {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address} (--metrics-listen)"))?;
            // Said before "listening on", which says serve is ready.
            eprintln!(
                "nodecache: metrics on http://{}/metrics",
                listener.local_addr().context("metrics listener address")?
            );
            Some(listener)
        }
        None => None,
    };
    eprintln!(
        "nodecache: listening on {}",
        listener.local_addr().context("listener address")?
    );
    let service = Service {
        source,
        policy,
        cluster,
        metrics_listener,
    };
    serve_until_stopped(listener, service, tls, limits, stop_signal()?).await?;
    Ok(())
}

/// The policy `serve` runs without `--policy`.
const SERVE_DEFAULT_POLICY: &str = "revalidate";

/// SIGTERM (systemd's stop) or SIGINT (Ctrl-C): serve then stops
/// accepting and finishes the requests in flight before it exits 0.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    Ok(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!("{name}: stopping");
    })
}

/// A deadline option's value: a duration above zero (zero would close
/// every connection at once).
fn positive_duration(option: &str, text: &str) -> Result<Duration, Failure> {
    crate::cluster_file::parse_duration(text)
        .ok()
        .filter(|duration| !duration.is_zero())
        .ok_or_else(|| {
            Failure::usage(anyhow!(
                "{option} {}: expected a duration above zero, e.g. 10s",
                crate::format::for_terminal(text, 64)
            ))
        })
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

/// `--metrics-listen`: a loopback `ADDR:PORT` (the metrics are plain HTTP).
fn parse_metrics_listen(text: &str) -> anyhow::Result<std::net::SocketAddr> {
    let address: std::net::SocketAddr = text
        .parse()
        .map_err(|_| anyhow!("--metrics-listen {text:?}: expected ADDR:PORT, e.g. 127.0.0.1:9443"))?;
    if !address.ip().is_loopback() {
        return Err(anyhow!(
            "--metrics-listen {address}: plain HTTP, so only on a loopback address; \
             a scraper elsewhere reads /metrics on --listen with a trusted client certificate"
        ));
    }
    Ok(address)
}

/// Incus's port.
const DEFAULT_PORT: u16 = 8443;
