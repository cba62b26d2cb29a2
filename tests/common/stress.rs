//! Helpers shared by the `tests/stress_*.rs` files (issue 19): the run length, a small PRNG,
//! words in a shared page, children that die with the test, and `/proc` probes for fds and
//! child processes.
//!
//! Included with `#[path = "common/stress.rs"] mod stress;` next to `mod common;`.
#![allow(dead_code, unsafe_code, clippy::undocumented_unsafe_blocks)]

use std::sync::atomic::AtomicU64;

use multiproc::{Process, ProcessBuilder};

/// Seconds each stress test runs: `MULTIPROC_STRESS_SECS` if set (the long form), else
/// `default` (a few seconds, for `cargo test`).
pub fn stress_secs(default: u64) -> u64 {
    std::env::var("MULTIPROC_STRESS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// xorshift64: deterministic and allocation-free (usable in forked children).
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// `n` zeroed `AtomicU64` words in a fresh `MAP_SHARED` page (leaked: it must outlive every
/// child, and the test binary ends soon anyway). Children forked afterwards share them.
pub fn shared_words(n: usize) -> &'static [AtomicU64] {
    let page: &'static super::common::SharedPage =
        Box::leak(Box::new(super::common::SharedPage::new(n * 8)));
    unsafe { std::slice::from_raw_parts(page.get::<AtomicU64>(0), n) }
}

/// A child process that gets `SIGKILL` if the test process dies (so an aborted test leaves
/// no child behind), started.
pub fn spawn_child<R: multiproc::Message, F: FnOnce() -> R + Send + 'static>(f: F) -> Process<R> {
    let p = ProcessBuilder::new().death_signal(Some(multiproc::Signal::KILL)).target(f);
    p.start().expect("start a child");
    p
}

/// Busy work of about `n` short steps (a critical section that takes some time, without a
/// system call).
pub fn spin(n: u64) {
    for _ in 0..n {
        std::hint::spin_loop();
    }
}

/// How many fds this process has open (`/proc/self/fd`, minus the one `read_dir` uses).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count().saturating_sub(1)
}

/// `(pid, state)` of every process whose parent is `ppid` (threads excluded).
pub fn children_of(ppid: i32) -> Vec<(i32, char)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // After the command (which may contain spaces and parentheses): state, ppid, ...
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if fields.next().and_then(|p| p.parse::<i32>().ok()) == Some(ppid) {
            out.push((pid, state));
        }
    }
    out.sort_unstable();
    out
}

/// This process's pid.
pub fn my_pid() -> i32 {
    std::process::id() as i32
}
