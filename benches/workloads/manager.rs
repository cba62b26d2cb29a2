//! `Manager` against Python's `multiprocessing.Manager()`, in the same run: a `dict` set and
//! get (two round trips to the manager's server) through a proxy, `d.set(k, v); d.get(k)` vs
//! Python's `d[k] = v; d[k]`. The raw baseline is the floor of any server design: two 20-byte
//! request/response exchanges with an echo child over a Unix socketpair, with `send`/`read`.
//!
//! Two placements: every process on one CPU (the caller, the server or echo child, and
//! Python's), and unpinned. On one CPU a round trip is two context switches; unpinned, it is
//! two cross-CPU wake-ups, whose cost depends on the machine's load more than on the code.
//!
//! Target (issue 17 §7): ≥ 10× faster than Python. Not reachable by a server that answers over
//! a socket where two round trips cost more than a tenth of Python's call: on the 2-vCPU
//! development VM (December 2026) the raw floor was 30–34 µs, Python 127–141 µs (about 4× the
//! floor) and multiproc 34–47 µs (1.1–1.4× the floor), so 3.0–3.75× faster than Python.
//!
//! Run with `cargo bench --bench manager`.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

use crate::common::raw::{raw_read_full, raw_write_all};
use crate::common::{Case, PY_REPORT, Table, compare, headline, python, rounds};
use multiproc::manager::{DictProxy, Manager};

const PY_DICT: &str = r#"
import multiprocessing as mp, os, time
if __name__ == "__main__":
    mp.set_start_method("fork")
    CPUS = PIN
    if CPUS is not None:
        os.sched_setaffinity(0, CPUS)
    m = mp.Manager()
    d = m.dict()
    def op():
        d["key"] = 1
        d["key"]
    for _ in range(500):
        op()
    samples = []
    for _ in range(ROUNDS):
        t = time.perf_counter_ns()
        for _ in range(ITERS):
            op()
        samples.append((time.perf_counter_ns() - t) / ITERS)
    m.shutdown()
    report(samples)
"#;

pub fn run() {
    let all = multiproc::sys::affinity::sched_getaffinity(None).unwrap();
    let first = all.iter().next().unwrap();
    set_and_get(Some(first));
    multiproc::sys::affinity::sched_setaffinity(None, &all).unwrap();
    set_and_get(None);
}

fn set_and_get(pin: Option<usize>) {
    let rounds = rounds(20);
    let iters = 2000;
    let placement = if pin.is_some() { "same CPU" } else { "unpinned" };
    println!();
    println!("# Manager dict set+get, {placement} ({rounds} rounds × {iters}, interleaved)");
    if let Some(cpu) = pin {
        // Inherited by the echo child and the manager's server (both forked from here).
        let set = multiproc::CpuSet::from_cpus(&[cpu]).unwrap();
        multiproc::sys::affinity::sched_setaffinity(None, &set).unwrap();
    }

    // Raw echo child over a socketpair.
    let mut fds = [0; 2];
    let r = unsafe {
        libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr())
    };
    assert_eq!(r, 0);
    let (raw_parent, raw_child) = (fds[0], fds[1]);
    let raw_pid = unsafe { libc::fork() };
    assert!(raw_pid >= 0);
    if raw_pid == 0 {
        unsafe { libc::close(raw_parent) };
        let mut buf = [0u8; 20];
        while raw_read_full(raw_child, &mut buf) {
            raw_write_all(raw_child, &buf);
        }
        unsafe { libc::_exit(0) };
    }
    unsafe { libc::close(raw_child) };

    let manager = Manager::start().unwrap();
    let d: DictProxy<String, i64> = manager.dict().unwrap();
    let key = "key".to_string();
    let raw_msg = [7u8; 20];
    let mut cases = [
        Case::new("raw: two 20-byte exchanges with an echo process", || {
            let mut buf = [0u8; 20];
            raw_write_all(raw_parent, &raw_msg);
            assert!(raw_read_full(raw_parent, &mut buf));
            raw_write_all(raw_parent, &raw_msg);
            assert!(raw_read_full(raw_parent, &mut buf));
        }),
        Case::new("multiproc Manager dict set+get", || {
            d.set(&key, &1).unwrap();
            assert_eq!(d.get(&key).unwrap(), Some(1));
        }),
    ];
    let stats = compare(rounds, iters, &mut cases);
    let names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    drop(cases);

    let script = format!(
        "{PY_REPORT}\n{}",
        PY_DICT
            .replace("ROUNDS", &rounds.min(10).to_string())
            .replace("ITERS", "1000")
            .replace("PIN", &pin.map_or("None".to_string(), |c| format!("{{{c}}}")))
    );
    let py = python("Manager().dict() set+get", &script);

    let title = format!("Manager dict set+get, {placement}");
    let table = Table::new(&title, None);
    let base = ("raw", &stats[0]);
    for (name, s) in names.iter().zip(&stats) {
        table.row(name, s, Some(base));
    }
    if let Some(s) = &py {
        table.row("Python Manager().dict() d[k] = v; d[k]", s, Some(base));
        let r = s.median / stats[1].median;
        let verdict = if r >= 10.0 { "met" } else { "MISSED" };
        println!("target: ≥ 10× faster than Python: {r:.2}× — {verdict}");
    }
    headline(&title, &stats[1], Some(("raw two socket round trips", &stats[0])), py.as_ref());

    manager.shutdown().unwrap();
    unsafe { libc::close(raw_parent) };
    let mut status = 0;
    unsafe { libc::waitpid(raw_pid, &mut status, 0) };
}
