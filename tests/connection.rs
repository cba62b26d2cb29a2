//! Tests of `pipe()`, `Connection` and `wait`: Python's behaviours for each method
//! (PYTHON_REFERENCE.md §1.4, P7, P16), hostile and truncated frames, and large messages across
//! processes.
//!
//! Every test takes the file-wide [`serial`] lock before its watchdog: a child forked by one
//! test inherits every fd the other tests have open at that moment, which would delay the
//! end-of-file those tests wait for. Children are `multiproc::Process`es (they may allocate),
//! except where a child must do raw, async-signal-safe writes (`common::fork_child`).

mod common;

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use multiproc::{Connection, ConnectionError, JoinError, Process, ProcessBuilder, pipe, wait};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

static SERIAL: Mutex<()> = Mutex::new(());

/// Serialises the tests of this file (see the module docs).
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes raw bytes (not a frame) to a connection's fd.
fn raw_write(c: &Connection, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match rustix::io::write(c.as_fd(), bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("write: {e}"),
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let word = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        let take = word.len().min(len - out.len());
        out.extend_from_slice(&word[..take]);
    }
    out
}

/// FNV-1a over the bytes, plus the length.
fn checksum(bytes: &[u8]) -> (u64, u64) {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    (bytes.len() as u64, h)
}

/// A frame as the wire format documents it: an 8-byte little-endian length, the payload,
/// zero padding up to 64 bytes.
fn wire_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u64).to_le_bytes().to_vec();
    f.extend_from_slice(payload);
    if f.len() < 64 {
        f.resize(64, 0);
    }
    f
}

/// Reads exactly `n` raw bytes from a connection's fd.
fn raw_read(c: &Connection, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    let mut done = 0;
    while done < n {
        match rustix::io::read(c.as_fd(), &mut out[done..]) {
            Ok(0) => panic!("EOF after {done} of {n} bytes"),
            Ok(k) => done += k,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    out
}

fn assert_eof<T: std::fmt::Debug>(r: Result<T, ConnectionError>) {
    assert!(matches!(r, Err(ConnectionError::Eof)), "expected Eof, got {r:?}");
}

/// A process that gets `SIGKILL` when the test's thread ends, so a failing test leaves no
/// child behind.
fn doomed<R: multiproc::Message>(f: impl FnOnce() -> R + Send + 'static) -> Process<R> {
    ProcessBuilder::new().death_signal(Some(multiproc::Signal::KILL)).target(f)
}

// ---------------------------------------------------------------------------------------------
// send / recv
// ---------------------------------------------------------------------------------------------

#[test]
fn send_and_recv_several_types_in_process() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let (a, b) = pipe(true).unwrap();
    a.send(&42i32).unwrap();
    a.send(&u64::MAX).unwrap();
    a.send("a str").unwrap();
    a.send(&String::from("a String, ünïcode 吃了吗")).unwrap();
    a.send(&vec![1u8, 2, 3]).unwrap();
    a.send(&(7u8, String::from("tuple"), -1.5f64)).unwrap();
    a.send(&Some(vec![String::from("x"), String::new()])).unwrap();
    a.send(&None::<u32>).unwrap();
    a.send(&Ok::<bool, String>(true)).unwrap();
    a.send(&()).unwrap();
    a.send(&[1u16, 2, 3, 4]).unwrap();
    assert_eq!(b.recv::<i32>().unwrap(), 42);
    assert_eq!(b.recv::<u64>().unwrap(), u64::MAX);
    assert_eq!(b.recv::<String>().unwrap(), "a str");
    assert_eq!(b.recv::<String>().unwrap(), "a String, ünïcode 吃了吗");
    assert_eq!(b.recv::<Vec<u8>>().unwrap(), vec![1, 2, 3]);
    assert_eq!(b.recv::<(u8, String, f64)>().unwrap(), (7, "tuple".into(), -1.5));
    assert_eq!(b.recv::<Option<Vec<String>>>().unwrap(), Some(vec!["x".into(), String::new()]));
    assert_eq!(b.recv::<Option<u32>>().unwrap(), None);
    assert_eq!(b.recv::<Result<bool, String>>().unwrap(), Ok(true));
    b.recv::<()>().unwrap();
    assert_eq!(b.recv::<[u16; 4]>().unwrap(), [1, 2, 3, 4]);
    // And the other direction.
    b.send(&3.25f32).unwrap();
    assert_eq!(a.recv::<f32>().unwrap(), 3.25);
    assert!(!a.poll_timeout(Duration::ZERO).unwrap());
}

#[test]
fn send_and_recv_across_processes_both_ways() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let (parent_end, child_end) = pipe(true).unwrap();
    let p = doomed(move || {
        // Echo with a transformation until the parent sends "stop".
        let mut n = 0u32;
        loop {
            let msg: String = child_end.recv().unwrap();
            if msg == "stop" {
                return n;
            }
            child_end.send(&(msg.to_uppercase(), n)).unwrap();
            n += 1;
        }
    });
    p.start().unwrap();
    for i in 0..1000u32 {
        parent_end.send(&format!("msg {i}")).unwrap();
        let (text, n): (String, u32) = parent_end.recv().unwrap();
        assert_eq!((text, n), (format!("MSG {i}"), i));
    }
    parent_end.send("stop").unwrap();
    assert_eq!(p.join().unwrap(), 1000);
    assert_eof(parent_end.recv::<String>());
}

#[test]
fn many_messages_of_varied_sizes_arrive_in_order() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    for duplex in [true, false] {
        let (rx, tx) = pipe(duplex).unwrap();
        let p = doomed(move || {
            for i in 0..5000usize {
                tx.send_bytes(&pattern(i % 3000, i as u64)).unwrap();
            }
        });
        p.start().unwrap();
        for i in 0..5000usize {
            let got = rx.recv_bytes().unwrap();
            assert_eq!(got, pattern(i % 3000, i as u64), "message {i} (duplex {duplex})");
        }
        p.join().unwrap();
        assert_eof(rx.recv_bytes());
    }
}

#[test]
fn a_wrong_type_is_a_decode_error_and_the_stream_stays_in_sync() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let (a, b) = pipe(true).unwrap();
    a.send(&vec![0xffu8, 0xfe, 0xfd]).unwrap(); // not UTF-8
    a.send("fine").unwrap();
    assert!(matches!(b.recv::<String>(), Err(ConnectionError::Decode(_))));
    assert_eq!(b.recv::<String>().unwrap(), "fine");
    // Trailing bytes are an error too.
    a.send(&(1u32, 2u32)).unwrap();
    assert!(matches!(b.recv::<u32>(), Err(ConnectionError::Decode(_))));
}

#[test]
fn send_bytes_and_recv_bytes() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    for duplex in [true, false] {
        let (rx, tx) = pipe(duplex).unwrap();
        tx.send_bytes(b"hello").unwrap();
        tx.send_bytes_range(b"0123456789", 2, Some(3)).unwrap();
        tx.send_bytes_range(b"0123456789", 7, None).unwrap();
        tx.send_bytes_range(b"0123456789", 10, None).unwrap(); // empty, legal
        tx.send_bytes_range(b"0123456789", 4, Some(0)).unwrap(); // empty, legal
        assert_eq!(rx.recv_bytes().unwrap(), b"hello");
        assert_eq!(rx.recv_bytes().unwrap(), b"234");
        assert_eq!(rx.recv_bytes().unwrap(), b"789");
        assert_eq!(rx.recv_bytes().unwrap(), b"");
        assert_eq!(rx.recv_bytes().unwrap(), b"");
        // Python's argument checks.
        assert!(matches!(
            tx.send_bytes_range(b"abc", 4, None),
            Err(ConnectionError::InvalidArgument("buffer length < offset"))
        ));
        assert!(matches!(
            tx.send_bytes_range(b"abc", 1, Some(3)),
            Err(ConnectionError::InvalidArgument("buffer length < offset + size"))
        ));
        assert!(matches!(
            tx.send_bytes_range(b"abc", 1, Some(usize::MAX)),
            Err(ConnectionError::InvalidArgument("buffer length < offset + size"))
        ));
        // Nothing was sent by the failed calls.
        assert!(!rx.poll_timeout(Duration::ZERO).unwrap());
    }
}

#[test]
fn empty_messages_are_separate_messages_and_make_poll_true() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let (a, b) = pipe(true).unwrap();
    assert!(!b.poll_timeout(Duration::ZERO).unwrap());
    a.send_bytes(b"").unwrap();
    assert!(b.poll_timeout(Duration::ZERO).unwrap());
    a.send_bytes(&[]).unwrap();
    a.send_bytes(b"x").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"");
    assert_eq!(b.recv_bytes_max(0).unwrap(), b"");
    assert_eq!(b.recv_bytes().unwrap(), b"x");
    assert!(!b.poll_timeout(Duration::ZERO).unwrap());
    // Into a zero-length buffer, at offset == len.
    a.send_bytes(b"").unwrap();
    let mut buf = [0u8; 4];
    assert_eq!(b.recv_bytes_into(&mut buf, 4).unwrap(), 0);
}

#[test]
fn recv_bytes_too_long_is_skipped_and_the_next_message_arrives() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let (a, b) = pipe(true).unwrap();
    a.send_bytes(&[7u8; 100]).unwrap();
    a.send_bytes(b"next").unwrap();
    a.send_bytes(&[9u8; 100_000]).unwrap(); // fits in the socket buffer: no reader needed yet
    match b.recv_bytes_max(99) {
        Err(ConnectionError::TooLong { len: 100, max: 99 }) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(b.recv_bytes_max(4).unwrap(), b"next", "exactly maxlength is fine");
    assert!(matches!(b.recv_bytes_max(1000), Err(ConnectionError::TooLong { len: 100_000, .. })));
    assert!(!b.poll_timeout(Duration::ZERO).unwrap(), "the long message was skipped whole");
    a.send(&5u8).unwrap();
    assert_eq!(b.recv::<u8>().unwrap(), 5);
}

#[test]
fn recv_bytes_into_with_offset_too_short_and_offset_too_large() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let (a, b) = pipe(true).unwrap();
    let mut buf = [b'.'; 10];

    a.send_bytes(b"abc").unwrap();
    assert_eq!(b.recv_bytes_into(&mut buf, 2).unwrap(), 3);
    assert_eq!(&buf, b"..abc.....");

    // Too short: the whole message comes back in the error, and is consumed.
    a.send_bytes(b"0123456789").unwrap();
    a.send_bytes(b"after").unwrap();
    match b.recv_bytes_into(&mut buf[..6], 1) {
        Err(ConnectionError::BufferTooShort(whole)) => assert_eq!(whole, b"0123456789"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(&buf, b"..abc.....", "a too-short buffer is not written");
    assert_eq!(b.recv_bytes().unwrap(), b"after");

    // Exactly fits.
    a.send_bytes(b"0123456789").unwrap();
    assert_eq!(b.recv_bytes_into(&mut buf, 0).unwrap(), 10);
    assert_eq!(&buf, b"0123456789");

    // Offset too large: checked before reading, so the message stays queued.
    a.send_bytes(b"queued").unwrap();
    assert!(matches!(
        b.recv_bytes_into(&mut buf, 11),
        Err(ConnectionError::InvalidArgument("offset too large"))
    ));
    assert!(b.poll_timeout(Duration::ZERO).unwrap());
    assert_eq!(b.recv_bytes().unwrap(), b"queued");
}

// ---------------------------------------------------------------------------------------------
// poll, EOF, broken pipes
// ---------------------------------------------------------------------------------------------

#[test]
fn poll_zero_is_false_then_true_and_never_consumes() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let (a, b) = pipe(true).unwrap();
    assert!(!b.poll_timeout(Duration::ZERO).unwrap());
    for timeout in [Duration::from_millis(1), Duration::from_millis(50)] {
        let t = Instant::now();
        assert!(!b.poll_timeout(timeout).unwrap());
        assert!(t.elapsed() >= timeout, "poll({timeout:?}) returned early: {:?}", t.elapsed());
    }
    a.send(&1u8).unwrap();
    assert!(b.poll_timeout(Duration::ZERO).unwrap());
    assert!(b.poll_timeout(Duration::ZERO).unwrap(), "poll consumed the message");
    assert!(b.poll_timeout(Duration::MAX).unwrap());
    assert_eq!(b.recv::<u8>().unwrap(), 1);
    assert!(!b.poll_timeout(Duration::ZERO).unwrap());

    // Only part of a frame: poll may say true, but it must not eat those bytes.
    let frame = wire_frame(b"xyz");
    raw_write(&a, &frame[..5]);
    let _ = b.poll_timeout(Duration::ZERO).unwrap();
    raw_write(&a, &frame[5..]);
    assert_eq!(b.recv_bytes().unwrap(), b"xyz");
}

#[test]
fn poll_wakes_when_a_child_sends() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let (a, b) = pipe(true).unwrap();
    let p = doomed(move || {
        // Wait for the go (the parent is polling by then, or about to).
        let _: u8 = b.recv().unwrap();
        b.send("late").unwrap();
    });
    p.start().unwrap();
    assert!(!a.poll_timeout(Duration::from_millis(20)).unwrap());
    a.send(&0u8).unwrap();
    assert!(a.poll_timeout(Duration::from_secs(20)).unwrap());
    assert_eq!(a.recv::<String>().unwrap(), "late");
    p.join().unwrap();
}

#[test]
fn recv_after_the_peer_closed_is_eof_and_poll_says_true() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    for duplex in [true, false] {
        let (rx, tx) = pipe(duplex).unwrap();
        tx.send_bytes(b"last").unwrap();
        drop(tx);
        assert!(rx.poll_timeout(Duration::ZERO).unwrap());
        assert_eq!(rx.recv_bytes().unwrap(), b"last", "queued data comes first");
        assert!(rx.poll_timeout(Duration::ZERO).unwrap(), "EOF makes poll true");
        assert!(rx.poll_timeout(Duration::MAX).unwrap());
        assert_eof(rx.recv_bytes());
        assert_eof(rx.recv::<u32>());
        assert_eof(rx.recv_bytes_into(&mut [0u8; 8], 0));
        assert_eof(rx.recv_bytes()); // again
    }
    // Through `close` too.
    let (a, b) = pipe(true).unwrap();
    a.close().unwrap();
    assert_eof(b.recv_bytes());
}

#[test]
fn recv_after_a_peer_that_left_our_message_unread_is_eof() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    // An AF_UNIX peer that closes with unread data makes our next read fail once with
    // ECONNRESET: that is still the peer having gone, i.e. end of file.
    let (a, b) = pipe(true).unwrap();
    a.send("never read").unwrap();
    let p = Process::new(move || drop(b));
    p.start().unwrap();
    p.join().unwrap();
    assert!(a.poll_timeout(Duration::ZERO).unwrap());
    assert_eof(a.recv::<String>());
    assert_eof(a.recv::<String>());
    assert!(matches!(a.send("more"), Err(ConnectionError::BrokenPipe)));
}

/// In a child with `SIGPIPE` at its default disposition (which kills), sends to a connection
/// whose reader has gone; returns what `send` said and whether a `SIGPIPE` is left pending.
fn send_to_a_dead_reader(duplex: bool, len: usize) -> (String, bool) {
    let (rx, tx) = pipe(duplex).unwrap();
    drop(rx);
    let p = Process::new(move || {
        // SAFETY: setting a signal disposition in this single-threaded child.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        let r = tx.send_bytes(&vec![1u8; len]);
        let r2 = tx.send(&5u32);
        // SAFETY: sigset_t is plain data; sigpending fills it.
        let pending = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigpending(&mut set);
            libc::sigismember(&set, libc::SIGPIPE) == 1
        };
        assert!(matches!(r2, Err(ConnectionError::BrokenPipe)), "{r2:?}");
        (format!("{r:?}"), pending)
    });
    p.start().unwrap();
    match p.join() {
        Ok(v) => v,
        Err(JoinError::Signaled(sig)) => panic!("the child was killed by signal {sig}"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn send_after_the_peer_closed_is_broken_pipe_never_sigpipe() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    for duplex in [true, false] {
        for len in [0, 10, 1 << 20] {
            let (r, pending) = send_to_a_dead_reader(duplex, len);
            assert_eq!(r, "Err(BrokenPipe)", "duplex {duplex}, {len} bytes");
            assert!(!pending, "a SIGPIPE was left pending (duplex {duplex}, {len} bytes)");
        }
    }
    // In this process too (where SIGPIPE happens to be ignored by the Rust runtime).
    let (rx, tx) = pipe(false).unwrap();
    drop(rx);
    assert!(matches!(tx.send_bytes(b"x"), Err(ConnectionError::BrokenPipe)));
}

#[test]
fn a_reader_that_dies_mid_message_gives_the_writer_broken_pipe() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    for duplex in [true, false] {
        let (rx, tx) = pipe(duplex).unwrap();
        // The reader reads a little of a large message, then exits.
        let p = Process::new(move || {
            let mut b = [0u8; 16];
            let _ = rustix::io::read(rx.as_fd(), &mut b);
        });
        p.start().unwrap();
        let r = tx.send_bytes(&vec![3u8; 8 << 20]);
        assert!(matches!(r, Err(ConnectionError::BrokenPipe)), "duplex {duplex}: {r:?}");
        p.join().unwrap();
    }
}

#[test]
fn read_only_and_write_only_ends() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let (r, w) = pipe(false).unwrap();
    assert!(r.readable() && !r.writable());
    assert!(!w.readable() && w.writable());
    assert!(matches!(r.send(&1u8), Err(ConnectionError::ReadOnly)));
    assert!(matches!(r.send_bytes(b"x"), Err(ConnectionError::ReadOnly)));
    assert!(matches!(r.send_bytes_range(b"x", 0, None), Err(ConnectionError::ReadOnly)));
    assert!(matches!(w.recv::<u8>(), Err(ConnectionError::WriteOnly)));
    assert!(matches!(w.recv_bytes(), Err(ConnectionError::WriteOnly)));
    assert!(matches!(w.recv_bytes_into(&mut [0u8; 4], 0), Err(ConnectionError::WriteOnly)));
    assert!(matches!(w.poll_timeout(Duration::ZERO), Err(ConnectionError::WriteOnly)));
    assert_eq!(ConnectionError::ReadOnly.to_string(), "connection is read-only");
    assert_eq!(ConnectionError::WriteOnly.to_string(), "connection is write-only");
    // The ends still work the right way round.
    w.send("ok").unwrap();
    assert_eq!(r.recv::<String>().unwrap(), "ok");
    let (a, b) = pipe(true).unwrap();
    assert!(a.readable() && a.writable() && b.readable() && b.writable());
}

#[test]
fn the_wire_format_is_a_length_then_the_payload_padded_to_64_bytes() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let (a, b) = pipe(true).unwrap();
    for len in [0usize, 1, 55, 56, 57, 63, 64, 1000] {
        let payload = pattern(len, len as u64);
        a.send_bytes(&payload).unwrap();
        let want = wire_frame(&payload);
        assert_eq!(raw_read(&b, want.len()), want, "send_bytes of {len} bytes");
        assert!(!b.poll_timeout(Duration::ZERO).unwrap(), "more than one frame for {len} bytes");
        // And a raw frame in that format is read back.
        raw_write(&a, &want);
        assert_eq!(b.recv_bytes().unwrap(), payload);
    }
    a.send(&7u32).unwrap();
    assert_eq!(raw_read(&b, 64), wire_frame(&7u32.to_le_bytes()));
    // Back-to-back small frames are read one at a time.
    let mut two = wire_frame(b"one");
    two.extend_from_slice(&wire_frame(b"two"));
    raw_write(&a, &two);
    assert_eq!(b.recv_bytes().unwrap(), b"one");
    assert!(b.poll_timeout(Duration::ZERO).unwrap());
    assert_eq!(b.recv_bytes().unwrap(), b"two");
    // A short frame without its padding, then EOF, is a truncated frame.
    let mut short = 3u64.to_le_bytes().to_vec();
    short.extend_from_slice(b"xyz");
    raw_write(&a, &short);
    drop(a);
    assert!(matches!(
        b.recv_bytes(),
        Err(ConnectionError::Truncated { expected: 64, received: 11 })
    ));
}

// ---------------------------------------------------------------------------------------------
// Truncated and hostile frames
// ---------------------------------------------------------------------------------------------

#[test]
fn a_peer_killed_mid_frame_is_truncated() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    for duplex in [true, false] {
        let (rx, tx) = pipe(duplex).unwrap();
        let fd = tx.as_raw_fd();
        // A raw child: a header claiming 1 MiB, 10 bytes of it, then `_exit`.
        let child = common::fork_child(move || {
            let header = (1u64 << 20).to_le_bytes();
            let body = [0xabu8; 10];
            // SAFETY: write(2) from valid buffers to an inherited fd; async-signal-safe.
            unsafe {
                libc::write(fd, header.as_ptr().cast(), header.len());
                libc::write(fd, body.as_ptr().cast(), body.len());
            }
            0
        });
        drop(tx);
        match rx.recv_bytes() {
            Err(ConnectionError::Truncated { expected, received }) => {
                assert_eq!(expected, 8 + (1 << 20));
                assert_eq!(received, 8 + 10);
            }
            other => panic!("duplex {duplex}: unexpected {other:?}"),
        }
        assert_eof(rx.recv_bytes());
        child.join_ok();

        // Mid-header.
        let (rx, tx) = pipe(duplex).unwrap();
        raw_write(&tx, &[1, 0, 0]);
        drop(tx);
        assert!(matches!(
            rx.recv_bytes(),
            Err(ConnectionError::Truncated { expected: 8, received: 3 })
        ));
    }
    // recv_bytes_into and typed recv see it too.
    let (rx, tx) = pipe(true).unwrap();
    raw_write(&tx, &100u64.to_le_bytes());
    raw_write(&tx, b"0123");
    drop(tx);
    let mut buf = [0u8; 200];
    assert!(matches!(
        rx.recv_bytes_into(&mut buf, 0),
        Err(ConnectionError::Truncated { expected: 108, received: 12 })
    ));
}

#[test]
fn a_hostile_length_prefix_costs_nothing() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    // Allocating these up front would abort the test (2^62 bytes cannot be allocated), and
    // u64::MAX must not overflow the "expected" count.
    for claimed in [1u64 << 62, u64::MAX, (1u64 << 63) + 12345] {
        let (rx, tx) = pipe(true).unwrap();
        raw_write(&tx, &claimed.to_le_bytes());
        raw_write(&tx, b"tiny");
        drop(tx);
        match rx.recv_bytes() {
            Err(ConnectionError::Truncated { expected, received }) => {
                assert_eq!(expected, claimed.saturating_add(8));
                assert_eq!(received, 12);
            }
            other => panic!("claimed {claimed}: unexpected {other:?}"),
        }
        // The same through the other receiving calls.
        let (rx, tx) = pipe(true).unwrap();
        raw_write(&tx, &claimed.to_le_bytes());
        raw_write(&tx, b"tiny");
        drop(tx);
        assert!(matches!(
            rx.recv_bytes_into(&mut [0u8; 64], 0),
            Err(ConnectionError::Truncated { .. })
        ));
        let (rx, tx) = pipe(true).unwrap();
        raw_write(&tx, &claimed.to_le_bytes());
        drop(tx);
        assert!(matches!(rx.recv::<Vec<u8>>(), Err(ConnectionError::Truncated { .. })));
        let (rx, tx) = pipe(true).unwrap();
        raw_write(&tx, &claimed.to_le_bytes());
        drop(tx);
        let r = rx.recv_bytes_max(1000);
        assert!(
            matches!(r, Err(ConnectionError::TooLong { .. } | ConnectionError::Truncated { .. })),
            "{r:?}"
        );
    }
}

#[test]
fn a_hostile_length_prefix_allocates_only_what_arrives() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    // In a child whose address space is capped at its current size + 256 MiB, receive a frame
    // that claims 1 GiB (and 1 TiB) but carries 3 MiB before EOF. A reader that trusted the
    // length would fail to allocate and abort.
    for claimed in [1u64 << 30, 1u64 << 40] {
        let (rx, tx) = pipe(true).unwrap();
        let tx_fd = tx.as_raw_fd();
        let p = doomed(move || {
            // SAFETY: closing this child's inherited copy of the writer's fd, which no object
            // in this process owns (the parent's `tx` was not moved here).
            unsafe { libc::close(tx_fd) };
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let vm_kib: u64 = status
                .lines()
                .find_map(|l| l.strip_prefix("VmSize:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap();
            let limit = vm_kib * 1024 + (256 << 20);
            let rl = libc::rlimit { rlim_cur: limit, rlim_max: limit };
            // SAFETY: valid rlimit pointer.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &rl) }, 0);
            match rx.recv_bytes() {
                Err(ConnectionError::Truncated { expected, received }) => (expected, received),
                other => panic!("unexpected {other:?}"),
            }
        });
        p.start().unwrap();
        raw_write(&tx, &claimed.to_le_bytes());
        raw_write(&tx, &vec![0x5au8; 3 << 20]);
        drop(tx);
        match p.join() {
            Ok((expected, received)) => {
                assert_eq!(expected, claimed + 8);
                assert_eq!(received, 8 + (3 << 20));
            }
            Err(e) => panic!("claimed {claimed}: the reader failed: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// wait
// ---------------------------------------------------------------------------------------------

#[test]
fn wait_returns_exactly_the_ready_objects() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let (a1, b1) = pipe(true).unwrap();
    let (a2, b2) = pipe(true).unwrap();
    let (r3, w3) = pipe(false).unwrap();
    let (gate_rx, gate_tx) = pipe(false).unwrap();
    let finished = Process::new(|| ());
    finished.start().unwrap();
    finished.join().unwrap();
    let running = doomed(move || {
        let _: u8 = gate_rx.recv().unwrap();
    });
    running.start().unwrap();
    let s_fin = finished.sentinel().unwrap();
    let s_run = running.sentinel().unwrap();

    // Nothing ready but the finished process.
    let objs: [&dyn AsFd; 5] = [&a1, &a2, &s_fin, &r3, &s_run];
    assert_eq!(wait(&objs, Some(Duration::from_secs(20))).unwrap(), vec![2]);

    b1.send(&1u8).unwrap();
    w3.send_bytes(b"").unwrap();
    assert_eq!(wait(&objs, Some(Duration::from_secs(20))).unwrap(), vec![0, 2, 3]);
    assert_eq!(wait(&objs, None).unwrap(), vec![0, 2, 3], "wait consumes nothing");
    assert_eq!(a1.recv::<u8>().unwrap(), 1);
    assert_eq!(r3.recv_bytes().unwrap(), b"");
    assert_eq!(wait(&objs, Some(Duration::ZERO)).unwrap(), vec![2]);

    // A timeout with nothing ready returns an empty list, never early.
    let idle: [&dyn AsFd; 3] = [&a1, &a2, &s_run];
    for timeout in [Duration::ZERO, Duration::from_millis(30)] {
        let t = Instant::now();
        assert!(wait(&idle, Some(timeout)).unwrap().is_empty());
        assert!(t.elapsed() >= timeout);
    }
    assert!(wait(&[], Some(Duration::ZERO)).unwrap().is_empty());

    // EOF counts as ready (a pair made after the child started: the child holds a copy of
    // every fd that existed when it was forked, `b2` included); so does a process that ends
    // while we wait.
    let (a4, b4) = pipe(true).unwrap();
    let with_eof: [&dyn AsFd; 4] = [&a1, &a2, &s_run, &a4];
    assert!(wait(&with_eof, Some(Duration::ZERO)).unwrap().is_empty());
    drop(b4);
    assert_eq!(wait(&with_eof, Some(Duration::from_secs(20))).unwrap(), vec![3]);
    gate_tx.send(&0u8).unwrap();
    let only_run: [&dyn AsFd; 2] = [&a1, &s_run];
    assert_eq!(wait(&only_run, Some(Duration::from_secs(20))).unwrap(), vec![1]);
    running.join().unwrap();
    drop((w3, b2));
}

// ---------------------------------------------------------------------------------------------
// Large messages, non-blocking fds, threads
// ---------------------------------------------------------------------------------------------

const BIG: usize = 64 << 20;

#[test]
fn a_64_mib_message_arrives_intact_both_ways() {
    let _s = serial();
    let _w = common::watchdog(Duration::from_secs(120));
    let (parent_end, child_end) = pipe(true).unwrap();
    let p = doomed(move || {
        // Child -> parent, then parent -> child.
        let data = pattern(BIG, 1);
        child_end.send_bytes(&data).unwrap();
        drop(data);
        let back = child_end.recv_bytes().unwrap();
        let mut into = vec![0u8; BIG + 3];
        let n = child_end.recv_bytes_into(&mut into, 3).unwrap();
        let typed: Vec<u8> = child_end.recv().unwrap();
        (checksum(&back), n, checksum(&into[3..3 + n]), checksum(&typed))
    });
    p.start().unwrap();
    let got = parent_end.recv_bytes().unwrap();
    let want = pattern(BIG, 1);
    assert_eq!(checksum(&got), checksum(&want));
    assert!(got == want);
    drop(got);
    let data = pattern(BIG, 2);
    parent_end.send_bytes(&data).unwrap();
    parent_end.send_bytes(&data).unwrap();
    parent_end.send(&data).unwrap();
    let (back, n, into, typed) = p.join().unwrap();
    let sum = checksum(&data);
    assert_eq!((back, n, into, typed), (sum, BIG, sum, sum));
}

#[test]
fn a_64_mib_message_through_a_simplex_pipe() {
    let _s = serial();
    let _w = common::watchdog(Duration::from_secs(120));
    let (rx, tx) = pipe(false).unwrap();
    let p = doomed(move || tx.send_bytes(&pattern(BIG, 3)).unwrap());
    p.start().unwrap();
    let got = rx.recv_bytes().unwrap();
    assert_eq!(checksum(&got), checksum(&pattern(BIG, 3)));
    p.join().unwrap();
}

#[test]
fn a_non_blocking_fd_still_reads_whole_messages() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    for duplex in [true, false] {
        let (rx, tx) = pipe(duplex).unwrap();
        // Someone (an event loop, a child sharing the open file description) made the
        // reader non-blocking: messages must still arrive whole, and in sync.
        multiproc::sys::io::fd::set_nonblocking(rx.as_fd(), true).unwrap();
        let p = doomed(move || {
            for i in 0..20u64 {
                tx.send_bytes(&pattern(300_000 + i as usize, i)).unwrap();
            }
            tx.send_bytes(&[1u8; 500_000]).unwrap();
            tx.send_bytes(b"end").unwrap();
        });
        p.start().unwrap();
        for i in 0..10u64 {
            let got = rx.recv_bytes().unwrap();
            assert_eq!(got, pattern(300_000 + i as usize, i), "duplex {duplex}, message {i}");
        }
        for i in 10..20u64 {
            let mut buf = vec![0u8; 400_000];
            let n = rx.recv_bytes_into(&mut buf, 0).unwrap();
            assert_eq!(&buf[..n], &pattern(300_000 + i as usize, i)[..]);
        }
        assert!(matches!(rx.recv_bytes_max(10), Err(ConnectionError::TooLong { .. })));
        assert_eq!(rx.recv_bytes().unwrap(), b"end");
        p.join().unwrap();
        assert_eof(rx.recv_bytes());
    }
}

#[test]
fn a_connection_moves_to_another_thread() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let (a, b) = pipe(true).unwrap();
    let t = std::thread::spawn(move || {
        let data = pattern(8 << 20, 9);
        b.send_bytes(&data).unwrap();
        b.recv::<String>().unwrap()
    });
    let got = a.recv_bytes().unwrap();
    assert_eq!(checksum(&got), checksum(&pattern(8 << 20, 9)));
    a.send("thanks").unwrap();
    assert_eq!(t.join().unwrap(), "thanks");
}

#[test]
fn errors_convert_to_io_errors_of_the_right_kind() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let kind = |e: ConnectionError| io::Error::from(e).kind();
    assert_eq!(kind(ConnectionError::Eof), io::ErrorKind::UnexpectedEof);
    assert_eq!(
        kind(ConnectionError::Truncated { expected: 9, received: 8 }),
        io::ErrorKind::UnexpectedEof
    );
    assert_eq!(kind(ConnectionError::BrokenPipe), io::ErrorKind::BrokenPipe);
    assert_eq!(kind(ConnectionError::ReadOnly), io::ErrorKind::InvalidInput);
    assert!(ConnectionError::TooLong { len: 5, max: 4 }.to_string().contains("bad message length"));
    assert!(ConnectionError::BufferTooShort(vec![0; 3]).to_string().contains("3-byte"));
}
