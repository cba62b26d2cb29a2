//! Descriptor passing: fds cross processes, arrive close-on-exec, excess fds are closed, record
//! boundaries hold, and a dead peer is an error rather than a signal.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

mod common;

use multiproc_sys::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use common::{TEST_LIMIT, fork_child, watchdog};
use multiproc_sys::Errno;
use multiproc_sys::io::fd::set_nonblocking;
use multiproc_sys::io::pipe::pipe;
use multiproc_sys::io::scm::{MAX_FDS, Received, recv_fds, send_fds, seqpacket_pair};
use multiproc_sys::io::socket::socketpair;
use multiproc_sys::io::stream::{read_full, write_all};

/// Held while a test forks (until its children are reaped), and by the tests that expect a
/// peer to be gone once they drop their end: a child forked meanwhile would hold a copy.
static FORKS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn forks() -> std::sync::MutexGuard<'static, ()> {
    FORKS.lock().unwrap_or_else(|e| e.into_inner())
}

fn has_cloexec(fd: BorrowedFd<'_>) -> bool {
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
    assert!(flags >= 0);
    flags & libc::FD_CLOEXEC != 0
}

#[test]
fn a_passed_pipe_end_works_in_the_receiver_and_is_cloexec() {
    let _w = watchdog(TEST_LIMIT);
    let _f = forks();
    let (a, b) = seqpacket_pair().unwrap();
    assert!(has_cloexec(a.as_fd()) && has_cloexec(b.as_fd()));
    let (r, w) = pipe().unwrap();
    assert_eq!(send_fds(a.as_fd(), b"pipe", &[w.as_fd()]).unwrap(), 4);
    drop(w);
    let mut buf = [0u8; 16];
    let mut fds: [Option<OwnedFd>; 2] = [None, None];
    let got = recv_fds(b.as_fd(), &mut buf, &mut fds).unwrap();
    assert_eq!(got, Received { bytes: 4, fds: 1, truncated: false });
    assert_eq!(&buf[..4], b"pipe");
    let w2 = fds[0].take().unwrap();
    assert!(has_cloexec(w2.as_fd()));
    write_all(w2.as_fd(), b"through").unwrap();
    drop(w2);
    let mut out = [0u8; 16];
    assert_eq!(read_full(r.as_fd(), &mut out).unwrap(), 7);
    assert_eq!(&out[..7], b"through");
}

#[test]
fn fds_cross_a_fork_from_child_to_parent() {
    let _w = watchdog(TEST_LIMIT);
    let _f = forks();
    for _ in 0..20 {
        let (parent_end, child_end) = seqpacket_pair().unwrap();
        // The child makes a socketpair of its own, keeps one end and sends the other: the
        // parent can then talk to the child through a socket it never created.
        let parent_raw = parent_end.as_raw_fd();
        let child = fork_child(|| {
            unsafe { libc::close(parent_raw) };
            let Ok((mine, theirs)) = socketpair() else { return 1 };
            if send_fds(child_end.as_fd(), b"x", &[theirs.as_fd()]) != Ok(1) {
                return 2;
            }
            drop(theirs);
            let mut b = [0u8; 4];
            if read_full(mine.as_fd(), &mut b) != Ok(4) || &b != b"ping" {
                return 3;
            }
            if write_all(mine.as_fd(), b"pong").is_err() {
                return 4;
            }
            0
        });
        drop(child_end);
        let mut buf = [0u8; 1];
        let mut fds: [Option<OwnedFd>; 1] = [None];
        let got = recv_fds(parent_end.as_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!((got.bytes, got.fds, got.truncated), (1, 1, false));
        let sock = fds[0].take().unwrap();
        write_all(sock.as_fd(), b"ping").unwrap();
        let mut b = [0u8; 4];
        assert_eq!(read_full(sock.as_fd(), &mut b).unwrap(), 4);
        assert_eq!(&b, b"pong");
        child.join_ok();
        // The child is gone: the record socket reports end of file.
        let got = recv_fds(parent_end.as_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!(got, Received { bytes: 0, fds: 0, truncated: false });
    }
}

#[test]
fn excess_fds_are_closed_and_reported() {
    let _w = watchdog(TEST_LIMIT);
    let _f = forks();
    let (a, b) = seqpacket_pair().unwrap();
    let mut pipes: Vec<(OwnedFd, OwnedFd)> = (0..3).map(|_| pipe().unwrap()).collect();
    {
        let ends: Vec<BorrowedFd<'_>> = pipes.iter().map(|(r, _)| r.as_fd()).collect();
        send_fds(a.as_fd(), b"three", &ends).unwrap();
    }
    let mut buf = [0u8; 8];
    let mut fds: [Option<OwnedFd>; 1] = [None];
    let got = recv_fds(b.as_fd(), &mut buf, &mut fds).unwrap();
    assert_eq!((got.bytes, got.fds, got.truncated), (5, 1, true));
    let kept = fds[0].take().unwrap();
    assert!(has_cloexec(kept.as_fd()));
    // The copies of the two read ends that did not fit were closed: once our own read ends go,
    // those pipes have no reader left and a write fails with EPIPE. The kept one still reads.
    for (r, w) in pipes.drain(1..) {
        drop(r);
        assert_eq!(write_all(w.as_fd(), b"x"), Err(Errno::PIPE));
    }
    let (r0, w0) = pipes.pop().unwrap();
    drop(r0);
    write_all(w0.as_fd(), b"y").unwrap();
    let mut one = [0u8; 1];
    assert_eq!(read_full(kept.as_fd(), &mut one).unwrap(), 1);
    assert_eq!(&one, b"y");
}

#[test]
fn records_keep_their_boundaries_and_short_buffers_truncate() {
    let _w = watchdog(TEST_LIMIT);
    let (a, b) = seqpacket_pair().unwrap();
    send_fds(a.as_fd(), b"first-record", &[]).unwrap();
    send_fds(a.as_fd(), b"second", &[]).unwrap();
    let mut small = [0u8; 5];
    let got = recv_fds(b.as_fd(), &mut small, &mut []).unwrap();
    assert_eq!((got.bytes, got.truncated), (5, true));
    assert_eq!(&small, b"first");
    // The rest of the first record is gone; the second arrives whole.
    let mut buf = [0u8; 32];
    let got = recv_fds(b.as_fd(), &mut buf, &mut []).unwrap();
    assert_eq!((got.bytes, got.truncated), (6, false));
    assert_eq!(&buf[..6], b"second");
}

#[test]
fn invalid_requests_and_dead_peers_are_errors() {
    let _w = watchdog(TEST_LIMIT);
    let _f = forks();
    let (a, b) = seqpacket_pair().unwrap();
    let (r, _w2) = pipe().unwrap();
    assert_eq!(send_fds(a.as_fd(), b"", &[r.as_fd()]), Err(Errno::INVAL));
    let many: Vec<BorrowedFd<'_>> = (0..=MAX_FDS).map(|_| r.as_fd()).collect();
    assert_eq!(send_fds(a.as_fd(), b"x", &many), Err(Errno::INVAL));
    // MAX_FDS itself is fine, and all of them arrive.
    send_fds(a.as_fd(), b"x", &many[..MAX_FDS]).unwrap();
    let mut fds: Vec<Option<OwnedFd>> = (0..MAX_FDS).map(|_| None).collect();
    let got = recv_fds(b.as_fd(), &mut [0u8; 1], &mut fds).unwrap();
    assert_eq!((got.fds, got.truncated), (MAX_FDS, false));
    assert!(fds.iter().all(|f| f.as_ref().is_some_and(|f| has_cloexec(f.as_fd()))));
    // Non-blocking and empty: EAGAIN, not a hang.
    set_nonblocking(b.as_fd(), true).unwrap();
    assert_eq!(recv_fds(b.as_fd(), &mut [0u8; 1], &mut []), Err(Errno::AGAIN));
    // Peer gone: EPIPE, and the test process is still alive (no SIGPIPE).
    drop(b);
    assert_eq!(send_fds(a.as_fd(), b"x", &[r.as_fd()]), Err(Errno::PIPE));
}
