//! Shell completions and the man page, generated from the clap definitions
//! (so they cannot drift from the options): `nodecache completions SHELL`,
//! `nodecache manpage`. The Debian package ships their output.

use clap::CommandFactory;
use clap_complete::Shell;

use super::args::{Cli, CompletionShell};
use super::failure::Failure;
use super::print::print;

pub fn completions(shell: CompletionShell) -> Result<(), Failure> {
    let shell = match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "nodecache", &mut script);
    print(&String::from_utf8_lossy(&script))
}

/// nodecache(1), or the page of one subcommand (`nodecache-cpu-flags(1)`).
pub fn manpage(subcommand: Option<&str>) -> Result<(), Failure> {
    let command = Cli::command();
    let page_of = match subcommand {
        None => command,
        Some(name) => {
            let known: Vec<String> = command
                .get_subcommands()
                .map(|c| c.get_name().to_string())
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
    let mut page = Vec::new();
    clap_mangen::Man::new(page_of)
        .render(&mut page)
        .map_err(anyhow::Error::from)?;
    print(&String::from_utf8_lossy(&page))
}
