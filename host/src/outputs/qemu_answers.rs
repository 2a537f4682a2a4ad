//! QEMU's answers about CPU models, asked once per QEMU binary and kept for
//! the process: what a model enables does not change while the binary (its
//! path, size and modification time) does not. One QEMU runs at a time,
//! however many requests ask (a request waiting for one finds its answer
//! made), each run has a deadline (`qemu::qmp`), and once QEMU has listed
//! its models a name it does not know is refused without starting QEMU.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::Result;

use super::qemu::{self, Baseline};

/// A `--baseline` the installed QEMU does not define.
#[derive(Debug, thiserror::Error)]
#[error("{qemu} has no CPU model {model:?} (`qemu-system-x86_64 -cpu help` lists them)")]
pub struct UnknownModel {
    /// The name as given, cut to 64 characters and stripped of control
    /// characters: it came from outside and reaches terminals.
    pub model: String,
    /// Which QEMU said so ("QEMU 10.0.2").
    pub qemu: String,
}

/// Which QEMU binary answered: a new one (an upgrade) is asked again.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BinaryId {
    path: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
}

impl BinaryId {
    /// The binary `qemu::qmp` would run, found as the shell finds it;
    /// `None` when there is none (QEMU not installed).
    fn current() -> Option<BinaryId> {
        let binary = qemu::qemu_binary();
        let candidates: Vec<PathBuf> = if binary.contains('/') {
            vec![PathBuf::from(&binary)]
        } else {
            std::env::var_os("PATH")
                .map(|path| {
                    std::env::split_paths(&path)
                        .map(|dir| dir.join(&binary))
                        .collect()
                })
                .unwrap_or_default()
        };
        candidates.into_iter().find_map(|path| {
            let meta = std::fs::metadata(&path).ok().filter(|meta| meta.is_file())?;
            Some(BinaryId {
                len: meta.len(),
                modified: meta.modified().ok(),
                path,
            })
        })
    }
}

#[derive(Default)]
struct Answers {
    binary: Option<BinaryId>,
    /// Every model name QEMU defines (aliases too), and its version.
    definitions: Option<(String, BTreeSet<String>)>,
    expansions: HashMap<String, Baseline>,
    named: Option<Arc<Vec<Baseline>>>,
}

/// Held while QEMU runs: one at a time, and the answers it leaves.
static ANSWERS: Mutex<Option<Answers>> = Mutex::new(None);

/// Runs `ask` on this binary's answers, starting them anew when the binary
/// changed.
fn with_answers<T>(ask: impl FnOnce(&mut Answers) -> Result<T>) -> Result<T> {
    let mut guard = ANSWERS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let binary = BinaryId::current();
    let answers = guard.get_or_insert_with(Answers::default);
    if answers.binary != binary {
        *answers = Answers {
            binary,
            ..Answers::default()
        };
    }
    ask(answers)
}

/// The flags `model` enables (see `qemu::baseline`), asked of QEMU at most
/// once per binary; a model QEMU does not define is an [`UnknownModel`].
pub fn baseline(model: &str) -> Result<Baseline> {
    with_answers(|answers| {
        if let Some(known) = answers.expansions.get(model) {
            return Ok(known.clone());
        }
        if let Some((source, names)) = &answers.definitions
            && !names.contains(model)
        {
            return Err(unknown(model, source).into());
        }
        match qemu::baseline(model) {
            Ok(expanded) => {
                answers.expansions.insert(model.to_string(), expanded.clone());
                Ok(expanded)
            }
            Err(error) => {
                // Was it the name? Learn the list, so the next unknown name
                // costs no QEMU.
                if answers.definitions.is_none()
                    && let Ok(definitions) = qemu::definitions()
                {
                    answers.definitions = Some(definitions);
                }
                match &answers.definitions {
                    Some((source, names)) if !names.contains(model) => Err(unknown(model, source).into()),
                    _ => Err(error),
                }
            }
        }
    })
}

/// Every named model, expanded (see `qemu::named_models`), asked of QEMU at
/// most once per binary.
pub fn named_models() -> Result<Arc<Vec<Baseline>>> {
    with_answers(|answers| {
        if let Some(named) = &answers.named {
            return Ok(named.clone());
        }
        let named = Arc::new(qemu::named_models()?);
        answers.named = Some(named.clone());
        Ok(named)
    })
}

fn unknown(model: &str, source: &str) -> UnknownModel {
    UnknownModel {
        model: model.chars().filter(|c| !c.is_control()).take(64).collect(),
        qemu: source.to_string(),
    }
}
