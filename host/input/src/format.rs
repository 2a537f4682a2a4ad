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

/// Text a policy wrote (its errors, verdict reasons, name, parameters):
/// a component from anywhere, so as untrusted as a member's answer.
pub fn from_policy(text: String) -> String {
    match text.chars().any(char::is_control) || text.len() > POLICY_TEXT_CHARS {
        true => for_terminal(&text, POLICY_TEXT_CHARS),
        false => text,
    }
}

/// The most characters of a policy's text kept.
const POLICY_TEXT_CHARS: usize = 500;

/// Items from outside, listed in an error or a warning: each made fit for a
/// terminal, and at most `max_items` of them, the rest counted. 100,000
/// member names once made one error message megabytes long.
pub fn capped_list<S: AsRef<str>>(
    items: impl IntoIterator<Item = S>,
    separator: &str,
    max_items: usize,
) -> String {
    let mut shown = Vec::new();
    let mut more = 0usize;
    for item in items {
        if shown.len() < max_items {
            shown.push(for_terminal(item.as_ref(), ITEM_CHARS));
        } else {
            more += 1;
        }
    }
    let mut text = shown.join(separator);
    if more > 0 {
        text.push_str(&format!("{separator}… and {more} more"));
    }
    text
}

/// The most characters of one item an error quotes: room for a member's
/// name, its URL, a certificate fingerprint and what to do about it.
const ITEM_CHARS: usize = 400;

/// How many items an error lists before counting the rest.
pub const LISTED: usize = 20;

/// An age as an operator reads it: `45 s`, `12 min`, `5 h`, `3 d`.
pub fn rough_age(seconds: u64) -> String {
    match seconds {
        0..120 => format!("{seconds} s"),
        120..7_200 => format!("{} min", seconds / 60),
        7_200..172_800 => format!("{} h", seconds / 3_600),
        _ => format!("{} d", seconds / 86_400),
    }
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
    fn ages_read_in_the_unit_that_fits() {
        assert_eq!(rough_age(0), "0 s");
        assert_eq!(rough_age(119), "119 s");
        assert_eq!(rough_age(120), "2 min");
        assert_eq!(rough_age(7_199), "119 min");
        assert_eq!(rough_age(7_200), "2 h");
        assert_eq!(rough_age(2 * 86_400), "2 d");
    }

    #[test]
    fn outside_text_cannot_drive_a_terminal_or_flood_it() {
        assert_eq!(
            for_terminal("Offline\u{1b}[2J\nrm -rf", 100),
            "Offline?[2J?rm -rf"
        );
        assert_eq!(for_terminal(&"x".repeat(100_000), 5), "xxxxx…");
        assert_eq!(for_terminal("ok", 2), "ok");
        let names: Vec<String> = (0..100_000).map(|i| format!("n{i}")).collect();
        assert_eq!(capped_list(&names, ", ", 3), "n0, n1, n2, … and 99997 more");
        assert_eq!(capped_list(["a\u{1b}[2J"], ", ", 3), "a?[2J");
    }
}
