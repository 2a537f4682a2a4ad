//! Incus's REST envelopes: `{"type":"sync",...,"metadata":...}` and errors.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Resources;

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

/// Reads a resources document given either bare or in Incus's sync envelope.
pub fn unwrap_resources(body: &[u8]) -> Result<Resources, EnvelopeError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
    let document = match value.get("type").and_then(Value::as_str) {
        Some("error") => {
            let code = value.get("error_code").and_then(Value::as_u64).unwrap_or(0) as u16;
            let message = value
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            return Err(EnvelopeError::Server { code, message });
        }
        Some("sync") => value.get("metadata").cloned().unwrap_or(Value::Null),
        Some(other) => {
            return Err(EnvelopeError::Malformed(format!(
                "unexpected response type {other:?}"
            )));
        }
        None => value,
    };
    serde_json::from_value(document).map_err(|e| EnvelopeError::Malformed(e.to_string()))
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
    fn bare_documents_are_accepted() {
        let typed = unwrap_resources(br#"{"cpu":{"architecture":"x86_64","sockets":[],"total":0}}"#).unwrap();
        assert_eq!(typed.cpu.architecture, "x86_64");
    }
}
