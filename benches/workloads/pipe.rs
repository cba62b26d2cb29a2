//! `Pipe`/`Connection` against raw `socketpair` code written here with libc, and Python's
//! `multiprocessing.Pipe`, in the same run:
//!
//! - an 8-byte round trip to an echo child (ping-pong);
//! - a 64 MiB message from a child to the parent (on request).
//!
//! Targets (issue 3 §6): round trip ≤ 1.2× the raw socketpair; 64 MiB ≥ 0.9× the raw socketpair's
//! throughput.
//!
//! Run with `cargo bench --bench pipe`.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

use std::os::fd::AsRawFd;

use crate::common::raw::{Placement, pin, placements, raw_read_full, raw_write_all};
use crate::common::{Case, PY_REPORT, Table, compare, headline, python, rounds};
use multiproc::{Process, pipe};

// ---------------------------------------------------------------------------------------------
// Raw baselines (libc only)
// ---------------------------------------------------------------------------------------------

fn raw_socketpair() -> (i32, i32) {
    let mut fds = [0; 2];
    let r = unsafe {
        libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr())
    };
    assert_eq!(r, 0, "socketpair: {}", std::io::Error::last_os_error());
    (fds[0], fds[1])
}

/// A raw child: `child(fd)` runs after closing the parent's end, then `_exit(0)`.
fn raw_child(parent_end: i32, child_end: i32, cpu: usize, child: impl FnOnce(i32)) -> i32 {
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        pin(cpu);
        unsafe { libc::close(parent_end) };
        child(child_end);
        unsafe { libc::_exit(0) };
    }
    unsafe { libc::close(child_end) };
    pid
}

/// Closes, in a child, the parent-side fds it inherited through `fork`: while a child holds a
/// copy of the parent's end, the peer never sees end-of-file (and cleanup would deadlock).
fn close_in_child(fds: &[i32]) {
    for &fd in fds {
        unsafe { libc::close(fd) };
    }
}

fn raw_reap(pid: i32) {
    let mut status = 0;
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

// ---------------------------------------------------------------------------------------------
// Round trip
// ---------------------------------------------------------------------------------------------

const PY_ROUND_TRIP: &str = r#"
import multiprocessing as mp, os, time
def echo(c, other):
    os.sched_setaffinity(0, {CHILD_CPU})
    other.close()  # the parent's end, inherited through fork: or closing it never gives EOF
    while True:
        try:
            m = c.recv_bytes()
        except EOFError:
            break
        c.send_bytes(m)
if __name__ == "__main__":
    mp.set_start_method("fork")
    os.sched_setaffinity(0, {PARENT_CPU})
    a, b = mp.Pipe()
    p = mp.Process(target=echo, args=(b, a))
    p.start()
    b.close()
    msg = b"x" * 8
    def bytes_rt():
        a.send_bytes(msg)
        a.recv_bytes()
    def obj_rt():
        a.send(12345678)
        a.recv()
    rt = OBJ and obj_rt or bytes_rt
    for _ in range(2000):
        rt()
    samples = []
    for _ in range(ROUNDS):
        t = time.perf_counter_ns()
        for _ in range(ITERS):
            rt()
        samples.append((time.perf_counter_ns() - t) / ITERS)
    a.close()
    p.join()
    report(samples)
"#;

fn round_trip(at: Placement) {
    let rounds = rounds(30);
    let iters = 5000;
    println!();
    println!(
        "# 8-byte round trip to an echo child, {} ({rounds} rounds × {iters}, interleaved)",
        at.name
    );
    pin(at.parent);

    // Raw socketpair echo child.
    let (raw_parent, raw_child_end) = raw_socketpair();
    let raw_pid = raw_child(raw_parent, raw_child_end, at.child, |fd| {
        let mut buf = [0u8; 8];
        while raw_read_full(fd, &mut buf) {
            raw_write_all(fd, &buf);
        }
    });

    // Raw pipe pair echo child (DESIGN.md §5's "raw pipe ping-pong").
    let mut p1 = [0; 2];
    let mut p2 = [0; 2];
    unsafe {
        assert_eq!(libc::pipe2(p1.as_mut_ptr(), libc::O_CLOEXEC), 0);
        assert_eq!(libc::pipe2(p2.as_mut_ptr(), libc::O_CLOEXEC), 0);
    }
    let pipe_pid = unsafe { libc::fork() };
    if pipe_pid == 0 {
        pin(at.child);
        close_in_child(&[p1[1], p2[0], raw_parent]);
        let mut buf = [0u8; 8];
        while raw_read_full(p1[0], &mut buf) {
            unsafe { libc::write(p2[1], buf.as_ptr().cast(), 8) };
        }
        unsafe { libc::_exit(0) };
    }
    unsafe {
        libc::close(p1[0]);
        libc::close(p2[1]);
    }

    // Our echo child.
    let (ours, theirs) = pipe(true).unwrap();
    let inherited = [raw_parent, p1[1], p2[0], ours.as_raw_fd()];
    let echo = Process::builder().cpu(at.child).target(move || {
        close_in_child(&inherited);
        while let Ok(m) = theirs.recv_bytes() {
            if theirs.send_bytes(&m).is_err() {
                break;
            }
        }
    });
    echo.start().unwrap();

    // Our echo child over two one-way pipes (`Pipe(duplex=False)`), against the raw pipe pair.
    let (down_r, down_w) = pipe(false).unwrap();
    let (up_r, up_w) = pipe(false).unwrap();
    let inherited =
        [raw_parent, p1[1], p2[0], ours.as_raw_fd(), down_w.as_raw_fd(), up_r.as_raw_fd()];
    let simplex_echo = Process::builder().cpu(at.child).target(move || {
        close_in_child(&inherited);
        while let Ok(m) = down_r.recv::<u64>() {
            if up_w.send(&m).is_err() {
                break;
            }
        }
    });
    simplex_echo.start().unwrap();

    let msg = [7u8; 8];
    let mut cases = [
        Case::new("raw socketpair write/read", || {
            raw_write_all(raw_parent, &msg);
            let mut buf = [0u8; 8];
            assert!(raw_read_full(raw_parent, &mut buf));
        }),
        Case::new("raw pipe pair write/read", || {
            unsafe { libc::write(p1[1], msg.as_ptr().cast(), 8) };
            let mut buf = [0u8; 8];
            assert!(raw_read_full(p2[0], &mut buf));
        }),
        Case::new("multiproc send_bytes/recv_bytes", || {
            ours.send_bytes(&msg).unwrap();
            let m = ours.recv_bytes().unwrap();
            assert_eq!(m.len(), 8);
        }),
        Case::new("multiproc send(&u64)/recv::<u64>", || {
            ours.send(&0x0102_0304_0506_0708u64).unwrap();
            assert_eq!(ours.recv::<u64>().unwrap(), 0x0102_0304_0506_0708);
        }),
        Case::new("multiproc send_bytes/recv_bytes_into", || {
            ours.send_bytes(&msg).unwrap();
            let mut buf = [0u8; 16];
            assert_eq!(ours.recv_bytes_into(&mut buf, 0).unwrap(), 8);
        }),
        Case::new("multiproc send/recv, two Pipe(duplex=False)", || {
            down_w.send(&0x0102_0304_0506_0708u64).unwrap();
            assert_eq!(up_r.recv::<u64>().unwrap(), 0x0102_0304_0506_0708);
        }),
    ];
    let stats = compare(rounds, iters, &mut cases);
    let names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    drop(cases);

    let py_rounds = rounds.min(10).to_string();
    let py = |obj: bool| {
        let script = format!(
            "{PY_REPORT}\n{}",
            PY_ROUND_TRIP
                .replace("ROUNDS", &py_rounds)
                .replace("ITERS", "5000")
                .replace("OBJ", if obj { "True" } else { "False" })
                .replace("PARENT_CPU", &at.parent.to_string())
                .replace("CHILD_CPU", &at.child.to_string())
        );
        python(if obj { "Pipe send/recv" } else { "Pipe send_bytes/recv_bytes" }, &script)
    };
    let py_bytes = py(false);
    let py_obj = py(true);

    let table = Table::new(&format!("8-byte round trip, {}", at.name), None);
    let base = ("raw socketpair", &stats[0]);
    for (name, s) in names.iter().zip(&stats) {
        if name.contains("duplex=False") {
            table.row(name, s, Some(("raw pipe pair", &stats[1])));
        } else {
            table.row(name, s, Some(base));
        }
    }
    if let Some(s) = &py_bytes {
        table.row("Python Pipe send_bytes/recv_bytes", s, Some(base));
    }
    if let Some(s) = &py_obj {
        table.row("Python Pipe send/recv (pickle)", s, Some(base));
    }
    table.target(
        &format!("round trip (send_bytes/recv_bytes) vs raw socketpair, {}", at.name),
        &stats[2],
        &stats[0],
        1.2,
    );
    table.target(
        &format!("round trip (typed send/recv) vs raw socketpair, {}", at.name),
        &stats[3],
        &stats[0],
        1.2,
    );
    headline(
        &format!("Pipe 8-byte send/recv round trip, {}", at.name),
        &stats[3],
        Some(("socketpair ping-pong", &stats[0])),
        py_obj.as_ref(),
    );

    unsafe {
        libc::close(raw_parent);
        libc::close(p1[1]);
        libc::close(p2[0]);
    }
    raw_reap(raw_pid);
    raw_reap(pipe_pid);
    drop(ours);
    echo.join().unwrap();
    drop(down_w);
    simplex_echo.join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 64 MiB
// ---------------------------------------------------------------------------------------------

const BIG: usize = 64 << 20;

const PY_BIG: &str = r#"
import multiprocessing as mp, os, time
def sender(c, other):
    os.sched_setaffinity(0, {CHILD_CPU})
    other.close()  # the parent's end, inherited through fork
    data = b"\x01" * (64 << 20)
    while True:
        try:
            c.recv_bytes()
        except EOFError:
            break
        c.send_bytes(data)
if __name__ == "__main__":
    mp.set_start_method("fork")
    os.sched_setaffinity(0, {PARENT_CPU})
    a, b = mp.Pipe()
    p = mp.Process(target=sender, args=(b, a))
    p.start()
    b.close()
    def once():
        a.send_bytes(b"r")
        m = a.recv_bytes()
        assert len(m) == 64 << 20
    for _ in range(2):
        once()
    samples = []
    for _ in range(ROUNDS):
        t = time.perf_counter_ns()
        for _ in range(ITERS):
            once()
        samples.append((time.perf_counter_ns() - t) / ITERS)
    a.close()
    p.join()
    report(samples)
"#;

fn big(at: Placement) {
    let rounds = rounds(15);
    let iters = 3;
    println!();
    println!(
        "# 64 MiB from a child on request, {} ({rounds} rounds × {iters}, interleaved)",
        at.name
    );
    pin(at.parent);

    // Raw sender: on each 1-byte request, an 8-byte length then the data, in one writev.
    let (raw_parent, raw_child_end) = raw_socketpair();
    let raw_pid = raw_child(raw_parent, raw_child_end, at.child, |fd| {
        let data = vec![1u8; BIG];
        let header = (BIG as u64).to_le_bytes();
        let mut req = [0u8; 1];
        while raw_read_full(fd, &mut req) {
            raw_write_all(fd, &header);
            raw_write_all(fd, &data);
        }
    });
    let raw_request = |into: Option<&mut Vec<u8>>| {
        raw_write_all(raw_parent, b"r");
        let mut header = [0u8; 8];
        assert!(raw_read_full(raw_parent, &mut header));
        let len = u64::from_le_bytes(header) as usize;
        match into {
            // An owned message: allocate it, then read into it.
            None => {
                let mut v: Vec<u8> = Vec::with_capacity(len);
                let mut done = 0;
                while done < len {
                    let n = unsafe {
                        libc::read(raw_parent, v.as_mut_ptr().add(done).cast(), len - done)
                    };
                    assert!(n > 0);
                    done += n as usize;
                }
                unsafe { v.set_len(len) };
                std::hint::black_box(&v);
            }
            Some(buf) => assert!(raw_read_full(raw_parent, &mut buf[..len])),
        }
    };

    let (ours, theirs) = pipe(true).unwrap();
    let inherited = [raw_parent, ours.as_raw_fd()];
    let sender = Process::builder().cpu(at.child).target(move || {
        close_in_child(&inherited);
        let data = vec![1u8; BIG];
        while theirs.recv_bytes().is_ok() {
            if theirs.send_bytes(&data).is_err() {
                break;
            }
        }
    });
    sender.start().unwrap();

    let mut raw_buf = vec![0u8; BIG];
    let mut our_buf = vec![0u8; BIG];
    let raw_request = std::cell::RefCell::new(raw_request);
    let mut cases = [
        Case::new("raw socketpair, fresh Vec per message", || (raw_request.borrow_mut())(None)),
        Case::new("raw socketpair, into a reused buffer", || {
            (raw_request.borrow_mut())(Some(&mut raw_buf))
        }),
        Case::new("multiproc recv_bytes (fresh Vec)", || {
            ours.send_bytes(b"r").unwrap();
            let m = ours.recv_bytes().unwrap();
            assert_eq!(m.len(), BIG);
        }),
        Case::new("multiproc recv_bytes_into (reused buffer)", || {
            ours.send_bytes(b"r").unwrap();
            assert_eq!(ours.recv_bytes_into(&mut our_buf, 0).unwrap(), BIG);
        }),
    ];
    let stats = compare(rounds, iters, &mut cases);
    let names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    drop(cases);

    let script = format!(
        "{PY_REPORT}\n{}",
        PY_BIG
            .replace("ROUNDS", &rounds.min(8).to_string())
            .replace("ITERS", "3")
            .replace("PARENT_CPU", &at.parent.to_string())
            .replace("CHILD_CPU", &at.child.to_string())
    );
    let py = python("Pipe 64 MiB", &script);

    let table = Table::new(&format!("64 MiB message, {}", at.name), Some(BIG as u64));
    let base = ("raw fresh Vec", &stats[0]);
    for (name, s) in names.iter().zip(&stats) {
        table.row(name, s, Some(base));
    }
    if let Some(s) = &py {
        table.row("Python Pipe recv_bytes", s, Some(base));
    }
    table.target_throughput(
        "64 MiB recv_bytes vs raw socketpair (fresh Vec)",
        &stats[2],
        &stats[0],
        0.9,
    );
    table.target_throughput(
        "64 MiB recv_bytes_into vs raw socketpair (reused buffer)",
        &stats[3],
        &stats[1],
        0.9,
    );
    headline(
        "Pipe 64 MiB message (recv_bytes)",
        &stats[2],
        Some(("socketpair read", &stats[0])),
        py.as_ref(),
    );

    unsafe { libc::close(raw_parent) };
    raw_reap(raw_pid);
    drop(ours);
    sender.join().unwrap();
}

/// Runs every case of this file and prints its tables.
pub fn run() {
    let placements = placements();
    let all = multiproc::sys::affinity::sched_getaffinity(None).unwrap();
    for &at in &placements {
        round_trip(at);
    }
    // Streaming: the two ends on different CPUs when there are two.
    big(*placements.last().unwrap());
    multiproc::sys::affinity::sched_setaffinity(None, &all).unwrap();
}
