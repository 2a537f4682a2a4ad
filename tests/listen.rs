//! What a client can hold of a `serve` listener, TLS or plain: tricklers,
//! silent connections and HTTP/2 PINGs are closed by the header and idle
//! deadlines, the total cap holds for plain HTTP too, and one address
//! cannot take every slot. Clients come from distinct loopback addresses
//! (127.0.0.0/8 is all loopback), so per-client caps can be told apart.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::util::{recorded_node, spawn_serve};

/// A connection to `server` from the loopback address `source`.
fn connect_from(source: &str, server: &str) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server: SocketAddr = server.parse().unwrap();
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(server).await.unwrap()
    });
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

/// Whether the server has closed `stream`, without waiting: its FIN is
/// already queued when anything it sent after the close has arrived.
fn closed_by_server(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let closed = match stream.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(_) => true,
    };
    stream.set_nonblocking(false).unwrap();
    closed
}

/// Sends `bytes` one at a time, 100 ms apart, until the server closes the
/// connection (seen by a reader on another thread); false if it never did.
fn trickle_until_closed(stream: TcpStream, bytes: &[u8]) -> bool {
    let (closed_tx, closed) = mpsc::channel();
    let mut reader = stream.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = reader.read_to_end(&mut sink);
        let _ = closed_tx.send(());
    });
    let mut stream = stream;
    for byte in bytes {
        if closed.try_recv().is_ok() || stream.write_all(&[*byte]).is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    closed.try_recv().is_ok()
}

/// A request head that never ends: 600 bytes, a minute at 100 ms a byte.
fn endless_head() -> Vec<u8> {
    let mut head = b"GET /1.0/resources HTTP/1.1\r\nHost: x\r\nX-Trickle: ".to_vec();
    head.resize(600, b'a');
    head
}

fn answer_of(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /1.0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// Plain HTTP had none of the TLS listener's limits: 1,500 idle connections
/// stayed open, and a client trickling one byte at a time is never cut by a
/// byte timer. Now: the header deadline closes the trickler, and at
/// `--max-connections 2` a third client is answered only once a held
/// connection has been closed.
#[test]
fn plain_http_has_the_header_deadline_and_the_total_cap() {
    let dir = tempfile::tempdir().unwrap();
    let file = recorded_node(dir.path(), "n", "x86_64", &["fpu"]);
    let server = spawn_serve(
        None,
        &[
            "--insecure-http",
            "--resources-file",
            file.to_str().unwrap(),
            "--header-timeout",
            "1s",
            "--idle-timeout",
            "60s",
            "--max-connections",
            "2",
        ],
    );
    let address = server.url.trim_start_matches("http://").to_string();
    assert!(
        trickle_until_closed(connect_from("127.0.0.2", &address), &endless_head()),
        "a client trickling a request head stayed connected for a minute"
    );
    // Two clients hold both slots with half a request head each.
    let held: Vec<TcpStream> = ["127.0.0.3", "127.0.0.4"]
        .iter()
        .map(|source| {
            let mut stream = connect_from(source, &address);
            stream.write_all(b"GET /1.0 HTTP/1.1\r\nHost").unwrap();
            stream
        })
        .collect();
    let mut third = connect_from("127.0.0.5", &address);
    let answer = answer_of(&mut third);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        held.iter().any(closed_by_server),
        "the third client was answered while two others held the only two slots"
    );
}

/// One address may hold `--max-connections-per-client` connections; its
/// next one is closed at once while the others stay open, and another
/// address is served.
#[test]
fn one_client_cannot_take_every_slot() {
    let dir = tempfile::tempdir().unwrap();
    let file = recorded_node(dir.path(), "n", "x86_64", &["fpu"]);
    let server = spawn_serve(
        None,
        &[
            "--insecure-http",
            "--resources-file",
            file.to_str().unwrap(),
            "--header-timeout",
            "60s",
            "--idle-timeout",
            "60s",
            "--max-connections-per-client",
            "2",
        ],
    );
    let address = server.url.trim_start_matches("http://").to_string();
    let held: Vec<TcpStream> = (0..2).map(|_| connect_from("127.0.0.6", &address)).collect();
    let mut extra = connect_from("127.0.0.6", &address);
    // Closed at once, not by a deadline a minute away (30 s: a failure guard).
    extra.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut byte = [0u8; 1];
    let read = extra.read(&mut byte);
    let closed = match &read {
        Ok(0) => true,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        Ok(_) => false,
    };
    assert!(closed, "a third connection from one client was kept: {read:?}");
    assert!(
        !held.iter().any(closed_by_server),
        "the client's first two connections were closed with the third"
    );
    let answer = answer_of(&mut connect_from("127.0.0.7", &address));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// `openssl s_client` to `address`, its stdin ours to write to.
fn tls_client(address: &str) -> Child {
    Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", address])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client (package openssl)")
}

/// Writes `frames` to a TLS client one every 100 ms, until the server has
/// closed the connection and the client has exited; false if it never did.
fn send_until_closed(mut client: Child, frames: impl Iterator<Item = Vec<u8>>) -> bool {
    let mut stdin = client.stdin.take().unwrap();
    for frame in frames {
        if client.try_wait().unwrap().is_some() || stdin.write_all(&frame).is_err() {
            return true;
        }
        let _ = stdin.flush();
        std::thread::sleep(Duration::from_millis(100));
    }
    let closed = client.try_wait().unwrap().is_some();
    let _ = client.kill();
    closed
}

/// An HTTP/2 frame: 24-bit length, type, flags, stream 0.
fn h2_frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let length = (payload.len() as u32).to_be_bytes();
    let mut frame = vec![length[1], length[2], length[3], kind, 0, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

/// The TLS listener's byte timer was reset by every byte: a client
/// trickling a head, or an untrusted HTTP/2 client sending PINGs and no
/// request, stayed connected for as long as it liked. Both are closed now,
/// with no certificate needed to try.
#[test]
fn tls_tricklers_and_http2_pingers_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let file = recorded_node(dir.path(), "n", "x86_64", &["fpu"]);
    let server = spawn_serve(
        Some(&dir.path().join("state")),
        &[
            "--resources-file",
            file.to_str().unwrap(),
            "--header-timeout",
            "1s",
            "--idle-timeout",
            "60s",
        ],
    );
    let address = server.url.trim_start_matches("https://").to_string();
    let head = endless_head().into_iter().map(|byte| vec![byte]);
    assert!(
        send_until_closed(tls_client(&address), head),
        "a TLS client trickling a request head stayed connected for a minute"
    );
    let preface = [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), h2_frame(0x4, &[])].concat();
    let pings = std::iter::once(preface).chain((0..600u64).map(|n| h2_frame(0x6, &n.to_be_bytes())));
    assert!(
        send_until_closed(tls_client(&address), pings),
        "an HTTP/2 client sending PINGs and no request stayed connected for a minute"
    );
}
