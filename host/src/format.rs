//! How results are printed.

use std::collections::BTreeSet;

use serde::Serialize;

/// One flag per line, sorted and without repeats (a swapped-in policy may not sort).
pub fn flag_list<S: AsRef<str>>(flags: impl IntoIterator<Item = S>) -> String {
    let sorted: BTreeSet<String> = flags.into_iter().map(|flag| flag.as_ref().to_string()).collect();
    sorted.into_iter().map(|flag| format!("{flag}\n")).collect()
}

/// Text from outside (Incus's member status and message, a node's reason,
/// a name that was refused) made fit for a terminal: control characters,
/// escape sequences among them, become `?`, and at most `max` characters
/// are kept, the cut marked with `…`.
pub fn for_terminal(text: &str, max: usize) -> String {
    let mut kept: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().nth(max).is_some() {
        kept.push('…');
    }
    kept
}

/// Indented JSON and a final newline, for everything printed as JSON.
pub fn pretty_json(value: &impl Serialize) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("our output types always serialise");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_text_cannot_drive_a_terminal_or_flood_it() {
        assert_eq!(
            for_terminal("Offline\u{1b}[2J\nrm -rf", 100),
            "Offline?[2J?rm -rf"
        );
        assert_eq!(for_terminal(&"x".repeat(100_000), 5), "xxxxx…");
        assert_eq!(for_terminal("ok", 2), "ok");
    }
}
