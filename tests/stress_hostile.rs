//! Stress suite for hostile input (issue 19): garbage, truncated and huge-length frames on a
//! `Connection`, and random scribbles over a queue's shared header and ring (alone, and under
//! a live producer in another process).
//!
//! Runs for a few seconds per test by default; set `MULTIPROC_STRESS_SECS` to run each test
//! that long (the long form, e.g. `MULTIPROC_STRESS_SECS=150 cargo test --release --test
//! stress_hostile -- --nocapture`). Each test prints its figures.
//!
//! Checked: every call returns (a value or a clear error), never a panic (each call runs under
//! `catch_unwind`, and a panic is counted), never a hang (every call is timed against its own
//! timeout plus a margin; the watchdog catches a call that never returns); on a `Connection`,
//! every well-formed frame before the hostile part arrives intact and in order, whatever the
//! receiving call. A queue scribbled over may report `Corrupt`, hand out garbled items, or
//! items whose bytes do not decode (`Decode`): its documented answers to a garbled segment.
#![allow(clippy::undocumented_unsafe_blocks, unsafe_code)]

mod common;
#[path = "common/stress.rs"]
mod stress;

use std::os::fd::AsFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use multiproc::queue::test_hooks;
use multiproc::{Connection, ConnectionError, GetError, PutError, Queue, pipe};
use stress::{Rng, shared_words, spawn_child, stress_secs};

/// A call that takes longer than its own timeout plus this is a hang.
const MARGIN: Duration = Duration::from_secs(2);

/// Random bytes.
fn bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next() as u8).collect()
}

/// A frame as the wire format documents it: an 8-byte little-endian length, the payload,
/// zero padding up to 64 bytes.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u64).to_le_bytes().to_vec();
    f.extend_from_slice(payload);
    if f.len() < 64 {
        f.resize(64, 0);
    }
    f
}

/// Writes `data` to `c`'s fd from another thread, then closes `c` (the end of the stream).
fn write_then_close(c: Connection, data: Vec<u8>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut rest = &data[..];
        while !rest.is_empty() {
            match rustix::io::write(c.as_fd(), rest) {
                Ok(n) => rest = &rest[n..],
                Err(rustix::io::Errno::INTR) => {}
                // The reader gave up early (it may after a hostile tail): fine.
                Err(_) => break,
            }
        }
        drop(c);
    })
}

#[derive(Default)]
struct Figures {
    streams: u64,
    frames_ok: u64,
    decode_errors: u64,
    too_long: u64,
    too_short: u64,
    truncated: u64,
    eof: u64,
    other_errors: u64,
    panics: u64,
    hangs: u64,
    lost_sync: u64,
}

#[test]
fn hostile_frames_on_a_connection_give_clear_errors() {
    let secs = stress_secs(2);
    let _w = common::watchdog(Duration::from_secs(secs + 60));
    let mut rng = Rng::new(0xf4a3e);
    let mut f = Figures::default();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        f.streams += 1;
        // Well-formed frames of garbage, then a hostile tail.
        let good: Vec<Vec<u8>> = (0..rng.below(6))
            .map(|_| {
                let n = match rng.below(4) {
                    0 => rng.below(8),
                    1 => rng.below(64),
                    2 => rng.below(600),
                    _ => rng.below(5000),
                } as usize;
                bytes(&mut rng, n)
            })
            .collect();
        let mut stream: Vec<u8> = good.iter().flat_map(|p| frame(p)).collect();
        match rng.below(5) {
            // Nothing: a clean end of file.
            0 => {}
            // A huge length prefix, then a few bytes.
            1 => {
                let claim = [1u64 << 40, u64::MAX, 1 << 62, (1 << 31) + 5][rng.below(4) as usize];
                stream.extend_from_slice(&claim.to_le_bytes());
                let n = rng.below(100) as usize;
                stream.extend(bytes(&mut rng, n));
            }
            // A frame cut short (in its header or its body).
            2 => {
                let n = 1 + rng.below(3000) as usize;
                let payload = bytes(&mut rng, n);
                let whole = frame(&payload);
                let cut = rng.below(whole.len() as u64) as usize;
                stream.extend_from_slice(&whole[..cut]);
            }
            // Pure garbage.
            3 => {
                let n = rng.below(2000) as usize;
                stream.extend(bytes(&mut rng, n));
            }
            // Garbage with small length prefixes: frames that parse, of any content.
            _ => {
                for _ in 0..rng.below(5) {
                    let n = rng.below(200) as usize;
                    let mut fr = frame(&bytes(&mut rng, n));
                    // Garble the padding and the payload, not the length.
                    for b in fr.iter_mut().skip(8) {
                        if rng.below(4) == 0 {
                            *b = rng.next() as u8;
                        }
                    }
                    stream.extend(fr);
                }
            }
        }
        let duplex = rng.below(2) == 0;
        let (rx, tx) = pipe(duplex).unwrap();
        let writer = write_then_close(tx, stream);
        // The good frames, through a random receiving call each: intact, in order.
        for (i, p) in good.iter().enumerate() {
            let how = rng.below(5);
            let t0 = Instant::now();
            let r = catch_unwind(AssertUnwindSafe(|| match how {
                0 => rx.recv_bytes().map(|v| v == *p),
                1 => {
                    let max = rng.below(6000) as usize;
                    match rx.recv_bytes_max(max) {
                        Ok(v) => Ok(v == *p && p.len() <= max),
                        Err(ConnectionError::TooLong { len, max: m }) => {
                            f.too_long += 1;
                            Ok(len == p.len() as u64 && m == max && p.len() > max)
                        }
                        Err(e) => Err(e),
                    }
                }
                2 => {
                    let mut buf = vec![0u8; rng.below(6000) as usize];
                    let off = rng.below(buf.len() as u64 + 1) as usize;
                    match rx.recv_bytes_into(&mut buf, off) {
                        Ok(n) => Ok(n == p.len() && buf[off..off + n] == p[..]),
                        Err(ConnectionError::BufferTooShort(whole)) => {
                            f.too_short += 1;
                            Ok(whole == *p && p.len() > buf.len() - off)
                        }
                        Err(e) => Err(e),
                    }
                }
                3 => match rx.recv::<(u32, String, Vec<u64>)>() {
                    Ok(_) => Ok(true),
                    Err(ConnectionError::Decode(_)) => {
                        f.decode_errors += 1;
                        Ok(true)
                    }
                    Err(e) => Err(e),
                },
                _ => rx
                    .poll_timeout(Duration::from_secs(5))
                    .and_then(|ready| Ok(ready && rx.recv_bytes()? == *p)),
            }));
            if t0.elapsed() > MARGIN + Duration::from_secs(5) {
                f.hangs += 1;
            }
            match r {
                Err(_) => f.panics += 1,
                Ok(Ok(true)) => f.frames_ok += 1,
                Ok(Ok(false)) => {
                    f.lost_sync += 1;
                    eprintln!("stream {}: frame {i} of {} wrong ({how})", f.streams, good.len());
                }
                Ok(Err(e)) => {
                    f.lost_sync += 1;
                    eprintln!("stream {}: frame {i}: {e}", f.streams);
                }
            }
        }
        // The hostile tail: calls return until the stream's end; at most a few frames.
        let mut ended = false;
        for _ in 0..64 {
            let how = rng.below(4);
            let t0 = Instant::now();
            let r = catch_unwind(AssertUnwindSafe(|| match how {
                0 => rx.recv_bytes().map(|_| ()),
                1 => rx.recv_bytes_max(rng.below(300) as usize).map(|_| ()),
                2 => rx.recv_bytes_into(&mut [0u8; 100], 0).map(|_| ()),
                _ => rx.recv::<Vec<u8>>().map(|_| ()),
            }));
            if t0.elapsed() > MARGIN {
                f.hangs += 1;
            }
            match r {
                Err(_) => f.panics += 1,
                Ok(Ok(())) => {}
                Ok(Err(ConnectionError::Eof)) => {
                    f.eof += 1;
                    ended = true;
                }
                Ok(Err(ConnectionError::Truncated { expected, received })) => {
                    assert!(received < expected, "truncated {received} of {expected}");
                    f.truncated += 1;
                }
                Ok(Err(ConnectionError::TooLong { .. })) => f.too_long += 1,
                Ok(Err(ConnectionError::BufferTooShort(_))) => f.too_short += 1,
                Ok(Err(ConnectionError::Decode(_))) => f.decode_errors += 1,
                Ok(Err(e)) => {
                    f.other_errors += 1;
                    eprintln!("stream {}: unexpected error {e}", f.streams);
                }
            }
            if ended {
                break;
            }
        }
        assert!(ended, "stream {}: no end of file after 64 calls", f.streams);
        drop(rx);
        writer.join().unwrap();
    }
    println!(
        "stress_hostile Connection, {secs} s: streams {}, good frames intact {}, decode errors \
         {}, too long {}, buffer too short {}, truncated {}, eof {}, other errors {}, lost sync \
         {}, panics {}, hangs {}",
        f.streams,
        f.frames_ok,
        f.decode_errors,
        f.too_long,
        f.too_short,
        f.truncated,
        f.eof,
        f.other_errors,
        f.lost_sync,
        f.panics,
        f.hangs,
    );
    assert!(f.streams > 0 && f.frames_ok > 0);
    assert_eq!(f.panics, 0, "panics");
    assert_eq!(f.hangs, 0, "hangs");
    assert_eq!(f.lost_sync, 0, "well-formed frames lost or garbled");
    assert_eq!(f.other_errors, 0, "unclear errors");
}

#[derive(Default)]
struct QueueFigures {
    queues: u64,
    scribbles: u64,
    ops: u64,
    items: u64,
    corrupt: u64,
    decode: u64,
    other_errors: u64,
    panics: u64,
    hangs: u64,
}

/// One random operation on a scribbled queue, timed against its timeout plus the margin.
fn queue_op(q: &Queue<Vec<u8>>, rng: &mut Rng, f: &mut QueueFigures) {
    let t = match rng.below(3) {
        0 => Duration::ZERO,
        1 => Duration::from_millis(1),
        _ => Duration::from_millis(1 + rng.below(10)),
    };
    let kind = rng.below(6);
    let len = rng.below(600) as usize;
    let t0 = Instant::now();
    // 0: nothing, 1: an item, 2: Corrupt, 3: Decode (a garbled item's bytes), 4: other.
    let get = |r: Result<Vec<u8>, GetError>| match r {
        Ok(_) => 1,
        Err(GetError::Empty | GetError::Closed) => 0,
        Err(GetError::Corrupt(_)) => 2,
        Err(GetError::Decode(_)) => 3,
        Err(e) => {
            eprintln!("get: unexpected error {e}");
            4
        }
    };
    let r = catch_unwind(AssertUnwindSafe(|| match kind {
        0 | 1 => get(q.get_timeout(t)),
        2 => get(q.get_nowait()),
        3 | 4 => match q.put_timeout(vec![7u8; len], t) {
            Ok(()) | Err(PutError::Full(_)) | Err(PutError::Closed(_)) => 0,
            Err(PutError::Corrupt(..)) => 2,
            Err(e) => {
                eprintln!("put: unexpected error {e}");
                4
            }
        },
        _ => {
            let _ = (q.qsize(), q.empty(), q.full(), q.lost(), format!("{q:?}"));
            0
        }
    }));
    if t0.elapsed() > t + MARGIN {
        f.hangs += 1;
    }
    f.ops += 1;
    match r {
        Err(_) => f.panics += 1,
        Ok(1) => f.items += 1,
        Ok(2) => f.corrupt += 1,
        Ok(3) => f.decode += 1,
        Ok(4) => f.other_errors += 1,
        Ok(_) => {}
    }
}

/// Writes `n` random bytes (1 to 16) at a random offset of the header or the ring.
fn scribble(q: &Queue<Vec<u8>>, rng: &mut Rng) {
    let (hdr, hdr_len, ring, ring_len) = test_hooks::raw_parts(q);
    let (base, limit) = if rng.below(2) == 0 { (hdr, hdr_len) } else { (ring, ring_len) };
    let off = rng.below(limit as u64) as usize;
    for k in 0..1 + rng.below(16) as usize {
        if off + k < limit {
            // SAFETY: inside the header or the ring (checked against their lengths): the test
            // hook's documented use. Racing writers see garbage, which they must survive.
            unsafe { std::ptr::write_volatile(base.add(off + k), rng.next() as u8) };
        }
    }
}

fn report_queue(what: &str, secs: u64, f: &QueueFigures) {
    println!(
        "stress_hostile {what}, {secs} s: queues {}, scribbles {}, operations {}, items got {}, \
         corrupt {}, undecodable items {}, other errors {}, panics {}, hangs {}",
        f.queues,
        f.scribbles,
        f.ops,
        f.items,
        f.corrupt,
        f.decode,
        f.other_errors,
        f.panics,
        f.hangs,
    );
    assert!(f.queues > 0 && f.scribbles > 0 && f.ops > 0);
    assert_eq!(f.panics, 0, "panics");
    assert_eq!(f.hangs, 0, "operations that outlived their timeout");
    assert_eq!(f.other_errors, 0, "errors other than Corrupt and Decode");
}

#[test]
fn scribbles_over_a_queue_segment_give_items_or_errors() {
    let secs = stress_secs(2);
    let _w = common::watchdog(Duration::from_secs(secs + 60));
    let mut rng = Rng::new(0x5c41b);
    let mut f = QueueFigures::default();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        f.queues += 1;
        let cap = [256usize, 1024, 4096][rng.below(3) as usize];
        let q: Queue<Vec<u8>> =
            Queue::builder().capacity_bytes(cap).maxsize(rng.below(4) as usize).build().unwrap();
        for _ in 0..rng.below(6) {
            let n = rng.below(cap as u64 * 2) as usize;
            let _ = q.put_nowait(vec![1u8; n]);
        }
        for _ in 0..1 + rng.below(4) {
            scribble(&q, &mut rng);
            f.scribbles += 1;
        }
        for _ in 0..20 {
            queue_op(&q, &mut rng, &mut f);
        }
    }
    report_queue("queue scribbles", secs, &f);
}

#[test]
fn scribbles_under_a_live_producer_never_hang_a_consumer() {
    // A producer in another process puts items of varied sizes (some larger than the ring,
    // so they stream) with short timeouts, while this process scribbles over the segment now
    // and then and gets with short timeouts: every get returns within its timeout plus the
    // margin (a garbled length word must not turn it into an unbounded sink).
    let secs = stress_secs(2);
    let _w = common::watchdog(Duration::from_secs(secs + 60));
    let mut rng = Rng::new(0x11fe);
    let mut f = QueueFigures::default();
    let words = shared_words(4);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        f.queues += 1;
        let cap = [1024usize, 4096][rng.below(2) as usize];
        let q: Queue<Vec<u8>> = Queue::builder().capacity_bytes(cap).build().unwrap();
        words[0].store(0, SeqCst);
        let producer = {
            let q = q.clone();
            let seed = rng.next();
            spawn_child(move || {
                let mut rng = Rng::new(seed);
                let mut puts = 0u64;
                while words[0].load(SeqCst) == 0 {
                    let n = match rng.below(4) {
                        0 => rng.below(3 * cap as u64),
                        _ => rng.below(200),
                    } as usize;
                    if q.put_timeout(vec![3u8; n], Duration::from_millis(5)).is_ok() {
                        puts += 1;
                    }
                }
                puts
            })
        };
        let round = Instant::now();
        while round.elapsed() < Duration::from_millis(200) {
            if rng.below(30) == 0 {
                scribble(&q, &mut rng);
                f.scribbles += 1;
            }
            queue_op(&q, &mut rng, &mut f);
        }
        words[0].store(1, SeqCst);
        // The producer stops within its own timeouts (its puts are bounded too).
        match producer.join_timeout(Duration::from_secs(10)) {
            Ok(_) => {}
            Err(e) => panic!("producer: {e}"),
        }
    }
    report_queue("queue scribbles under a live producer", secs, &f);
}
