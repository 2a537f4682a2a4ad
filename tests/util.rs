//! Helpers shared by the end-to-end tests and benches: real `nodecache serve`
//! processes on loopback, recorded nodes, and a bare HTTP GET.
// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_nodecache");
pub const INCUS_FIXTURE: &str = include_str!("../fixtures/incus-6.0.4-resources.envelope.json");

/// A `nodecache serve` process on a free loopback port, killed on drop.
pub struct Server {
    pub child: Child,
    pub url: String,
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
    let mut command = Command::new(BIN);
    if let Some(dir) = state_dir {
        command.arg("--state-dir").arg(dir);
    }
    let mut child = command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nodecache serve");
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .trim()
        .strip_prefix("nodecache: listening on ")
        .unwrap_or_else(|| panic!("{line}"));
    let scheme = if args.contains(&"--insecure-http") {
        "http"
    } else {
        "https"
    };
    Server {
        url: format!("{scheme}://{address}"),
        child,
    }
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
