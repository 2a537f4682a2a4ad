//! Validated node names: the only strings that become cache file names.

use std::fmt;

/// A cluster member's name, checked before it touches a path or a URL:
/// 1-63 characters of `A-Za-z0-9._-`, not starting with `.` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid node name {name:?}: {problem}")]
pub struct InvalidNodeName {
    pub name: String,
    pub problem: &'static str,
}

impl NodeName {
    pub const MAX_LEN: usize = 63;

    pub fn parse(name: &str) -> Result<NodeName, InvalidNodeName> {
        let problem = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > Self::MAX_LEN {
            Some("it is longer than 63 characters")
        } else if name.starts_with('.') || name.starts_with('-') {
            Some("it starts with '.' or '-'")
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            Some("only letters, digits, '.', '_' and '-' are allowed")
        } else {
            None
        };
        match problem {
            Some(problem) => Err(InvalidNodeName {
                name: name.to_string(),
                problem,
            }),
            None => Ok(NodeName(name.to_string())),
        }
    }

    /// This machine's host name made into a valid node name (see [`Self::from_hostname`]).
    pub fn of_this_machine() -> NodeName {
        let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_default();
        Self::from_hostname(&raw)
    }

    /// A host name as the kernel holds it, made into a valid node name:
    /// surrounding space trimmed, each character outside `A-Za-z0-9._-`
    /// made `-`, leading `.` and `-` dropped, cut to 63; `localhost` when
    /// nothing is left.
    pub fn from_hostname(raw: &str) -> NodeName {
        let cleaned: String = raw
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let cleaned = cleaned.trim_start_matches(['.', '-']);
        let cut = &cleaned[..cleaned.len().min(Self::MAX_LEN)];
        NodeName::parse(cut).unwrap_or_else(|_| NodeName("localhost".into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_are_accepted() {
        for name in ["node-a", "n1", "web.example.com", "A_b-9", &"x".repeat(63)] {
            assert_eq!(NodeName::parse(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn hostile_names_are_rejected() {
        for name in [
            "",
            ".",
            "..",
            "../etc/passwd",
            "a/b",
            "-rf",
            ".hidden",
            "a b",
            "nul\0",
            "é",
            &"x".repeat(64),
        ] {
            let error = NodeName::parse(name).unwrap_err();
            assert_eq!(error.name, name);
        }
    }

    #[test]
    fn host_names_are_cleaned_into_node_names() {
        let long = format!("{}.example.com", "h".repeat(70));
        for (raw, expected) in [
            ("web01.example.com\n", "web01.example.com"),
            ("  node-a  ", "node-a"),
            ("host name", "host-name"),
            ("-leading.dash", "leading.dash"),
            ("..dots", "dots"),
            ("n\u{e4}me", "n-me"),
            ("\u{1b}[31mred", "31mred"),
            ("a/b", "a-b"),
            (long.as_str(), &"h".repeat(63)),
            ("", "localhost"),
            ("---", "localhost"),
            ("\u{1b}\0", "localhost"),
        ] {
            assert_eq!(NodeName::from_hostname(raw).as_str(), expected, "{raw:?}");
        }
    }

    #[test]
    fn this_machine_is_named_by_its_kernel_host_name() {
        let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(NodeName::of_this_machine(), NodeName::from_hostname(&raw));
    }
}
