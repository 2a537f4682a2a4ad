//! This node's certificate and whom it trusts: `identity` (what it
//! presents, as server and as client) and `trust` (the clients `serve`
//! answers).

use super::args::{TableFormat, TrustCommand};
use super::context::Context;
use super::failure::Failure;
use super::print::{print, table};
use crate::net::certificate;
use crate::server::trust::TrustStore;

/// `identity`: the certificate `serve` presents, which is also the client
/// certificate this node presents to members when its cluster file names
/// it in `[tls] client-cert` (one identity per node, as Incus has).
/// `--pem` prints the certificate itself, to hand to another node.
pub(super) fn identity(context: &Context, pem: bool, fingerprint_only: bool) -> Result<(), Failure> {
    let (cert, key) = crate::net::identity::ensure_server_identity(&context.state_dir()?)?;
    if pem {
        let text = crate::operator_file::read_text(&cert, "certificate", crate::operator_file::PEM_BYTES)?;
        return print(&text);
    }
    let der = crate::net::tls::load_certs(&cert)?.remove(0);
    let described = certificate::describe(der.as_ref())?;
    if fingerprint_only {
        return print(&format!("{}\n", described.fingerprint));
    }
    print(&format!(
        "certificate: {}\nkey: {}\nfingerprint: {}\nsubject: {}\nexpires: {}\n\
         \n\
         serve presents this certificate; name it as [tls] client-cert (and the key as\n\
         client-key) in a cluster file to present it to members too. Another node trusts\n\
         it as a client with `nodecache trust add FILE --name NAME`, or pins it as a\n\
         member with `server-cert = \"FILE\"`; `nodecache identity --pem > FILE` writes it.\n",
        cert.display(),
        key.display(),
        described.fingerprint,
        described.subject,
        described.expires,
    ))
}

pub(super) fn trust(context: &Context, command: &TrustCommand) -> Result<(), Failure> {
    let store = TrustStore::new(&context.state_dir()?);
    let text = match command {
        TrustCommand::Add { cert, name } => store
            .add(cert, name.as_deref())?
            .iter()
            .map(|added| match name {
                Some(name) => format!("{added} as {name}\n"),
                None => format!("{added}\n"),
            })
            .collect(),
        TrustCommand::List { format } => {
            let trusted = store.list()?;
            match format {
                TableFormat::Json => crate::format::pretty_json(&trusted),
                TableFormat::Table => {
                    let rows: Vec<Vec<String>> = trusted
                        .into_iter()
                        .map(|t| {
                            let expires = if t.expired {
                                format!("{} (expired)", t.expires)
                            } else {
                                t.expires
                            };
                            vec![
                                t.name.unwrap_or_else(|| "-".into()),
                                t.subject,
                                t.fingerprint,
                                expires,
                            ]
                        })
                        .collect();
                    table(&["NAME", "SUBJECT", "FINGERPRINT", "EXPIRES"], &rows)
                }
            }
        }
        TrustCommand::Remove { fingerprint } => format!("removed {}\n", store.remove(fingerprint)?),
    };
    print(&text)
}
