//! The parent's ends of the channels: each worker's `SOCK_STREAM` socket ([`Worker`], written
//! without blocking, with the worker's secret gathered in from the wiped page by
//! [`flush_worker`]) and the control socket to the server ([`Control`]).

use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::AsFd;

use multiproc_sys::io::{poll, scm, socket};
use multiproc_sys::time::Deadline;
use multiproc_sys::{Errno, Pid};

use crate::fd_registry::RegisteredFd;
use crate::pool::proto::{self, Ctl, JobWords};
#[cfg(doc)]
use crate::pool::secret::Secrets;
use crate::pool::slots::RING;
use crate::pool::work::Job;

/// The parent's view of a worker.
pub(super) struct Worker {
    pub(super) pid: Pid,
    pub(super) chan: RegisteredFd,
    pub(super) rbuf: Vec<u8>,
    pub(super) wbuf: Vec<u8>,
    pub(super) wpos: usize,
    /// Where the frames in `wbuf` have their secret (zeros there: the bytes are sent from
    /// [`Secrets`]), in increasing order; those before `wpos` are sent.
    pub(super) secret_at: Vec<usize>,
    /// Tasks sent and not resolved, in the order sent: `(seq, task id)`.
    pub(super) inflight: VecDeque<(u64, u64)>,
    pub(super) next_seq: u64,
    /// Tasks it may still be sent (`max_tasks_per_child`).
    pub(super) budget: Option<u64>,
    pub(super) ready: bool,
    /// Reading reached end of file.
    pub(super) eof: bool,
    /// Writing failed (the worker is gone); what it sent may still be read.
    pub(super) write_dead: bool,
    pub(super) stop_sent: bool,
    pub(super) kill_sent: bool,
    pub(super) init_failed: bool,
}

impl Worker {
    /// The record of a worker that has just been spawned: `pid`, its channel (already
    /// nonblocking), and how many tasks it may run.
    pub(super) fn new(pid: Pid, chan: RegisteredFd, budget: Option<u64>) -> Worker {
        Worker {
            pid,
            chan,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            secret_at: Vec::new(),
            inflight: VecDeque::new(),
            next_seq: 1,
            budget,
            ready: false,
            eof: false,
            write_dead: false,
            stop_sent: false,
            kill_sent: false,
            init_failed: false,
        }
    }

    /// Whether it may be sent more tasks.
    pub(super) fn accepting(&self) -> bool {
        !self.eof && !self.write_dead && !self.stop_sent && !self.kill_sent && !self.init_failed
    }

    /// Queues task `seq` running `job` on `payload` (sent by [`flush_worker`]).
    pub(super) fn queue_task(&mut self, seq: u64, job: Job, payload: &[u8]) {
        let words = match job {
            Job::Code { tramp, ctx } => {
                JobWords { kind: proto::JOB_CODE, a: tramp as u64, b: ctx as u64 }
            }
            Job::Registered { index, .. } => {
                JobWords { kind: proto::JOB_REGISTERED, a: index as u64, b: 0 }
            }
        };
        proto::encode_task(&mut self.wbuf, &mut self.secret_at, seq, words, payload);
    }

    /// Queues a `STOP` (sent by [`flush_worker`]).
    pub(super) fn queue_stop(&mut self) {
        proto::encode_stop(&mut self.wbuf, &mut self.secret_at);
    }

    /// Whether frames wait to be written.
    pub(super) fn wants_write(&self) -> bool {
        self.wpos < self.wbuf.len() && !self.write_dead
    }
}

/// The parent's end of the control socket, with the records not sent yet.
pub(super) struct Control {
    pub(super) fd: RegisteredFd,
    pub(super) outq: VecDeque<[u8; proto::CTL_LEN]>,
}

impl Control {
    /// Wraps the parent's end of the control socket (already nonblocking).
    pub(super) fn new(fd: RegisteredFd) -> Control {
        Control { fd, outq: VecDeque::new() }
    }

    /// Queues a record.
    pub(super) fn send(&mut self, c: Ctl) {
        self.outq.push_back(c.to_bytes());
    }

    /// Sends what the socket takes now; the server being gone drops the rest (its end of
    /// file is handled when read).
    pub(super) fn flush(&mut self) {
        while let Some(m) = self.outq.front() {
            match scm::send_fds(self.fd.as_fd(), m, &[]) {
                Ok(_) => {
                    self.outq.pop_front();
                }
                Err(Errno::AGAIN) => return,
                Err(_) => {
                    // The server is gone; its EOF is handled when read.
                    self.outq.clear();
                    return;
                }
            }
        }
    }

    /// Sends every queued record, waiting until `deadline` at most.
    pub(super) fn flush_blocking(&mut self, deadline: Deadline) {
        loop {
            self.flush();
            if self.outq.is_empty() {
                return;
            }
            match poll::wait_writable(self.fd.as_fd(), deadline) {
                Ok(true) => {}
                _ => return,
            }
        }
    }
}

/// Most pieces one `sendmsg` gathers: a full pipeline (`RING` task frames and a STOP, two
/// pieces per frame, and the rest) goes in one call. Well under `IOV_MAX` (1024 on Linux).
const MAX_IOV: usize = 2 * RING + 4;

/// Writes as much of the worker's pending frames as the socket takes, without blocking.
///
/// The frames' secret fields are zeros in `wbuf`; `sendmsg` gathers `secret` (in the wiped
/// page, see [`Secrets`]) in their place, so the secret never sits in memory a fork copies.
pub(super) fn flush_worker(w: &mut Worker, secret: &[u8; proto::SECRET_LEN]) {
    // The first secret field not wholly sent yet.
    let mut next = 0;
    while w.wpos < w.wbuf.len() {
        let mut iov = [IoSlice::new(&[]); MAX_IOV];
        let mut len = 0;
        let mut pos = w.wpos;
        // Whether every secret field is in `iov`: only then may the rest of `wbuf` follow.
        let mut every_field = true;
        for &field in &w.secret_at[next..] {
            if len + 2 > MAX_IOV {
                every_field = false;
                break;
            }
            if pos < field {
                iov[len] = IoSlice::new(&w.wbuf[pos..field]);
                len += 1;
            }
            // `pos` is at most `field + SECRET_LEN` here: fields before `next` are sent.
            iov[len] = IoSlice::new(&secret[pos.saturating_sub(field)..]);
            len += 1;
            pos = field + proto::SECRET_LEN;
        }
        if every_field && len < MAX_IOV && pos < w.wbuf.len() {
            iov[len] = IoSlice::new(&w.wbuf[pos..]);
            len += 1;
        }
        match socket::send_vectored_nonblocking(w.chan.as_fd(), &iov[..len]) {
            Ok(n) => {
                w.wpos += n;
                while w.secret_at.get(next).is_some_and(|&f| f + proto::SECRET_LEN <= w.wpos) {
                    next += 1;
                }
            }
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                w.secret_at.drain(..next);
                return;
            }
            Err(_) => {
                // The worker is gone: the server's report will tell what happened. What it
                // wrote before is still to be read.
                w.write_dead = true;
                break;
            }
        }
    }
    w.wbuf.clear();
    w.secret_at.clear();
    w.wpos = 0;
}

#[cfg(test)]
mod tests {
    use std::os::fd::OwnedFd;

    use multiproc_sys::io::{fd, stream};
    use multiproc_sys::process::pid;

    use super::*;
    use crate::codec::FRAME_HEADER_LEN;
    use crate::pool::proto::Inbound;
    use crate::pool::worker::Inbox;

    /// A worker record around one end of a fresh socketpair; the other end is returned.
    fn worker() -> (Worker, OwnedFd) {
        let (a, b) = socket::socketpair().unwrap();
        fd::set_nonblocking(a.as_fd(), true).unwrap();
        let mut w = Worker::new(pid::getpid(), RegisteredFd::new(a), None);
        w.ready = true;
        (w, b)
    }

    /// Reads what `flush_worker` sent as the worker does, and checks every frame's secret, seq
    /// and payload.
    fn check_frames(peer: &OwnedFd, frames: usize, secret: &[u8; 8], payload: &[u8]) {
        let mut inbox = Inbox::new();
        let mut seen = 0;
        while seen < frames {
            match inbox.next(u64::from_le_bytes(*secret), seen as u64) {
                Ok(Inbound::Task { task, .. }) => {
                    seen += 1;
                    assert_eq!(task.seq, seen as u64);
                    assert_eq!(&task.secret, secret, "frame {seen}");
                    assert_eq!(task.payload, payload, "frame {seen}");
                }
                Ok(Inbound::Stop { wire_len }) => {
                    seen += 1;
                    assert_eq!(seen, frames, "a STOP before the last frame");
                    assert_eq!(wire_len, FRAME_HEADER_LEN + proto::STOP_LEN);
                }
                Ok(Inbound::Read { frame_len }) => {
                    let n = fd::read_once(peer.as_fd(), inbox.room(frame_len)).unwrap();
                    assert!(n > 0, "end of file after {seen} frames");
                    inbox.filled(n);
                }
                Err(why) => panic!("frame {}: the worker refuses {why}", seen + 1),
            }
        }
        assert!(inbox.is_empty());
    }

    #[test]
    fn every_flushed_frame_carries_the_secret_however_the_sends_are_cut() {
        let secret = *b"\x01secret!";
        let job = Job::Code { tramp: 0x1234, ctx: 0 };
        // (tasks, payload bytes, send buffer, STOP at the end): exactly one gather list of
        // secrets with data after the last one, many lists, big frames, a small send buffer.
        for (tasks, payload_len, sndbuf, stop) in [
            (1, 0, None, true),
            (MAX_IOV / 2, 3, None, false),
            (MAX_IOV / 2 - 1, 3, None, true),
            (200, 3, None, true),
            (40, 70_000, None, true),
            (3000, 5, Some(4096), true),
        ] {
            let (mut w, peer) = worker();
            if let Some(size) = sndbuf {
                // A small buffer: sends stop anywhere, inside secrets too.
                socket::set_send_buffer_size(w.chan.as_fd(), size).unwrap();
            }
            let payload: Vec<u8> = (0..payload_len).map(|i| i as u8).collect();
            for seq in 1..=tasks {
                w.queue_task(seq as u64, job, &payload);
            }
            if stop {
                w.queue_stop();
            }
            let frames = tasks + usize::from(stop);
            // The secret is not in the write buffer: only zeros where it goes.
            assert!(!w.wbuf.windows(8).any(|win| win == secret));
            let reader = std::thread::spawn(move || {
                check_frames(&peer, frames, &secret, &payload);
            });
            while !w.wbuf.is_empty() {
                flush_worker(&mut w, &secret);
                assert!(!w.write_dead);
                if !w.wbuf.is_empty() {
                    poll::wait_writable(w.chan.as_fd(), Deadline::FOREVER).unwrap();
                }
            }
            assert!(w.secret_at.is_empty());
            reader.join().unwrap();
        }
    }

    #[test]
    fn a_flush_that_resumes_inside_or_at_a_secret_sends_every_secret() {
        // What an earlier partial send leaves: `wpos` inside a frame's secret, or right at it.
        let secret = *b"\x02secret?";
        let job = Job::Registered { pool: 0, index: 0 };
        let first = FRAME_HEADER_LEN + proto::TASK_SECRET_AT;
        for cut in [first, first + 1, first + 7, first + 8, first + 9] {
            let (mut w, peer) = worker();
            for seq in 1..=200 {
                w.queue_task(seq, job, b"xyz");
            }
            let reader = std::thread::spawn(move || check_frames(&peer, 200, &secret, b"xyz"));
            // Send the first `cut` bytes as the earlier send did (with the secret in place).
            let mut sent = w.wbuf[..cut].to_vec();
            let field = w.secret_at[0];
            let end = cut.min(field + proto::SECRET_LEN);
            if end > field {
                sent[field..end].copy_from_slice(&secret[..end - field]);
            }
            fd::set_nonblocking(w.chan.as_fd(), false).unwrap();
            stream::send_all(w.chan.as_fd(), &sent).unwrap();
            fd::set_nonblocking(w.chan.as_fd(), true).unwrap();
            w.wpos = cut;
            w.secret_at.retain(|&f| f + proto::SECRET_LEN > cut);
            while !w.wbuf.is_empty() {
                flush_worker(&mut w, &secret);
                assert!(!w.write_dead);
                if !w.wbuf.is_empty() {
                    poll::wait_writable(w.chan.as_fd(), Deadline::FOREVER).unwrap();
                }
            }
            reader.join().unwrap();
        }
    }
}
