//! Spawn + join of an empty child: `multiproc::Process` against a raw `fork`/`_exit`/`waitpid`
//! and Python's `multiprocessing.Process` (fork start method), in the same run.
//!
//! Target (issue 3 §6): `Process` spawn+join ≤ 1.25× the raw fork.
//!
//! Run with `cargo bench --bench process`.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

use crate::common::{Case, PY_REPORT, Table, compare, headline, python, rounds};
use multiproc::{Process, ProcessBuilder};

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
    p.join(None).unwrap();
}

fn ours_returning_a_value() {
    let p = Process::new(|| 42u64);
    p.start().unwrap();
    assert_eq!(p.join(None).unwrap(), 42);
}

fn ours_daemon() {
    let p = ProcessBuilder::new().daemon(true).target(|| ());
    p.start().unwrap();
    p.join(None).unwrap();
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
        "Process spawn + join (empty child)",
        &stats[2],
        Some(("fork/_exit/waitpid", &stats[0])),
        py.as_ref(),
    );
}
