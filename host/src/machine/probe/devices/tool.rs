//! Running a helper tool the way Incus does for facts sysfs lacks (NVIDIA's
//! `nvidia-container-cli`, `lshw` where there is no DMI table), bounded in
//! time so a hung tool cannot hold a probe.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a tool may take before the probe goes on without it.
pub const TOOL_LIMIT: Duration = Duration::from_secs(5);

/// The most a tool may print (lshw's JSON for a large server is ~1 MB).
const TOOL_OUTPUT_BYTES: u64 = 16 << 20;

/// The tool's standard output (in the C locale), or `None` when it is
/// missing, fails, or outlives `limit` (then it is killed).
pub fn output(program: &Path, args: &[&str], limit: Duration) -> Option<String> {
    let mut child = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    // Read on a thread so a full pipe cannot stall the tool while we wait.
    // Bounded in size as in time: a tool printing without end is cut, and
    // what is cut is not valid output of any of them.
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        (&mut stdout)
            .take(TOOL_OUTPUT_BYTES)
            .read_to_string(&mut text)
            .map(|_| text)
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < limit => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                tracing::warn!(
                    "{} took over {limit:?}: killed, its facts left out",
                    program.display()
                );
                return None;
            }
        }
    };
    let text = reader.join().ok()?.ok()?;
    if !status.success() {
        tracing::debug!("{} {}: {status}", program.display(), args.join(" "));
        return None;
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_that_answers_is_read() {
        let text = output(Path::new("sh"), &["-c", "echo $LC_ALL"], TOOL_LIMIT);
        assert_eq!(text.as_deref(), Some("C\n"));
    }

    #[test]
    fn a_missing_failing_or_hung_tool_gives_nothing() {
        assert_eq!(output(Path::new("/nonexistent/tool"), &[], TOOL_LIMIT), None);
        assert_eq!(output(Path::new("false"), &[], TOOL_LIMIT), None);
        // `sleep` ends with success and no output: Some("") had it been
        // waited for, so None shows it was killed at the limit (no clock read).
        assert_eq!(
            output(Path::new("sleep"), &["30"], Duration::from_millis(200)),
            None
        );
    }

    /// A tool that prints without end (`yes`) was read whole into memory
    /// until its time ran out; now at most 16 MiB is read, and it gives nothing.
    #[test]
    fn a_tool_printing_without_end_is_cut_and_gives_nothing() {
        assert_eq!(output(Path::new("yes"), &[], Duration::from_millis(500)), None);
    }
}
