//! A worker's life: set up, then run chunks from its channel until told to stop.
//!
//! A worker is forked by the single-threaded fork server, so it may allocate, lock and run any
//! user code. It dies with the server (`PR_SET_PDEATHSIG(SIGKILL)`, checked against
//! `getppid()`), reads task frames from its own channel (blocking), checks that each carries
//! its secret (see [`proto`]; a frame that does not is reported to the parent as
//! a violation, and the worker exits without running it), claims each task in the shared ring
//! before running it (see [`slots`](super::slots)), runs it under `catch_unwind`, and writes the
//! result frame back before it reads the next one's outcome. It exits with code 0 after `STOP`,
//! at end of file, or after `max_tasks_per_child` tasks, flushing stdout and stderr first; it
//! never returns into the caller's stack.
#![allow(unsafe_code)]

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};

use multiproc_sys::affinity::{CpuSet, sched_setaffinity};
use multiproc_sys::io::{fd, stream};
use multiproc_sys::process::{exit, parent};
use multiproc_sys::{Errno, Pid, Signal};

use crate::fd_registry::RegisteredFd;
use crate::fork_safety::panic_message;

use super::config::Config;
use super::proto::{self, Inbound, JobWords};
use super::slots::{Slots, now_ns};
use super::work::run_chunk;

/// Ends the worker: flushes stdio and `_exit`s.
fn finish(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    exit::exit_now(code)
}

/// Writes a whole buffer to the channel; the parent being gone ends the worker.
fn send(chan: &RegisteredFd, bytes: &[u8]) {
    if stream::send_all(chan.as_fd(), bytes).is_err() {
        finish(0);
    }
}

/// Pins the worker and runs the initializer.
fn setup(cfg: &Config, slot: usize) -> Result<(), String> {
    if !cfg.cpus.is_empty() {
        let cpu = cfg.cpus[slot % cfg.cpus.len()];
        let mut set = CpuSet::new();
        set.set(cpu)
            .and_then(|()| sched_setaffinity(None, &set))
            .map_err(|e| format!("cannot pin worker {slot} to CPU {cpu}: {e}"))?;
    }
    if let Some(init) = &cfg.initializer {
        match catch_unwind(AssertUnwindSafe(init)) {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => return Err(msg),
            Err(p) => return Err(format!("the initializer panicked: {}", panic_message(&*p))),
        }
    }
    Ok(())
}

/// Reports a frame that did not come from this worker's pool, and exits: nothing after it on
/// the channel can be trusted either. The parent breaks the pool with the reason.
fn refuse(chan: &RegisteredFd, out: &mut Vec<u8>, why: &str) -> ! {
    out.clear();
    proto::encode_reason(out, proto::VIOLATION, why);
    send(chan, out);
    finish(1)
}

/// The worker's life. Never returns.
///
/// `secret` is this worker's secret (drawn by the server just before the fork): every frame it
/// runs must carry it (see [`proto`]).
pub(crate) fn worker_main(
    cfg: &Config,
    slot: usize,
    chan: OwnedFd,
    server: Pid,
    slots: &Slots,
    secret: [u8; proto::SECRET_LEN],
) -> ! {
    if parent::set_parent_death_signal(Signal::KILL, server).is_err() {
        // The server died before we got here.
        exit::exit_now(1);
    }
    // A `Process` a task forks closes the channel: it must not send results in our name.
    let chan = RegisteredFd::new(chan);
    // Panics of tasks get their location (and backtrace) recorded for `PoolError::Panicked`.
    crate::fork_safety::record_panics();
    let secret = u64::from_le_bytes(secret);
    let shm = slots.get(slot);
    let mut out: Vec<u8> = Vec::with_capacity(4096);

    if let Err(msg) = setup(cfg, slot) {
        proto::encode_reason(&mut out, proto::INIT_FAILED, &msg);
        send(&chan, &out);
        finish(1);
    }
    proto::encode_ready(&mut out);
    send(&chan, &out);

    let mut inbox = Inbox::new();
    let mut done: u64 = 0;
    // The seq of the last task frame: the parent's seqs start at 1 and grow.
    let mut last_seq: u64 = 0;
    loop {
        // Run every whole frame in the buffer; each is authenticated before its length is
        // trusted (see `proto::next_for_worker`).
        let frame_len = loop {
            let task = match inbox.next(secret, last_seq) {
                Ok(Inbound::Task { task, .. }) => task,
                Ok(Inbound::Stop { .. }) => finish(0),
                Ok(Inbound::Read { frame_len }) => break frame_len,
                Err(why) => refuse(&chan, &mut out, &why),
            };
            let seq = task.seq;
            last_seq = seq;
            let begun = now_ns();
            if !shm.claim(seq, begun) {
                continue; // cancelled by the parent
            }
            out.clear();
            let at = proto::begin_result(&mut out, seq);
            crate::fork_safety::clear_panic_record();
            run_job(cfg, task.job, task.payload, &mut out);
            proto::end_result(&mut out, at, now_ns().saturating_sub(begun));
            send(&chan, &out);
            done += 1;
            if cfg.max_tasks_per_child.is_some_and(|max| done >= max) {
                finish(0);
            }
        };
        let n = loop {
            match fd::read_once(chan.as_fd(), inbox.room(frame_len)) {
                Ok(n) => break n,
                Err(Errno::INTR) => {}
                Err(_) => finish(0),
            }
        };
        if n == 0 {
            finish(0); // the parent closed the channel
        }
        inbox.filled(n);
    }
}

/// A worker's read buffer: `rbuf[start..end]` holds the bytes read and not yet handled; the
/// whole buffer stays initialised, so reads go straight into it.
pub(crate) struct Inbox {
    rbuf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Inbox {
    /// Room a read is given before a frame's length can be trusted.
    const STEP: usize = 4096;

    /// An empty buffer of 64 KiB.
    pub(crate) fn new() -> Inbox {
        Inbox { rbuf: vec![0; 64 * 1024], start: 0, end: 0 }
    }

    /// What to do with the bytes at the front (see [`proto::next_for_worker`]); the frame of a
    /// task or a stop is consumed.
    pub(crate) fn next(&mut self, secret: u64, last_seq: u64) -> Result<Inbound<'_>, String> {
        let next = proto::next_for_worker(&self.rbuf[self.start..self.end], secret, last_seq)?;
        if let Inbound::Task { wire_len, .. } | Inbound::Stop { wire_len } = next {
            self.start += wire_len;
        }
        Ok(next)
    }

    /// Whether every byte read has been handled.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Keeps the partial frame at the front and returns the room to read more into: all of an
    /// authenticated frame of `frame_len` bytes, small steps before that (a forged length must
    /// not make us allocate).
    pub(crate) fn room(&mut self, frame_len: Option<usize>) -> &mut [u8] {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.start > 0 {
            self.rbuf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        let wanted = frame_len.unwrap_or(0).max(self.end + Self::STEP);
        if wanted > self.rbuf.len() {
            self.rbuf.resize(wanted.max(self.rbuf.len() * 2), 0);
        }
        &mut self.rbuf[self.end..]
    }

    /// `n` bytes were read into the room.
    pub(crate) fn filled(&mut self, n: usize) {
        self.end += n;
    }

    /// The buffer's size (for the fuzz target's bound on what a forged frame can cost).
    #[cfg(fuzzing)]
    pub(crate) fn capacity(&self) -> usize {
        self.rbuf.len()
    }
}

/// Runs one chunk.
fn run_job(cfg: &Config, job: JobWords, payload: &[u8], out: &mut Vec<u8>) {
    let JobWords { kind, a, b } = job;
    match kind {
        proto::JOB_CODE => {
            // SAFETY: `a` is the address of a `Tramp` and `b` its context word, both taken in
            // the parent from functions of this same executable, and `cfg.reloc` maps them to
            // this process (zero when it is a fork of a fork of the parent, made when the pool
            // was created, so the code is mapped at the same addresses; the offset of a fresh
            // `exec` of the same executable otherwise). The frame came from the parent: it
            // carried this worker's secret after these words (`proto::check_front`), which only the
            // parent and this worker have (see `secret.rs`).
            unsafe { crate::start::launch::run_code(cfg.reloc, a, b, payload, out) }
        }
        proto::JOB_REGISTERED => match cfg.registered.get(a as usize) {
            Some(runner) => runner(payload, out),
            None => run_chunk(|_: ()| (), b"", out),
        },
        _ => run_chunk(|_: ()| (), b"", out),
    }
}
