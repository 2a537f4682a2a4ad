//! The server's limits, with real `nodecache serve` processes on loopback:
//! who may ask (mutual TLS, trust revoked mid-connection), what it answers
//! off loopback and on Incus's paths, how it holds up when file descriptors
//! run out or connections pile up, and how it stops.

use std::io::{BufRead, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::{HASWELL, make_identity, split};
use crate::util::{
    BIN, INCUS_FIXTURE, http_get, http_get_json, kill_after, one_member_cluster, recorded_node, spawn_serve,
    stderr, tls_table,
};

#[test]
fn an_untrusted_client_gets_403_and_a_trusted_one_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("server-state");
    let file = recorded_node(dir.path(), "tls", "x86_64", &split(HASWELL));
    let server = spawn_serve(Some(&state), &["--resources-file", file.to_str().unwrap()]);
    // A client identity: another node's generated certificate.
    let (client_cert, client_key) = make_identity(&dir.path().join("client"));
    let cluster_file = dir.path().join("cluster.toml");
    std::fs::write(
        &cluster_file,
        format!(
            "deadline = \"60s\"\n{}[[member]]\nname = \"tls\"\nurl = \"{}\"\n",
            tls_table(&client_cert, &client_key, &state.join("server.crt")),
            server.url
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .arg("--cluster")
            .arg(&cluster_file)
            .args(args)
            .output()
            .unwrap()
    };
    // Its only member refuses it: no data, exit 3, the member's 403 named.
    let denied = run(&["cpu-flags"]);
    assert_eq!(denied.status.code(), Some(3), "{}", stderr(&denied));
    assert!(
        stderr(&denied).contains("tls (") && stderr(&denied).contains("403 not authorized"),
        "{}",
        stderr(&denied)
    );

    let added = Command::new(BIN)
        .arg("--state-dir")
        .arg(&state)
        .arg("trust")
        .arg("add")
        .arg(&client_cert)
        .output()
        .unwrap();
    assert!(added.status.success());
    let allowed = run(&["cpu-flags"]);
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    let flags: Vec<String> = String::from_utf8(allowed.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let mut expected: Vec<String> = split(HASWELL).into_iter().map(str::to_string).collect();
    expected.sort();
    assert_eq!(flags, expected);
}

#[test]
fn plain_http_serving_is_refused_off_loopback() {
    let output = Command::new(BIN)
        .args(["serve", "--insecure-http", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("loopback"));
}

#[test]
fn the_server_answers_incus_paths_and_envelopes() {
    let dir = tempfile::tempdir().unwrap();
    let file = recorded_node(dir.path(), "n", "x86_64", &split(HASWELL));
    let server = spawn_serve(
        None,
        &["--insecure-http", "--resources-file", file.to_str().unwrap()],
    );
    let get = |path: &str| http_get_json(&server.url, path);
    let info = get("/1.0");
    assert_eq!(info["type"], "sync");
    assert!(
        info["metadata"]["api_extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("resources_cpu_flags"))
    );
    let resources = get("/1.0/resources");
    assert_eq!(resources["status_code"], 200);
    assert_eq!(
        resources["metadata"]["cpu"]["sockets"][0]["cores"][0]["flags"],
        json!(split(HASWELL))
    );
    let missing = get("/1.0/instances");
    assert_eq!(
        (missing["type"].as_str(), missing["error_code"].as_u64()),
        (Some("error"), Some(404))
    );
    // A method a path does not take gets Incus's envelope too (was an empty 405).
    let address = server.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .write_all(b"DELETE /1.0/resources HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let body: Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(
        (body["type"].as_str(), body["error_code"].as_u64()),
        (Some("error"), Some(405)),
        "{answer}"
    );
}

/// Trust is decided per request: a client removed with `trust remove` is
/// refused on its next request on the same kept-alive connection (one
/// `openssl s_client` process is one TLS connection; the second request is
/// written only after `trust remove` has returned).
#[test]
fn trust_remove_refuses_the_next_request_on_a_live_connection() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (client_cert, client_key) = make_identity(&dir.path().join("client"));
    let identity = Command::new(BIN)
        .arg("--state-dir")
        .arg(dir.path().join("client"))
        .arg("identity")
        .output()
        .unwrap();
    let fingerprint = String::from_utf8(identity.stdout)
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("fingerprint: ").map(str::to_string))
        .unwrap();
    let trust = |verb: &str, what: &str| {
        let output = Command::new(BIN)
            .arg("--state-dir")
            .arg(&state)
            .args(["trust", verb, what])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
    };
    trust("add", client_cert.to_str().unwrap());
    let file = recorded_node(dir.path(), "n", "x86_64", &["fpu"]);
    let server = spawn_serve(Some(&state), &["--resources-file", file.to_str().unwrap()]);
    let address = server.url.trim_start_matches("https://").to_string();
    let mut client = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &address, "-cert"])
        .arg(&client_cert)
        .arg("-key")
        .arg(&client_key)
        .arg("-CAfile")
        .arg(state.join("server.crt"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let watchdog = crate::util::kill_after(client.id(), Duration::from_secs(60));
    let mut to_server = client.stdin.take().unwrap();
    let mut from_server = std::io::BufReader::new(client.stdout.take().unwrap());
    // `/1.0/resources`: `/1.0` itself answers an untrusted client too (as Incus does).
    let request = format!("GET /1.0/resources HTTP/1.1\r\nHost: {address}\r\n\r\n");
    to_server.write_all(request.as_bytes()).unwrap();
    assert_eq!(read_response_status(&mut from_server), 200);
    trust("remove", &fingerprint);
    to_server.write_all(request.as_bytes()).unwrap();
    assert_eq!(read_response_status(&mut from_server), 403);
    drop(to_server);
    client.wait().unwrap();
    drop(watchdog);
}

/// Reads one HTTP/1.1 response (its body sized by Content-Length) and
/// returns its status; a closed connection fails the test.
fn read_response_status(reader: &mut impl std::io::BufRead) -> u16 {
    let mut line = String::new();
    assert!(reader.read_line(&mut line).unwrap() > 0, "the connection closed");
    let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut length = 0;
    loop {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the connection closed");
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    status
}

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// With its fd table full, `serve` waits between failed accepts instead of
/// spinning on them, logs the run once, and accepts again once fds free up.
#[test]
fn a_full_fd_table_does_not_make_serve_spin() {
    let dir = tempfile::tempdir().unwrap();
    let file = recorded_node(dir.path(), "n", "x86_64", &["fpu"]);
    let mut child = Command::new("prlimit")
        .args(["--nofile=64", "--", BIN, "--state-dir"])
        .arg(dir.path().join("state"))
        .args(["serve", "--listen", "127.0.0.1:0", "--resources-file"])
        .arg(&file)
        // Info, for the line that counts the failed accepts when they end.
        .env("NODECACHE_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let watchdog = crate::util::kill_after(child.id(), Duration::from_secs(120));
    let mut log = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut read_until = |what: &str| -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let read = std::io::BufRead::read_line(&mut log, &mut line).unwrap();
            assert!(read > 0, "serve's log ended before it said {what:?}");
            if line.contains(what) {
                return line.trim().to_string();
            }
        }
    };
    let address = read_until("nodecache: listening on ")
        .strip_prefix("nodecache: listening on ")
        .unwrap()
        .to_string();
    // Each connection holds an fd for the 10 s TLS handshake deadline.
    let held: Vec<std::net::TcpStream> = (0..100)
        .filter_map(|_| std::net::TcpStream::connect(&address).ok())
        .collect();
    read_until("accept failed");
    // Observed for 2 s with the fd table full: a window to measure, not a
    // race (nothing is expected to happen in it).
    let (cpu_before, window) = (cpu_seconds(child.id()), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_seconds(child.id()) - cpu_before;
    drop(held);
    // Once the connections close, it accepts again: a real request answered,
    // not a connect (which the kernel's backlog completes without serve).
    let answered = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "60",
            "--cacert",
        ])
        .arg(dir.path().join("state/server.crt"))
        .arg(format!("https://{address}/1.0"))
        .output()
        .unwrap();
    let observed = window.elapsed().as_secs_f64();
    assert_eq!(
        String::from_utf8_lossy(&answered.stdout),
        "200",
        "serve did not answer once fds were free"
    );
    // The backoff doubles from 10 ms to 1 s (1.27 s for the first 7 waits),
    // so T seconds hold at most 8 + T failed accepts; a spinning loop makes
    // thousands. Its count is read from its log line for the run.
    let resumed = read_until("accepting again after");
    let failures: f64 = resumed
        .split("accepting again after ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {resumed:?}"));
    child.kill().unwrap();
    let mut rest = Vec::new();
    let _ = log.read_to_end(&mut rest);
    child.wait().unwrap();
    drop(watchdog);
    assert!(
        failures <= 8.0 + observed.ceil() + 1.0,
        "{failures} failed accepts in {observed:.1} s"
    );
    // The kernel's own count: a spinning accept loop keeps a core busy
    // (at least a third of one even beside a two-job build on two cores).
    assert!(
        spent < 0.25 * 2.0,
        "serve used {spent:.2} s of CPU in 2 s with its fds exhausted"
    );
    assert!(rest.len() < 10_000, "{} bytes of log after resuming", rest.len());
    println!("fds exhausted: {failures} failed accepts and {spent:.2} s CPU in {observed:.1} s");
}

/// A client that completes the TLS handshake (without a certificate) and
/// then says nothing is disconnected after the idle timeout, and at the
/// connection cap further clients wait until a slot frees.
#[test]
fn quiet_connections_are_closed_and_connections_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let file = recorded_node(dir.path(), "n", "x86_64", &["fpu"]);
    let state = dir.path().join("state");
    let server = spawn_serve(
        Some(&state),
        &[
            "--resources-file",
            file.to_str().unwrap(),
            "--idle-timeout",
            "1s",
            "--max-connections",
            "2",
        ],
    );
    let address = server.url.trim_start_matches("https://").to_string();
    // Two quiet TLS clients take both slots; openssl keeps stdin open and sends nothing.
    let opened = Instant::now();
    let quiet: Vec<std::process::Child> = (0..2)
        .map(|_| {
            Command::new("openssl")
                .args(["s_client", "-quiet", "-connect", &address])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    // A third client is served once they are closed (the order is shown
    // without a clock for plain HTTP in `listen`: the accept loop is one).
    // The server's 403 needs no certificate to be sent.
    let third = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(state.join("server.crt"))
        .arg(format!("{}/1.0/resources", server.url))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&third.stdout), "403");
    for mut client in quiet {
        // Bounded only so a regression fails rather than hangs.
        let mut polls = 0;
        while client.try_wait().unwrap().is_none() {
            polls += 1;
            assert!(polls < 300, "a quiet connection stayed open for 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // Closed by the 1 s idle timeout, not sooner (a lower bound, which a
    // loaded machine only makes later).
    assert!(
        opened.elapsed() >= Duration::from_secs(1),
        "closed after {:?}",
        opened.elapsed()
    );
}

/// A member that answers with a real Incus document once told to: while
/// it holds, a cluster request to `serve` stays in flight.
struct HeldMember {
    url: String,
    asked: std::sync::mpsc::Receiver<()>,
    release: std::sync::mpsc::Sender<()>,
}

impl HeldMember {
    fn start() -> HeldMember {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tell_asked, asked) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            tell_asked.send(()).unwrap();
            let _ = released.recv();
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{INCUS_FIXTURE}",
                INCUS_FIXTURE.len()
            );
        });
        HeldMember { url, asked, release }
    }
}

/// systemd's stop (SIGTERM): serve stops accepting at once, answers the
/// request in flight in full, and exits 0 (mini-redis's shutdown shape).
#[test]
fn sigterm_lets_the_request_in_flight_finish_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let member = HeldMember::start();
    let cluster = one_member_cluster(dir.path(), "held", &member.url);
    let mut child = Command::new(BIN)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--cluster")
        .arg(&cluster)
        .args(["-v", "serve", "--insecure-http", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _bound = kill_after(child.id(), Duration::from_secs(300));
    let mut log = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut said = String::new();
    let mut wait_for = |words: &str| loop {
        let line = log
            .next()
            .unwrap_or_else(|| panic!("serve ended without saying {words:?}; it said:\n{said}"))
            .unwrap();
        said.push_str(&line);
        said.push('\n');
        if line.contains(words) {
            break line;
        }
    };
    let listening = wait_for("listening on ");
    let address = listening
        .split("listening on ")
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    let url = format!("http://{address}");
    let asking = std::thread::spawn(move || http_get(&url, "/1.0/cluster/cpu-flags?format=list", &[]));
    member.asked.recv().expect("serve asked the member");
    // The request is in flight: the member holds its answer.
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    wait_for("shutting down");
    assert!(
        std::net::TcpStream::connect(&address).is_err(),
        "serve still accepts after SIGTERM"
    );
    member.release.send(()).unwrap();
    let answer = asking.join().unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.lines().any(|flag| flag == "sse2"), "{}", answer.body);
    wait_for("every connection finished");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{said}");
}

/// Over mutual TLS the access log names who asked: a trusted client by
/// the name `trust add --name` gave it, an untrusted one as such with its
/// certificate's fingerprint (as openssl computes it), each with its
/// status; curl is the client.
#[test]
fn the_access_log_names_each_tls_client_by_its_trust_name() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("server-state");
    let (server_cert, _) = make_identity(&state);
    let (ops_cert, ops_key) = make_identity(&dir.path().join("ops"));
    let (stranger_cert, stranger_key) = make_identity(&dir.path().join("stranger"));
    let added = Command::new(BIN)
        .arg("--state-dir")
        .arg(&state)
        .args(["trust", "add", ops_cert.to_str().unwrap(), "--name", "ops"])
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", stderr(&added));
    let file = recorded_node(dir.path(), "n", "x86_64", &["fpu"]);
    let mut command = Command::new(BIN);
    command
        .arg("--state-dir")
        .arg(&state)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--resources-file",
        ])
        .arg(&file);
    let server = crate::util::LoggedServe::start(command);
    let address = server.address.clone();
    let curl = |cert: &std::path::Path, key: &std::path::Path| {
        let output = Command::new("curl")
            .args([
                "--silent",
                "--output",
                "/dev/null",
                "--write-out",
                "%{http_code}",
                "--cacert",
            ])
            .arg(&server_cert)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .arg(format!("https://{address}/1.0/resources"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    assert_eq!(curl(&ops_cert, &ops_key), "200");
    assert_eq!(curl(&stranger_cert, &stranger_key), "403");
    let events: Vec<Value> = crate::util::json_events(&server.stop())
        .into_iter()
        .filter(|event| event["target"] == "nodecache::access")
        .collect();
    let fingerprint = crate::util::openssl_fingerprint(&stranger_cert);
    let seen: Vec<(String, u64)> = events
        .iter()
        .filter(|event| event["fields"]["path"] == "/1.0/resources")
        .map(|event| {
            (
                event["fields"]["client"].as_str().unwrap().to_string(),
                event["fields"]["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("ops".to_string(), 200),
            (format!("untrusted {}", &fingerprint[..16]), 403)
        ],
        "{events:#?}"
    );
}
