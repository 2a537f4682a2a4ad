//! Helpers shared by the end-to-end tests and benches: the binary, real
//! `nodecache serve` processes on loopback, recorded nodes, cache entries
//! written as the host writes them, the built policy components, and a bare
//! HTTP GET.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_nodecache");

/// One run of the nodecache binary, built as ripgrep's `TestCommand`: a
/// test names what differs (the cache, the cluster file, the clock, the
/// environment) and says what it expects: any [`Nodecache::output`], a
/// successful [`Nodecache::text`] or [`Nodecache::json`], or a running
/// [`Nodecache::serve`].
pub struct Nodecache {
    command: Command,
}

impl Default for Nodecache {
    fn default() -> Self {
        Nodecache::new()
    }
}

impl Nodecache {
    pub fn new() -> Nodecache {
        Nodecache {
            command: Command::new(BIN),
        }
    }

    pub fn cache_dir(mut self, dir: &Path) -> Nodecache {
        self.command.arg("--cache-dir").arg(dir);
        self
    }

    pub fn cluster(mut self, file: &Path) -> Nodecache {
        self.command.arg("--cluster").arg(file);
        self
    }

    /// The wall clock stopped at `at_s` ([`freeze_clock`]).
    pub fn frozen_at(mut self, at_s: u64) -> Nodecache {
        freeze_clock(&mut self.command, at_s);
        self
    }

    pub fn env(mut self, name: &str, value: impl AsRef<std::ffi::OsStr>) -> Nodecache {
        self.command.env(name, value);
        self
    }

    /// This variable unset, whatever the runner's environment has.
    pub fn env_removed(mut self, name: &str) -> Nodecache {
        self.command.env_remove(name);
        self
    }

    /// Runs `nodecache ARGS`, whatever it answers.
    pub fn output(mut self, args: &[&str]) -> std::process::Output {
        self.command.args(args).output().expect("run nodecache")
    }

    /// Runs `nodecache ARGS`, which must succeed: its stdout.
    pub fn text(self, args: &[&str]) -> String {
        let output = self.output(args);
        assert!(output.status.success(), "nodecache {args:?}: {}", stderr(&output));
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }

    /// [`Nodecache::text`], parsed as JSON.
    pub fn json(self, args: &[&str]) -> Value {
        let text = self.text(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("nodecache {args:?}: not JSON ({e}): {text}"))
    }

    /// Starts `nodecache … serve --listen 127.0.0.1:0 ARGS`, with default
    /// directories of its own, and waits for the address it prints.
    pub fn serve(mut self, args: &[&str]) -> Server {
        let home = tempfile::tempdir().expect("a home for serve's default directories");
        self.command
            .env("XDG_CACHE_HOME", home.path().join("cache"))
            .env("XDG_STATE_HOME", home.path().join("state"));
        let child = self
            .command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nodecache serve");
        Server::started(child, home, args)
    }
}

pub fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A shelf policy's component as host/build.rs built it
/// (`target/release/nodecache` -> `target/wasm-policy/...`).
pub fn policy_file(name: &str) -> PathBuf {
    let exe = Path::new(BIN);
    let target = exe.parent().unwrap().parent().unwrap();
    target.join(format!(
        "wasm-policy/wasm32-wasip2/release/nodecache_policy_{}.wasm",
        name.replace('-', "_")
    ))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Writes a cache entry for `node` in the current format (its CPU summary
/// and the document's SHA-256 in the header), fetched `age_ms` ago, through
/// the store itself: what a run of nodecache leaves behind.
pub fn write_cache_entry(cache_dir: &Path, node: &str, document: &str, validator: Option<&str>, age_ms: u64) {
    write_cache_entry_at(cache_dir, node, document, validator, now_ms() - age_ms);
}

/// [`write_cache_entry`], fetched at `fetched_at_ms` (Unix milliseconds):
/// with [`freeze_clock`], the age a run sees is exact.
pub fn write_cache_entry_at(
    cache_dir: &Path,
    node: &str,
    document: &str,
    validator: Option<&str>,
    fetched_at_ms: u64,
) {
    let name = nodecache::node_name::NodeName::parse(node).unwrap();
    nodecache::store::CacheStore::new(cache_dir)
        .write(
            &name,
            document,
            validator,
            fetched_at_ms,
            None,
            nodecache::history::Seen::Fetch,
        )
        .expect("a resources document the store takes");
}

/// Now, in whole Unix seconds: a time to freeze a run's clock at.
pub fn now_s() -> u64 {
    now_ms() / 1000
}

/// Runs `command` with its wall clock stopped at `at_s` (Unix seconds), by
/// libfaketime (Debian's `faketime`, which `scripts/test` installs): ages a
/// run computes are then exact, however slow the machine. Only the wall
/// clock is stopped; timers and deadlines run on the real monotonic clock.
pub fn freeze_clock(command: &mut Command, at_s: u64) -> &mut Command {
    let library = ["x86_64-linux-gnu", "aarch64-linux-gnu"]
        .iter()
        .map(|triple| PathBuf::from(format!("/usr/lib/{triple}/faketime/libfaketime.so.1")))
        .find(|path| path.exists())
        .expect("libfaketime.so.1 is missing: apt-get install faketime");
    let date = Command::new("date")
        .args(["-u", "-d", &format!("@{at_s}"), "+%Y-%m-%d %H:%M:%S"])
        .output()
        .expect("date");
    // Without a leading '@', libfaketime stops the clock at this time.
    command
        .env("LD_PRELOAD", library)
        .env("FAKETIME", String::from_utf8(date.stdout).unwrap().trim())
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("TZ", "UTC")
}

/// Writes an entry as nodecache before the CPU summary wrote them (no
/// summary, no digest; any JSON was cached then), fetched `age_ms` ago: the
/// legacy read path.
pub fn write_legacy_cache_entry(
    cache_dir: &Path,
    node: &str,
    document: &str,
    validator: Option<&str>,
    age_ms: u64,
) {
    let now_ms = now_ms();
    let mut header = json!({
        "format": "nodecache-cache/1",
        "node": node,
        "fetched_at_ms": now_ms - age_ms,
        "length": document.len(),
    });
    if let Some(validator) = validator {
        header["validator"] = json!(validator);
    }
    let dir = cache_dir.join("resources");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{node}.json")), format!("{header}\n{document}")).unwrap();
}
pub const INCUS_FIXTURE: &str = include_str!("fixtures/incus-6.0.4-resources.envelope.json");

/// A member that is down: a loopback port this test process holds bound but
/// not listening, so a connection is refused, and nothing else can take
/// the port meanwhile (a fixed port such as 9 may be anyone's).
pub fn dead_url() -> &'static str {
    static DEAD: std::sync::OnceLock<(tokio::net::TcpSocket, String)> = std::sync::OnceLock::new();
    &DEAD
        .get_or_init(|| {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let url = format!("http://{}", socket.local_addr().unwrap());
            (socket, url)
        })
        .1
}

/// Kills process `pid` if this guard is still held after `limit`: a wait on
/// a process's pipe is bounded, so a regression fails the test instead of
/// hanging it.
pub struct KillAfter(#[allow(dead_code)] std::sync::mpsc::Sender<()>);

pub fn kill_after(pid: u32, limit: std::time::Duration) -> KillAfter {
    let (guard, dropped) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = dropped.recv_timeout(limit) {
            eprintln!("process {pid} still running after {limit:?}: killed");
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    });
    KillAfter(guard)
}

/// `nodecache -vv serve --insecure-http` on a free loopback port, with its
/// own default directories, whose log the test reads itself: the process,
/// its log's remaining lines, its URL and its home (kept while it runs).
pub fn spawn_serve_logging() -> (
    Child,
    std::io::Lines<BufReader<std::process::ChildStderr>>,
    String,
    tempfile::TempDir,
) {
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .env("XDG_CACHE_HOME", home.path().join("cache"))
        .env("XDG_STATE_HOME", home.path().join("state"))
        .args(["-vv", "serve", "--insecure-http", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("serve printed its address").unwrap();
        if let Some(address) = line.split("listening on ").nth(1) {
            break format!("http://{}", address.trim());
        }
    };
    (child, lines, url, home)
}

/// A `nodecache serve` process on a free loopback port, killed on drop.
pub struct Server {
    pub child: Child,
    pub url: String,
    /// Its default cache and state directories (`XDG_CACHE_HOME`,
    /// `XDG_STATE_HOME`), so a test never writes into the runner's own.
    _home: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `nodecache [--state-dir DIR] serve --listen 127.0.0.1:0 ARGS` and
/// waits for the address it prints.
pub fn spawn_serve(state_dir: Option<&Path>, args: &[&str]) -> Server {
    match state_dir {
        Some(dir) => spawn_serve_with(&["--state-dir", dir.to_str().unwrap()], args),
        None => spawn_serve_with(&[], args),
    }
}

/// Starts `nodecache GLOBAL… serve --listen 127.0.0.1:0 ARGS` and waits for
/// the address it prints.
pub fn spawn_serve_with(global: &[&str], args: &[&str]) -> Server {
    spawn_serve_env(global, args, &[])
}

/// `spawn_serve_with`, with these environment variables set for `serve`.
pub fn spawn_serve_env(global: &[&str], args: &[&str], env: &[(&str, &Path)]) -> Server {
    let mut command = Nodecache::new();
    command.command.args(global);
    for (name, value) in env {
        command = command.env(name, value);
    }
    command.serve(args)
}

impl Server {
    /// Waits for a spawned `serve` to say where it listens.
    fn started(mut child: Child, home: tempfile::TempDir, args: &[&str]) -> Server {
        // Warnings (an unreachable Incus, say) may come before the address; the
        // lines are read on a thread of their own, so a serve that never says
        // where it listens fails the test with what it did say, not hangs it.
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let (said, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            while stderr.read_line(&mut line).is_ok_and(|n| n > 0) {
                let listening = line.starts_with("nodecache: listening on ");
                if said.send(std::mem::take(&mut line)).is_err() || listening {
                    break;
                }
            }
            // Keep draining its log, so a chatty server never blocks on a full pipe.
            let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        });
        let mut before = String::new();
        let address = loop {
            match lines.recv_timeout(std::time::Duration::from_secs(120)) {
                Ok(line) => match line.trim().strip_prefix("nodecache: listening on ") {
                    Some(address) => break address.to_string(),
                    None => before.push_str(&line),
                },
                Err(_) => {
                    panic!("serve {args:?} did not say where it listens within 120 s; it said:\n{before}")
                }
            }
        };
        let scheme = if args.contains(&"--insecure-http") {
            "http"
        } else {
            "https"
        };
        Server {
            url: format!("{scheme}://{address}"),
            child,
            _home: home,
        }
    }
}

/// A cpu-flags JSON report's common flags, as a set.
pub fn flags_of(report: &Value) -> std::collections::BTreeSet<String> {
    report["flags"]
        .as_array()
        .expect("a report's flags")
        .iter()
        .map(|flag| flag.as_str().expect("a flag name").to_string())
        .collect()
}

/// `dir/cluster.toml` naming one member at `url`, with a deadline no
/// loaded machine reaches (a member that fails fails by what it sends).
pub fn one_member_cluster(dir: &Path, name: &str, url: &str) -> PathBuf {
    let cluster = dir.join("cluster.toml");
    let text = format!("deadline = \"60s\"\n[[member]]\nname = \"{name}\"\nurl = \"{url}\"\n");
    std::fs::write(&cluster, text).unwrap();
    cluster
}

/// A cluster file's `[tls]` table: the client identity nodecache presents,
/// and the one certificate its servers are pinned to.
pub fn tls_table(client_cert: &Path, client_key: &Path, server_cert: &Path) -> String {
    format!(
        "[tls]\nclient-cert = \"{}\"\nclient-key = \"{}\"\nserver-certs = [\"{}\"]\n",
        client_cert.display(),
        client_key.display(),
        server_cert.display()
    )
}

/// A recorded node: the Incus fixture with its architecture and per-core flags replaced.
pub fn recorded_node(dir: &Path, name: &str, architecture: &str, flags: &[&str]) -> PathBuf {
    let mut document: Value = serde_json::from_str(INCUS_FIXTURE).unwrap();
    let metadata = &mut document["metadata"];
    metadata["cpu"]["architecture"] = json!(architecture);
    for core in metadata["cpu"]["sockets"][0]["cores"].as_array_mut().unwrap() {
        core["flags"] = json!(flags);
    }
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec(&document).unwrap()).unwrap();
    path
}

/// Runs `command` with `input` on its stdin; its whole output.
pub fn output_with_stdin(command: &mut Command, input: &[u8]) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// `GET path` over plain HTTP to `http://addr`; returns the JSON body.
pub fn http_get_json(url: &str, path: &str) -> Value {
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap()
}

/// A plain-HTTP response: status, header block, body.
pub struct HttpResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl HttpResponse {
    /// A header's value (name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// `GET path` over plain HTTP to `http://addr` with extra header lines.
pub fn http_get(url: &str, path: &str, headers: &[&str]) -> HttpResponse {
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    HttpResponse {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// Builds a policy crate of `plugin/` that is not embedded (the hostile
/// one), once per test run, into the directory host/build.rs uses.
pub fn build_policy(name: &str) -> PathBuf {
    let file = policy_file(name);
    let status = policy_cargo(&["build", "--quiet", "--release", "--target", "wasm32-wasip2", "-p"])
        .arg(format!("nodecache-policy-{name}"))
        .status()
        .expect("run cargo");
    assert!(status.success(), "building policy {name} failed");
    file
}

/// `cargo SUBCOMMAND ARGS…` for a policy crate, with the target directory and
/// flags host/build.rs builds policies with (so nothing is built twice), one
/// at a time; the caller may add more arguments.
pub fn policy_cargo(args: &[&str]) -> PolicyCargo {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let target_dir = policy_file("x").ancestors().nth(3).unwrap().to_path_buf();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let (subcommand, rest) = args.split_first().expect("a cargo subcommand");
    let mut command = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    command
        .arg(subcommand)
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .args(rest)
        .env("CARGO_PROFILE_RELEASE_DEBUG", "none")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
        .env(
            "CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS",
            "-C link-arg=-zstack-size=131072",
        )
        .env_remove("CARGO_TARGET_DIR");
    PolicyCargo {
        command,
        _guard: guard,
    }
}

/// A cargo command that holds the policy build lock while it lives.
pub struct PolicyCargo {
    command: Command,
    _guard: std::sync::MutexGuard<'static, ()>,
}

impl std::ops::Deref for PolicyCargo {
    type Target = Command;
    fn deref(&self) -> &Command {
        &self.command
    }
}

impl std::ops::DerefMut for PolicyCargo {
    fn deref_mut(&mut self) -> &mut Command {
        &mut self.command
    }
}

/// The bare resources document of a recorded node's file (it is enveloped).
pub fn resources_of(file: &Path) -> String {
    let envelope: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    envelope["metadata"].to_string()
}

/// A loopback member, served on `tokio`, that answers `/1.0/resources` with
/// the Incus fixture after `delay`; its base URL. The benches' slow members.
#[allow(dead_code)] // the benches use it; the end-to-end tests do not
pub fn slow_member(tokio: &tokio::runtime::Runtime, delay: std::time::Duration) -> String {
    let listener = tokio
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/1.0/resources",
        axum::routing::get(move || async move {
            tokio::time::sleep(delay).await;
            INCUS_FIXTURE
        }),
    );
    tokio.spawn(async move { axum::serve(listener, app).await });
    url
}

/// QMP over stdio to a QEMU with accelerator `accel` (`tcg`, `kvm`) and
/// `args`: each command's answer, QEMU's stderr, and whether it exited 0.
pub fn qmp(accel: &str, args: &[&str], commands: &[Value]) -> (Vec<Value>, String, bool) {
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-nodefaults", "-display", "none", "-S", "-accel", accel])
        .args(args)
        .args(["-qmp", "stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 (scripts/test installs qemu-system-x86)");
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", json!({"execute": "qmp_capabilities"})).unwrap();
    for command in commands {
        writeln!(stdin, "{command}").unwrap();
    }
    writeln!(stdin, "{}", json!({"execute": "quit"})).unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let answers: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|answer| answer.get("return").cloned())
        .collect();
    let returns = answers
        .get(1..answers.len().saturating_sub(1))
        .unwrap_or_default()
        .to_vec();
    (
        returns,
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.status.success(),
    )
}

/// Flags every processor block of /proc/cpuinfo lists.
pub fn proc_cpuinfo_common_flags() -> std::collections::BTreeSet<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let mut sets = text.lines().filter(|l| l.starts_with("flags")).map(|line| {
        line.split_once(':')
            .unwrap()
            .1
            .split_whitespace()
            .map(str::to_string)
            .collect::<std::collections::BTreeSet<_>>()
    });
    let first = sets.next().expect("/proc/cpuinfo has flags");
    sets.fold(first, |acc, set| acc.intersection(&set).cloned().collect())
}

/// SHA-256 of a PEM certificate as openssl computes it, in lower-case hex
/// without colons (how nodecache and Incus spell fingerprints).
pub fn openssl_fingerprint(cert: &Path) -> String {
    let output = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert)
        .output()
        .expect("openssl");
    assert!(output.status.success(), "openssl: {}", stderr(&output));
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_ascii_lowercase()
}

/// The recorded document of `file` with `flags` on every core and
/// `microcode` on every socket (nodecache's `nodecache_microcode`).
pub fn record_hardware(file: &std::path::Path, flags: &[&str], microcode: &str) {
    let mut envelope: serde_json::Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    for socket in envelope["metadata"]["cpu"]["sockets"].as_array_mut().unwrap() {
        socket["nodecache_microcode"] = serde_json::json!(microcode);
        for core in socket["cores"].as_array_mut().unwrap() {
            core["flags"] = serde_json::json!(flags);
        }
    }
    std::fs::write(file, serde_json::to_vec(&envelope).unwrap()).unwrap();
}

/// `nodecache serve --insecure-http` of a recorded node `name` with `flags`
/// on every core: the server, and the recorded file (rewrite it to change
/// what the node answers).
pub fn recorded_server(dir: &Path, name: &str, flags: &[&str]) -> (Server, PathBuf) {
    let file = recorded_node(dir, name, "x86_64", flags);
    let server = spawn_serve(
        None,
        &["--insecure-http", "--resources-file", file.to_str().unwrap()],
    );
    (server, file)
}

/// A `nodecache serve` whose whole log the test reads: started from
/// `command` (its arguments up to and including `serve`'s, `--listen
/// 127.0.0.1:0` among them), its address once it says where it listens,
/// and, after [`LoggedServe::stop`], every line it logged.
pub struct LoggedServe {
    child: Child,
    log: BufReader<std::process::ChildStderr>,
    said: Vec<String>,
    pub address: String,
    _bounded: KillAfter,
}

impl LoggedServe {
    pub fn start(mut command: Command) -> LoggedServe {
        let mut child = command
            .env_remove("NODECACHE_LOG")
            .env_remove("NODECACHE_POLICY")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nodecache serve");
        let bounded = kill_after(child.id(), std::time::Duration::from_secs(300));
        let mut log = BufReader::new(child.stderr.take().unwrap());
        let mut said = Vec::new();
        let address = loop {
            let mut line = String::new();
            assert!(log.read_line(&mut line).unwrap() > 0, "serve ended: {said:?}");
            if let Some(address) = line.trim().strip_prefix("nodecache: listening on ") {
                break address.to_string();
            }
            said.push(line);
        };
        LoggedServe {
            child,
            log,
            said,
            address,
            _bounded: bounded,
        }
    }

    /// Reads its log until a line `matches` (kept for [`Self::stop`]), and
    /// returns that line; fails when serve ends first (bounded by the
    /// process's time limit).
    pub fn wait_for(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        loop {
            let mut line = String::new();
            let read = self.log.read_line(&mut line).unwrap();
            assert!(read > 0, "serve ended before {what}: {:?}", self.said);
            self.said.push(line.clone());
            if matches(&line) {
                return line;
            }
        }
    }

    /// SIGTERM; waits for it to exit 0, and returns every line it logged.
    pub fn stop(mut self) -> Vec<String> {
        let stopped = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(stopped.success());
        let mut lines = std::mem::take(&mut self.said);
        lines.extend(self.log.lines().map_while(Result::ok));
        assert!(self.child.wait().unwrap().success(), "serve did not exit 0");
        lines
    }
}

/// The JSON objects among log lines (`--log-format json`).
pub fn json_events(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}
