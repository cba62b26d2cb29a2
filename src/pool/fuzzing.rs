//! Entry points for the `pool_frames` fuzz target (`fuzz/`), built only by `cargo fuzz`
//! (`cfg(fuzzing)`): the frames of a worker channel, written by the pool's own encoders and
//! read by the worker's and the parent's own reading code, on bytes the target chooses.

use super::proto::{self, FromWorker, Inbound, JobWords};
use super::worker::Inbox;

/// What a worker made of its channel, one event per frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerEvent {
    /// It would run this task.
    Task {
        /// The task's sequence number.
        seq: u64,
        /// The job kind byte.
        job: u8,
        /// The job's first word.
        a: u64,
        /// The job's second word.
        b: u64,
        /// The chunk payload.
        payload: Vec<u8>,
    },
    /// It would exit: a `STOP`.
    Stop,
    /// It refused the frame at the front and would exit (the reason).
    Refused(String),
    /// The frame at the front is authentic and claims more than the caller's `max_frame`
    /// bytes: the worker would make room for it (only the pool, which holds the secret, can
    /// make it do so).
    WouldAllocate(usize),
}

/// Feeds `stream` to a worker's reading code (its buffer and `proto::next_for_worker`) in
/// pieces of the sizes `piece` returns (at least 1), as the worker's reads would deliver it,
/// with `secret` as its secret. Returns the events up to the first `Stop`, refusal or
/// `WouldAllocate` (or the end of the stream), and the largest its buffer grew.
pub fn worker_reads(
    stream: &[u8],
    secret: u64,
    max_frame: usize,
    mut piece: impl FnMut() -> usize,
) -> (Vec<WorkerEvent>, usize) {
    let mut inbox = Inbox::new();
    let mut events = Vec::new();
    let mut last_seq = 0;
    let mut fed = 0;
    let mut largest = inbox.capacity();
    loop {
        let frame_len = match inbox.next(secret, last_seq) {
            Ok(Inbound::Task { task, .. }) => {
                last_seq = task.seq;
                let JobWords { kind, a, b } = task.job;
                let payload = task.payload.to_vec();
                events.push(WorkerEvent::Task { seq: task.seq, job: kind, a, b, payload });
                continue;
            }
            Ok(Inbound::Stop { .. }) => {
                events.push(WorkerEvent::Stop);
                break;
            }
            Err(why) => {
                events.push(WorkerEvent::Refused(why));
                break;
            }
            Ok(Inbound::Read { frame_len: Some(n) }) if n > max_frame => {
                events.push(WorkerEvent::WouldAllocate(n));
                break;
            }
            Ok(Inbound::Read { frame_len }) => frame_len,
        };
        if fed == stream.len() {
            break;
        }
        let room = inbox.room(frame_len);
        let n = room.len().min(piece().max(1)).min(stream.len() - fed);
        room[..n].copy_from_slice(&stream[fed..fed + n]);
        largest = largest.max(inbox.capacity());
        inbox.filled(n);
        fed += n;
    }
    (events, largest)
}

/// What the parent made of a worker's channel, one event per whole frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParentEvent {
    /// `READY`.
    Ready,
    /// `INIT_FAILED` with its reason.
    InitFailed(String),
    /// `RESULT`.
    Result {
        /// The task's sequence number.
        seq: u64,
        /// The measured time (at least 1 ns).
        elapsed_ns: u64,
        /// The item results.
        items: Vec<u8>,
    },
    /// `VIOLATION` with its reason.
    Violation(String),
    /// A frame of an unknown kind, or a `RESULT` too short for its fields: ignored.
    Ignored,
}

/// Feeds `stream` to the parent's reading of a worker channel (`proto::each_from_worker`):
/// the events for its whole frames, and the bytes they took.
pub fn parent_reads(stream: &[u8]) -> (Vec<ParentEvent>, usize) {
    let mut events = Vec::new();
    let used = proto::each_from_worker(stream, |frame| {
        events.push(match frame {
            Some(FromWorker::Ready) => ParentEvent::Ready,
            Some(FromWorker::InitFailed(why)) => ParentEvent::InitFailed(why),
            Some(FromWorker::Result { seq, elapsed_ns, items }) => {
                ParentEvent::Result { seq, elapsed_ns, items: items.to_vec() }
            }
            Some(FromWorker::Violation(why)) => ParentEvent::Violation(why),
            None => ParentEvent::Ignored,
        });
    });
    (events, used)
}

/// Appends the `TASK` frame the parent sends for task `seq` (job kind `job`, words `a` and
/// `b`, `payload`), with `secret` where the sender gathers it in.
pub fn encode_task(
    out: &mut Vec<u8>,
    seq: u64,
    job: u8,
    a: u64,
    b: u64,
    payload: &[u8],
    secret: u64,
) {
    let mut at = Vec::new();
    proto::encode_task(out, &mut at, seq, JobWords { kind: job, a, b }, payload);
    put_secret(out, &at, secret);
}

/// Appends the parent's `STOP` frame, with `secret`.
pub fn encode_stop(out: &mut Vec<u8>, secret: u64) {
    let mut at = Vec::new();
    proto::encode_stop(out, &mut at);
    put_secret(out, &at, secret);
}

fn put_secret(out: &mut [u8], at: &[usize], secret: u64) {
    for &field in at {
        out[field..field + proto::SECRET_LEN].copy_from_slice(&secret.to_le_bytes());
    }
}

/// Appends what a worker sends for `event` (`Ignored` sends nothing): the worker's own
/// encoders.
pub fn encode_from_worker(out: &mut Vec<u8>, event: &ParentEvent) {
    match event {
        ParentEvent::Ready => proto::encode_ready(out),
        ParentEvent::InitFailed(why) => proto::encode_reason(out, proto::INIT_FAILED, why),
        ParentEvent::Violation(why) => proto::encode_reason(out, proto::VIOLATION, why),
        ParentEvent::Result { seq, elapsed_ns, items } => {
            let at = proto::begin_result(out, *seq);
            out.extend_from_slice(items);
            proto::end_result(out, at, *elapsed_ns);
        }
        ParentEvent::Ignored => {}
    }
}
