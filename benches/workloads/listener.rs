//! `connection::Listener`/`Client` against a raw socket ping-pong written here with libc, and
//! Python's `multiprocessing.connection.Listener`/`Client`, in the same run: an 8-byte round
//! trip to an echo child that connected with `Client`, over `AF_UNIX` (a filesystem path) and
//! loopback TCP, with both ends on one CPU and on two.
//!
//! The raw baseline exchanges 12-byte messages (Python's 4-byte header and the payload) with one
//! `send` and one `read` each way; multiproc and Python read the header and the payload with two
//! `read`s, as the framing requires when nothing may be read ahead. No authkey: the handshake
//! happens once per connection, not per message.
//!
//! Target (issue 17 §7): ≥ 10× faster than Python.
//!
//! Run with `cargo bench --bench listener`.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, IntoRawFd};

use crate::common::raw::{Placement, pin, placements, raw_read_full, raw_write_all};
use crate::common::{Case, PY_REPORT, Table, compare, headline, python, rounds};
use multiproc::Process;
use multiproc::connection::{Address, Client, Listener};

/// A connected pair of sockets of the family: (the parent's end, the child's end), as raw fds.
fn raw_pair(tcp: bool) -> (i32, i32) {
    if tcp {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        c.set_nodelay(true).unwrap();
        s.set_nodelay(true).unwrap();
        (c.into_raw_fd(), s.into_raw_fd())
    } else {
        let mut fds = [0; 2];
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0);
        (fds[0], fds[1])
    }
}

const PY_ROUND_TRIP: &str = r#"
import multiprocessing as mp, os, time
from multiprocessing.connection import Listener, Client
def echo(address):
    os.sched_setaffinity(0, {CHILD_CPU})
    c = Client(address)
    while True:
        try:
            m = c.recv_bytes()
        except EOFError:
            break
        c.send_bytes(m)
if __name__ == "__main__":
    mp.set_start_method("fork")
    os.sched_setaffinity(0, {PARENT_CPU})
    l = Listener(ADDRESS)
    p = mp.Process(target=echo, args=(l.address,))
    p.start()
    a = l.accept()
    msg = b"x" * 8
    def rt():
        a.send_bytes(msg)
        a.recv_bytes()
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
    l.close()
    report(samples)
"#;

fn round_trip(at: Placement, tcp: bool) {
    let family = if tcp { "TCP loopback" } else { "AF_UNIX" };
    let rounds = rounds(30);
    let iters = 5000;
    println!();
    println!(
        "# Listener/Client 8-byte round trip, {family}, {} ({rounds} rounds × {iters}, interleaved)",
        at.name
    );
    pin(at.parent);

    // Raw echo child over a connected pair of the same family.
    let (raw_parent, raw_child_end) = raw_pair(tcp);
    let raw_pid = unsafe { libc::fork() };
    assert!(raw_pid >= 0);
    if raw_pid == 0 {
        pin(at.child);
        unsafe { libc::close(raw_parent) };
        let mut buf = [0u8; 12];
        while raw_read_full(raw_child_end, &mut buf) {
            raw_write_all(raw_child_end, &buf);
        }
        unsafe { libc::_exit(0) };
    }
    unsafe { libc::close(raw_child_end) };

    // Our echo child: connects with `Client`, echoes until end of file.
    let path = std::env::temp_dir().join(format!("mp-bench-listener-{}", std::process::id()));
    let address = if tcp { Address::tcp("127.0.0.1:0").unwrap() } else { Address::Unix(path) };
    let listener = Listener::bind(address).unwrap();
    let target = listener.address().clone();
    let listener_fd = listener.as_raw_fd();
    let echo = Process::builder().cpu(at.child).target(move || {
        unsafe {
            libc::close(raw_parent);
            libc::close(listener_fd);
        }
        let conn = Client::new(target).connect().unwrap();
        while let Ok(m) = conn.recv_bytes() {
            if conn.send_bytes(&m).is_err() {
                break;
            }
        }
    });
    echo.start().unwrap();
    let ours = listener.accept().unwrap();

    let mut raw_msg = [0u8; 12];
    raw_msg[..4].copy_from_slice(&8i32.to_be_bytes());
    let msg = [7u8; 8];
    let mut cases = [
        Case::new("raw 12-byte send/read", || {
            raw_write_all(raw_parent, &raw_msg);
            let mut buf = [0u8; 12];
            assert!(raw_read_full(raw_parent, &mut buf));
        }),
        Case::new("multiproc send_bytes/recv_bytes", || {
            ours.send_bytes(&msg).unwrap();
            assert_eq!(ours.recv_bytes().unwrap().len(), 8);
        }),
    ];
    let stats = compare(rounds, iters, &mut cases);
    let names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    drop(cases);

    let py_address = if tcp {
        "('127.0.0.1', 0)".to_string()
    } else {
        format!("{:?}", format!("/tmp/mp-bench-listener-py-{}", std::process::id()))
    };
    let script = format!(
        "{PY_REPORT}\n{}",
        PY_ROUND_TRIP
            .replace("ROUNDS", &rounds.min(10).to_string())
            .replace("ITERS", "5000")
            .replace("ADDRESS", &py_address)
            .replace("PARENT_CPU", &at.parent.to_string())
            .replace("CHILD_CPU", &at.child.to_string())
    );
    let py = python("Listener/Client send_bytes/recv_bytes", &script);

    let table =
        Table::new(&format!("Listener/Client 8-byte round trip, {family}, {}", at.name), None);
    let base = ("raw", &stats[0]);
    for (name, s) in names.iter().zip(&stats) {
        table.row(name, s, Some(base));
    }
    if let Some(s) = &py {
        table.row("Python Listener/Client send_bytes/recv_bytes", s, Some(base));
        let r = s.median / stats[1].median;
        let verdict = if r >= 10.0 { "met" } else { "MISSED" };
        println!("target: ≥ 10× faster than Python: {r:.2}× — {verdict}");
    }
    headline(
        &format!("Listener/Client 8-byte round trip, {family}, {}", at.name),
        &stats[1],
        Some(("raw socket ping-pong", &stats[0])),
        py.as_ref(),
    );

    drop(ours);
    echo.join().unwrap();
    drop(listener);
    unsafe { libc::close(raw_parent) };
    let mut status = 0;
    unsafe { libc::waitpid(raw_pid, &mut status, 0) };
}

pub fn run() {
    let all = multiproc::sys::affinity::sched_getaffinity(None).unwrap();
    // Read before any pinning: each round trip pins this process.
    let placements = placements();
    for tcp in [false, true] {
        for &at in &placements {
            round_trip(at, tcp);
        }
    }
    multiproc::sys::affinity::sched_setaffinity(None, &all).unwrap();
}
