//! Tests of the typed connections (`typed_pipe`, `typed_simplex_pipe`: issue 16 item 8), and
//! of the untyped mismatch they replace: a `Vec<i32>` received as a `Vec<i64>` is a decode
//! error in the child, never a panic of the crate's, and the connection stays in sync.
//!
//! That a wrong type does not compile is tested by the `compile_fail` doctests of
//! `typed_pipe`. As in `tests/connection.rs`, every test takes the file-wide [`serial`] lock
//! before its watchdog: a child forked by one test inherits every fd the other tests have open
//! at that moment, which would delay the end-of-file those tests wait for.

mod common;

use std::os::fd::{AsFd, AsRawFd};
use std::rc::Rc;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use multiproc::codec::DecodeError;
use multiproc::connection::{Receiver, Sender};
use multiproc::{
    Connection, ConnectionError, Process, ProcessBuilder, TypedConnection, pipe, typed_pipe,
    typed_simplex_pipe, wait,
};

// A typed end moves to another thread or process like a `Connection`, whatever its message
// types (it holds none of them), and is not shared (two writers would interleave frames).
static_assertions::assert_impl_all!(TypedConnection<Rc<u32>, Rc<String>>: Send);
static_assertions::assert_impl_all!(Sender<Rc<u32>>: Send);
static_assertions::assert_impl_all!(Receiver<Rc<u32>>: Send);
static_assertions::assert_not_impl_any!(TypedConnection<u32, u32>: Sync);
static_assertions::assert_not_impl_any!(Sender<u32>: Sync);
static_assertions::assert_not_impl_any!(Receiver<u32>: Sync);

static SERIAL: Mutex<()> = Mutex::new(());

/// Serialises the tests of this file (see the module docs).
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A process that gets `SIGKILL` when the test's thread ends, so a failing test leaves no
/// child behind.
fn doomed<R: multiproc::Message>(f: impl FnOnce() -> R + Send + 'static) -> Process<R> {
    ProcessBuilder::new().death_signal(Some(multiproc::Signal::KILL)).target(f)
}

/// Reads exactly `n` raw bytes from a descriptor.
fn raw_read(fd: &impl AsFd, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    let mut done = 0;
    while done < n {
        match rustix::io::read(fd.as_fd(), &mut out[done..]) {
            Ok(0) => panic!("EOF after {done} of {n} bytes"),
            Ok(k) => done += k,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    out
}

/// Deterministic bytes of length `len`.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    (0..len).map(|i| (i as u64).wrapping_mul(31).wrapping_add(seed) as u8).collect()
}

fn assert_eof<T: std::fmt::Debug>(r: Result<T, ConnectionError>) {
    assert!(matches!(r, Err(ConnectionError::Eof)), "expected Eof, got {r:?}");
}

// ---------------------------------------------------------------------------------------------
// The untyped mismatch of the issue
// ---------------------------------------------------------------------------------------------

#[test]
fn an_untyped_vec_i32_received_as_vec_i64_is_a_decode_error_in_the_child_and_the_stream_stays_in_sync()
 {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let (parent_end, child_end) = pipe(true).unwrap();
    let p = doomed(move || {
        // The child: it expects `Vec<i64>` and gets the parent's `vec![1, 2, 3]`,
        // which the untyped `send` inferred as a `Vec<i32>`.
        let first = match child_end.recv::<Vec<i64>>() {
            Err(ConnectionError::Decode(DecodeError::LengthTooLarge { len, available })) => {
                format!("LengthTooLarge {len} {available}")
            }
            other => format!("unexpected {other:?}"),
        };
        let text = match child_end.recv::<Vec<i64>>() {
            Err(e) => e.to_string(),
            Ok(v) => format!("unexpected {v:?}"),
        };
        // The stream is still in sync: the next message arrives whole.
        let next: Vec<i64> = child_end.recv().unwrap();
        child_end.send(&next.iter().sum::<i64>()).unwrap();
        (first, text)
    });
    p.start().unwrap();
    parent_end.send(&vec![1, 2, 3]).unwrap(); // a Vec<i32>: nothing says otherwise
    parent_end.send(&vec![1i32, 2, 3]).unwrap();
    parent_end.send(&vec![4i64, 5, 6]).unwrap();
    assert_eq!(parent_end.recv::<i64>().unwrap(), 15);
    let (first, text) = p.join().unwrap();
    // 3 elements of at least 8 bytes cannot fit in the 12 bytes of three i32s.
    assert_eq!(first, "LengthTooLarge 3 12");
    assert!(text.contains("does the sender send another type?"), "{text}");
    assert!(text.contains("sequence length 3 is too large for the 12 bytes left"), "{text}");
    assert_eq!(p.exitcode(), Some(0));
    assert_eof(parent_end.recv::<i64>());
}

// ---------------------------------------------------------------------------------------------
// Typed duplex pipes
// ---------------------------------------------------------------------------------------------

#[test]
fn a_typed_pipe_carries_its_declared_types_both_ways_across_a_fork() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    // The parent sends (id, numbers) jobs or `None` to stop; the child answers (id, sum, text).
    let (parent_end, child_end) =
        typed_pipe::<Option<(u32, Vec<i64>)>, (u32, i64, String)>().unwrap();
    let p = doomed(move || {
        let mut jobs = 0u32;
        while let Some((id, numbers)) = child_end.recv().unwrap() {
            let sum = numbers.iter().sum();
            child_end.send(&(id, sum, format!("job {id}: {} numbers", numbers.len()))).unwrap();
            jobs += 1;
        }
        jobs
    });
    p.start().unwrap();
    for id in 0..1000u32 {
        // A literal takes the declared element type: these are i64s, and 1 << 40 fits.
        let numbers = vec![1, -2, 1 << 40, i64::from(id)];
        parent_end.send(&Some((id, numbers))).unwrap();
        let (got_id, sum, text) = parent_end.recv().unwrap();
        assert_eq!((got_id, sum), (id, (1i64 << 40) - 1 + i64::from(id)));
        assert_eq!(text, format!("job {id}: 4 numbers"));
    }
    parent_end.send(&None).unwrap();
    assert_eq!(p.join().unwrap(), 1000);
    assert_eof(parent_end.recv());
    // The child's end is gone in every process: sending now is a broken pipe, not SIGPIPE.
    assert!(matches!(parent_end.send(&None), Err(ConnectionError::BrokenPipe)));
}

#[test]
fn large_typed_messages_arrive_intact_across_a_fork() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    const BIG: usize = 8 << 20;
    let (parent_end, child_end) = typed_pipe::<Vec<u8>, Vec<u8>>().unwrap();
    let p = doomed(move || {
        // Echo the message reversed: both directions carry 8 MiB while the other side may be
        // writing too, so each side reads before it writes again.
        let mut got = child_end.recv().unwrap();
        got.reverse();
        child_end.send(&got).unwrap();
        got.len()
    });
    p.start().unwrap();
    let sent = pattern(BIG, 7);
    parent_end.send(&sent).unwrap();
    let back = parent_end.recv().unwrap();
    assert_eq!(p.join().unwrap(), BIG);
    assert_eq!(back.len(), BIG);
    assert!(back.iter().rev().eq(sent.iter()), "the echo differs");
}

// ---------------------------------------------------------------------------------------------
// Typed simplex pipes
// ---------------------------------------------------------------------------------------------

#[test]
fn a_typed_simplex_pipe_streams_messages_of_varied_sizes_in_order_across_a_fork() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let (reader, writer) = typed_simplex_pipe::<Option<(usize, Vec<u8>)>>().unwrap();
    let p = doomed(move || {
        for i in 0..3000usize {
            // Sizes around the 64-byte minimum frame and past the 64 KiB pipe buffer.
            let len = if i % 100 == 99 { 100_000 + i } else { i % 130 };
            writer.send(&Some((i, pattern(len, i as u64)))).unwrap();
        }
        writer.send(&None).unwrap();
    });
    p.start().unwrap();
    let mut count = 0usize;
    while let Some((i, bytes)) = reader.recv().unwrap() {
        assert_eq!(i, count, "out of order");
        let len = if i % 100 == 99 { 100_000 + i } else { i % 130 };
        assert_eq!(bytes, pattern(len, i as u64), "message {i}");
        count += 1;
    }
    assert_eq!(count, 3000);
    p.join().unwrap();
    assert_eof(reader.recv());
}

#[test]
fn a_typed_simplex_pipe_keeps_its_directions() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let (reader, writer) = typed_simplex_pipe::<u32>().unwrap();
    assert!(reader.as_untyped().readable() && !reader.as_untyped().writable());
    assert!(writer.as_untyped().writable() && !writer.as_untyped().readable());
    // Declaring the other direction on an untyped end changes nothing: the OS end decides.
    let wrong_reader: Receiver<u32> = Receiver::from_untyped(writer.into_untyped());
    assert!(matches!(wrong_reader.recv(), Err(ConnectionError::WriteOnly)));
    assert!(matches!(wrong_reader.poll_timeout(Duration::ZERO), Err(ConnectionError::WriteOnly)));
    let wrong_writer: Sender<u32> = Sender::from_untyped(reader.into_untyped());
    assert!(matches!(wrong_writer.send(&1), Err(ConnectionError::ReadOnly)));
    let duplex_view: TypedConnection<u32, u32> =
        TypedConnection::from_untyped(wrong_writer.into_untyped());
    assert!(matches!(duplex_view.send(&1), Err(ConnectionError::ReadOnly)));
    // The real writer still works, through its untyped form.
    wrong_reader.as_untyped().send(&9u32).unwrap();
    assert_eq!(duplex_view.recv().unwrap(), 9);
}

// ---------------------------------------------------------------------------------------------
// The untyped form
// ---------------------------------------------------------------------------------------------

#[test]
fn typed_and_untyped_ends_put_the_same_bytes_on_the_wire() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let value = (7u8, String::from("the same bytes"), vec![1i64, -1]);
    let expected = {
        let (a, b) = pipe(true).unwrap();
        a.send(&value).unwrap();
        drop(a);
        let len = u64::from_le_bytes(raw_read(&b, 8).try_into().unwrap()) as usize;
        let mut frame = len.to_le_bytes().to_vec();
        frame.extend(raw_read(&b, len.max(56)));
        frame
    };
    let (a, b) = typed_pipe::<(u8, String, Vec<i64>), ()>().unwrap();
    a.send(&value).unwrap();
    assert_eq!(raw_read(&b, expected.len()), expected);
    assert!(!b.poll_timeout(Duration::ZERO).unwrap(), "nothing more on the wire");
    // A typed end and an untyped one talk to each other.
    let (typed, untyped) = typed_pipe::<String, u32>().unwrap();
    let untyped: Connection = untyped.into();
    typed.send(&"to the untyped end".into()).unwrap();
    assert_eq!(untyped.recv::<String>().unwrap(), "to the untyped end");
    untyped.send(&5u32).unwrap();
    assert_eq!(typed.recv().unwrap(), 5);
}

#[test]
fn a_typed_end_given_another_type_through_the_escape_hatch_gets_a_decode_error_and_stays_in_sync() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let (a, b) = typed_pipe::<Vec<i64>, Vec<i64>>().unwrap();
    a.as_untyped().send(&vec![1i32, 2, 3]).unwrap(); // the message, sent untyped
    a.as_untyped().send_bytes(b"\xff").unwrap(); // not even a length
    a.send(&vec![4, 5]).unwrap();
    assert!(matches!(
        b.recv(),
        Err(ConnectionError::Decode(DecodeError::LengthTooLarge { len: 3, available: 12 }))
    ));
    assert!(matches!(b.recv(), Err(ConnectionError::Decode(DecodeError::Truncated { .. }))));
    assert_eq!(b.recv().unwrap(), [4, 5]);
    // Raw bytes both ways through the untyped form, between typed messages.
    b.as_untyped().send_bytes(b"raw").unwrap();
    b.send(&vec![6]).unwrap();
    assert_eq!(a.as_untyped().recv_bytes().unwrap(), b"raw");
    assert_eq!(a.recv().unwrap(), [6]);
    // `into_untyped` and `from_untyped` round trip to the same descriptor.
    let fd = a.as_raw_fd();
    let again: TypedConnection<Vec<i64>, Vec<i64>> =
        TypedConnection::from_untyped(a.into_untyped());
    assert_eq!(again.as_raw_fd(), fd);
    again.send(&vec![7]).unwrap();
    assert_eq!(b.recv().unwrap(), [7]);
    again.close().unwrap();
    assert_eof(b.recv());
}

// ---------------------------------------------------------------------------------------------
// poll, wait, close, Debug
// ---------------------------------------------------------------------------------------------

#[test]
fn poll_and_wait_see_a_message_a_child_sends_on_a_typed_end() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let (parent_end, child_end) = typed_pipe::<bool, String>().unwrap();
    let (reader, writer) = typed_simplex_pipe::<u64>().unwrap();
    let p = doomed(move || {
        // Wait for the go, so the parent sees nothing ready before it.
        assert!(child_end.recv().unwrap());
        writer.send(&42).unwrap();
        child_end.send(&"done".into()).unwrap();
    });
    p.start().unwrap();
    assert!(!parent_end.poll_timeout(Duration::ZERO).unwrap());
    assert!(!reader.poll_timeout(Duration::ZERO).unwrap());
    assert!(wait(&[&parent_end as &dyn AsFd, &reader], Some(Duration::ZERO)).unwrap().is_empty());
    parent_end.send(&true).unwrap();
    // The child writes to `writer` before `child_end`: once the duplex end is ready, both are.
    assert_eq!(wait(&[&parent_end as &dyn AsFd], None).unwrap(), [0]);
    assert_eq!(wait(&[&parent_end as &dyn AsFd, &reader], Some(Duration::ZERO)).unwrap(), [0, 1]);
    assert!(parent_end.poll_timeout(Duration::MAX).unwrap());
    assert_eq!(reader.recv().unwrap(), 42);
    assert_eq!(parent_end.recv().unwrap(), "done");
    p.join().unwrap();
    assert_eof(reader.recv());
    assert_eof(parent_end.recv());
}

#[test]
fn closing_a_typed_end_is_eof_and_broken_pipe_for_its_peer() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let (a, b) = typed_pipe::<u8, u16>().unwrap();
    a.send(&1).unwrap();
    a.close().unwrap();
    assert_eq!(b.recv().unwrap(), 1); // what was sent before the close is still read
    assert!(b.poll_timeout(Duration::ZERO).unwrap(), "end-of-file makes poll true");
    assert_eof(b.recv());
    assert!(matches!(b.send(&2), Err(ConnectionError::BrokenPipe)));

    let (reader, writer) = typed_simplex_pipe::<String>().unwrap();
    drop(reader);
    assert!(matches!(writer.send(&"x".into()), Err(ConnectionError::BrokenPipe)));
    writer.close().unwrap();
}

#[test]
fn debug_shows_the_descriptor_and_the_message_types() {
    let _s = serial();
    let (a, b) = typed_pipe::<Vec<i64>, String>().unwrap();
    // `type_name`'s exact text may change between compilers; the short names stay in it.
    let text = format!("{a:?}");
    let fd = a.as_raw_fd();
    assert!(text.starts_with(&format!("TypedConnection {{ fd: {fd}, sends: \"")), "{text}");
    let sends = text.find("Vec<i64>").expect(&text);
    let receives = text.find("receives: ").expect(&text);
    assert!(sends < receives && text[receives..].contains("String"), "{text}");
    let text = format!("{b:?}");
    assert!(text.find("String").unwrap() < text.find("Vec<i64>").unwrap(), "{text}");
    let (reader, writer) = typed_simplex_pipe::<u32>().unwrap();
    assert_eq!(
        format!("{reader:?}"),
        format!("Receiver {{ fd: {}, receives: \"u32\" }}", reader.as_raw_fd())
    );
    assert_eq!(
        format!("{writer:?}"),
        format!("Sender {{ fd: {}, sends: \"u32\" }}", writer.as_raw_fd())
    );
}
