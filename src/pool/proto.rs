//! Wire formats between the parent, the fork server and the workers.
//!
//! # Worker channel (one `SOCK_STREAM` socketpair per worker)
//!
//! Every frame is a frame of the crate's one frame format (`codec::frame`, its plain layout:
//! an 8-byte little-endian body length, then the body), whose body's first byte is the frame
//! kind. Integers are little-endian. The worker reads its channel with [`next_for_worker`], the
//! parent with [`each_from_worker`]; a length past memory is a refused frame (worker) or the end
//! of what the parent reads, never an allocation.
//!
//! | direction | kind | body after the kind byte |
//! |---|---|---|
//! | parent → worker | [`TASK`] | `seq: u64`, `job_kind: u8`, `a: u64`, `b: u64`, `secret: [u8; 8]`, chunk payload |
//! | parent → worker | [`STOP`] | `secret: [u8; 8]`: exit once the frames before it are done |
//! | worker → parent | [`READY`] | nothing: the initializer succeeded |
//! | worker → parent | [`INIT_FAILED`] | the reason, as an encoded `String` |
//! | worker → parent | [`RESULT`] | `seq: u64`, `elapsed_ns: u64`, the chunk's item results |
//! | worker → parent | [`VIOLATION`] | why the worker refused a frame, as an encoded `String` |
//!
//! Every parent → worker frame carries the worker's secret (8 random bytes the fork server drew
//! for this worker before forking it, see [`CTL_SPAWNED`]) right after the fields that decide
//! what the worker does (the header, the kind, and for a task its seq, job kind and words). The
//! worker checks it as soon as those bytes are in ([`secret_at`]), before it trusts the frame's
//! length or buffers the rest. A frame without it, written by another process that holds the
//! channel, is never run: the worker reports [`VIOLATION`] and exits. Since the secret comes
//! after those fields, bytes another writer slipped in between two partial writes of the parent
//! shift it out of place and are caught too; such bytes in a payload can only garble arguments,
//! which the worker decodes as untrusted input. Sequence numbers start at 1 and grow with every
//! task frame on a channel; the worker refuses a frame whose seq does not.
//!
//! A chunk payload is a `u64` item count followed by the encoded arguments. A chunk result is
//! one entry per item: a tag, then [`ITEM_OK`]: the encoded result; [`ITEM_PANIC`]: the panic
//! message (`String`), its location (`Option<String>`, `file:line:col`) and the worker's
//! backtrace (`Option<String>`); [`ITEM_BAD_ARG`], [`ITEM_BAD_RESULT`]: an encoded `String`.
//! The parent decodes all of it with the codec's bounds checks: a garbled item is a
//! [`PoolError::Decode`](super::PoolError::Decode) for it and the items after it, never a
//! panic.
//!
//! # Control channel (one `SOCK_SEQPACKET` socketpair, parent ↔ server)
//!
//! Fixed-size records ([`Ctl`], [`CTL_LEN`] bytes). `SPAWNED` carries the parent's end of the
//! new worker's channel as `SCM_RIGHTS`, and is followed by the worker's secret
//! ([`SPAWNED_LEN`] bytes in all).

use std::any::Any;

use crate::codec::FRAME_HEADER_LEN;
use crate::codec::frame::{self, Parsed, Plain};
use crate::codec::{Decode, DecodeError, Decoder, Encode};
use crate::fork_safety::{panic_message, take_panic_record};

use super::error::RemotePanic;
use super::slots::MAX_SEQ;

/// parent → worker: run a chunk.
pub(crate) const TASK: u8 = 1;
/// parent → worker: exit after the frames before this one.
pub(crate) const STOP: u8 = 2;
/// worker → parent: initialised, ready for tasks.
pub(crate) const READY: u8 = 3;
/// worker → parent: the initializer (or CPU pinning) failed; the worker exits.
pub(crate) const INIT_FAILED: u8 = 4;
/// worker → parent: a chunk's results.
pub(crate) const RESULT: u8 = 5;

/// worker → parent: the worker refused a frame that did not come from its pool (wrong secret,
/// bad sequence number, unknown kind); it exits after this frame.
pub(crate) const VIOLATION: u8 = 6;

/// Bytes of a worker's secret.
pub(crate) const SECRET_LEN: usize = 8;
/// Where `seq` is in a `TASK` body.
pub(crate) const TASK_SEQ_AT: usize = 1;
/// Where `job_kind` is in a `TASK` body.
pub(crate) const TASK_JOB_AT: usize = TASK_SEQ_AT + 8;
/// Where the word `a` is in a `TASK` body.
pub(crate) const TASK_A_AT: usize = TASK_JOB_AT + 1;
/// Where the word `b` is in a `TASK` body.
pub(crate) const TASK_B_AT: usize = TASK_A_AT + 8;
/// Where the secret is in a `TASK` body.
pub(crate) const TASK_SECRET_AT: usize = TASK_B_AT + 8;
/// Bytes of a `TASK` body before the payload: kind, seq, job kind, two words, secret.
pub(crate) const TASK_PREFIX: usize = TASK_SECRET_AT + SECRET_LEN;
/// Where the secret is in a `STOP` body.
pub(crate) const STOP_SECRET_AT: usize = 1;
/// Bytes of a `STOP` body.
pub(crate) const STOP_LEN: usize = STOP_SECRET_AT + SECRET_LEN;

/// Where the secret is in the body of a parent → worker frame of this kind; `None` for a kind
/// the parent never sends to a worker.
#[inline]
pub(crate) fn secret_at(kind: u8) -> Option<usize> {
    match kind {
        TASK => Some(TASK_SECRET_AT),
        STOP => Some(STOP_SECRET_AT),
        _ => None,
    }
}
/// Bytes of a `RESULT` body before the item results: kind, seq, elapsed.
pub(crate) const RESULT_PREFIX: usize = 1 + 8 + 8;

/// `job_kind`: `a` is a trampoline address, `b` its context word (a fn address or 0).
pub(crate) const JOB_CODE: u8 = 0;
/// `job_kind`: `a` is the index of a closure registered with the builder.
pub(crate) const JOB_REGISTERED: u8 = 1;

/// Item result: the value follows.
pub(crate) const ITEM_OK: u8 = 0;
/// Item result: the function panicked; the message follows.
pub(crate) const ITEM_PANIC: u8 = 1;
/// Item result: the argument did not decode in the worker; the reason follows.
pub(crate) const ITEM_BAD_ARG: u8 = 2;
/// Item result: encoding the return value panicked; the message follows.
pub(crate) const ITEM_BAD_RESULT: u8 = 3;

/// Worker side: appends the item result for a panic `catch_unwind` caught while running the
/// task (`in_encode` false: [`ITEM_PANIC`], with the location and backtrace the panic hook
/// recorded for it) or while encoding its result ([`ITEM_BAD_RESULT`]).
pub(crate) fn encode_caught(out: &mut Vec<u8>, in_encode: bool, payload: &(dyn Any + Send)) {
    let message = panic_message(payload);
    if in_encode {
        out.push(ITEM_BAD_RESULT);
        message.encode(out);
        return;
    }
    let record = take_panic_record(&message);
    out.push(ITEM_PANIC);
    message.encode(out);
    record.as_ref().and_then(|r| r.location.as_deref()).encode(out);
    record.as_ref().and_then(|r| r.backtrace.as_deref()).encode(out);
}

/// Parent side: the body of an [`ITEM_PANIC`] item (after its tag), decoded.
pub(crate) struct PanicItem(pub RemotePanic);

impl Decode for PanicItem {
    const MIN_ENCODED_LEN: usize = 8 + 1 + 1;

    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let message = String::decode(input)?;
        let location = Option::<String>::decode(input)?;
        let backtrace = Option::<String>::decode(input)?;
        Ok(PanicItem(RemotePanic::new(message, location, backtrace)))
    }
}

/// Reads a little-endian `u64` at `at` (the caller has checked the length).
#[inline]
pub(crate) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Starts a frame in `out`: a placeholder length, then `kind`. Returns where the frame starts,
/// for [`end_frame`].
#[inline]
pub(crate) fn begin_frame(out: &mut Vec<u8>, kind: u8) -> usize {
    let at = Plain::begin(out);
    out.push(kind);
    at
}

/// Patches the length of the frame started at `at` (everything after its header).
#[inline]
pub(crate) fn end_frame(out: &mut Vec<u8>, at: usize) {
    Plain::end(out, at);
}

// ---------------------------------------------------------------------------------------------
// Worker-channel frames, typed: every encoder and decoder of the table above

/// What a `TASK` frame asks the worker to run: the job kind and its two words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JobWords {
    /// [`JOB_CODE`] or [`JOB_REGISTERED`] (anything else runs nothing).
    pub kind: u8,
    pub a: u64,
    pub b: u64,
}

/// A decoded `TASK` body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TaskFrame<'a> {
    pub seq: u64,
    pub job: JobWords,
    pub secret: [u8; SECRET_LEN],
    pub payload: &'a [u8],
}

/// A frame the parent sends to a worker, decoded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ToWorker<'a> {
    Task(TaskFrame<'a>),
    Stop,
}

/// A frame a worker sends to the parent, decoded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FromWorker<'a> {
    Ready,
    /// The initializer failed: the reason.
    InitFailed(String),
    /// A chunk's results: `seq`, the measured time (at least 1 ns), the item results.
    Result {
        seq: u64,
        elapsed_ns: u64,
        items: &'a [u8],
    },
    /// The worker refused a frame: the reason.
    Violation(String),
}

/// Appends a `TASK` frame, with zeros where the worker's secret goes; the secret's position
/// is pushed on `secret_at` (the sender gathers the secret in from memory no fork copies).
pub(crate) fn encode_task(
    out: &mut Vec<u8>,
    secret_at: &mut Vec<usize>,
    seq: u64,
    job: JobWords,
    payload: &[u8],
) {
    let at = begin_frame(out, TASK);
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(job.kind);
    out.extend_from_slice(&job.a.to_le_bytes());
    out.extend_from_slice(&job.b.to_le_bytes());
    debug_assert_eq!(out.len() - at - FRAME_HEADER_LEN, TASK_SECRET_AT);
    secret_at.push(out.len());
    out.extend_from_slice(&[0; SECRET_LEN]);
    out.extend_from_slice(payload);
    end_frame(out, at);
}

/// Appends a `STOP` frame, with zeros where the secret goes (see [`encode_task`]).
pub(crate) fn encode_stop(out: &mut Vec<u8>, secret_at: &mut Vec<usize>) {
    let at = begin_frame(out, STOP);
    secret_at.push(out.len());
    out.extend_from_slice(&[0; SECRET_LEN]);
    debug_assert_eq!(out.len() - at - FRAME_HEADER_LEN, STOP_LEN);
    end_frame(out, at);
}

/// Decodes a parent → worker body whose secret [`check_front`] has accepted: a `STOP`, or a
/// `TASK` with its fields, or why it cannot be run.
pub(crate) fn decode_to_worker(body: &[u8]) -> Result<ToWorker<'_>, &'static str> {
    match body.first() {
        Some(&TASK) => {
            if body.len() < TASK_PREFIX {
                return Err("a task frame too short for its fields");
            }
            let mut secret = [0u8; SECRET_LEN];
            secret.copy_from_slice(&body[TASK_SECRET_AT..TASK_PREFIX]);
            Ok(ToWorker::Task(TaskFrame {
                seq: u64_at(body, TASK_SEQ_AT),
                job: JobWords {
                    kind: body[TASK_JOB_AT],
                    a: u64_at(body, TASK_A_AT),
                    b: u64_at(body, TASK_B_AT),
                },
                secret,
                payload: &body[TASK_PREFIX..],
            }))
        }
        _ => Ok(ToWorker::Stop),
    }
}

/// Appends a frame of `kind` whose body is `why` encoded ([`INIT_FAILED`], [`VIOLATION`]).
pub(crate) fn encode_reason(out: &mut Vec<u8>, kind: u8, why: &str) {
    let at = begin_frame(out, kind);
    why.encode(out);
    end_frame(out, at);
}

/// Appends a `READY` frame.
pub(crate) fn encode_ready(out: &mut Vec<u8>) {
    let at = begin_frame(out, READY);
    end_frame(out, at);
}

/// Starts a `RESULT` frame for task `seq`; the caller appends the item results, then calls
/// [`end_result`] with the value returned here.
pub(crate) fn begin_result(out: &mut Vec<u8>, seq: u64) -> usize {
    let at = begin_frame(out, RESULT);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes()); // elapsed, patched by `end_result`
    at
}

/// Ends the `RESULT` frame started at `at`, with the measured time.
pub(crate) fn end_result(out: &mut Vec<u8>, at: usize, elapsed_ns: u64) {
    let field = at + FRAME_HEADER_LEN + 1 + 8;
    out[field..field + 8].copy_from_slice(&elapsed_ns.to_le_bytes());
    end_frame(out, at);
}

/// Decodes a worker → parent body; `None` for an unknown kind or a short `RESULT`.
pub(crate) fn decode_from_worker(body: &[u8]) -> Option<FromWorker<'_>> {
    let reason = |rest: &[u8]| {
        crate::codec::from_bytes::<String>(rest)
            .unwrap_or_else(|e| format!("<unreadable reason: {e}>"))
    };
    match *body.first()? {
        READY => Some(FromWorker::Ready),
        VIOLATION => Some(FromWorker::Violation(reason(&body[1..]))),
        INIT_FAILED => Some(FromWorker::InitFailed(reason(&body[1..]))),
        RESULT if body.len() >= RESULT_PREFIX => Some(FromWorker::Result {
            seq: u64_at(body, 1),
            elapsed_ns: u64_at(body, 9).max(1),
            items: &body[RESULT_PREFIX..],
        }),
        _ => None,
    }
}

/// What a worker knows about the frame at the front of its buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Front {
    /// Not enough bytes yet to authenticate it.
    Incomplete,
    /// It carries this worker's secret after its kind-specific fields.
    Authentic,
}

/// Checks the frame at the front of `pending` (a worker's read buffer) as soon as its bytes up
/// to and including the secret are in: `Ok(Front::Authentic)`, `Ok(Front::Incomplete)`, or why
/// it cannot have come from this worker's pool.
#[inline]
pub(crate) fn check_front(pending: &[u8], secret: u64) -> Result<Front, String> {
    let (Some(body_len), Some(&kind)) = (frame::header_len(pending), pending.get(FRAME_HEADER_LEN))
    else {
        return Ok(Front::Incomplete);
    };
    let Some(at) = secret_at(kind) else {
        return Err(format!("a frame of unknown kind {kind}"));
    };
    if body_len < (at + SECRET_LEN) as u64 {
        return Err(format!(
            "a frame of kind {kind} too short to carry the secret ({body_len} bytes)"
        ));
    }
    let end = FRAME_HEADER_LEN + at + SECRET_LEN;
    if pending.len() < end {
        return Ok(Front::Incomplete);
    }
    if u64_at(pending, FRAME_HEADER_LEN + at) != secret {
        let what = if kind == TASK { "task" } else { "stop" };
        return Err(format!("a {what} frame without this worker's secret"));
    }
    Ok(Front::Authentic)
}

/// What a worker does next with the bytes at the front of its read buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inbound<'a> {
    /// Run this task, whose frame took `wire_len` bytes of the buffer.
    Task { task: TaskFrame<'a>, wire_len: usize },
    /// Exit: the parent sent `STOP`, whose frame took `wire_len` bytes.
    Stop { wire_len: usize },
    /// Read more. `frame_len` is the length of the frame at the front once it is
    /// authenticated (room for all of it can be made); `None` before that, when only small
    /// steps may be read (a forged length must not make the worker allocate).
    Read { frame_len: Option<usize> },
}

/// The worker's reading of the front of its buffer `pending`: a frame is trusted only once its
/// secret is in and right ([`check_front`]), then run only when whole, well formed, and with a
/// sequence number past `last_seq`. `Err` says why the frame cannot have come from the pool.
pub(crate) fn next_for_worker(
    pending: &[u8],
    secret: u64,
    last_seq: u64,
) -> Result<Inbound<'_>, String> {
    if check_front(pending, secret)? == Front::Incomplete {
        return Ok(Inbound::Read { frame_len: None });
    }
    let (body, wire_len) = match Plain::parse(pending).map_err(|e| e.to_string())? {
        Parsed::Whole { payload, wire_len } => (payload, wire_len),
        Parsed::Partial { wire_len } => return Ok(Inbound::Read { frame_len: Some(wire_len) }),
        Parsed::NoHeader => return Ok(Inbound::Read { frame_len: None }),
    };
    match decode_to_worker(body)? {
        ToWorker::Stop => Ok(Inbound::Stop { wire_len }),
        ToWorker::Task(task) if task.seq <= last_seq || task.seq > MAX_SEQ => {
            Err(format!("task seq {} after {last_seq}", task.seq))
        }
        ToWorker::Task(task) => Ok(Inbound::Task { task, wire_len }),
    }
}

/// The parent's reading of a worker's channel: hands every whole frame at the front of `rbuf`
/// to `on_frame` (decoded; `None` for an unknown kind or a short `RESULT`, which the parent
/// ignores) and returns the bytes they took. A frame claiming more than memory stops the
/// reading there, like one not complete yet.
pub(crate) fn each_from_worker<'a>(
    rbuf: &'a [u8],
    mut on_frame: impl FnMut(Option<FromWorker<'a>>),
) -> usize {
    let mut used = 0;
    while let Ok(Parsed::Whole { payload, wire_len }) = Plain::parse(&rbuf[used..]) {
        used += wire_len;
        on_frame(decode_from_worker(payload));
    }
    used
}

// ---------------------------------------------------------------------------------------------
// Control records

/// Bytes of one control record.
pub(crate) const CTL_LEN: usize = 24;
/// Bytes of a `CTL_SPAWNED` message: the record, then the worker's secret.
pub(crate) const SPAWNED_LEN: usize = CTL_LEN + SECRET_LEN;

/// parent → server: fork a worker for `slot`.
pub(crate) const CTL_SPAWN: u32 = 1;
/// parent → server: send signal `value` to the worker `pid` of `slot`, if it is still alive
/// (the server alone knows whether it has reaped it, so a pid is never reused under us).
pub(crate) const CTL_KILL: u32 = 2;
/// parent → server: SIGTERM every worker, wait `arg` nanoseconds, SIGKILL the rest, reap them
/// all, exit.
pub(crate) const CTL_TERMINATE: u32 = 3;
/// parent → server: SIGKILL whatever workers are left (normally none), reap them, exit.
pub(crate) const CTL_EXIT: u32 = 4;
/// server → parent: the worker of `slot` is `pid`; its channel rides along as `SCM_RIGHTS`,
/// its secret follows the record.
pub(crate) const CTL_SPAWNED: u32 = 5;
/// server → parent: forking a worker for `slot` failed with errno `value`.
pub(crate) const CTL_SPAWN_FAILED: u32 = 6;
/// server → parent: the worker `pid` of `slot` was reaped; `arg` says how to read `value`
/// ([`STATUS_EXITED`], [`STATUS_SIGNALED`], [`STATUS_UNKNOWN`]).
pub(crate) const CTL_EXITED: u32 = 7;

/// `CTL_EXITED` `arg`: `value` is an exit code.
pub(crate) const STATUS_EXITED: u64 = 0;
/// `CTL_EXITED` `arg`: `value` is the number of the signal that killed it.
pub(crate) const STATUS_SIGNALED: u64 = 1;
/// `CTL_EXITED` `arg`: the status is unknown (reaped elsewhere).
pub(crate) const STATUS_UNKNOWN: u64 = 2;

/// One control record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ctl {
    pub kind: u32,
    pub slot: u32,
    pub pid: i32,
    pub value: i32,
    pub arg: u64,
}

impl Ctl {
    pub(crate) fn new(kind: u32, slot: usize) -> Ctl {
        Ctl { kind, slot: slot as u32, pid: 0, value: 0, arg: 0 }
    }

    pub(crate) fn to_bytes(self) -> [u8; CTL_LEN] {
        let mut b = [0u8; CTL_LEN];
        b[0..4].copy_from_slice(&self.kind.to_le_bytes());
        b[4..8].copy_from_slice(&self.slot.to_le_bytes());
        b[8..12].copy_from_slice(&self.pid.to_le_bytes());
        b[12..16].copy_from_slice(&self.value.to_le_bytes());
        b[16..24].copy_from_slice(&self.arg.to_le_bytes());
        b
    }

    /// A `CTL_SPAWNED` message: the record, then the worker's secret.
    pub(crate) fn with_secret(self, secret: &[u8; SECRET_LEN]) -> [u8; SPAWNED_LEN] {
        let mut msg = [0u8; SPAWNED_LEN];
        msg[..CTL_LEN].copy_from_slice(&self.to_bytes());
        msg[CTL_LEN..].copy_from_slice(secret);
        msg
    }

    pub(crate) fn from_bytes(b: &[u8; CTL_LEN]) -> Ctl {
        let w32 = |at: usize| [b[at], b[at + 1], b[at + 2], b[at + 3]];
        Ctl {
            kind: u32::from_le_bytes(w32(0)),
            slot: u32::from_le_bytes(w32(4)),
            pid: i32::from_le_bytes(w32(8)),
            value: i32::from_le_bytes(w32(12)),
            arg: u64_at(b, 16),
        }
    }
}

/// Decodes the `len` bytes of a server → parent message received into `buf`: a record, or a
/// `CTL_SPAWNED` record followed by the secret (which stays in `buf`); `None` if malformed (a
/// length of neither, or a secret present without `CTL_SPAWNED` or missing with it).
pub(crate) fn decode_ctl(buf: &[u8; SPAWNED_LEN], len: usize) -> Option<Ctl> {
    if len != CTL_LEN && len != SPAWNED_LEN {
        return None;
    }
    let mut record = [0u8; CTL_LEN];
    record.copy_from_slice(&buf[..CTL_LEN]);
    let c = Ctl::from_bytes(&record);
    ((c.kind == CTL_SPAWNED) == (len == SPAWNED_LEN)).then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole frame at the front of `buf`: its body and its length on the wire.
    fn split(buf: &[u8]) -> Option<(&[u8], usize)> {
        match Plain::parse(buf) {
            Ok(Parsed::Whole { payload, wire_len }) => Some((payload, wire_len)),
            _ => None,
        }
    }

    fn stop_frame(secret: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let at = begin_frame(&mut out, STOP);
        out.extend_from_slice(&secret.to_le_bytes());
        end_frame(&mut out, at);
        out
    }

    #[test]
    fn a_frame_is_trusted_only_once_its_secret_is_in_and_right() {
        let secret = 0x005e_c2e7;
        let good = stop_frame(secret);
        for cut in 0..good.len() {
            assert_eq!(check_front(&good[..cut], secret), Ok(Front::Incomplete), "cut {cut}");
        }
        assert_eq!(check_front(&good, secret), Ok(Front::Authentic));
        assert!(check_front(&stop_frame(secret + 1), secret).is_err());
        // Unknown kinds and lengths too short for a secret are refused at once.
        let mut unknown = good.clone();
        unknown[FRAME_HEADER_LEN] = RESULT;
        assert!(check_front(&unknown[..FRAME_HEADER_LEN + 1], secret).is_err());
        let mut short = good.clone();
        short[..8].copy_from_slice(&1u64.to_le_bytes());
        assert!(check_front(&short[..FRAME_HEADER_LEN + 1], secret).is_err());
        // A huge length does not matter until the secret is checked: a forged one is refused
        // with a few bytes in, before anything is buffered for it.
        let mut huge = stop_frame(0);
        huge[..8].copy_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(check_front(&huge, secret).is_err());
    }

    #[test]
    fn task_and_result_frames_round_trip() {
        let (mut out, mut secrets) = (Vec::new(), Vec::new());
        let job = JobWords { kind: JOB_CODE, a: 0x1234, b: 7 };
        encode_task(&mut out, &mut secrets, 3, job, b"xyz");
        encode_stop(&mut out, &mut secrets);
        let (body, used) = split(&out).unwrap();
        assert_eq!(
            secrets,
            vec![FRAME_HEADER_LEN + TASK_SECRET_AT, used + FRAME_HEADER_LEN + STOP_SECRET_AT]
        );
        let want = TaskFrame { seq: 3, job, secret: [0; SECRET_LEN], payload: b"xyz" };
        assert_eq!(decode_to_worker(body), Ok(ToWorker::Task(want)));
        assert!(decode_to_worker(&body[..TASK_PREFIX - 1]).is_err());
        let (body, _) = split(&out[used..]).unwrap();
        assert_eq!(decode_to_worker(body), Ok(ToWorker::Stop));

        let mut out = Vec::new();
        let at = begin_result(&mut out, 9);
        out.extend_from_slice(b"items");
        end_result(&mut out, at, 0);
        let (body, _) = split(&out).unwrap();
        let want = FromWorker::Result { seq: 9, elapsed_ns: 1, items: b"items" };
        assert_eq!(decode_from_worker(body), Some(want));
        assert_eq!(decode_from_worker(&body[..RESULT_PREFIX - 1]), None);
        let mut out = Vec::new();
        encode_reason(&mut out, VIOLATION, "why");
        encode_ready(&mut out);
        let (body, used) = split(&out).unwrap();
        assert_eq!(decode_from_worker(body), Some(FromWorker::Violation("why".into())));
        let (body, _) = split(&out[used..]).unwrap();
        assert_eq!(decode_from_worker(body), Some(FromWorker::Ready));
    }

    #[test]
    fn a_panic_item_round_trips_and_a_garbled_one_is_an_error() {
        use crate::pool::error::PoolError;
        use crate::pool::work::decode_chunk;

        let payload: Box<dyn Any + Send> = Box::new("it broke");
        let mut item = Vec::new();
        encode_caught(&mut item, false, &*payload);
        assert_eq!(item[0], ITEM_PANIC);
        let mut out = Vec::<Result<u32, PoolError>>::new();
        decode_chunk(&item, 1, &mut out);
        match &out[..] {
            // No hook recorded this one: no location, no backtrace.
            [Err(PoolError::Panicked(p))] => {
                assert_eq!((p.message(), p.location(), p.backtrace()), ("it broke", None, None))
            }
            other => panic!("{other:?}"),
        }
        let full = RemotePanic::new("m".into(), Some("a.rs:1:2".into()), Some("bt".into()));
        let mut bytes = vec![ITEM_PANIC];
        "m".encode(&mut bytes);
        Some("a.rs:1:2").encode(&mut bytes);
        Some("bt").encode(&mut bytes);
        let mut out = Vec::<Result<u32, PoolError>>::new();
        decode_chunk(&bytes, 1, &mut out);
        assert!(matches!(&out[..], [Err(PoolError::Panicked(p))] if *p == full));
        // Every truncation decodes to an error, and every byte changed to one result per item
        // (an error, or whatever the changed bytes still say): never a panic of the decoder.
        for cut in 0..bytes.len() {
            let mut out = Vec::<Result<u32, PoolError>>::new();
            decode_chunk(&bytes[..cut], 1, &mut out);
            assert!(matches!(&out[..], [Err(PoolError::Decode(_))]), "cut {cut}: {out:?}");
        }
        for at in 0..bytes.len() {
            for v in [0u8, 1, 2, 0x7f, 0xff] {
                let mut garbled = bytes.clone();
                garbled[at] = v;
                let mut out = Vec::<Result<u32, PoolError>>::new();
                decode_chunk(&garbled, 2, &mut out);
                assert_eq!(out.len(), 2, "byte {at} = {v}");
            }
        }
    }

    #[test]
    fn control_records_round_trip() {
        let c = Ctl { kind: CTL_EXITED, slot: 7, pid: -3, value: 9, arg: u64::MAX - 1 };
        assert_eq!(Ctl::from_bytes(&c.to_bytes()), c);
        let mut buf = [0u8; SPAWNED_LEN];
        buf[..CTL_LEN].copy_from_slice(&c.to_bytes());
        assert_eq!(decode_ctl(&buf, CTL_LEN), Some(c));
        assert_eq!(decode_ctl(&buf, SPAWNED_LEN), None, "a secret without CTL_SPAWNED");
        assert_eq!(decode_ctl(&buf, CTL_LEN - 1), None);
        let spawned = Ctl::new(CTL_SPAWNED, 2);
        let buf = spawned.with_secret(&[5; SECRET_LEN]);
        assert_eq!(decode_ctl(&buf, SPAWNED_LEN), Some(spawned));
        assert_eq!(decode_ctl(&buf, CTL_LEN), None, "CTL_SPAWNED without its secret");
    }

    #[test]
    fn the_worker_runs_only_whole_authentic_frames_in_sequence() {
        let secret = u64::from_le_bytes(*b"\x01secret!");
        let (mut out, mut at) = (Vec::new(), Vec::new());
        let job = JobWords { kind: JOB_REGISTERED, a: 0, b: 0 };
        encode_task(&mut out, &mut at, 1, job, b"abc");
        encode_task(&mut out, &mut at, 2, job, &[9; 5000]);
        encode_stop(&mut out, &mut at);
        for &field in &at {
            out[field..field + SECRET_LEN].copy_from_slice(&secret.to_le_bytes());
        }
        let first = split(&out).unwrap().1;
        let second = first + split(&out[first..]).unwrap().1;
        // Before its secret is in, a frame is only read in small steps; after, as a whole.
        for cut in 0..first {
            let want = if cut < FRAME_HEADER_LEN + TASK_PREFIX { None } else { Some(first) };
            assert_eq!(
                next_for_worker(&out[..cut], secret, 0),
                Ok(Inbound::Read { frame_len: want }),
                "cut {cut}"
            );
        }
        match next_for_worker(&out, secret, 0) {
            Ok(Inbound::Task { task, wire_len }) => {
                assert_eq!(
                    (task.seq, task.job, task.payload, wire_len),
                    (1, job, &b"abc"[..], first)
                );
            }
            other => panic!("{other:?}"),
        }
        let second_len = second - first;
        assert_eq!(
            next_for_worker(&out[first..first + 100], secret, 1),
            Ok(Inbound::Read { frame_len: Some(second_len) })
        );
        assert!(matches!(
            next_for_worker(&out[first..], secret, 1),
            Ok(Inbound::Task { task: TaskFrame { seq: 2, .. }, wire_len }) if wire_len == second_len
        ));
        assert_eq!(
            next_for_worker(&out[second..], secret, 2),
            Ok(Inbound::Stop { wire_len: out.len() - second })
        );
        // A seq that does not grow, a wrong secret, or a length past memory is refused.
        assert!(next_for_worker(&out[first..], secret, 2).is_err());
        assert!(next_for_worker(&out, secret ^ 1, 0).is_err());
        let mut huge = out[second..].to_vec();
        huge[..FRAME_HEADER_LEN].copy_from_slice(&u64::MAX.to_le_bytes());
        let why = next_for_worker(&huge, secret, 2).unwrap_err();
        assert!(why.contains("bad message length"), "{why}");
    }

    #[test]
    fn the_parent_reads_only_whole_frames() {
        let mut out = Vec::new();
        let at = begin_result(&mut out, 4);
        out.extend_from_slice(b"abc");
        end_result(&mut out, at, 7);
        encode_ready(&mut out);
        let at = begin_frame(&mut out, 0x7f); // an unknown kind: ignored
        end_frame(&mut out, at);
        let first = FRAME_HEADER_LEN + RESULT_PREFIX + 3;
        let ends = [0, first, first + FRAME_HEADER_LEN + 1, first + 2 * (FRAME_HEADER_LEN + 1)];
        assert_eq!(ends[3], out.len());
        for cut in 0..out.len() {
            let mut seen = Vec::new();
            let used = each_from_worker(&out[..cut], |f| seen.push(f));
            let whole = ends[1..].iter().filter(|&&end| end <= cut).count();
            assert_eq!((seen.len(), used), (whole, ends[whole]), "cut {cut}");
        }
        let mut seen = Vec::new();
        assert_eq!(each_from_worker(&out, |f| seen.push(f)), out.len());
        let want = FromWorker::Result { seq: 4, elapsed_ns: 7, items: b"abc" };
        assert_eq!(seen, [Some(want), Some(FromWorker::Ready), None]);
        // A hostile length never overflows: reading stops there.
        let mut bad = u64::MAX.to_le_bytes().to_vec();
        bad.push(1);
        assert_eq!(each_from_worker(&bad, |_| panic!("no frame")), 0);
    }
}
