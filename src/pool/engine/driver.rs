//! The driver: one waiting thread at a time runs [`Shared::round`], which polls the control
//! socket, every worker channel and the wake eventfd without the lock, then handles what
//! happened (control records from the server, result frames from workers, workers' deaths) and
//! runs the scheduler again. See the module docs of [`engine`](super) for who drives.
#![allow(unsafe_code)] // `round` borrows the descriptors it polls: see the SAFETY comment there.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, MutexGuard};

use multiproc_sys::io::fd::{read_once, set_nonblocking};
use multiproc_sys::io::poll::{PollFd, PollFlags, poll};
use multiproc_sys::io::scm;
use multiproc_sys::process::wait::ExitStatus;
use multiproc_sys::time::Deadline;
use multiproc_sys::{Errno, Pid, Signal};

use crate::fd_registry::RegisteredFd;
use crate::pool::error::PoolError;
use crate::pool::proto::{self, Ctl, FromWorker};

use super::channel::{Worker, flush_worker};
use super::state::{Core, Phase, Shared, SlotState, TaskState};

/// What a poll entry belongs to.
#[derive(Debug, Clone, Copy)]
enum Owner {
    Wake,
    Control,
    Worker(usize, Pid),
}

impl Shared {
    /// Drives the engine until `done(core)` holds (`Ok(true)`) or the deadline passes
    /// (`Ok(false)`). Even with a deadline already passed, one non-blocking round is made, so
    /// results that have arrived are seen.
    pub(crate) fn wait_until(
        self: &Arc<Self>,
        deadline: Deadline,
        mut done: impl FnMut(&mut Core) -> bool,
    ) -> Result<bool, PoolError> {
        self.check_creator()?;
        let mut g = self.lock();
        let mut rounds = 0u32;
        loop {
            if done(&mut g) {
                return Ok(true);
            }
            if rounds > 0 && deadline.has_expired() {
                return Ok(false);
            }
            if g.driving {
                if deadline.has_expired() {
                    return Ok(false);
                }
                g.waiters += 1;
                g = match deadline.remaining() {
                    None => self.cond.wait(g).unwrap_or_else(|e| e.into_inner()),
                    Some(left) => {
                        self.cond.wait_timeout(g, left).unwrap_or_else(|e| e.into_inner()).0
                    }
                };
                g.waiters -= 1;
                continue;
            }
            g = self.round(g, deadline);
            rounds += 1;
        }
    }

    /// One driving round: dispatch, poll (without the lock), handle what happened, run the
    /// callbacks that became due (without the lock).
    pub(super) fn round<'a>(
        self: &'a Arc<Self>,
        mut g: MutexGuard<'a, Core>,
        deadline: Deadline,
    ) -> MutexGuard<'a, Core> {
        g.driving = true;
        g.maintain(&self.cfg, &self.slots);
        let mut plan: Vec<(RawFd, PollFlags, Owner)> = Vec::with_capacity(2 + g.slots.len());
        plan.push((self.wake.as_raw_fd(), PollFlags::IN, Owner::Wake));
        if let Some(c) = &g.control {
            let ev = if c.outq.is_empty() { PollFlags::IN } else { PollFlags::IN | PollFlags::OUT };
            plan.push((c.fd.as_raw_fd(), ev, Owner::Control));
        }
        for (i, s) in g.slots.iter().enumerate() {
            if let SlotState::Live(w) = s
                && !w.eof
            {
                let ev =
                    if w.wants_write() { PollFlags::IN | PollFlags::OUT } else { PollFlags::IN };
                plan.push((w.chan.as_raw_fd(), ev, Owner::Worker(i, w.pid)));
            }
        }
        let wake_at = g.next_wakeup(self.cfg.task_timeout, &self.slots).min(deadline);
        g.polling = true;
        drop(g);

        let revents: Vec<PollFlags> = {
            let mut fds: Vec<PollFd<'_>> = plan
                .iter()
                .map(|&(fd, ev, _)| {
                    // SAFETY: every fd in the plan belongs to the core and stays open until the
                    // round ends: while `polling` is set, retired fds go to the graveyard
                    // instead of being closed (see `Core::retire`), and the eventfd lives as
                    // long as `self`.
                    PollFd::from_borrowed_fd(unsafe { BorrowedFd::borrow_raw(fd) }, ev)
                })
                .collect();
            match poll(&mut fds, wake_at) {
                Ok(_) => fds.iter().map(PollFd::revents).collect(),
                // ENOMEM and the like: nothing to report this round; the next one retries.
                Err(_) => vec![PollFlags::empty(); fds.len()],
            }
        };

        let mut g = self.lock();
        g.polling = false;
        g.graveyard.clear();
        for (&(_, _, owner), rev) in plan.iter().zip(revents) {
            if rev.is_empty() {
                continue;
            }
            match owner {
                Owner::Wake => {
                    let mut b = [0u8; 8];
                    let _ = read_once(self.wake.as_fd(), &mut b);
                }
                Owner::Control => g.on_control(self, rev),
                Owner::Worker(i, pid) => g.on_worker(self, i, pid, rev),
            }
        }
        g.maintain(&self.cfg, &self.slots);
        g.driving = false;
        if g.waiters > 0 {
            self.cond.notify_all();
        }
        let cbs = std::mem::take(&mut g.callbacks);
        if cbs.is_empty() {
            return g;
        }
        drop(g);
        self.run_callbacks(cbs);
        self.lock()
    }
}

impl Core {
    fn on_control(&mut self, sh: &Shared, rev: PollFlags) {
        if rev.contains(PollFlags::OUT) {
            self.flush_control();
        }
        if !rev.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
            return;
        }
        loop {
            let Some(ctl) = &self.control else { return };
            let mut fds: [Option<OwnedFd>; 1] = [None];
            // Straight into the wiped page: a `CTL_SPAWNED` record is followed by a secret.
            let buf = self.secrets.recv_buf();
            let received = scm::recv_fds(ctl.fd.as_fd(), buf, &mut fds);
            let record = received.as_ref().ok().and_then(|r| proto::decode_ctl(buf, r.bytes));
            // Registered at once, so that children forked from now on close it.
            let [fd] = fds;
            let fd = fd.map(RegisteredFd::new);
            match received {
                Err(Errno::AGAIN) => return,
                Ok(r) if r.bytes == 0 && r.fds == 0 => {
                    self.server_gone(sh);
                    return;
                }
                Ok(_) => {
                    // A malformed record is ignored.
                    if let Some(c) = record {
                        self.on_ctl(sh, c, fd);
                    }
                    self.secrets.clear_recv();
                }
                Err(_) => {
                    self.server_gone(sh);
                    return;
                }
            }
        }
    }

    fn on_ctl(&mut self, sh: &Shared, c: Ctl, fd: Option<RegisteredFd>) {
        let i = c.slot as usize;
        if i >= self.slots.len() {
            return;
        }
        match c.kind {
            proto::CTL_SPAWNED => {
                let (Some(pid), Some(fd)) = (Pid::from_raw(c.pid), fd) else { return };
                if !matches!(self.slots[i], SlotState::Spawning) {
                    return;
                }
                let _ = set_nonblocking(fd.as_fd(), true);
                // Its secret followed the record (checked by `on_control`).
                self.secrets.adopt(i);
                let budget = sh.cfg.max_tasks_per_child;
                self.slots[i] = SlotState::Live(Box::new(Worker::new(pid, fd, budget)));
            }
            proto::CTL_SPAWN_FAILED => {
                self.slots[i] = SlotState::Empty;
                let e = std::io::Error::from_raw_os_error(c.value);
                self.break_pool(PoolError::BrokenPool(format!("cannot fork a pool worker: {e}")));
            }
            proto::CTL_EXITED => {
                let status = match c.arg {
                    proto::STATUS_EXITED => Some(ExitStatus::Exited(c.value)),
                    proto::STATUS_SIGNALED => Some(ExitStatus::Signaled(c.value)),
                    _ => None,
                };
                if let Some(pid) = Pid::from_raw(c.pid) {
                    self.worker_exited(sh, i, pid, status);
                }
            }
            _ => {}
        }
    }

    /// The control socket reached end of file: the server exited.
    fn server_gone(&mut self, sh: &Shared) {
        if let Some(c) = self.control.take() {
            self.retire(c.fd);
        }
        if !self.exit_sent {
            self.break_pool(PoolError::BrokenPool(format!(
                "the pool's fork server (pid {}) died",
                sh.server.as_raw_nonzero()
            )));
        }
        // Its workers die with it (parent-death signal); nothing more will be reported.
        let slots: Vec<SlotState> =
            self.slots.iter_mut().map(|s| std::mem::replace(s, SlotState::Empty)).collect();
        for (i, s) in slots.into_iter().enumerate() {
            if let SlotState::Live(mut w) = s {
                self.read_worker(sh, i, &mut w);
                self.retire(w.chan);
            }
        }
        self.fail_all(&self.broken.clone().unwrap_or(PoolError::Terminated));
    }

    fn on_worker(&mut self, sh: &Shared, i: usize, pid: Pid, rev: PollFlags) {
        let SlotState::Live(w) = &mut self.slots[i] else { return };
        if w.pid != pid {
            return;
        }
        if rev.contains(PollFlags::OUT) {
            flush_worker(w, self.secrets.get(i));
        }
        if rev.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
            let SlotState::Live(mut w) = std::mem::replace(&mut self.slots[i], SlotState::Spawning)
            else {
                unreachable!()
            };
            self.read_worker(sh, i, &mut w);
            self.slots[i] = SlotState::Live(w);
        }
    }

    /// Reads what the worker sent and handles every whole frame.
    fn read_worker(&mut self, sh: &Shared, i: usize, w: &mut Worker) {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.resize(64 * 1024, 0);
        while !w.eof {
            match read_once(w.chan.as_fd(), &mut buf[..]) {
                Ok(0) => w.eof = true,
                Ok(n) => {
                    w.rbuf.extend_from_slice(&buf[..n]);
                    if n < buf.len() {
                        break;
                    }
                }
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => break,
                Err(_) => w.eof = true,
            }
        }
        self.scratch = buf;
        let rbuf = std::mem::take(&mut w.rbuf);
        let used = proto::each_from_worker(&rbuf, |frame| self.on_frame(sh, i, w, frame));
        w.rbuf = rbuf;
        w.rbuf.drain(..used);
    }

    fn on_frame(&mut self, _sh: &Shared, _i: usize, w: &mut Worker, frame: Option<FromWorker<'_>>) {
        match frame {
            Some(FromWorker::Ready) => {
                w.ready = true;
                self.early_deaths = 0;
            }
            Some(FromWorker::Violation(why)) => {
                // Another process holds this worker's channel and wrote to it (issue 19). The
                // worker ran none of it and exits; the pool cannot vouch for its channels any
                // longer, so it stops, loudly.
                self.break_pool(PoolError::BrokenPool(format!(
                    "pool worker {} refused {why}: another process wrote to its channel, so \
                     the pool stops",
                    w.pid.as_raw_nonzero()
                )));
            }
            Some(FromWorker::InitFailed(msg)) => {
                w.init_failed = true;
                self.break_pool(PoolError::InitializerFailed(msg));
            }
            Some(FromWorker::Result { seq, elapsed_ns: elapsed, items }) => {
                let pos = if w.inflight.front().is_some_and(|&(s, _)| s == seq) {
                    0
                } else {
                    match w.inflight.iter().position(|&(s, _)| s == seq) {
                        Some(pos) => pos,
                        None => return,
                    }
                };
                let (_, id) = w.inflight.remove(pos).expect("position is in range");
                self.ema_ns =
                    if self.ema_ns == 0 { elapsed } else { (self.ema_ns * 7 + elapsed) / 8 };
                if let Some(t) = self.tasks.remove(id) {
                    self.deliver(t, Ok(items));
                }
            }
            None => {}
        }
    }

    /// The server reaped worker `pid` of slot `i`.
    fn worker_exited(&mut self, sh: &Shared, i: usize, pid: Pid, status: Option<ExitStatus>) {
        let w = match std::mem::replace(&mut self.slots[i], SlotState::Empty) {
            SlotState::Live(w) if w.pid == pid => w,
            other => {
                self.slots[i] = other;
                return;
            }
        };
        let mut w = w;
        // Everything it wrote before dying is in the socket: take it first.
        self.read_worker(sh, i, &mut w);
        let exitcode = status.map(|s| s.exitcode());
        let shm = sh.slots.get(i);
        let running = matches!(self.phase, Phase::Running | Phase::Closed);
        // An executor built to break on a worker's death (Python's BrokenProcessPool) fails
        // the running and pending tasks alike, the running one included.
        let abrupt = status != Some(ExitStatus::Exited(0)) && !w.kill_sent && !w.stop_sent;
        let lost_started = w
            .inflight
            .iter()
            .any(|&(seq, id)| shm.started(seq) && self.tasks.get(id).is_some_and(|t| !t.timed_out));
        if sh.cfg.break_on_worker_death && running && (lost_started || abrupt) {
            self.break_pool(PoolError::BrokenPool(
                "A process in the process pool was terminated abruptly while the future was \
                 running or pending."
                    .into(),
            ));
        }
        let mut requeue = Vec::new();
        for (seq, id) in w.inflight.drain(..) {
            if !self.tasks.contains(id) {
                continue;
            }
            if shm.started(seq) {
                let t = self.tasks.remove(id).expect("checked above");
                let err = if t.timed_out {
                    PoolError::TaskTimeout { pid, timeout: sh.cfg.task_timeout.unwrap_or_default() }
                } else {
                    PoolError::WorkerLost { pid, exitcode }
                };
                self.deliver(t, Err(err));
            } else {
                requeue.push(id);
            }
        }
        for &id in requeue.iter().rev() {
            if let Some(t) = self.tasks.get_mut(id) {
                t.state = TaskState::Queued;
                self.queue.push_front(id);
                self.queued += 1;
            }
        }
        // A worker that dies before it is ready is replaced, like one that dies later, unless
        // that says something about the pool: its initializer may have killed it (any end but
        // a kill from outside: SIGKILL or SIGTERM, from the OOM killer or an operator), or
        // workers keep dying before any becomes ready (Python's endless respawning of a pool
        // whose workers cannot start, gh-87472).
        let killed = matches!(
            status,
            Some(ExitStatus::Signaled(s)) if s == Signal::KILL.as_raw() || s == Signal::TERM.as_raw()
        );
        let early = running && !w.ready && !w.init_failed && !w.kill_sent;
        if early {
            self.early_deaths += 1;
        }
        let hopeless = self.early_deaths > 2 * self.slots.len() + 3;
        let initializer_may_have = sh.cfg.initializer.is_some() && !killed;
        if early && (initializer_may_have || hopeless) && self.broken.is_none() {
            let mut why = String::new();
            let _ = std::fmt::Write::write_fmt(
                &mut why,
                format_args!(
                    "worker {} ended before it was ready ({})",
                    pid.as_raw_nonzero(),
                    ExitDesc(exitcode)
                ),
            );
            self.break_pool(PoolError::InitializerFailed(why));
        }
        shm.reset();
        self.retire(w.chan);
    }
}

/// Display of a Python-style exit code.
struct ExitDesc(Option<i32>);

impl std::fmt::Display for ExitDesc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::pool::error::describe_exitcode(f, self.0)
    }
}
