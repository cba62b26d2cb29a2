//! Issue 19, bug 3: a process forked after a pool exists must not be able to make the pool's
//! workers run code. Children the crate forks close the pool's channels; a child forked behind
//! the crate's back (a raw `libc::fork`) still holds them, but a frame it writes is refused by
//! the worker, never run, and the pool reports it.
//!
//! Descriptors are compared by socket inode (`/proc/<pid>/fd/N -> socket:[inode]`), so a
//! channel is recognised in another process whatever its number there.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

mod common;

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Exit, SharedPage, TEST_LIMIT, fork_child, watchdog};
use multiproc::{Pool, PoolError, Process};

/// The tests of this file compare the sockets the process holds before and after making a pool:
/// they run one at a time so that another test's pool does not show up in the difference.
static SERIAL: Mutex<()> = Mutex::new(());

/// How long the pool may take to report a refused frame (well inside the watchdog's limit).
const NOTICE_LIMIT: Duration = Duration::from_secs(10);

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `(fd, socket inode)` of every socket process `pid` (`"self"` for this one) holds.
fn sockets(pid: &str) -> Vec<(i32, u64)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return out };
    for entry in dir.flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(target) = std::fs::read_link(entry.path()) else { continue };
        let target = target.to_string_lossy().into_owned();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse().ok())
        {
            out.push((fd, inode));
        }
    }
    out
}

fn inodes(pid: &str) -> HashSet<u64> {
    sockets(pid).into_iter().map(|(_, inode)| inode).collect()
}

/// Drives the pool until all its workers are live (the parent has received every channel).
fn wait_for_workers(pool: &Pool) {
    let start = Instant::now();
    while pool.worker_pids().len() < pool.processes() {
        assert_eq!(pool.apply(|x: u32| x + 1, 1).unwrap(), 2);
        assert!(start.elapsed() < TEST_LIMIT, "workers never all started");
    }
}

/// Makes a pool and returns it with the socket inodes it added to this process (its control
/// socket and its worker channels).
fn pool_with_sockets(n: usize) -> (Pool, HashSet<u64>) {
    let before = inodes("self");
    let pool = Pool::new(n).unwrap();
    wait_for_workers(&pool);
    let added: HashSet<u64> = inodes("self").difference(&before).copied().collect();
    assert!(added.len() > n, "expected a control socket and {n} channels, found {added:?}");
    (pool, added)
}

#[test]
fn a_process_forked_after_a_pool_holds_none_of_its_channels() {
    let _w = watchdog(TEST_LIMIT);
    let _s = serial();
    let (pool, pool_sockets) = pool_with_sockets(2);
    // An unrelated socket the child must keep: the registry closes the pool's, nothing else.
    let (mine, _other) = std::os::unix::net::UnixStream::pair().unwrap();
    let mine_inode = sockets("self")
        .into_iter()
        .find(|&(fd, _)| fd == std::os::fd::AsRawFd::as_raw_fd(&mine))
        .map(|(_, inode)| inode)
        .unwrap();

    let child = Process::new(|| inodes("self").into_iter().collect::<Vec<u64>>());
    child.start().unwrap();
    let held: HashSet<u64> = child.join_timeout(TEST_LIMIT).unwrap().into_iter().collect();

    let leaked: Vec<_> = held.intersection(&pool_sockets).collect();
    assert!(leaked.is_empty(), "the child holds the pool's sockets {leaked:?}");
    assert!(held.contains(&mine_inode), "the child lost a socket that is not the pool's");
    // The parent still has them, and the pool works.
    assert!(inodes("self").is_superset(&pool_sockets));
    assert_eq!(pool.apply(|x: u32| x * 2, 21).unwrap(), 42);
}

#[test]
fn another_pools_server_and_workers_hold_none_of_its_channels() {
    let _w = watchdog(TEST_LIMIT);
    let _s = serial();
    let (first, first_sockets) = pool_with_sockets(2);
    let second = Pool::new(1).unwrap();
    wait_for_workers(&second);

    let mut pids = vec![second.server_pid()];
    pids.extend(second.worker_pids());
    for pid in pids {
        let held = inodes(&pid.as_raw_nonzero().to_string());
        assert!(!held.is_empty(), "process {pid:?} holds no socket: cannot read its fds?");
        let leaked: Vec<_> = held.intersection(&first_sockets).collect();
        assert!(leaked.is_empty(), "process {pid:?} of the second pool holds {leaked:?}");
    }
    // Both pools work: the second server closed the first pool's sockets, not its own.
    assert_eq!(first.apply(|x: u32| x + 1, 1).unwrap(), 2);
    assert_eq!(second.apply(|x: u32| x + 1, 2).unwrap(), 3);
}

/// Where `forged_work` records that it ran: the address of an `AtomicU32` in a page shared by
/// the test and the workers, stored before the pool is made so that the workers inherit it.
static RAN_AT: AtomicUsize = AtomicUsize::new(0);

/// What a forged frame names as the "trampoline": it must never run.
#[inline(never)]
fn forged_work(_ctx: usize, _payload: &[u8], _out: &mut Vec<u8>) {
    let at = RAN_AT.load(Ordering::SeqCst);
    if at != 0 {
        unsafe { &*(at as *const AtomicU32) }.store(1, Ordering::SeqCst);
    }
}

/// A TASK frame as a process that only knows the wire format would write it: `seq`, job kind
/// 0 (code), `forged_work`'s address, a 0 context word, then an 8-byte guess where the secret
/// goes (0) and an empty payload. Built on the stack: written by a child of a raw fork.
fn forged_frame(seq: u64) -> [u8; 8 + 42] {
    let mut f = [0u8; 8 + 42];
    f[..8].copy_from_slice(&42u64.to_le_bytes());
    f[8] = 1; // TASK
    f[9..17].copy_from_slice(&seq.to_le_bytes());
    f[17] = 0; // JOB_CODE
    let addr = forged_work as *const () as usize as u64;
    f[18..26].copy_from_slice(&addr.to_le_bytes());
    // ctx 0, secret guess 0, payload count 0: already zero.
    f
}

#[test]
fn a_forged_task_frame_is_refused_never_run_and_reported() {
    let _w = watchdog(TEST_LIMIT);
    let _s = serial();
    let page = SharedPage::new(4096);
    let ran: &AtomicU32 = unsafe { page.get(0) };
    RAN_AT.store(ran as *const AtomicU32 as usize, Ordering::SeqCst);

    let (pool, pool_sockets) = pool_with_sockets(2);
    // The parent's ends of the worker channels (stream sockets; the control socket is a
    // seqpacket one), as a child of a raw fork inherits them.
    let channels: Vec<i32> = sockets("self")
        .into_iter()
        .filter(|(fd, inode)| {
            let (mut ty, mut len) = (0i32, 4u32);
            pool_sockets.contains(inode)
                && unsafe {
                    libc::getsockopt(
                        *fd,
                        libc::SOL_SOCKET,
                        libc::SO_TYPE,
                        (&raw mut ty).cast(),
                        &mut len,
                    )
                } == 0
                && ty == libc::SOCK_STREAM
        })
        .map(|(fd, _)| fd)
        .collect();
    assert_eq!(channels.len(), 2, "expected one channel per worker");
    let frames = [forged_frame(0), forged_frame(1), forged_frame(1 << 40)];

    // A raw fork: the crate does not see it, so the child keeps every channel.
    let child = fork_child(|| {
        let mut sent = 0;
        for &fd in &channels {
            for frame in &frames {
                let n = unsafe {
                    libc::send(
                        fd,
                        frame.as_ptr().cast(),
                        frame.len(),
                        libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                    )
                };
                if n == frame.len() as isize {
                    sent += 1;
                }
            }
        }
        sent
    });
    // At least the first frame on each channel goes through (the worker exits once it has
    // refused one, so the later ones may find the channel closed).
    match child.wait(TEST_LIMIT) {
        Exit::Code(sent) => assert!(sent >= 2, "the child wrote only {sent} frames"),
        other => panic!("the forging child ended with {other:?}"),
    }

    // The workers refuse the frames and say so: the pool stops, with the reason.
    let start = Instant::now();
    let err = loop {
        match pool.apply(|x: u32| x + 1, 1) {
            Ok(2) => assert!(start.elapsed() < NOTICE_LIMIT, "the pool never noticed"),
            Ok(other) => panic!("wrong result {other}"),
            Err(e) => break e,
        }
    };
    match &err {
        PoolError::BrokenPool(msg) => {
            assert!(msg.contains("refused") && msg.contains("secret"), "unexpected reason: {msg}")
        }
        other => panic!("expected BrokenPool, got {other:?}"),
    }
    assert_eq!(ran.load(Ordering::SeqCst), 0, "a worker ran the forged function");
    RAN_AT.store(0, Ordering::SeqCst);
    drop(pool);
    assert_eq!(ran.load(Ordering::SeqCst), 0, "a worker ran the forged function");
}

#[test]
fn a_forged_frame_with_a_huge_length_is_refused_before_it_is_buffered() {
    let _w = watchdog(TEST_LIMIT);
    let _s = serial();
    let (pool, pool_sockets) = pool_with_sockets(1);
    let channel = sockets("self")
        .into_iter()
        .find(|(fd, inode)| {
            let (mut ty, mut len) = (0i32, 4u32);
            pool_sockets.contains(inode)
                && unsafe {
                    libc::getsockopt(
                        *fd,
                        libc::SOL_SOCKET,
                        libc::SO_TYPE,
                        (&raw mut ty).cast(),
                        &mut len,
                    )
                } == 0
                && ty == libc::SOCK_STREAM
        })
        .map(|(fd, _)| fd)
        .unwrap();
    // A length of 2^60 and a STOP kind without the secret: a worker that trusted the length
    // would try to allocate it (and abort); one that trusted the kind would just exit quietly.
    let mut frame = [0u8; 8 + 9];
    frame[..8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    frame[8] = 2; // STOP
    let child = fork_child(|| {
        let n = unsafe {
            libc::send(
                channel,
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        i32::from(n == frame.len() as isize)
    });
    assert_eq!(child.wait(TEST_LIMIT), Exit::Code(1));
    let start = Instant::now();
    let err = loop {
        match pool.apply(|x: u32| x + 1, 1) {
            Ok(_) => assert!(start.elapsed() < NOTICE_LIMIT, "the pool never noticed"),
            Err(e) => break e,
        }
    };
    assert!(matches!(&err, PoolError::BrokenPool(m) if m.contains("refused")), "{err:?}");
}
