//! QEMU's own word on a CPU model: which flags a baseline such as `kvm64`
//! already gives a guest, asked of the installed QEMU over QMP
//! (`query-cpu-model-expansion`) rather than kept by hand.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::model_props::{Ask, ask};

/// The QEMU binary asked; `NODECACHE_QEMU` overrides it.
pub(crate) fn qemu_binary() -> String {
    std::env::var("NODECACHE_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into())
}

/// A baseline CPU model and the Linux flags it already enables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Baseline {
    pub model: String,
    pub flags: BTreeSet<String>,
    /// Bits the model enables that Linux reports under other names (QEMU's
    /// property, the flags): a node runs the model only with one flag of
    /// each list.
    pub shown_as: Vec<(String, &'static [&'static str])>,
    /// QEMU properties the model enables that no flag line can show.
    pub unprovable: Vec<String>,
    /// Who said so: "QEMU 10.0.2", or the built-in list.
    pub source: String,
    /// The CPUID vendor the model shows a guest ("AuthenticAMD").
    pub vendor: Option<String>,
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
            shown_as: Vec::new(),
            unprovable: Vec::new(),
            source: "built-in list (QEMU not installed)".into(),
            vendor: None,
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
        expansion_of("base"),
        expansion_of(model),
    ])?;
    let source = version_of(&answers[0]);
    let settings = enabled_props("base", &answers[1])?;
    baseline_from(model, &answers[2], &settings, &source)
}

fn expansion_of(model: &str) -> Value {
    json!({"execute": "query-cpu-model-expansion",
           "arguments": {"type": "full", "model": {"name": model}}})
}

fn version_of(answer: &Value) -> String {
    let version = &answer["qemu"];
    format!(
        "QEMU {}.{}.{}",
        version["major"], version["minor"], version["micro"]
    )
}

/// The properties `expansion` turns on.
fn enabled_props<'a>(model: &str, expansion: &'a Value) -> Result<BTreeSet<&'a str>> {
    let props = expansion["model"]["props"]
        .as_object()
        .with_context(|| format!("QEMU's expansion of {model} has no properties: {expansion}"))?;
    Ok(props
        .iter()
        .filter(|(_, on)| on.as_bool() == Some(true))
        .map(|(name, _)| name.as_str())
        .collect())
}

/// `settings`: what the featureless `base` model turns on (accelerator and
/// cache settings, not CPUID bits), which every model has and no node needs.
fn baseline_from(
    model: &str,
    expansion: &Value,
    settings: &BTreeSet<&str>,
    source: &str,
) -> Result<Baseline> {
    let mut baseline = Baseline {
        model: model.into(),
        flags: BTreeSet::new(),
        shown_as: Vec::new(),
        unprovable: Vec::new(),
        source: source.into(),
        vendor: expansion["model"]["props"]["vendor"].as_str().map(str::to_string),
    };
    for prop in enabled_props(model, expansion)?.difference(settings) {
        match ask(prop) {
            Ask::Flag(flag) => {
                baseline.flags.insert(flag.to_string());
            }
            Ask::AnyOf(flags) => baseline.shown_as.push((prop.to_string(), flags)),
            Ask::Unprovable => baseline.unprovable.push(prop.to_string()),
        }
    }
    Ok(baseline)
}

/// Every CPU model name QEMU defines (aliases too), and who said so.
pub fn definitions() -> Result<(String, BTreeSet<String>)> {
    let answers = qmp(&[
        json!({"execute": "query-version"}),
        json!({"execute": "query-cpu-definitions"}),
    ])?;
    let names = answers[1]
        .as_array()
        .context("QEMU listed no CPU definitions")?
        .iter()
        .filter_map(|model| model["name"].as_str())
        .map(str::to_string)
        .collect();
    Ok((version_of(&answers[0]), names))
}

/// Models that are not a CPU family a guest could be shown.
const NOT_A_FAMILY: &[&str] = &[
    "base",
    "host",
    "max",
    "kvm32-v1",
    "kvm64-v1",
    "qemu32-v1",
    "qemu64-v1",
];

/// Every named, versioned, non-deprecated CPU model QEMU defines, expanded.
pub fn named_models() -> Result<Vec<Baseline>> {
    let answers = qmp(&[
        json!({"execute": "query-version"}),
        json!({"execute": "query-cpu-definitions"}),
    ])?;
    let source = version_of(&answers[0]);
    let names: Vec<String> = answers[1]
        .as_array()
        .context("QEMU listed no CPU definitions")?
        .iter()
        .filter(|model| model.get("alias-of").is_none() && model["deprecated"] != true)
        .filter_map(|model| model["name"].as_str())
        .filter(|name| !NOT_A_FAMILY.contains(name))
        .map(str::to_string)
        .collect();
    let mut commands = vec![expansion_of("base")];
    commands.extend(names.iter().map(|name| expansion_of(name)));
    let expansions = qmp(&commands)?;
    let settings = enabled_props("base", &expansions[0])?;
    names
        .iter()
        .zip(&expansions[1..])
        .map(|(name, expansion)| baseline_from(name, expansion, &settings, &source))
        .collect()
}

/// Flags every guest model sets whatever the host: the CPUID bit that says
/// "running under a hypervisor". A host need not have it to run the model.
pub(crate) const GUEST_ONLY: &[&str] = &["hypervisor"];

/// A model as `--baseline auto` would use it on `common`: what it adds,
/// and the QEMU properties it asks for that some node cannot give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fit {
    pub model: Baseline,
    pub added: usize,
    /// QEMU property names to turn off.
    pub disabled: Vec<String>,
}

impl Fit {
    /// libvirt's measure of a guest CPU definition (`x86Decode`,
    /// `virCPUx86CompareCandidateFeatureList`): one per added feature, and
    /// 2, 3, 4, ... for the first, second, third disabled one.
    fn score(&self) -> usize {
        let disabled = self.disabled.len();
        self.added + disabled * (disabled + 3) / 2
    }
}

/// How `model` fits `common` (Linux names; the `settable` ones are those a
/// hypervisor can set): every bit it asks for is either present or
/// disabled, so every model fits; some fit better.
pub fn fit(model: &Baseline, common: &BTreeSet<&str>, settable: usize) -> Fit {
    let mut disabled: Vec<String> = Vec::new();
    let mut present = 0;
    for flag in &model.flags {
        if common.contains(flag.as_str()) || GUEST_ONLY.contains(&flag.as_str()) {
            present += 1;
        } else if let Some(qemu) = crate::machine::names::by_linux(flag).and_then(|names| names.qemu) {
            disabled.push(qemu.to_string());
        }
    }
    for (prop, any) in &model.shown_as {
        if !any.iter().any(|flag| common.contains(flag)) {
            disabled.push(prop.clone());
        }
    }
    disabled.extend(model.unprovable.iter().cloned());
    disabled.sort();
    disabled.dedup();
    Fit {
        model: model.clone(),
        added: settable.saturating_sub(present),
        disabled,
    }
}

/// `--baseline auto`: the named model closest to `common`, as libvirt
/// picks one (the lowest score; among equals, fewer disabled, then the
/// newer model), of the cluster's vendor. `None` when no model of that
/// vendor exists (a cluster mixing vendors has none).
pub fn closest(models: &[Baseline], common: &BTreeSet<&str>, vendor: Option<&str>) -> Option<Fit> {
    let settable = common
        .iter()
        .filter(|flag| crate::machine::names::by_linux(flag).is_some_and(|names| names.qemu.is_some()))
        .count();
    models
        .iter()
        .filter(|model| vendor.is_some() && model.vendor.as_deref() == vendor)
        .map(|model| fit(model, common, settable))
        .min_by(|a, b| {
            a.score()
                .cmp(&b.score())
                .then_with(|| a.disabled.len().cmp(&b.disabled.len()))
                .then_with(|| b.model.flags.len().cmp(&a.model.flags.len()))
                .then_with(|| version(&b.model.model).cmp(&version(&a.model.model)))
        })
}

/// Why `--baseline auto` chose `fit`: how many models were weighed, what
/// the choice adds and turns off, and what the newest model of the vendor
/// would have had to turn off (why an old model can be the closest).
pub fn why_chosen(models: &[Baseline], common: &BTreeSet<&str>, fit: &Fit) -> String {
    let vendor = fit.model.vendor.as_deref();
    let same_vendor: Vec<&Baseline> = models.iter().filter(|m| m.vendor.as_deref() == vendor).collect();
    let mut why = format!(
        "the closest of {} {} models by libvirt's measure: it adds {} features and turns off {}",
        same_vendor.len(),
        vendor.unwrap_or("unknown-vendor"),
        fit.added,
        fit.disabled.len()
    );
    let newest = same_vendor.iter().max_by(|a, b| {
        a.flags
            .len()
            .cmp(&b.flags.len())
            .then_with(|| version(&a.model).cmp(&version(&b.model)))
    });
    if let Some(newest) = newest.filter(|newest| newest.model != fit.model.model) {
        let newest_fit = self::fit(newest, common, 0);
        why.push_str(&format!(
            "; the newest, {}, would have to turn off {}",
            newest.model,
            newest_fit.disabled.len()
        ));
    }
    why
}

/// `Skylake-Server-v4` -> 4.
fn version(model: &str) -> u32 {
    model
        .rsplit_once("-v")
        .and_then(|(_, number)| number.parse().ok())
        .unwrap_or(0)
}

/// How long one QEMU may take to answer (expanding every named model takes
/// about a second here); past it, it is killed and the answer is an error.
const QEMU_DEADLINE: Duration = Duration::from_secs(30);

/// The child's output once it exits, or an error once `deadline` passed
/// (the child killed): its pipes are drained by threads meanwhile, so a
/// chatty child never blocks on a full pipe.
fn wait_bounded(mut child: Child, deadline: Duration) -> std::io::Result<Output> {
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s: killed", deadline.as_secs()),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
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
    let output = wait_bounded(child, QEMU_DEADLINE).with_context(|| format!("{binary} failed"))?;
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
