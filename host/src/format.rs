//! How results are printed.

use std::collections::BTreeSet;

use crate::cpu_flags::CpuFlagsReport;

/// One flag per line, sorted.
pub fn flag_list(flags: &[String]) -> String {
    let sorted: BTreeSet<&str> = flags.iter().map(String::as_str).collect();
    sorted.into_iter().map(|flag| format!("{flag}\n")).collect()
}

pub fn cpu_flags_json(report: &CpuFlagsReport) -> String {
    let mut text = serde_json::to_string_pretty(report).expect("a report always serialises");
    text.push('\n');
    text
}
