//! Pipes and socketpairs: close-on-exec, EOF, no `SIGPIPE`, whole-buffer transfers across
//! processes, and `poll` deadlines.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

mod common;

use multiproc_sys::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use common::{Child, Exit, TEST_LIMIT, watchdog};
use multiproc_sys::Errno;
use multiproc_sys::io::fd::{bytes_available, set_nonblocking};
use multiproc_sys::io::pipe::{PIPE_BUF, pipe};
use multiproc_sys::io::poll::{PollFd, PollFlags, poll, wait_readable, wait_writable};
use multiproc_sys::io::socket::{is_socket, socketpair};
use multiproc_sys::io::stream::{
    read, read_full, send_all, write_all, write_all_vectored, writev_all,
};
use multiproc_sys::time::Deadline;

/// Serialises the tests that change process-wide signal dispositions.
static SIGNALS: Mutex<()> = Mutex::new(());

/// Forks (read side) versus making a peer dead (write side). Tests run on threads of one
/// process, and a child forked by one test inherits every fd the process has open at that
/// moment: had it forked between `pipe()` and `drop(read_end)`, its copy would keep the reader
/// alive and a write that should fail with `EPIPE` would succeed. (Forks only *delay* the EOF
/// other tests wait for, until that child exits, which is harmless.)
static FORKS: RwLock<()> = RwLock::new(());

/// [`common::fork_child`], never while a test is making a dead peer.
fn fork_child(f: impl FnOnce() -> i32) -> Child {
    let _no_dead_peer_in_the_making = FORKS.read().unwrap_or_else(|e| e.into_inner());
    common::fork_child(f)
}

/// The write end of a pipe whose read end is closed in every process.
fn dead_pipe_writer() -> OwnedFd {
    let _no_forks = FORKS.write().unwrap_or_else(|e| e.into_inner());
    let (r, w) = pipe().unwrap();
    drop(r);
    w
}

/// One end of a socketpair whose other end is closed in every process.
fn dead_socket() -> OwnedFd {
    let _no_forks = FORKS.write().unwrap_or_else(|e| e.into_inner());
    let (a, b) = socketpair().unwrap();
    drop(b);
    a
}

fn has_cloexec(fd: BorrowedFd<'_>) -> bool {
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
    assert!(flags >= 0);
    flags & libc::FD_CLOEXEC != 0
}

fn after(d: Duration) -> Deadline {
    Deadline::after(Some(d))
}

/// Sets `sig`'s disposition, returning the previous one.
fn set_disposition(
    sig: libc::c_int,
    handler: libc::sighandler_t,
    flags: libc::c_int,
) -> libc::sigaction {
    unsafe {
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = handler;
        new.sa_flags = flags;
        libc::sigemptyset(&mut new.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(sig, &new, &mut old), 0);
        old
    }
}

fn restore_disposition(sig: libc::c_int, old: &libc::sigaction) {
    assert_eq!(unsafe { libc::sigaction(sig, old, std::ptr::null_mut()) }, 0);
}

/// `SIGPIPE` at its default disposition (kill the process) while alive. The Rust runtime
/// ignores `SIGPIPE`, which would hide the very bug these tests look for.
struct DefaultSigpipe {
    old: libc::sigaction,
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl DefaultSigpipe {
    fn new() -> Self {
        let lock = SIGNALS.lock().unwrap_or_else(|e| e.into_inner());
        let old = set_disposition(libc::SIGPIPE, libc::SIG_DFL, 0);
        DefaultSigpipe { old, _lock: lock }
    }
}

impl Drop for DefaultSigpipe {
    fn drop(&mut self) {
        restore_disposition(libc::SIGPIPE, &self.old);
    }
}

fn thread_mask() -> libc::sigset_t {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut set), 0);
        set
    }
}

fn sigpipe_pending() -> bool {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        assert_eq!(libc::sigpending(&mut set), 0);
        libc::sigismember(&set, libc::SIGPIPE) == 1
    }
}

fn sigpipe_blocked() -> bool {
    let mask = thread_mask();
    unsafe { libc::sigismember(&mask, libc::SIGPIPE) == 1 }
}

#[test]
fn pipe_and_socketpair_fds_are_close_on_exec() {
    let (r, w) = pipe().unwrap();
    assert!(has_cloexec(r.as_fd()) && has_cloexec(w.as_fd()));
    let (a, b) = socketpair().unwrap();
    assert!(has_cloexec(a.as_fd()) && has_cloexec(b.as_fd()));
    assert!(is_socket(a.as_fd()) && is_socket(b.as_fd()));
    assert!(!is_socket(r.as_fd()) && !is_socket(w.as_fd()));
}

#[test]
fn pipe_carries_bytes_one_way_and_socketpair_both_ways() {
    let (r, w) = pipe().unwrap();
    write_all(w.as_fd(), b"ping").unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(read_full(r.as_fd(), &mut buf).unwrap(), 4);
    assert_eq!(&buf, b"ping");

    let blocked_before = sigpipe_blocked();
    writev_all(w.as_fd(), &[b"po", b"", b"ng"]).unwrap();
    assert_eq!(read_full(r.as_fd(), &mut buf).unwrap(), 4);
    assert_eq!(&buf, b"pong");
    assert_eq!(sigpipe_blocked(), blocked_before, "writev_all restores the mask");

    let (a, b) = socketpair().unwrap();
    send_all(a.as_fd(), b"to b").unwrap();
    write_all(b.as_fd(), b"to a").unwrap();
    assert_eq!(read_full(b.as_fd(), &mut buf).unwrap(), 4);
    assert_eq!(&buf, b"to b");
    assert_eq!(read_full(a.as_fd(), &mut buf).unwrap(), 4);
    assert_eq!(&buf, b"to a");
}

#[test]
fn reader_sees_eof_after_the_writer_in_a_child_exits() {
    let _w = watchdog(TEST_LIMIT);
    let (r, w) = pipe().unwrap();
    let wfd = w.as_fd();
    // Child: one write (async-signal-safe), then `_exit` closes its copy of the write end.
    let child = fork_child(|| match write_all(wfd, b"hello") {
        Ok(()) => 0,
        Err(_) => 1,
    });
    drop(w); // the parent's copy: EOF needs every write end closed
    let mut buf = [0u8; 16];
    let n = read_full(r.as_fd(), &mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");
    assert_eq!(read(r.as_fd(), &mut buf).unwrap(), 0, "EOF after the child exited");
    assert!(wait_readable(r.as_fd(), Deadline::after(Some(Duration::ZERO))).unwrap());
    child.join_ok();
}

#[test]
fn writes_to_a_dead_pipe_reader_are_epipe_not_sigpipe() {
    let _sig = DefaultSigpipe::new();
    let blocked_before = sigpipe_blocked();
    let w = dead_pipe_writer();
    assert_eq!(write_all(w.as_fd(), b"x"), Err(Errno::PIPE));
    assert_eq!(write_all_vectored(w.as_fd(), &[b"head", b"body"]), Err(Errno::PIPE));
    assert_eq!(write_all(w.as_fd(), &[7u8; 3 * PIPE_BUF]), Err(Errno::PIPE));
    assert_eq!(writev_all(w.as_fd(), &[b"head", b"body"]), Err(Errno::PIPE));
    assert_eq!(writev_all(w.as_fd(), &[&[7u8; 3 * PIPE_BUF]]), Err(Errno::PIPE));
    // send_all is for sockets only and says so.
    assert_eq!(send_all(w.as_fd(), b"x"), Err(Errno::NOTSOCK));
    // Still alive; and nothing left behind: no pending SIGPIPE, the mask as it was.
    assert!(!sigpipe_pending());
    assert_eq!(sigpipe_blocked(), blocked_before);
}

#[test]
fn writes_to_a_dead_socket_peer_are_epipe_not_sigpipe() {
    let _sig = DefaultSigpipe::new();
    let a = dead_socket();
    assert_eq!(send_all(a.as_fd(), b"x"), Err(Errno::PIPE));
    assert_eq!(write_all(a.as_fd(), b"x"), Err(Errno::PIPE));
    assert_eq!(write_all_vectored(a.as_fd(), &[b"head", &[1u8; 100_000]]), Err(Errno::PIPE));
    // writev_all works on a socket too (SIGPIPE blocked instead of MSG_NOSIGNAL).
    assert_eq!(writev_all(a.as_fd(), &[b"head", &[1u8; 100_000]]), Err(Errno::PIPE));
    assert!(!sigpipe_pending());
}

#[test]
fn a_child_with_default_sigpipe_survives_writing_to_a_dead_reader() {
    let _w = watchdog(TEST_LIMIT);
    let _sig = DefaultSigpipe::new();
    let w = dead_pipe_writer();
    let a = dead_socket();
    let (wfd, afd) = (w.as_fd(), a.as_fd());
    // Child: writes only, then reports through its exit code. A SIGPIPE would kill it.
    let child = fork_child(|| {
        if write_all(wfd, b"x") != Err(Errno::PIPE) {
            return 1;
        }
        if send_all(afd, b"x") != Err(Errno::PIPE) {
            return 2;
        }
        if write_all(afd, b"x") != Err(Errno::PIPE) {
            return 3;
        }
        if writev_all(wfd, &[b"x", b"y"]) != Err(Errno::PIPE) {
            return 4;
        }
        if writev_all(afd, &[b"x", b"y"]) != Err(Errno::PIPE) {
            return 5;
        }
        0
    });
    assert_eq!(child.wait(TEST_LIMIT), Exit::Code(0));
}

#[test]
fn a_sigpipe_pending_before_the_write_is_left_pending() {
    let _sig = DefaultSigpipe::new();
    unsafe {
        // Block SIGPIPE in this thread and make one pending, as if someone had sent it.
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        let mut old: libc::sigset_t = std::mem::zeroed();
        assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old), 0);
        assert_eq!(libc::pthread_kill(libc::pthread_self(), libc::SIGPIPE), 0);
        assert!(sigpipe_pending());

        let w = dead_pipe_writer();
        assert_eq!(write_all(w.as_fd(), b"x"), Err(Errno::PIPE));
        assert_eq!(writev_all(w.as_fd(), &[b"x", b"y"]), Err(Errno::PIPE));
        // Ours was merged into the one already pending (standard signals do not queue), and
        // that one is not ours to consume.
        assert!(sigpipe_pending());
        assert!(sigpipe_blocked(), "the caller's mask (SIGPIPE blocked) is restored");

        let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        assert_eq!(libc::sigtimedwait(&set, std::ptr::null_mut(), &zero), libc::SIGPIPE);
        assert!(!sigpipe_pending());
        assert_eq!(libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()), 0);
    }
}

/// Byte `i` of the 64 MiB test stream.
fn pattern(i: u64) -> u8 {
    (i ^ (i >> 8) ^ (i >> 19)).wrapping_mul(31) as u8
}

/// FNV-1a, step by step.
fn fnv(hash: u64, byte: u8) -> u64 {
    (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
}
const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

const BIG: u64 = 64 << 20;

#[test]
fn sixty_four_mib_cross_a_socketpair_from_child_to_parent_intact() {
    let _w = watchdog(TEST_LIMIT);
    let (a, b) = socketpair().unwrap();
    let afd = a.as_fd();
    // Child: fills a stack buffer, sends it, repeats; then sends the checksum. No allocation.
    let child = fork_child(|| {
        let mut chunk = [0u8; 64 * 1024];
        let mut hash = FNV_START;
        let mut at = 0u64;
        while at < BIG {
            for (k, byte) in chunk.iter_mut().enumerate() {
                *byte = pattern(at + k as u64);
                hash = fnv(hash, *byte);
            }
            if send_all(afd, &chunk).is_err() {
                return 1;
            }
            at += chunk.len() as u64;
        }
        match send_all(afd, &hash.to_le_bytes()) {
            Ok(()) => 0,
            Err(_) => 2,
        }
    });
    drop(a);
    let mut buf = vec![0u8; 1 << 20];
    let mut hash = FNV_START;
    let mut at = 0u64;
    while at < BIG {
        let n = read_full(b.as_fd(), &mut buf).unwrap();
        assert_eq!(n, buf.len(), "EOF after {at} bytes");
        for (k, &byte) in buf.iter().enumerate() {
            assert_eq!(byte, pattern(at + k as u64), "byte {}", at + k as u64);
            hash = fnv(hash, byte);
        }
        at += n as u64;
    }
    let mut sum = [0u8; 8];
    assert_eq!(read_full(b.as_fd(), &mut sum).unwrap(), 8);
    assert_eq!(u64::from_le_bytes(sum), hash, "checksum");
    assert_eq!(read(b.as_fd(), &mut sum).unwrap(), 0, "nothing after the checksum");
    child.join_ok();
}

/// Length of frame `k`'s payload: varied, up to 60 000 bytes, sometimes zero-length parts.
fn frame_len(k: u64) -> usize {
    ((k * 7919) % 60_001) as usize
}

#[test]
fn sixty_four_mib_of_vectored_frames_cross_a_nonblocking_pipe_intact() {
    let _w = watchdog(TEST_LIMIT);
    let (r, w) = pipe().unwrap();
    let rfd = r.as_fd();
    // Child: reads frames (8-byte length, then payload) into a stack buffer and checks each
    // byte; a zero-length header ends the stream. Exit code says what went wrong.
    let child = fork_child(|| {
        let mut payload = [0u8; 60_000];
        let mut at = 0u64;
        let mut k = 0u64;
        loop {
            let mut head = [0u8; 8];
            match read_full(rfd, &mut head) {
                Ok(8) => {}
                _ => return 1,
            }
            let len = u64::from_le_bytes(head);
            if len == u64::MAX {
                return if at >= BIG { 0 } else { 2 };
            }
            if len != frame_len(k) as u64 {
                return 3;
            }
            let body = &mut payload[..len as usize];
            match read_full(rfd, body) {
                Ok(n) if n == body.len() => {}
                _ => return 4,
            }
            for (i, &byte) in body.iter().enumerate() {
                if byte != pattern(at + i as u64) {
                    return 5;
                }
            }
            at += len;
            k += 1;
        }
    });
    drop(r);
    // Non-blocking: the pipe (64 KiB) fills constantly, so writes are short or EAGAIN and
    // write_all_vectored must resume mid-buffer and poll for room.
    set_nonblocking(w.as_fd(), true).unwrap();
    let mut data = vec![0u8; 60_000];
    let mut at = 0u64;
    let mut k = 0u64;
    while at < BIG {
        let len = frame_len(k);
        for (i, byte) in data[..len].iter_mut().enumerate() {
            *byte = pattern(at + i as u64);
        }
        let head = (len as u64).to_le_bytes();
        let split = len / 3;
        write_all_vectored(w.as_fd(), &[&head, &data[..split], &[], &data[split..len]]).unwrap();
        at += len as u64;
        k += 1;
    }
    write_all(w.as_fd(), &u64::MAX.to_le_bytes()).unwrap();
    drop(w);
    assert_eq!(child.wait(TEST_LIMIT), Exit::Code(0));
}

#[test]
fn wait_readable_times_out_no_earlier_than_asked() {
    let _w = watchdog(TEST_LIMIT);
    let (r, _w_end) = pipe().unwrap();
    for ms in [1u64, 30, 120] {
        let asked = Duration::from_millis(ms);
        let start = Instant::now();
        assert!(!wait_readable(r.as_fd(), after(asked)).unwrap());
        let took = start.elapsed();
        assert!(took >= asked, "returned after {took:?}, asked for {asked:?}");
        assert!(took < asked + Duration::from_secs(5), "took {took:?}");
    }
    let start = Instant::now();
    let mut fds = [PollFd::new(&r, PollFlags::IN)];
    assert_eq!(poll(&mut fds, after(Duration::from_millis(50))).unwrap(), 0);
    assert!(start.elapsed() >= Duration::from_millis(50));
}

#[test]
fn zero_deadline_polls_once() {
    let (r, w) = pipe().unwrap();
    assert!(!wait_readable(r.as_fd(), after(Duration::ZERO)).unwrap());
    write_all(w.as_fd(), b"!").unwrap();
    assert!(wait_readable(r.as_fd(), after(Duration::ZERO)).unwrap());
    assert!(wait_writable(w.as_fd(), after(Duration::ZERO)).unwrap());
}

#[test]
fn wait_readable_sees_a_childs_data_then_its_hangup() {
    let _w = watchdog(TEST_LIMIT);
    let page = common::SharedPage::new(4096);
    let go: &AtomicUsize = unsafe { page.get(0) };
    let (r, w) = pipe().unwrap();
    let wfd = w.as_fd();
    // Child: waits for the parent's go (shared atomic), writes one byte, waits again, exits.
    let child = fork_child(|| {
        if !common::eventually(TEST_LIMIT, || go.load(Ordering::Acquire) >= 1) {
            return 1;
        }
        if write_all(wfd, b"d").is_err() {
            return 2;
        }
        if !common::eventually(TEST_LIMIT, || go.load(Ordering::Acquire) >= 2) {
            return 3;
        }
        0
    });
    drop(w);
    assert!(!wait_readable(r.as_fd(), after(Duration::from_millis(20))).unwrap());
    go.store(1, Ordering::Release);
    assert!(wait_readable(r.as_fd(), after(TEST_LIMIT)).unwrap(), "data");
    assert_eq!(bytes_available(r.as_fd()).unwrap(), 1);
    let mut fds = [PollFd::new(&r, PollFlags::IN)];
    assert_eq!(poll(&mut fds, after(Duration::ZERO)).unwrap(), 1);
    assert!(fds[0].revents().contains(PollFlags::IN));
    let mut byte = [0u8; 1];
    assert_eq!(read(r.as_fd(), &mut byte).unwrap(), 1);
    // Drained, writer still alive: not readable.
    assert!(!wait_readable(r.as_fd(), after(Duration::from_millis(10))).unwrap());
    go.store(2, Ordering::Release);
    // The child exits: the last write end closes, which is a hangup.
    assert!(wait_readable(r.as_fd(), after(TEST_LIMIT)).unwrap(), "hangup");
    let mut fds = [PollFd::new(&r, PollFlags::IN)];
    assert_eq!(poll(&mut fds, after(Duration::ZERO)).unwrap(), 1);
    assert!(fds[0].revents().contains(PollFlags::HUP));
    assert_eq!(read(r.as_fd(), &mut byte).unwrap(), 0);
    child.join_ok();
}

static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn count_interrupt(_: libc::c_int) {
    INTERRUPTS.fetch_add(1, Ordering::Relaxed);
}

/// Runs `f` on this thread while another thread keeps interrupting it with `SIGUSR1` (a handler
/// installed *without* `SA_RESTART`, so every blocking call sees `EINTR`).
///
/// The handler stays installed afterwards: restoring the default (terminate) could race with a
/// last `SIGUSR1` still on its way, and a counting handler is harmless.
fn under_interrupts<T>(f: impl FnOnce() -> T) -> T {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        set_disposition(libc::SIGUSR1, count_interrupt as *const () as libc::sighandler_t, 0);
    });
    let target = unsafe { libc::pthread_self() } as usize;
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                unsafe { libc::pthread_kill(target as libc::pthread_t, libc::SIGUSR1) };
                std::thread::sleep(Duration::from_millis(3));
            }
        });
        let result = f();
        stop.store(true, Ordering::Relaxed);
        result
    })
}

#[test]
fn eintr_neither_shortens_a_poll_nor_fails_a_read() {
    let _w = watchdog(TEST_LIMIT);
    let (r, w) = pipe().unwrap();
    let before = INTERRUPTS.load(Ordering::Relaxed);
    let asked = Duration::from_millis(150);
    let (ready, took) = under_interrupts(|| {
        let start = Instant::now();
        (wait_readable(r.as_fd(), after(asked)).unwrap(), start.elapsed())
    });
    assert!(!ready);
    assert!(took >= asked, "returned after {took:?}, asked for {asked:?}");
    assert!(INTERRUPTS.load(Ordering::Relaxed) > before, "the poll was interrupted");

    // A blocking read interrupted many times still returns the data once it comes.
    let wfd: &OwnedFd = &w;
    let n = std::thread::scope(|s| {
        s.spawn(|| {
            let seen = INTERRUPTS.load(Ordering::Relaxed);
            assert!(
                common::eventually(TEST_LIMIT, || INTERRUPTS.load(Ordering::Relaxed) > seen + 5)
            );
            write_all(wfd.as_fd(), b"late").unwrap();
        });
        under_interrupts(|| {
            let mut buf = [0u8; 4];
            read_full(r.as_fd(), &mut buf).map(|n| (n, buf))
        })
    });
    assert_eq!(n, Ok((4, *b"late")));
}

#[test]
fn nonblocking_reads_say_again_and_bytes_available_counts() {
    let (r, w) = pipe().unwrap();
    set_nonblocking(r.as_fd(), true).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(read(r.as_fd(), &mut buf), Err(Errno::AGAIN));
    assert_eq!(bytes_available(r.as_fd()).unwrap(), 0);
    write_all(w.as_fd(), b"abc").unwrap();
    assert_eq!(bytes_available(r.as_fd()).unwrap(), 3);
    assert_eq!(read(r.as_fd(), &mut buf).unwrap(), 3);
    set_nonblocking(r.as_fd(), false).unwrap();
    let fl = unsafe { libc::fcntl(r.as_raw_fd(), libc::F_GETFL) };
    assert_eq!(fl & libc::O_NONBLOCK, 0);

    let (a, b) = socketpair().unwrap();
    send_all(a.as_fd(), b"xyz!").unwrap();
    assert_eq!(bytes_available(b.as_fd()).unwrap(), 4);
}

#[test]
fn read_full_on_a_nonblocking_fd_waits_instead_of_failing() {
    let _w = watchdog(TEST_LIMIT);
    let (r, w) = pipe().unwrap();
    set_nonblocking(r.as_fd(), true).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            for part in [&b"ab"[..], b"cd", b"ef"] {
                write_all(w.as_fd(), part).unwrap();
                std::thread::yield_now();
            }
        });
        let mut buf = [0u8; 6];
        assert_eq!(read_full(r.as_fd(), &mut buf).unwrap(), 6);
        assert_eq!(&buf, b"abcdef");
    });
}

#[test]
fn empty_writes_and_reads_are_no_ops() {
    let (r, w) = pipe().unwrap();
    write_all(w.as_fd(), b"").unwrap();
    write_all_vectored(w.as_fd(), &[]).unwrap();
    write_all_vectored(w.as_fd(), &[b"", b""]).unwrap();
    assert_eq!(read_full(r.as_fd(), &mut []).unwrap(), 0);
    assert_eq!(bytes_available(r.as_fd()).unwrap(), 0);
}
