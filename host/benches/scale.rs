//! How `nodecache cpu-flags` scales with the cluster: 10 to 5,000 members,
//! cold (empty cache, each member answering after 50 ms) and warm (every
//! entry cached), timed and weighed as whole processes of the real binary.
//!
//!     cargo bench -p nodecache --bench scale               # 10 100 1000 5000
//!     cargo bench -p nodecache --bench scale -- 10 100     # some sizes
//!
//! The members are loopback servers in this process (one listener each,
//! answering `/1.0/resources` with the 8 KB Incus fixture). Prints a
//! Markdown table for BENCHMARKS.md and draws `benchmarks/scale.png`: time
//! and peak memory against members.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use plotters::prelude::*;

#[path = "../../tests/util.rs"]
#[allow(dead_code)]
mod support;

const ANSWER_DELAY: Duration = Duration::from_millis(50);
const COLD_RUNS: usize = 3;
const WARM_RUNS: usize = 7;
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// One size's medians.
struct Row {
    members: usize,
    cold: Duration,
    cold_rss_mb: f64,
    warm: Duration,
    warm_rss_mb: f64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(LAUNCH) {
        launch(&args[2..]);
    }
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10, 100, 1000, 5000]
    } else {
        sizes
    };
    raise_fd_limit();
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    // Where the cache directories go: SCALE_CACHE_ON=/dev/shm puts them on
    // tmpfs, to tell the filesystem's cost from nodecache's.
    let cache_on = std::env::var_os("SCALE_CACHE_ON").map(PathBuf::from);
    for members in sizes {
        let dir = match &cache_on {
            Some(parent) => tempfile::tempdir_in(parent).unwrap(),
            None => tempfile::tempdir().unwrap(),
        };
        let cluster = dir.path().join("cluster.toml");
        std::fs::write(&cluster, cluster_file(&tokio, members)).unwrap();
        // Cold: a cache directory nodecache has not written entries to,
        // holding only the policy it compiled on an earlier run (as after
        // an install, or a cleared cache).
        let compiled = dir.path().join("first-run");
        run(&cluster, &compiled, members);
        let _ = std::fs::remove_dir_all(compiled.join("resources"));
        let mut cold = Vec::new();
        let mut cache = PathBuf::new();
        for attempt in 0..COLD_RUNS {
            cache = dir.path().join(format!("cold-{attempt}"));
            copy_dir(&compiled, &cache);
            cold.push(run(&cluster, &cache, members));
        }
        let warm: Vec<_> = (0..WARM_RUNS).map(|_| run(&cluster, &cache, members)).collect();
        let row = Row {
            members,
            cold: median(cold.iter().map(|r| r.0)),
            cold_rss_mb: median(cold.iter().map(|r| r.1)),
            warm: median(warm.iter().map(|r| r.0)),
            warm_rss_mb: median(warm.iter().map(|r| r.1)),
        };
        eprintln!(
            "{members} members: cold {:.0} ms, {:.0} MB; warm {:.1} ms, {:.0} MB",
            ms(row.cold),
            row.cold_rss_mb,
            ms(row.warm),
            row.warm_rss_mb
        );
        rows.push(row);
    }
    print_table(&rows);
    let png = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benchmarks/scale.png");
    match plot(&rows, &png) {
        Ok(()) => println!("\nplot: {}", png.display()),
        Err(error) => println!("\nno plot ({error})"),
    }
}

/// A cluster file naming `members` loopback servers, each answering after
/// [`ANSWER_DELAY`]; the servers live as long as `tokio`.
fn cluster_file(tokio: &tokio::runtime::Runtime, members: usize) -> String {
    let mut text = String::from("deadline = \"30s\"\n");
    for i in 0..members {
        let url = support::slow_member(tokio, ANSWER_DELAY);
        text.push_str(&format!("[[member]]\nname = \"node-{i:05}\"\nurl = \"{url}\"\n"));
    }
    text
}

/// The argument that makes this binary the launcher (see [`launch`]).
const LAUNCH: &str = "--launch";

/// One whole `nodecache cpu-flags` process: its wall time and peak RSS (MB).
///
/// It is started by a fresh copy of this binary ([`launch`]), not by this
/// process: a child's peak RSS (`ru_maxrss`) counts the memory of the
/// process it was forked from, and this one holds the member farm (tens of
/// MB), which the first version of this bench reported as nodecache's.
fn run(cluster: &Path, cache: &Path, members: usize) -> (Duration, f64) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.arg(LAUNCH);
    // SCALE_WRAP="perf record -g -o nodecache.perf --" profiles each run.
    let wrap = std::env::var("SCALE_WRAP").unwrap_or_default();
    command.args(wrap.split_whitespace());
    let output = command
        .arg(env!("CARGO_BIN_EXE_nodecache"))
        .arg("--cache-dir")
        .arg(cache)
        .arg("--cluster")
        .arg(cluster)
        .args(["cpu-flags", "--format", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let measured = stderr
        .lines()
        .find_map(|line| line.strip_prefix(REPORT))
        .unwrap_or_else(|| panic!("the launcher reported nothing: {stderr}"));
    let [status, max_rss_kb, wall_us, cpu_us] = measured
        .split_whitespace()
        .map(|word| word.parse::<i64>().unwrap())
        .collect::<Vec<_>>()[..]
    else {
        panic!("a bad launcher report: {measured}")
    };
    assert_eq!(status, 0, "nodecache failed over {members} members: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["nodes"].as_array().unwrap().len(), members);
    assert_eq!(report["partial"], false);
    let elapsed = Duration::from_micros(wall_us as u64);
    if std::env::var_os("SCALE_CPU").is_some() {
        let cpu = Duration::from_micros(cpu_us as u64);
        eprintln!("  {members} members: {elapsed:?} wall, {cpu:?} CPU");
    }
    (elapsed, max_rss_kb as f64 / 1024.0)
}

/// How the launcher's measurement starts on its stderr.
const REPORT: &str = "scale-launcher: ";

/// The launcher: runs the command in its arguments (stdout and stderr
/// passed through) and reports on stderr its exit status, peak RSS (KB),
/// wall time and CPU time (µs). A process this small forks nodecache, so
/// nodecache's peak RSS is its own.
fn launch(command: &[String]) -> ! {
    let started = Instant::now();
    let child = Command::new(&command[0]).args(&command[1..]).spawn().unwrap();
    let (status, max_rss_kb, cpu) = wait_with_rusage(child.id() as libc::pid_t);
    let wall = started.elapsed();
    eprintln!(
        "{REPORT}{status} {max_rss_kb} {} {}",
        wall.as_micros(),
        cpu.as_micros()
    );
    std::process::exit(0)
}

/// Waits for `pid`, returning its exit status, peak resident set (KB) and
/// CPU time (user and system).
fn wait_with_rusage(pid: libc::pid_t) -> (i32, i64, Duration) {
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is valid (integers and timevals).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet waited for; both out-pointers are valid.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    let seconds = |t: libc::timeval| Duration::from_micros(t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64);
    let cpu = seconds(usage.ru_utime) + seconds(usage.ru_stime);
    (libc::WEXITSTATUS(status), usage.ru_maxrss, cpu)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// 5,000 listeners need more descriptors than the usual soft limit of 1,024.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into a valid, owned `rlimit`.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit reads a valid `rlimit`.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
}

fn median<T: PartialOrd + Copy>(values: impl Iterator<Item = T>) -> T {
    let mut values: Vec<T> = values.collect();
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn print_table(rows: &[Row]) {
    println!("| members | cold | cold peak RSS | warm | warm peak RSS |");
    println!("|---|---|---|---|---|");
    for row in rows {
        println!(
            "| {} | {:.0} ms | {:.0} MB | {:.1} ms | {:.0} MB |",
            row.members,
            ms(row.cold),
            row.cold_rss_mb,
            ms(row.warm),
            row.warm_rss_mb
        );
    }
}

/// Time (left) and peak memory (right) against members, log-scaled members.
fn plot(rows: &[Row], png: &PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let font = std::fs::read(FONT).map_err(|e| format!("{FONT}: {e} (apt install fonts-dejavu-core)"))?;
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font).map_err(|_| "bad font")?;
    std::fs::create_dir_all(png.parent().unwrap())?;
    let root = BitMapBackend::new(png, (1100, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(550);
    let most = rows.iter().map(|r| r.members).max().unwrap_or(10) as f64;
    let slowest = rows.iter().map(|r| ms(r.cold)).fold(1.0, f64::max);
    let heaviest = rows
        .iter()
        .map(|r| r.cold_rss_mb.max(r.warm_rss_mb))
        .fold(1.0, f64::max);
    for (area, title, unit, top, pick) in [
        (
            &left,
            "cpu-flags wall time",
            "ms",
            slowest * 1.2,
            (|r: &Row| (ms(r.cold), ms(r.warm))) as fn(&Row) -> (f64, f64),
        ),
        (
            &right,
            "cpu-flags peak memory",
            "MB",
            heaviest * 1.2,
            |r: &Row| (r.cold_rss_mb, r.warm_rss_mb),
        ),
    ] {
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((5.0..most * 2.0).log_scale(), 0.0..top)?;
        chart
            .configure_mesh()
            .x_desc("members")
            .y_desc(unit)
            .label_style(("sans-serif", 14))
            .draw()?;
        let cold: Vec<(f64, f64)> = rows.iter().map(|r| (r.members as f64, pick(r).0)).collect();
        let warm: Vec<(f64, f64)> = rows.iter().map(|r| (r.members as f64, pick(r).1)).collect();
        chart
            .draw_series(LineSeries::new(cold.clone(), RED.stroke_width(2)))?
            .label("cold (members answer after 50 ms)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        chart.draw_series(cold.iter().map(|&p| Circle::new(p, 4, RED.filled())))?;
        chart
            .draw_series(LineSeries::new(warm.clone(), BLUE.stroke_width(2)))?
            .label("warm (every entry cached)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        chart.draw_series(warm.iter().map(|&p| Circle::new(p, 4, BLUE.filled())))?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
