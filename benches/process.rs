//! Spawn + join of an empty child: `multiproc::Process` against a raw `fork`/`_exit`/`waitpid`
//! and Python's `multiprocessing.Process` (fork start method), in the same run.
//!
//! Target (issue 3 §6): `Process` spawn+join ≤ 1.25× the raw fork.
//!
//! Run with `cargo bench --bench process`.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

mod common;

use common::{Case, PY_REPORT, Table, compare, python, rounds};
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

/// The same plus what `Process` needs to do its job: a result pipe and a pidfd, the child
/// writing one byte (the floor for a process that returns a value and has a sentinel).
fn raw_fork_pipe_pidfd() {
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) }, 0);
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        unsafe {
            libc::close(fds[0]);
            libc::write(fds[1], [0u8].as_ptr().cast(), 1);
            libc::_exit(0);
        }
    }
    unsafe { libc::close(fds[1]) };
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    assert!(pidfd >= 0);
    let mut pfd = [
        libc::pollfd { fd: pidfd, events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: fds[0], events: libc::POLLIN, revents: 0 },
    ];
    loop {
        unsafe { libc::poll(pfd.as_mut_ptr(), 2, -1) };
        if pfd[0].revents != 0 {
            break;
        }
    }
    let mut b = [0u8; 16];
    unsafe { libc::read(fds[0], b.as_mut_ptr().cast(), b.len()) };
    let mut status = 0;
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    unsafe {
        libc::close(pidfd);
        libc::close(fds[0]);
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

fn main() {
    let rounds = rounds(30);
    let iters = 100;
    println!("# spawn + join of an empty child ({rounds} rounds × {iters} per case, interleaved)");
    let mut cases = [
        Case::new("raw fork/_exit/waitpid", raw_fork_wait),
        Case::new("raw fork + result pipe + pidfd", raw_fork_pipe_pidfd),
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
}
