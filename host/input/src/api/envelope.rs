//! Incus's REST envelopes: `{"type":"sync",...,"metadata":...}` and errors.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::Resources;
use super::cpu_summary::{self, CpuSummary};

/// Incus's response envelope (sync or error).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<T> {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub status_code: u16,
    #[serde(default)]
    pub operation: String,
    #[serde(default)]
    pub error_code: u16,
    #[serde(default)]
    pub error: String,
    pub metadata: Option<T>,
}

impl<T> Envelope<T> {
    pub fn sync(metadata: T) -> Self {
        Envelope {
            kind: "sync".into(),
            status: "Success".into(),
            status_code: 200,
            operation: String::new(),
            error_code: 0,
            error: String::new(),
            metadata: Some(metadata),
        }
    }

    pub fn error(code: u16, message: impl Into<String>) -> Self {
        Envelope {
            kind: "error".into(),
            status: String::new(),
            status_code: 0,
            operation: String::new(),
            error_code: code,
            error: message.into(),
            metadata: None,
        }
    }
}

/// Why a body is not a resources document.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The server answered with Incus's error envelope: its own message.
    #[error("server error {code}: {message}")]
    Server { code: u16, message: String },
    #[error("not an Incus resources document: {0}")]
    Malformed(String),
}

/// The parts of a response body that tell an envelope from a bare document.
#[derive(Deserialize)]
struct EnvelopeView<'a> {
    #[serde(rename = "type")]
    kind: Option<&'a str>,
    #[serde(default)]
    error_code: u16,
    #[serde(default)]
    error: String,
    #[serde(borrow)]
    metadata: Option<&'a RawValue>,
}

/// The resources document in a body given either bare or in Incus's sync
/// envelope, as the exact text received (never re-serialised), after
/// checking that it is one (a typed parse).
pub fn resources_text(body: &[u8]) -> Result<String, EnvelopeError> {
    let document = document_in(body)?;
    serde_json::from_str::<Resources>(document).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
    Ok(document.to_string())
}

/// A member's answer: the document as received and its CPU summary, which
/// is the check that it is a resources document (a CPU section, named
/// architecture, flag-shaped flags) and what the cache keeps beside it, so
/// a fetched document is parsed for it once.
pub fn resources_document(body: &[u8]) -> Result<(String, CpuSummary), EnvelopeError> {
    let document = document_in(body)?;
    let summary =
        cpu_summary::from_document(document).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
    Ok((document.to_string(), summary))
}

/// The document inside `body`: the body itself when bare, the `metadata` of
/// a sync envelope; an error envelope is the server's own message.
fn document_in(body: &[u8]) -> Result<&str, EnvelopeError> {
    let text = std::str::from_utf8(body).map_err(|e| EnvelopeError::Malformed(format!("not UTF-8: {e}")))?;
    let view: EnvelopeView =
        serde_json::from_str(text).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
    match view.kind {
        Some("error") => Err(EnvelopeError::Server {
            code: view.error_code,
            message: view.error,
        }),
        Some("sync") => Ok(view.metadata.map(RawValue::get).unwrap_or("null")),
        Some(other) => Err(EnvelopeError::Malformed(format!(
            "unexpected response type {other:?}"
        ))),
        None => Ok(text),
    }
}

/// Reads a resources document given either bare or in Incus's sync envelope.
pub fn unwrap_resources(body: &[u8]) -> Result<Resources, EnvelopeError> {
    let text = resources_text(body)?;
    serde_json::from_str(&text).map_err(|e| EnvelopeError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_envelopes_pass_the_server_message_on() {
        let body = br#"{"type":"error","error_code":403,"error":"not authorized","metadata":null}"#;
        match unwrap_resources(body) {
            Err(EnvelopeError::Server { code: 403, message }) => assert_eq!(message, "not authorized"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            unwrap_resources(b"<html>"),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(matches!(
            unwrap_resources(b"{\"type\":\"sync\"}"),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(matches!(
            unwrap_resources(b"[1,2]"),
            Err(EnvelopeError::Malformed(_))
        ));
    }

    #[test]
    fn the_document_is_kept_as_received() {
        let document = r#"{"cpu": {"architecture":"x86_64", "sockets":[], "total":0},  "extra":1}"#;
        let body = format!(r#"{{"type":"sync","status":"Success","metadata":{document}}}"#);
        assert_eq!(resources_text(body.as_bytes()).unwrap(), document);
        assert_eq!(resources_text(document.as_bytes()).unwrap(), document);
    }

    #[test]
    fn bare_documents_are_accepted() {
        let typed = unwrap_resources(br#"{"cpu":{"architecture":"x86_64","sockets":[],"total":0}}"#).unwrap();
        assert_eq!(typed.cpu.architecture, "x86_64");
    }
}
