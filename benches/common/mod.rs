//! A tiny timing harness shared by the bench files (`harness = false`; no dev-dependencies).
//!
//! - [`compare`] times several cases **interleaved**: each round runs every case for the same
//!   number of iterations, so drift (CPU frequency, other load) hits all of them alike. The
//!   first round is a warm-up and is discarded. Each round gives one per-operation sample.
//! - [`Stats`] keeps the median and the 10th/90th percentiles of the samples.
//! - [`python`] runs `python3 -c <script>`; the script prints `PER_OP_NS <median> <p10> <p90>`
//!   (nanoseconds per operation). A missing `python3` (or a failing script) is a printed note
//!   and a skipped row, never a failed bench.
//! - [`Table`] prints aligned rows with the ratio to a baseline row, and [`Table::target`]
//!   checks a ratio against the issue's target.
//!
//! Set `MULTIPROC_BENCH_QUICK=1` for a fast, rough run (fewer rounds).
#![allow(dead_code)]

use std::process::Command;
use std::time::Instant;

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
    let out = match Command::new("python3").arg("-c").arg(script).output() {
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
