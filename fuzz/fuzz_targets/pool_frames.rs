//! The frames of a pool worker's channel (the table in `src/pool/proto.rs`), through the pool's
//! own encoders and its own reading code (`multiproc::pool::fuzzing`, built only under
//! `cargo fuzz`), compared with a naive model of the format.
//!
//! Input layout: byte 0 picks the mode (bits 0-1) and how the stream is cut into reads (bits
//! 2..). The rest is, by mode:
//! - 0: a hostile stream to a worker. Its events (tasks run, `STOP`, refusal) match the model,
//!   and its buffer grows past a small step only for a frame that carries its secret.
//! - 1: descriptions of task frames (and a `STOP`), written by the parent's encoder: the worker
//!   reads back exactly those tasks, however the stream is cut.
//! - 2: a hostile stream to the parent. Its events match the model.
//! - 3: descriptions of worker frames, written by the worker's encoders: the parent reads back
//!   exactly those.

#![no_main]

use libfuzzer_sys::fuzz_target;
use multiproc::pool::fuzzing::{self, ParentEvent, WorkerEvent};

const SECRET: u64 = 0x5ec2_e7c0_ffee_1234;
const TASK: u8 = 1;
const STOP: u8 = 2;
const READY: u8 = 3;
const INIT_FAILED: u8 = 4;
const RESULT: u8 = 5;
const VIOLATION: u8 = 6;
/// Where the secret is in a task body (kind, seq, job kind, two words).
const TASK_SECRET_AT: usize = 1 + 8 + 1 + 8 + 8;
const MAX_SEQ: u64 = u64::MAX >> 2;
/// The worker's buffer when it starts, and the step it reads in before a frame is trusted.
const INITIAL_BUFFER: usize = 64 * 1024;
const STEP: usize = 4096;

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Read sizes taken from `pattern`: short and varied, or as large as the buffer allows.
fn pieces(pattern: u8) -> impl FnMut() -> usize {
    let mut calls = 0usize;
    move || {
        calls += 1;
        if pattern & 1 == 1 { 1 + calls * usize::from(pattern) % 17 } else { usize::MAX }
    }
}

/// What the worker must make of `stream` read whole, and the largest authenticated frame (the
/// only thing it may make room for).
fn model_worker(stream: &[u8], max_frame: usize) -> (Vec<WorkerEvent>, usize) {
    let (mut events, mut pos, mut last, mut trusted) = (Vec::new(), 0, 0, 0);
    let refused = |mut events: Vec<WorkerEvent>, trusted| {
        events.push(WorkerEvent::Refused(String::new()));
        (events, trusted)
    };
    loop {
        let rest = &stream[pos..];
        if rest.len() <= 8 {
            return (events, trusted);
        }
        let (len, kind) = (u64_at(rest, 0), rest[8]);
        let at = match kind {
            TASK => TASK_SECRET_AT,
            STOP => 1,
            _ => return refused(events, trusted),
        };
        if len < (at + 8) as u64 {
            return refused(events, trusted);
        }
        if rest.len() < 8 + at + 8 {
            return (events, trusted);
        }
        if u64_at(rest, 8 + at) != SECRET || len > isize::MAX as u64 {
            return refused(events, trusted);
        }
        let wire = 8 + len as usize;
        trusted = trusted.max(wire);
        if rest.len() < wire {
            if wire > max_frame {
                events.push(WorkerEvent::WouldAllocate(wire));
            }
            return (events, trusted);
        }
        let body = &rest[8..wire];
        if kind == STOP {
            events.push(WorkerEvent::Stop);
            return (events, trusted);
        }
        let seq = u64_at(body, 1);
        if seq <= last || seq > MAX_SEQ {
            return refused(events, trusted);
        }
        let payload = body[TASK_SECRET_AT + 8..].to_vec();
        let (job, a, b) = (body[9], u64_at(body, 10), u64_at(body, 18));
        events.push(WorkerEvent::Task { seq, job, a, b, payload });
        last = seq;
        pos += wire;
    }
}

/// What the parent must make of `stream`, and the bytes its whole frames take.
fn model_parent(stream: &[u8]) -> (Vec<ParentEvent>, usize) {
    let (mut events, mut pos) = (Vec::new(), 0);
    let reason = |b: &[u8]| {
        multiproc::codec::from_bytes::<String>(b).unwrap_or_else(|_| "<unreadable".into())
    };
    loop {
        let rest = &stream[pos..];
        if rest.len() < 8 {
            return (events, pos);
        }
        let len = u64_at(rest, 0);
        if len > (rest.len() - 8) as u64 {
            return (events, pos);
        }
        let body = &rest[8..8 + len as usize];
        events.push(match body.first() {
            Some(&READY) => ParentEvent::Ready,
            Some(&INIT_FAILED) => ParentEvent::InitFailed(reason(&body[1..])),
            Some(&VIOLATION) => ParentEvent::Violation(reason(&body[1..])),
            Some(&RESULT) if body.len() >= 17 => ParentEvent::Result {
                seq: u64_at(body, 1),
                elapsed_ns: u64_at(body, 9).max(1),
                items: body[17..].to_vec(),
            },
            _ => ParentEvent::Ignored,
        });
        pos += 8 + len as usize;
    }
}

/// Same events, a refusal's or an unreadable reason's text aside.
fn same_worker(got: &[WorkerEvent], want: &[WorkerEvent]) -> bool {
    got.len() == want.len()
        && got.iter().zip(want).all(|pair| match pair {
            (WorkerEvent::Refused(_), WorkerEvent::Refused(_)) => true,
            (g, w) => g == w,
        })
}

fn same_parent(got: &[ParentEvent], want: &[ParentEvent]) -> bool {
    let same_reason = |g: &str, w: &str| g == w || (w == "<unreadable" && g.starts_with(w));
    got.len() == want.len()
        && got.iter().zip(want).all(|pair| match pair {
            (ParentEvent::InitFailed(g), ParentEvent::InitFailed(w))
            | (ParentEvent::Violation(g), ParentEvent::Violation(w)) => same_reason(g, w),
            (g, w) => g == w,
        })
}

/// Takes `n` bytes off the front of `data` (fewer at its end).
fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = data.split_at(n.min(data.len()));
    *data = tail;
    head
}

fn byte(data: &mut &[u8]) -> u8 {
    take(data, 1).first().copied().unwrap_or(0)
}

fuzz_target!(|data: &[u8]| {
    let Some((&opts, rest)) = data.split_first() else { return };
    let cut = pieces(opts >> 2);
    match opts & 3 {
        0 => {
            let max_frame = (1 << 20).max(rest.len());
            let (got, largest) = fuzzing::worker_reads(rest, SECRET, max_frame, cut);
            let (want, trusted) = model_worker(rest, max_frame);
            assert!(same_worker(&got, &want), "worker: {got:?}\nmodel: {want:?}");
            let bound = INITIAL_BUFFER.max(trusted).max(rest.len() + STEP);
            assert!(largest <= 2 * bound, "buffer {largest} for {} bytes", rest.len());
        }
        1 => {
            let (mut wire, mut want, mut seq) = (Vec::new(), Vec::new(), 0u64);
            let mut d = rest;
            while !d.is_empty() {
                let head = byte(&mut d);
                if head == 0xff {
                    fuzzing::encode_stop(&mut wire, SECRET);
                    want.push(WorkerEvent::Stop);
                    break;
                }
                seq += 1 + u64::from(head & 3);
                let len = usize::from(byte(&mut d)) * (1 + usize::from(head >> 6) * 100);
                let payload = take(&mut d, len).to_vec();
                let (job, a, b) = (head >> 2 & 1, seq.wrapping_mul(0x9e37), u64::from(head));
                fuzzing::encode_task(&mut wire, seq, job, a, b, &payload, SECRET);
                want.push(WorkerEvent::Task { seq, job, a, b, payload });
            }
            let (got, _) = fuzzing::worker_reads(&wire, SECRET, usize::MAX, cut);
            assert_eq!(got, want);
        }
        2 => {
            let (got, used) = fuzzing::parent_reads(rest);
            let (want, model_used) = model_parent(rest);
            assert!(same_parent(&got, &want), "parent: {got:?}\nmodel: {want:?}");
            assert_eq!(used, model_used);
        }
        _ => {
            let (mut wire, mut want) = (Vec::new(), Vec::new());
            let mut d = rest;
            while !d.is_empty() {
                let head = byte(&mut d);
                let text = |d: &mut &[u8]| {
                    let n = usize::from(byte(d));
                    String::from_utf8_lossy(take(d, n)).into_owned()
                };
                let event = match head % 4 {
                    0 => ParentEvent::Ready,
                    1 => ParentEvent::InitFailed(text(&mut d)),
                    2 => ParentEvent::Violation(text(&mut d)),
                    _ => {
                        let n = usize::from(byte(&mut d));
                        let items = take(&mut d, n).to_vec();
                        ParentEvent::Result { seq: u64::from(head), elapsed_ns: 1 + n as u64, items }
                    }
                };
                fuzzing::encode_from_worker(&mut wire, &event);
                want.push(event);
            }
            let (got, used) = fuzzing::parent_reads(&wire);
            assert_eq!((got, used), (want, wire.len()));
        }
    }
});
