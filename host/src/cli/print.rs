//! Where the CLI's answers go: stdout for the answer, stderr for a
//! progress bar while many members are asked.

use std::io::Write;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::failure::Failure;
use crate::cluster::gather::Progress;

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a message.
pub(super) fn print(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::from(e).context("writing output").into())
        }
        _ => Ok(()),
    }
}

/// Rows under a header, each column as wide as its widest cell, two
/// spaces apart; every cell through the terminal sanitiser (names and
/// errors can come from members).
pub(super) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cells: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| h.to_string()).collect())
        .chain(rows.iter().map(|row| {
            row.iter()
                .map(|cell| crate::format::for_terminal(cell, 200))
                .collect()
        }))
        .collect();
    let mut widths = vec![0; header.len()];
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in &cells {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// A bar on stderr while asking many members; indicatif draws nothing when
/// stderr is not a terminal, so piped output stays clean. Cleared when
/// dropped.
pub(super) struct Bar(ProgressBar);

/// Below this many members, a run is too quick for a bar to help.
const PROGRESS_THRESHOLD: usize = 8;

impl Bar {
    pub(super) fn for_members(members: usize) -> Arc<Bar> {
        if members < PROGRESS_THRESHOLD {
            return Arc::new(Bar(ProgressBar::hidden()));
        }
        let bar = ProgressBar::with_draw_target(Some(members as u64), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} asking nodes {bar:30} {pos}/{len} {elapsed}")
        {
            bar.set_style(style);
        }
        Arc::new(Bar(bar))
    }
}

impl Progress for Bar {
    fn member_done(&self) {
        self.0.inc(1);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
