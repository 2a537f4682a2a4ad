//! A JSON document in canonical form (object keys sorted, no whitespace),
//! less the fields a caller names: the bytes a document fingerprint digests.
//!
//! It reads the document once into a tree that borrows its keys and
//! strings from the text (no `serde_json::Value`, whose maps and strings
//! cost an allocation each), and writes every scalar with serde_json's own
//! writer, so the bytes are those of `serde_json::to_string` of a `Value`
//! with the same fields removed: fingerprints already stored stay valid.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

/// `document` in canonical form without the fields named in `leave_out`
/// (at any depth); `None` when it is not JSON. A left-out field is skipped
/// unread, so a number in it too large for an f64 (`1e400`), which a
/// `Value` refuses, does not make the document fail.
pub fn without(document: &str, leave_out: &[&str]) -> Option<Vec<u8>> {
    let mut reader = serde_json::Deserializer::from_str(document);
    let tree = Reading { leave_out }.deserialize(&mut reader).ok()?;
    reader.end().ok()?;
    let mut out = Vec::with_capacity(document.len());
    write(&tree, &mut out);
    Some(out)
}

/// A JSON value whose keys and strings borrow from the text where they
/// hold no escapes.
enum Node<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    /// Fields sorted by key, each key once (the last one read wins, as in
    /// a `serde_json::Map`).
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

fn write(node: &Node, out: &mut Vec<u8>) {
    match node {
        Node::Null => out.extend_from_slice(b"null"),
        Node::Bool(true) => out.extend_from_slice(b"true"),
        Node::Bool(false) => out.extend_from_slice(b"false"),
        Node::Number(number) => write_scalar(number, out),
        Node::String(text) => write_scalar(text, out),
        Node::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        Node::Object(fields) => {
            out.push(b'{');
            for (i, (key, value)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(key, out);
                out.push(b':');
                write(value, out);
            }
            out.push(b'}');
        }
    }
}

/// A number or string as serde_json writes it (its escaping, its number format).
fn write_scalar(scalar: &(impl serde::Serialize + ?Sized), out: &mut Vec<u8>) {
    // Writing a number or a string to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, scalar);
}

/// Reads one value, leaving out the named fields of every object in it.
#[derive(Clone, Copy)]
struct Reading<'l> {
    leave_out: &'l [&'l str],
}

impl<'de> DeserializeSeed<'de> for Reading<'_> {
    type Value = Node<'de>;

    fn deserialize<D: Deserializer<'de>>(self, reader: D) -> Result<Node<'de>, D::Error> {
        reader.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Reading<'_> {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_bool<E>(self, value: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Node<'de>, E> {
        Ok(Node::Number(value.into()))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Node<'de>, E> {
        Ok(Node::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Node<'de>, E> {
        // As `Value` does: a non-finite float (which JSON text cannot
        // produce) is null.
        Ok(Number::from_f64(value).map_or(Node::Null, Node::Number))
    }

    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Borrowed(value)))
    }

    fn visit_str<E>(self, value: &str) -> Result<Node<'de>, E> {
        Ok(Node::String(Cow::Owned(value.to_owned())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Node<'de>, A::Error> {
        let mut read = Vec::with_capacity(items.size_hint().unwrap_or(0));
        while let Some(item) = items.next_element_seed(self)? {
            read.push(item);
        }
        Ok(Node::Array(read))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut fields: A) -> Result<Node<'de>, A::Error> {
        let mut read: Vec<(Cow<'de, str>, Node<'de>)> = Vec::new();
        while let Some(Key(key)) = fields.next_key()? {
            if self.leave_out.contains(&key.as_ref()) {
                fields.next_value::<IgnoredAny>()?;
            } else {
                read.push((key, fields.next_value_seed(self)?));
            }
        }
        // Stable: of equal keys, the last read stays last, and is kept.
        read.sort_by(|a, b| a.0.cmp(&b.0));
        let mut unique: Vec<(Cow<'de, str>, Node<'de>)> = Vec::with_capacity(read.len());
        for field in read {
            match unique.last_mut() {
                Some(last) if last.0 == field.0 => *last = field,
                _ => unique.push(field),
            }
        }
        Ok(Node::Object(unique))
    }
}

/// An object key, borrowed from the text when it holds no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(reader: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }

            fn visit_str<E>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }
        }
        reader.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// What fingerprints were first made from: the document as a `Value`,
    /// the fields removed at every depth, written by serde_json (whose map
    /// keeps keys sorted). The tree must give the very same bytes.
    fn through_value(document: &str, leave_out: &[&str]) -> Option<Vec<u8>> {
        fn strip(value: &mut Value, leave_out: &[&str]) {
            match value {
                Value::Object(map) => {
                    map.retain(|key, _| !leave_out.contains(&key.as_str()));
                    map.values_mut().for_each(|v| strip(v, leave_out));
                }
                Value::Array(items) => items.iter_mut().for_each(|v| strip(v, leave_out)),
                _ => {}
            }
        }
        let mut value: Value = serde_json::from_str(document).ok()?;
        strip(&mut value, leave_out);
        serde_json::to_vec(&value).ok()
    }

    #[test]
    fn the_bytes_are_those_of_a_value_less_the_fields() {
        let leave_out = ["used", "load", "frequency"];
        for document in [
            include_str!("../../../tests/fixtures/incus-6.0.4-resources.envelope.json"),
            include_str!("../../../tests/fixtures/lxd-5.0.2-resources.envelope.json"),
            r#"{"b":[1,2.5,-3e10,"x\"y\u0001",null,true],"a":{"\u00e9":{}}}"#,
            r#"{"k":1,"k":2,"a\nb":{"used":[{"used":3}],"z":0.1},"used":{"x":1}}"#,
            r#"[{"load":1,"frequency":{"a":[1,2]},"n":-0,"m":-0.0,"big":18446744073709551615}]"#,
            r#" "text with é and \ud83d\ude00" "#,
            "12.5e-3",
        ] {
            assert_eq!(
                super::without(document, &leave_out),
                through_value(document, &leave_out),
                "{document}"
            );
        }
    }

    #[test]
    fn a_huge_number_in_a_field_left_out_is_skipped() {
        let document = r#"{"load":{"Average1Min":0.4e527},"n":1}"#;
        assert_eq!(through_value(document, &["load"]), None);
        assert_eq!(super::without(document, &["load"]).unwrap(), br#"{"n":1}"#);
        assert_eq!(super::without(r#"{"n":1e400}"#, &["load"]), None);
    }

    #[test]
    fn what_is_not_json_has_no_canonical_form() {
        for document in [
            "",
            "not json",
            "{\"a\":1",
            "{\"a\":1} trailing",
            "{\"used\": nope}",
        ] {
            assert_eq!(super::without(document, &["used"]), None, "{document}");
        }
    }
}
