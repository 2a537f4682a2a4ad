//! What the manual says beyond the options, written once for `--help` and
//! the man pages: exit statuses, examples per command, the environment
//! (from the options' own `env` names), the files, and the cluster file's
//! format (nodecache-cluster-file(5)).

use clap::{Command, CommandFactory};

use super::args::Cli;

/// Exit statuses, as every command uses them.
pub const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "success"),
    (
        "1",
        "a runtime error: a file that cannot be read or written, a policy that fails the run, QEMU or Incus refusing",
    ),
    (
        "2",
        "a usage error: an option, a node or group name, a setting the policy does not declare, a cluster file that does not parse",
    ),
    (
        "3",
        "some nodes have no data and --allow-partial was not given, or no node has data",
    ),
];

/// `check`'s exit statuses: a monitoring plugin's, not the other commands'.
pub const CHECK_EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "OK: every member answers"),
    (
        "1",
        "WARNING: a member is served stale, or its refresh failed, or the baseline lost flags since --since",
    ),
    ("2", "CRITICAL: a member has no data"),
    (
        "3",
        "UNKNOWN: nodecache could not answer (an unreadable cluster file, a failing policy)",
    ),
];

/// The exit statuses of `subcommand` ("" for nodecache itself).
fn exit_status(subcommand: &str) -> &'static [(&'static str, &'static str)] {
    match subcommand {
        "check" => CHECK_EXIT_STATUS,
        _ => EXIT_STATUS,
    }
}

/// Examples, by subcommand ("" for nodecache itself): the command and what it does.
fn examples(subcommand: &str) -> &'static [(&'static str, &'static str)] {
    match subcommand {
        "" => &[
            (
                "nodecache cpu-flags",
                "the flags every CPU of this machine has (a one-node cluster)",
            ),
            (
                "nodecache --cluster cluster.toml cpu-flags --format qemu --baseline auto",
                "a QEMU -cpu value every member can run",
            ),
            (
                "nodecache --cluster cluster.toml cluster status",
                "each member: reachable, source, age, last hardware change",
            ),
        ],
        "cpu-flags" => &[
            (
                "nodecache --cluster cluster.toml cpu-flags --level",
                "the x86-64 level of the cluster and of each node",
            ),
            (
                "nodecache --cluster cluster.toml cpu-flags --explain",
                "which node holds the cluster back, and by what",
            ),
            (
                "nodecache --cluster cluster.toml cpu-flags --format libvirt --group gen3",
                "a libvirt <cpu> element for the members of group gen3",
            ),
            (
                "nodecache --cluster cluster.toml cpu-flags --format incus --group gen3 --apply --yes",
                "set Incus cluster group gen3's CPU definition",
            ),
        ],
        "can-run" => &[
            (
                "nodecache --cluster cluster.toml can-run --from node-a",
                "which members can take a guest started with node-a's host CPU",
            ),
            (
                "nodecache --cluster cluster.toml can-run --flags avx2,aes",
                "which members have both flags",
            ),
        ],
        "resources" => &[
            (
                "nodecache resources --format table",
                "this machine at a glance, with where its document came from",
            ),
            (
                "nodecache --cluster cluster.toml --refresh resources node-b",
                "node-b's document, asked now",
            ),
        ],
        "serve" => &[
            (
                "nodecache serve",
                "answer GET /1.0 and /1.0/resources on [::]:8443 to trusted clients",
            ),
            (
                "nodecache --cluster cluster.toml serve --listen 10.0.0.1:8443",
                "answer for the whole cluster too",
            ),
            (
                "nodecache --cluster cluster.toml serve --metrics-listen 127.0.0.1:9443",
                "also GET /metrics (Prometheus) in plain HTTP for a scraper on this machine",
            ),
            (
                "nodecache --cluster cluster.toml serve --nfd-features-file /etc/kubernetes/node-feature-discovery/features.d/nodecache",
                "keep this machine's Node Feature Discovery labels current",
            ),
        ],
        "cluster" => &[
            (
                "nodecache --cluster cluster.toml cluster status --format json",
                "each member's state, as JSON",
            ),
            (
                "nodecache --cluster cluster.toml cluster accept-certificate node-b --fingerprint SHA256",
                "pin node-b's certificate if it is the one node-b's `nodecache identity` shows",
            ),
        ],
        "identity" => &[
            (
                "nodecache identity --pem > node-a.crt",
                "this node's certificate, to hand to another node",
            ),
            ("nodecache identity --fingerprint", "its fingerprint, to compare"),
        ],
        "trust" => &[
            (
                "nodecache trust add node-a.crt --name node-a",
                "answer node-a's requests",
            ),
            (
                "nodecache trust list",
                "name, subject, fingerprint and expiry of each trusted certificate",
            ),
        ],
        "policy" => &[
            (
                "nodecache policy list",
                "the embedded policies and their parameters",
            ),
            (
                "nodecache policy check my_policy.wasm",
                "load a component, describe it, make one real call",
            ),
        ],
        "check" => &[
            (
                "nodecache --cluster /etc/nodecache/cluster.toml check",
                "OK, WARNING, CRITICAL or UNKNOWN, in one line and the exit status",
            ),
            (
                "*/10 * * * * nodecache --cluster /etc/nodecache/cluster.toml check >/tmp/nodecache.check || logger -t nodecache < /tmp/nodecache.check",
                "a crontab line that logs every state but OK",
            ),
        ],
        "history" => &[
            (
                "nodecache history --all --since 7d",
                "every node's hardware changes of the last week, oldest first",
            ),
            (
                "nodecache history node-b --format json",
                "node-b's changes with their whole diffs",
            ),
        ],
        "completions" => &[(
            "source <(nodecache completions bash)",
            "complete options, members and groups in this bash",
        )],
        _ => &[],
    }
}

/// Files nodecache reads and writes.
const FILES: &[(&str, &str)] = &[
    (
        "$XDG_CACHE_HOME/nodecache/resources/NODE.json",
        "a node's cache entry (--cache-dir; default ~/.cache/nodecache; the package: /var/cache/nodecache)",
    ),
    (
        "$XDG_CACHE_HOME/nodecache/history/NODE.json",
        "a node's hardware changes (at most 64 records and 256 KiB; a damaged file is set aside as NODE.damaged-MS.json)",
    ),
    (
        "$XDG_CACHE_HOME/nodecache/baselines/",
        "the last common flag set of each cluster and group, and its recent changes (cpu-flags, check)",
    ),
    (
        "$XDG_CACHE_HOME/nodecache/compiled/",
        "compiled policies, at most 16 of this version, the least recently used removed first",
    ),
    (
        "$XDG_STATE_HOME/nodecache/server.crt, server.key",
        "this node's identity (--state-dir; default ~/.local/state/nodecache; the package: /var/lib/nodecache)",
    ),
    (
        "$XDG_STATE_HOME/nodecache/trust/",
        "the trusted client certificates (SHA256.der) and their names (SHA256.name)",
    ),
    (
        "cluster.toml",
        "the cluster file (--cluster, NODECACHE_CLUSTER; the package: /etc/nodecache/cluster.toml); see nodecache-cluster-file(5)",
    ),
    (
        "pinned/NODE.crt",
        "a member certificate pinned by `cluster accept-certificate`, beside the cluster file",
    ),
];

/// Variables read besides the options' own (listed from their `env` names).
const MORE_ENVIRONMENT: &[(&str, &str)] = &[
    (
        "NODECACHE_LOG",
        "a tracing filter for the log on stderr (e.g. debug, nodecache=trace), instead of -v",
    ),
    (
        "XDG_CACHE_HOME, XDG_STATE_HOME, HOME",
        "where the default cache and state directories are",
    ),
    (
        "COMPLETE",
        "set by a completion script: nodecache answers the shell and exits",
    ),
];

/// The command line with the manual's text after each command's long help
/// (`--help`): its examples and the exit statuses.
pub fn command() -> Command {
    let root = Cli::command().after_long_help(after_help(""));
    let names: Vec<String> = root.get_subcommands().map(|c| c.get_name().to_string()).collect();
    names.into_iter().fold(root, |root, name| {
        let text = after_help(&name);
        root.mut_subcommand(&name, |sub| sub.after_long_help(text))
    })
}

/// `--help`'s closing text for `subcommand` ("" for nodecache itself).
fn after_help(subcommand: &str) -> String {
    let mut text = String::new();
    let examples = examples(subcommand);
    if !examples.is_empty() {
        text.push_str("Examples:\n");
        for (command, what) in examples {
            text.push_str(&format!("  {command}\n      {what}\n"));
        }
        text.push('\n');
    }
    text.push_str("Exit status:\n");
    for (code, what) in exit_status(subcommand) {
        text.push_str(&format!("  {code}  {what}\n"));
    }
    text
}

/// The sections a man page carries after clap_mangen's: EXIT STATUS,
/// ENVIRONMENT, FILES and EXAMPLES, in roff.
pub fn extra_sections(command: &Command, subcommand: &str) -> String {
    let mut roff = String::new();
    let mut section = |title: &str, items: &[(String, String)]| {
        if items.is_empty() {
            return;
        }
        roff.push_str(&format!(".SH \"{title}\"\n"));
        for (term, what) in items {
            roff.push_str(&format!(".TP\n\\fB{}\\fR\n{}\n", escape(term), escape(what)));
        }
    };
    let owned = |items: &[(&str, &str)]| -> Vec<(String, String)> {
        items
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    section("EXIT STATUS", &owned(exit_status(subcommand)));
    let mut environment: Vec<(String, String)> = command
        .get_arguments()
        .chain(Cli::command().get_arguments())
        .filter_map(|arg| {
            let name = arg.get_env()?.to_str()?.to_string();
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            Some((
                name,
                format!("as --{}: {help}", arg.get_long().unwrap_or_default()),
            ))
        })
        .collect();
    environment.sort();
    environment.dedup();
    environment.extend(owned(MORE_ENVIRONMENT));
    section("ENVIRONMENT", &environment);
    section("FILES", &owned(FILES));
    section("EXAMPLES", &owned(examples(subcommand)));
    section(
        "SEE ALSO",
        &[(
            "nodecache-cluster-file(5)".to_string(),
            "the cluster file's format".to_string(),
        )],
    );
    roff
}

/// The cluster file's keys: key, value, default, meaning.
const CLUSTER_FILE_KEYS: &[(&str, &str, &str, &str)] = &[
    (
        "local",
        "a member's name",
        "none",
        "this machine: probed, never fetched",
    ),
    (
        "deadline",
        "a duration (\"5s\")",
        "10s",
        "how long one member may take to answer",
    ),
    (
        "max-response-bytes",
        "a number",
        "16777216",
        "a larger answer from a member is refused",
    ),
    (
        "incus",
        "https://ADDRESS:8443",
        "none",
        "an Incus cluster whose members (GET /1.0/cluster/members, read on every run) join the listed ones, with their groups",
    ),
    (
        "[policy] KEY",
        "text",
        "the policy's",
        "a policy parameter (see nodecache policy list); --set overrides it",
    ),
    (
        "[tls] client-cert, client-key",
        "PEM files",
        "none",
        "the certificate this node presents to members (its own identity: the state directory's server.crt and server.key)",
    ),
    (
        "[tls] server-certs",
        "a list of PEM files",
        "none",
        "certificates any member may answer with (a cluster certificate shared by members)",
    ),
    (
        "[[member]] name",
        "1 to 63 of A-Z a-z 0-9 . _ -",
        "required",
        "the member's name; listed once",
    ),
    (
        "[[member]] url",
        "https://HOST:PORT",
        "none (this machine)",
        "where it answers; http:// only to loopback addresses; no path",
    ),
    (
        "[[member]] groups",
        "a list of names",
        "none",
        "its groups, for --group",
    ),
    (
        "[[member]] server-cert",
        "a PEM file",
        "none",
        "the only certificate that answers for this member (nodecache cluster accept-certificate writes it)",
    ),
];

/// nodecache-cluster-file(5), in roff.
pub fn cluster_file_page() -> String {
    let mut roff = String::from(
        ".TH nodecache-cluster-file 5 \"\" \"nodecache\" \"File Formats\"\n\
         .SH NAME\nnodecache-cluster-file \\- the members of a nodecache cluster, and how to reach them\n\
         .SH SYNOPSIS\n\\fBnodecache \\-\\-cluster\\fR \\fIFILE\\fR ...\n\
         .br\n\\fBNODECACHE_CLUSTER\\fR=\\fIFILE\\fR \\fBnodecache\\fR ...\n\
         .SH DESCRIPTION\nA TOML file naming the cluster's members. Without one, nodecache's cluster is this \
         machine alone. Relative paths in it are read from the file's own directory. A member's \
         certificate is trusted by exact match (pinned), never by its names or an authority: pin each \
         with \\fBserver-cert\\fR, or a certificate the members share with \\fB[tls] server-certs\\fR. \
         An unknown key, a name listed twice, a URL with a path or credentials, or plain http:// to \
         another host is an error naming the line and key (exit 2).\n.SH KEYS\n",
    );
    for (key, value, default, what) in CLUSTER_FILE_KEYS {
        roff.push_str(&format!(
            ".TP\n\\fB{}\\fR = \\fI{}\\fR (default: {})\n{}\n",
            escape(key),
            escape(value),
            escape(default),
            escape(what)
        ));
    }
    roff.push_str(
        ".SH EXAMPLE\n.nf\nlocal = \"node-a\"\ndeadline = \"5s\"\n\n[tls]\nclient-cert = \"/var/lib/nodecache/server.crt\"\n\
         client-key = \"/var/lib/nodecache/server.key\"\n\n[[member]]\nname = \"node-a\"\n\n[[member]]\n\
         name = \"node-b\"\nurl = \"https://10.0.0.2:8443\"\nserver-cert = \"pinned/node-b.crt\"\ngroups = [\"rack-a\"]\n.fi\n\
         .SH SEE ALSO\nnodecache(1), nodecache-cluster(1)\n",
    );
    roff
}

/// Text made safe for roff: backslashes doubled, a leading dot or quote
/// kept from being read as a request, hyphens as roff's minus.
fn escape(text: &str) -> String {
    let text = text.replace('\\', "\\\\").replace('-', "\\-");
    if text.starts_with('.') || text.starts_with('\'') {
        format!("\\&{text}")
    } else {
        text
    }
}
