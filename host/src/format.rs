//! How results are printed.

use std::collections::BTreeSet;

use serde::Serialize;

/// One flag per line, sorted and without repeats (a swapped-in policy may not sort).
pub fn flag_list<S: AsRef<str>>(flags: impl IntoIterator<Item = S>) -> String {
    let sorted: BTreeSet<String> = flags.into_iter().map(|flag| flag.as_ref().to_string()).collect();
    sorted.into_iter().map(|flag| format!("{flag}\n")).collect()
}

/// Indented JSON and a final newline, for everything printed as JSON.
pub fn pretty_json(value: &impl Serialize) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("our output types always serialise");
    text.push('\n');
    text
}
