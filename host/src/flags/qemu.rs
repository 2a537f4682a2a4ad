//! QEMU's own word on a CPU model: which flags a baseline such as `kvm64`
//! already gives a guest, asked of the installed QEMU over QMP
//! (`query-cpu-model-expansion`) rather than kept by hand.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::names;

/// The QEMU binary asked; `NODECACHE_QEMU` overrides it.
fn qemu_binary() -> String {
    std::env::var("NODECACHE_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into())
}

/// A baseline CPU model and the Linux flags it already enables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Baseline {
    pub model: String,
    pub flags: BTreeSet<String>,
    /// Who said so: "QEMU 10.0.2", or the built-in list.
    pub source: String,
}

/// What `kvm64` enables under TCG (QEMU 7.2 to 10.0 agree), for machines
/// without QEMU. Any other model needs QEMU to be known.
const KVM64_WITHOUT_QEMU: &[&str] = &[
    "apic",
    "clflush",
    "cmov",
    "cx16",
    "cx8",
    "de",
    "fpu",
    "fxsr",
    "hypervisor",
    "lm",
    "mca",
    "mce",
    "mmx",
    "msr",
    "mtrr",
    "nx",
    "pae",
    "pat",
    "pge",
    "pni",
    "pse",
    "pse36",
    "sep",
    "sse",
    "sse2",
    "syscall",
    "tsc",
];

/// The flags `model` enables, from QEMU when it is installed.
pub fn baseline(model: &str) -> Result<Baseline> {
    match expand(model) {
        Ok(baseline) => Ok(baseline),
        Err(error) if model == "kvm64" && is_not_installed(&error) => Ok(Baseline {
            model: model.into(),
            flags: KVM64_WITHOUT_QEMU.iter().map(|flag| flag.to_string()).collect(),
            source: "built-in list (QEMU not installed)".into(),
        }),
        Err(error) => Err(error),
    }
}

fn is_not_installed(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

/// Asks QEMU for the full expansion of `model`.
pub fn expand(model: &str) -> Result<Baseline> {
    let answers = qmp(&[
        json!({"execute": "query-version"}),
        json!({"execute": "query-cpu-model-expansion",
               "arguments": {"type": "full", "model": {"name": model}}}),
    ])?;
    let version = &answers[0]["qemu"];
    let expansion = &answers[1];
    let props = expansion["model"]["props"]
        .as_object()
        .with_context(|| format!("QEMU's expansion of {model} has no properties: {expansion}"))?;
    let flags = props
        .iter()
        .filter(|(_, on)| on.as_bool() == Some(true))
        .filter_map(|(name, _)| names::by_qemu(name))
        .map(|names| names.linux.to_string())
        .collect();
    Ok(Baseline {
        model: model.into(),
        flags,
        source: format!(
            "QEMU {}.{}.{}",
            version["major"], version["minor"], version["micro"]
        ),
    })
}

/// Runs QEMU with no machine, sends `commands` over QMP on stdio, and returns
/// their answers in order; an error answer is an error naming the command.
pub fn qmp(commands: &[Value]) -> Result<Vec<Value>> {
    let binary = qemu_binary();
    let mut child = Command::new(&binary)
        .args([
            "-machine",
            "none",
            "-nodefaults",
            "-display",
            "none",
            "-S",
            "-accel",
            "tcg",
            "-qmp",
            "stdio",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(anyhow::Error::from)
        .with_context(|| format!("cannot run {binary}"))?;
    let mut script = vec![json!({"execute": "qmp_capabilities"})];
    script.extend(commands.iter().cloned());
    script.push(json!({"execute": "quit"}));
    let mut stdin = child.stdin.take().context("QEMU's stdin")?;
    for command in &script {
        writeln!(stdin, "{command}")?;
    }
    drop(stdin);
    let output = child
        .wait_with_output()
        .with_context(|| format!("{binary} failed"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let answers: Vec<Value> = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|answer| answer.get("return").is_some() || answer.get("error").is_some())
        .collect();
    if answers.len() != script.len() {
        bail!(
            "{binary} answered {} of {} QMP commands: {}",
            answers.len(),
            script.len(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let mut returns = Vec::with_capacity(commands.len());
    for (command, answer) in commands.iter().zip(&answers[1..]) {
        if let Some(error) = answer.get("error") {
            bail!("QEMU refused {}: {}", command["execute"], error["desc"]);
        }
        returns.push(answer["return"].clone());
    }
    Ok(returns)
}
