//! Shell completions and the man pages, generated from the clap definitions
//! (so they cannot drift from the options): `nodecache completions SHELL`,
//! `nodecache manpage`. The Debian package ships their output.
//!
//! A completion script registers nodecache itself as the completer
//! (clap_complete's `COMPLETE=SHELL` protocol): options come from the clap
//! definitions, member and group names from the cluster file
//! ([`super::complete`]).

use clap_complete::env::{self, EnvCompleter};

use super::args::CompletionShell;
use super::failure::Failure;
use super::manual;
use super::print::print;

pub fn completions(shell: CompletionShell) -> Result<(), Failure> {
    let shell: &dyn EnvCompleter = match shell {
        CompletionShell::Bash => &env::Bash,
        CompletionShell::Zsh => &env::Zsh,
        CompletionShell::Fish => &env::Fish,
    };
    let mut script = Vec::new();
    // The shell runs `nodecache` from PATH: the installed binary answers.
    shell
        .write_registration("COMPLETE", "nodecache", "nodecache", "nodecache", &mut script)
        .map_err(anyhow::Error::from)?;
    let mut text = String::from_utf8_lossy(&script).into_owned();
    if matches!(shell.name(), "zsh") {
        // Installed in $fpath (the package's vendor-completions), the file
        // is autoloaded as `_nodecache` and its body runs at the first TAB:
        // complete then too, not only from the second TAB on (the idiom of
        // zsh's own completion files; sourced, the name differs and nothing runs).
        text.push_str(
            "if [[ \"${funcstack[1]}\" == \"_nodecache\" ]]; then\n    _clap_dynamic_completer_nodecache \"$@\"\nfi\n",
        );
    }
    print(&text)
}

/// nodecache(1), the page of one subcommand (`nodecache-cpu-flags(1)`), or
/// nodecache-cluster-file(5) (`manpage cluster-file`): clap_mangen's
/// sections, then the manual's own ([`manual::extra_sections`]).
pub fn manpage(subcommand: Option<&str>) -> Result<(), Failure> {
    if subcommand == Some("cluster-file") {
        return print(&manual::cluster_file_page());
    }
    let command = manual::command();
    let page_of = match subcommand {
        None => command,
        Some(name) => {
            let known: Vec<String> = command
                .get_subcommands()
                .map(|c| c.get_name().to_string())
                .chain(std::iter::once("cluster-file".to_string()))
                .collect();
            let found = command.find_subcommand(name).cloned().ok_or_else(|| {
                Failure::usage(anyhow::anyhow!(
                    "no subcommand {name:?} (subcommands: {})",
                    known.join(", ")
                ))
            })?;
            found.name(format!("nodecache-{name}"))
        }
    };
    // The sections clap_mangen's `render` writes, but the after-help
    // "EXTRA": its examples and exit statuses are proper sections below.
    let man = clap_mangen::Man::new(page_of.clone());
    let mut page = Vec::new();
    let render = |page: &mut Vec<u8>| -> std::io::Result<()> {
        man.render_title(page)?;
        man.render_name_section(page)?;
        man.render_synopsis_section(page)?;
        man.render_description_section(page)?;
        if page_of.get_arguments().next().is_some() {
            man.render_options_section(page)?;
        }
        if page_of.has_subcommands() {
            man.render_subcommands_section(page)?;
        }
        Ok(())
    };
    render(&mut page).map_err(anyhow::Error::from)?;
    let mut text = String::from_utf8_lossy(&page).into_owned();
    text.push_str(&manual::extra_sections(&page_of, subcommand.unwrap_or("")));
    print(&text)
}
