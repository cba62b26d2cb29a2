//! Spawn + join of an empty child: `multiproc::Process` against a raw `fork`/`_exit`/`waitpid`
//! and Python's `multiprocessing.Process` (fork start method), in the same run.
//!
//! Target (issue 3 §6): `Process` spawn+join ≤ 1.25× the raw fork.
//!
//! Then start + join of an empty *function* process (`Context::new(method).process(f, ())`)
//! by each start method — `fork`, `forkserver`, `spawn` — beside the raw fork, a raw
//! `fork` + `execve` of this very executable (the floor under `spawn`), the closure `Process`,
//! and Python's `get_context(method).Process(target=f)` for the same three methods. Targets
//! (issue 14): `forkserver` ≤ 1.5× `fork`; `spawn` ≥ 10× faster than Python's `spawn`.
//!
//! A binary that includes this file must run `multiproc::init` before `main`
//! (`multiproc::init_before_main!()` at its top level): `spawn` needs it, and it makes the fork
//! server.
//!
//! Run with `cargo bench --bench process`.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

use crate::common::{
    Case, ExecSelf, PY_REPORT, Stats, Table, compare, headline, python, python_file, quick, rounds,
};
use multiproc::{Context, Process, ProcessBuilder, StartMethod};

/// The function the start-method processes run.
fn empty(_: ()) {}

/// Start + join of `empty` by `method`.
fn function_process(method: StartMethod) {
    let p = Context::new(method).process(empty, ());
    p.start().unwrap();
    p.join().unwrap();
}

/// Raw baseline: `fork`, the child `_exit(0)`s at once, the parent `waitpid`s.
fn raw_fork_wait() {
    // SAFETY: the child calls only `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
}

/// The same plus what `Process` needs to do its job, in raw libc: a report file (memfd) the
/// child writes one byte to, a pidfd (the sentinel), and reading the report after the exit.
/// The floor for a process that returns a value and has a sentinel.
fn raw_fork_memfd_pidfd() {
    let m = unsafe { libc::memfd_create(c"r".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(m >= 0);
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        unsafe {
            libc::pwrite(m, [0u8].as_ptr().cast(), 1, 0);
            libc::_exit(0);
        }
    }
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    assert!(pidfd >= 0);
    let mut status = 0;
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    let mut b = [0u8; 16];
    assert_eq!(unsafe { libc::pread(m, b.as_mut_ptr().cast(), b.len(), 0) }, 1);
    unsafe {
        libc::close(pidfd);
        libc::close(m);
    }
}

fn ours() {
    let p = Process::new(|| ());
    p.start().unwrap();
    p.join().unwrap();
}

fn ours_returning_a_value() {
    let p = Process::new(|| 42u64);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 42);
}

fn ours_daemon() {
    let p = ProcessBuilder::new().daemon(true).target(|| ());
    p.start().unwrap();
    p.join().unwrap();
}

const PY_SPAWN: &str = r#"
import multiprocessing as mp, time
def f():
    pass
def once():
    p = mp.Process(target=f)
    p.start()
    p.join()
if __name__ == "__main__":
    mp.set_start_method("fork")
    for _ in range(30):
        once()
    samples = []
    for _ in range(ROUNDS):
        t = time.perf_counter_ns()
        for _ in range(ITERS):
            once()
        samples.append((time.perf_counter_ns() - t) / ITERS)
    report(samples)
"#;

/// Python's start+join of an empty function by `METHOD`, from a file (spawn and forkserver
/// re-import the main module to find `f`).
const PY_START_METHOD: &str = r#"
import multiprocessing as mp, time
def f():
    pass
def once(ctx):
    p = ctx.Process(target=f)
    p.start()
    p.join()
if __name__ == "__main__":
    ctx = mp.get_context("METHOD")
    for _ in range(WARM):
        once(ctx)
    samples = []
    for _ in range(ROUNDS):
        t = time.perf_counter_ns()
        for _ in range(ITERS):
            once(ctx)
        samples.append((time.perf_counter_ns() - t) / ITERS)
    report(samples)
"#;

/// Python's `get_context(method).Process(target=f)` start + join (rounds × iterations chosen
/// per method: a Python `spawn` costs tens of milliseconds).
pub fn py_start_method(method: &str) -> Option<Stats> {
    let (warm, rounds, iters) = match (method, quick()) {
        ("fork", false) => (20, 10, 50),
        ("forkserver", false) => (10, 10, 20),
        (_, false) => (2, 10, 4),
        ("fork", true) => (10, 3, 20),
        ("forkserver", true) => (5, 3, 10),
        (_, true) => (1, 3, 2),
    };
    let script = format!(
        "{PY_REPORT}\n{}",
        PY_START_METHOD
            .replace("METHOD", method)
            .replace("WARM", &warm.to_string())
            .replace("ROUNDS", &rounds.to_string())
            .replace("ITERS", &iters.to_string())
    );
    python_file(&format!("{method} Process"), &script)
}

/// Start + join of an empty function process by each start method, against the raw floors
/// and Python's three methods.
fn run_start_methods() {
    let rounds = rounds(25);
    let iters = 8;
    println!();
    println!(
        "# start + join of an empty function process by start method ({rounds} rounds × {iters} \
         per case, interleaved)"
    );
    let exec_self = ExecSelf::new();
    // One of each first: the fork server and the page cache are warm before the timed rounds.
    for m in [StartMethod::Fork, StartMethod::Forkserver, StartMethod::Spawn] {
        function_process(m);
    }
    exec_self.run();
    let mut cases = [
        Case::new("raw fork/_exit/waitpid", raw_fork_wait),
        Case::new("raw fork + execve(this binary) + waitpid", || exec_self.run()),
        Case::new("multiproc Process::new(|| ()) (closure)", ours),
        Case::new("multiproc fork: ctx.process(f, ())", || function_process(StartMethod::Fork)),
        Case::new("multiproc forkserver: ctx.process(f, ())", || {
            function_process(StartMethod::Forkserver)
        }),
        Case::new("multiproc spawn: ctx.process(f, ())", || function_process(StartMethod::Spawn)),
    ];
    let s = compare(rounds, iters, &mut cases);
    let py: Vec<Option<Stats>> =
        ["fork", "forkserver", "spawn"].iter().map(|m| py_start_method(m)).collect();

    let table = Table::new("start + join of an empty function, by start method", None);
    let raw = ("raw fork", &s[0]);
    table.row(cases[0].name, &s[0], None);
    table.row(cases[1].name, &s[1], Some(raw));
    table.row(cases[2].name, &s[2], Some(raw));
    table.row(cases[3].name, &s[3], Some(raw));
    table.row(cases[4].name, &s[4], Some(("multiproc fork", &s[3])));
    table.row(cases[5].name, &s[5], Some(("raw fork+execve", &s[1])));
    for (name, (py, ours)) in
        ["fork", "forkserver", "spawn"].iter().zip(py.iter().zip([&s[3], &s[4], &s[5]]))
    {
        if let Some(py) = py {
            table.row(
                &format!("Python get_context({name:?}).Process"),
                py,
                Some(("multiproc", ours)),
            );
        }
    }
    table.target("forkserver start+join vs fork", &s[4], &s[3], 1.5);
    match &py[2] {
        Some(py) => table.target_throughput("spawn start+join vs Python spawn", &s[5], py, 10.0),
        None => println!("target: spawn vs Python spawn: no Python figure"),
    }
    let rows = [
        ("Process start + join, fn, fork", &s[3], ("fork/_exit/waitpid", &s[0]), &py[0]),
        ("Process start + join, fn, forkserver", &s[4], ("fork/_exit/waitpid", &s[0]), &py[1]),
        ("Process start + join, fn, spawn", &s[5], ("fork+execve self/waitpid", &s[1]), &py[2]),
    ];
    for (what, ours, raw, py) in rows {
        headline(what, ours, Some(raw), py.as_ref());
    }
}

/// Runs every case of this file and prints its tables.
pub fn run() {
    let rounds = rounds(30);
    let iters = 100;
    println!("# spawn + join of an empty child ({rounds} rounds × {iters} per case, interleaved)");
    let mut cases = [
        Case::new("raw fork/_exit/waitpid", raw_fork_wait),
        Case::new("raw fork + memfd report + pidfd", raw_fork_memfd_pidfd),
        Case::new("multiproc Process::new(|| ())", ours),
        Case::new("multiproc Process returning u64", ours_returning_a_value),
        Case::new("multiproc daemon Process (PDEATHSIG)", ours_daemon),
    ];
    let stats = compare(rounds, iters, &mut cases);
    let script = format!(
        "{PY_REPORT}\n{}",
        PY_SPAWN.replace("ROUNDS", &rounds.min(10).to_string()).replace("ITERS", "100")
    );
    let py = python("multiprocessing.Process", &script);

    let table = Table::new("spawn + join", None);
    let base = ("raw fork", &stats[0]);
    for (case, s) in cases.iter().zip(&stats) {
        table.row(case.name, s, Some(base));
    }
    if let Some(py) = &py {
        table.row("Python multiprocessing.Process (fork)", py, Some(base));
        table.row("  (multiproc vs Python)", &stats[2], Some(("Python", py)));
    }
    table.target("Process spawn+join vs raw fork", &stats[2], &stats[0], 1.25);
    headline(
        "Process start + join, closure (fork)",
        &stats[2],
        Some(("fork/_exit/waitpid", &stats[0])),
        py.as_ref(),
    );
    run_start_methods();
}
