//! A tiny timing harness shared by the bench files (`harness = false`; no dev-dependencies).
//!
//! - [`compare`] times several cases **interleaved**: each round runs every case for the same
//!   number of iterations, so drift (CPU frequency, other load) hits all of them alike. The
//!   first round is a warm-up and is discarded. Each round gives one per-operation sample.
//! - [`Stats`] keeps the median and the 10th/90th percentiles of the samples.
//! - [`python`] runs `python3 -c <script>`; the script prints `PER_OP_NS <median> <p10> <p90>`
//!   (nanoseconds per operation). A missing `python3` (or a failing script) is a printed note
//!   and a skipped row, never a failed bench. [`python_file`] runs the script from a file, for
//!   Python's `spawn` and `forkserver` start methods (they re-import the main module).
//! - [`ExecSelf`] is the raw floor under the `spawn` start method: `fork` + `execve` of this
//!   executable, which a constructor makes exit before anything else runs.
//! - [`Table`] prints aligned rows with the ratio to a baseline row, and [`Table::target`]
//!   checks a ratio against the issue's target.
//!
//! Set `MULTIPROC_BENCH_QUICK=1` for a fast, rough run (fewer rounds).
#![allow(dead_code)]

pub mod raw;

use std::ffi::{CString, c_char};
use std::process::Command;
use std::time::Instant;

// ---------------------------------------------------------------------------------------------
// The floor under the `spawn` start method: a raw `fork` + `execve` of this very executable.

/// A copy of this executable started with this variable set exits at once, from a constructor
/// that runs before multiproc's `init` (and before Rust's runtime): the raw `fork` + `execve`
/// baseline times exactly the exec of this binary, nothing of the crate.
const EXIT_AT_ONCE: &std::ffi::CStr = c"MULTIPROC_BENCH_EXIT_AT_ONCE";

// A prioritised `.init_array.N` entry runs before the plain `.init_array` ones, where
// `init_before_main!` puts `multiproc::init` (so the exec'd copy makes no fork server).
#[used]
#[unsafe(link_section = ".init_array.00100")]
static EXIT_AT_ONCE_CTOR: extern "C" fn() = {
    extern "C" fn exit_at_once() {
        if !unsafe { libc::getenv(EXIT_AT_ONCE.as_ptr()) }.is_null() {
            unsafe { libc::_exit(0) };
        }
    }
    exit_at_once
};

/// `argv` and `envp` for a raw `execve` of this executable (built once, before any fork, so the
/// child only calls `execve` and `_exit`).
pub struct ExecSelf {
    path: CString,
    _strings: Vec<CString>,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
}

impl ExecSelf {
    /// `/proc/self/exe` (what `spawn` runs), with this environment plus [`EXIT_AT_ONCE`].
    pub fn new() -> ExecSelf {
        let path = CString::new("/proc/self/exe").unwrap();
        let mut strings = vec![CString::new("multiproc-bench-exec").unwrap()];
        let argc = strings.len();
        for (k, v) in std::env::vars_os() {
            use std::os::unix::ffi::OsStrExt;
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            strings.push(CString::new(kv).unwrap());
        }
        let mut flag = EXIT_AT_ONCE.to_bytes().to_vec();
        flag.extend_from_slice(b"=1");
        strings.push(CString::new(flag).unwrap());
        let mut argv: Vec<*const c_char> = strings[..argc].iter().map(|s| s.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const c_char> = strings[argc..].iter().map(|s| s.as_ptr()).collect();
        envp.push(std::ptr::null());
        ExecSelf { path, _strings: strings, argv, envp }
    }

    /// Forks; the child `execve`s this executable, which exits at once. Returns the child's pid.
    pub fn start(&self) -> i32 {
        // SAFETY: the child calls only `execve` and `_exit` on memory prepared before the fork.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            unsafe {
                libc::execve(self.path.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr());
                libc::_exit(127);
            }
        }
        pid
    }

    /// `start` + `waitpid`: the floor of an `exec` of this binary.
    pub fn run(&self) {
        wait_ok(self.start());
    }
}

/// Waits for `pid` and checks that it exited with 0.
pub fn wait_ok(pid: i32) {
    let mut status = 0;
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status:#x}");
}

// ---------------------------------------------------------------------------------------------

/// Summary of the per-operation samples of one case, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    /// Median time per operation.
    pub median: f64,
    /// 10th percentile.
    pub p10: f64,
    /// 90th percentile.
    pub p90: f64,
    /// How many samples (rounds) went into it.
    pub samples: usize,
}

impl Stats {
    /// Summarises samples (nanoseconds per operation).
    pub fn from_samples(mut v: Vec<f64>) -> Stats {
        assert!(!v.is_empty(), "no samples");
        v.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Stats { median: at(0.5), p10: at(0.1), p90: at(0.9), samples: v.len() }
    }

    /// The p10..p90 spread as a fraction of the median.
    pub fn spread(&self) -> f64 {
        (self.p90 - self.p10) / self.median
    }
}

/// Whether `MULTIPROC_BENCH_QUICK` is set: fewer rounds, rougher numbers.
pub fn quick() -> bool {
    std::env::var_os("MULTIPROC_BENCH_QUICK").is_some()
}

/// Rounds to use: `full`, or a fifth of it (at least 3) in quick mode.
pub fn rounds(full: usize) -> usize {
    if quick() { (full / 5).max(3) } else { full }
}

/// One case of a comparison: a name and the operation to time.
pub struct Case<'a> {
    /// Shown in the table.
    pub name: &'static str,
    /// One operation.
    pub op: Box<dyn FnMut() + 'a>,
}

impl<'a> Case<'a> {
    /// A case named `name` running `op`.
    pub fn new(name: &'static str, op: impl FnMut() + 'a) -> Case<'a> {
        Case { name, op: Box::new(op) }
    }
}

/// Times `cases` interleaved: `rounds` rounds (plus one warm-up round), each running every case
/// `iters` times in a row. Returns one [`Stats`] per case, in order.
pub fn compare(rounds: usize, iters: usize, cases: &mut [Case<'_>]) -> Vec<Stats> {
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); cases.len()];
    for round in 0..=rounds {
        // Rotate the order each round so no case always runs first (or right after another).
        for k in 0..cases.len() {
            let i = (k + round) % cases.len();
            let case = &mut cases[i];
            let start = Instant::now();
            for _ in 0..iters {
                (case.op)();
            }
            let per_op = start.elapsed().as_nanos() as f64 / iters as f64;
            if round > 0 {
                samples[i].push(per_op);
            }
        }
    }
    samples.into_iter().map(Stats::from_samples).collect()
}

/// Runs `python3 -c script` and parses its `PER_OP_NS <median> <p10> <p90>` line. Prints a
/// note and returns `None` if python3 is missing or the script fails.
pub fn python(what: &str, script: &str) -> Option<Stats> {
    parse_python(what, Command::new("python3").arg("-c").arg(script).output())
}

/// Like [`python`], but runs the script from a file (`python3 <file>`), as a real program is run:
/// Python's `spawn` and `forkserver` start methods re-import the main module in the child to
/// find a target defined there, which a `-c` script cannot provide.
pub fn python_file(what: &str, script: &str) -> Option<Stats> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "multiproc_bench_{}_{}.py",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    if let Err(e) = std::fs::write(&path, script) {
        println!("  note: skipping Python ({what}): cannot write {}: {e}", path.display());
        return None;
    }
    let out = Command::new("python3").arg(&path).output();
    let _ = std::fs::remove_file(&path);
    parse_python(what, out)
}

/// Parses the `PER_OP_NS` line of a Python run (see [`python`]).
fn parse_python(what: &str, out: std::io::Result<std::process::Output>) -> Option<Stats> {
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            println!("  note: skipping Python ({what}): cannot run python3: {e}");
            return None;
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix("PER_OP_NS "));
    let parsed = line.and_then(|l| {
        let v: Vec<f64> = l.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        (v.len() == 3).then(|| Stats { median: v[0], p10: v[1], p90: v[2], samples: 0 })
    });
    if !out.status.success() || parsed.is_none() {
        let err = String::from_utf8_lossy(&out.stderr);
        println!(
            "  note: skipping Python ({what}): python3 failed ({}): {}",
            out.status,
            err.lines().last().unwrap_or("")
        );
        return None;
    }
    parsed
}

/// The Python helper that every script ends with: prints `PER_OP_NS median p10 p90` from a list
/// `samples` of nanoseconds per operation.
pub const PY_REPORT: &str = r#"
def report(samples):
    s = sorted(samples)
    at = lambda q: s[round((len(s) - 1) * q)]
    print("PER_OP_NS", at(0.5), at(0.1), at(0.9))
"#;

/// Formats nanoseconds with a unit.
pub fn fmt_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// A printed comparison table.
pub struct Table {
    /// Bytes moved per operation, for a MiB/s column (`None`: no such column).
    bytes: Option<u64>,
}

impl Table {
    /// Prints the title and the column headers.
    pub fn new(title: &str, bytes: Option<u64>) -> Table {
        println!();
        println!("## {title}");
        let extra = if bytes.is_some() { format!("{:>11}", "MiB/s") } else { String::new() };
        println!("{:<44} {:>11} {:>9}{extra}   ratio", "case", "median", "p10-p90");
        Table { bytes }
    }

    /// Prints one row; with `baseline`, the ratio of this median to the baseline's.
    pub fn row(&self, name: &str, s: &Stats, baseline: Option<(&str, &Stats)>) {
        let spread = format!("±{:.1}%", s.spread() * 50.0);
        let extra = match self.bytes {
            Some(b) => format!("{:>11.0}", b as f64 / (1 << 20) as f64 / (s.median / 1e9)),
            None => String::new(),
        };
        let ratio = match baseline {
            Some((bname, b)) => format!("{:.2}× {bname}", s.median / b.median),
            None => String::new(),
        };
        println!("{name:<44} {:>11} {spread:>9}{extra}   {ratio}", fmt_ns(s.median));
    }

    /// Prints whether `ours / baseline` (time ratio) meets `max_time_ratio`.
    pub fn target(&self, what: &str, ours: &Stats, baseline: &Stats, max_time_ratio: f64) {
        let r = ours.median / baseline.median;
        let verdict = if r <= max_time_ratio { "met" } else { "MISSED" };
        println!("target: {what}: {r:.3}× (≤ {max_time_ratio}×) — {verdict}");
    }

    /// Prints whether the throughput ratio `baseline time / ours time` reaches `min_ratio`.
    pub fn target_throughput(&self, what: &str, ours: &Stats, baseline: &Stats, min_ratio: f64) {
        let r = baseline.median / ours.median;
        let verdict = if r >= min_ratio { "met" } else { "MISSED" };
        println!("target: {what}: {r:.3}× throughput (≥ {min_ratio}×) — {verdict}");
    }
}

// ---------------------------------------------------------------------------------------------
// The side-by-side summary: one line per workload, gathered while the bench files run.
// ---------------------------------------------------------------------------------------------

/// One workload's line in the side-by-side table: multiproc, its raw-syscall baseline and
/// Python's `multiprocessing`, each a median time per operation.
#[derive(Debug, Clone)]
pub struct Headline {
    /// What was measured (one operation).
    pub workload: String,
    /// multiproc's time per operation.
    pub ours: Stats,
    /// The baseline written with raw syscalls in the same run (name, time per operation).
    pub raw: Option<(String, Stats)>,
    /// Python's time per operation (`None`: python3 missing, or no Python equivalent).
    pub python: Option<Stats>,
}

static HEADLINES: std::sync::Mutex<Vec<Headline>> = std::sync::Mutex::new(Vec::new());

/// Records one line of the side-by-side table (see [`print_side_by_side`]).
pub fn headline(workload: &str, ours: &Stats, raw: Option<(&str, &Stats)>, python: Option<&Stats>) {
    let line = Headline {
        workload: workload.to_string(),
        ours: *ours,
        raw: raw.map(|(name, s)| (name.to_string(), *s)),
        python: python.copied(),
    };
    HEADLINES.lock().unwrap_or_else(|e| e.into_inner()).push(line);
}

/// Every line recorded so far, in order.
pub fn headlines() -> Vec<Headline> {
    HEADLINES.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Prints the side-by-side table: medians per operation and the two ratios that matter, the
/// cost over the raw baseline (lower is better, 1.00× is the floor) and the speed-up over Python.
pub fn print_side_by_side(lines: &[Headline]) {
    println!();
    println!("## side by side: medians per operation (lower is better)");
    println!(
        "{:<50} {:>10} {:>10} {:>10} {:>9} {:>10}   baseline",
        "workload", "multiproc", "raw", "Python", "÷ raw", "Python ÷"
    );
    for l in lines {
        let raw = l.raw.as_ref().map_or("—".to_string(), |(_, s)| fmt_ns(s.median));
        let py = l.python.as_ref().map_or("—".to_string(), |s| fmt_ns(s.median));
        let vs_raw = l
            .raw
            .as_ref()
            .map_or("—".to_string(), |(_, s)| format!("{:.2}×", l.ours.median / s.median));
        let vs_py = l
            .python
            .as_ref()
            .map_or("—".to_string(), |s| format!("{:.1}×", s.median / l.ours.median));
        let base = l.raw.as_ref().map_or("", |(name, _)| name.as_str());
        println!(
            "{:<50} {:>10} {:>10} {:>10} {vs_raw:>9} {vs_py:>10}   {base}",
            l.workload,
            fmt_ns(l.ours.median),
            raw,
            py
        );
    }
    println!("(÷ raw: multiproc time / raw-syscall time; Python ÷: Python time / multiproc time)");
}

/// Writes an SVG bar chart of the side-by-side table: per workload, multiproc's and Python's
/// time relative to the raw baseline on a logarithmic axis (1 = the raw syscalls' speed).
/// Workloads without a raw baseline are drawn relative to multiproc.
pub fn write_svg(lines: &[Headline], path: &std::path::Path) -> std::io::Result<()> {
    use std::fmt::Write as _;
    let rows: Vec<(&str, f64, Option<f64>)> = lines
        .iter()
        .map(|l| {
            let base = l.raw.as_ref().map_or(l.ours.median, |(_, s)| s.median);
            (l.workload.as_str(), l.ours.median / base, l.python.map(|p| p.median / base))
        })
        .collect();
    let max = rows.iter().flat_map(|r| [Some(r.1), r.2]).flatten().fold(10.0f64, f64::max);
    let decades = max.log10().ceil().max(1.0);
    let (left, width, row_h, top) = (330.0, 560.0, 34.0, 56.0);
    let height = top + row_h * rows.len() as f64 + 40.0;
    let x = |ratio: f64| left + width * (ratio.max(1.0).log10() / decades);
    let mut svg = String::new();
    let total_w = left + width + 90.0;
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="10" y="20" font-size="15" font-weight="bold">multiproc vs Python multiprocessing: time relative to raw syscalls (log scale, lower is better)</text>"#
    );
    let _ = writeln!(
        svg,
        r##"<rect x="10" y="30" width="12" height="10" fill="#2b6cb0"/><text x="26" y="39">multiproc</text><rect x="100" y="30" width="12" height="10" fill="#dd6b20"/><text x="116" y="39">Python</text>"##
    );
    for d in 0..=decades as u32 {
        let gx = x(10f64.powi(d as i32));
        let _ = writeln!(
            svg,
            r##"<line x1="{gx}" y1="{top}" x2="{gx}" y2="{}" stroke="#ccc"/><text x="{gx}" y="{}" text-anchor="middle">{}×</text>"##,
            height - 30.0,
            height - 16.0,
            10u64.pow(d)
        );
    }
    for (i, (name, ours, py)) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let label = name.replace('&', "&amp;").replace('<', "&lt;");
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{label}</text>"#,
            left - 8.0,
            y + 18.0
        );
        let bar = |svg: &mut String, y: f64, ratio: f64, color: &str| {
            let w = (x(ratio) - left).max(1.0);
            let _ = writeln!(
                svg,
                r#"<rect x="{left}" y="{y}" width="{w:.1}" height="12" fill="{color}"/><text x="{:.1}" y="{}" font-size="10">{ratio:.2}×</text>"#,
                left + w + 4.0,
                y + 10.0
            );
        };
        bar(&mut svg, y + 3.0, *ours, "#2b6cb0");
        if let Some(py) = py {
            bar(&mut svg, y + 16.0, *py, "#dd6b20");
        }
    }
    svg.push_str("</svg>\n");
    std::fs::write(path, svg)
}
