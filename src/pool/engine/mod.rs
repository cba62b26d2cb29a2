//! The parent side of a pool: the engine shared by [`Pool`](super::Pool) and
//! [`ProcessPoolExecutor`](super::ProcessPoolExecutor).
//!
//! # Processes and channels
//!
//! ```text
//!   parent (any number of threads)
//!     |  control: SOCK_SEQPACKET socketpair (spawn / kill / exited / terminate)
//!     |  + one SOCK_STREAM socketpair per worker (tasks out, results back),
//!     |    whose parent end the server passes over the control socket (SCM_RIGHTS)
//!   fork server (one thread, forked by Pool::new)
//!     |  fork, waitpid
//!   workers (forked by the server, never by the parent)
//! ```
//!
//! # Who holds the channels
//!
//! The parent end of each worker channel, and of the control socket, is held by the parent, and
//! for a moment by the server that made it. It is *also* held by every process forked from the
//! parent while it is open, since Linux has no close-on-fork: the crate's own children (a
//! `Process` child, another pool's fork server) close them first thing, because they are
//! registered in `fd_registry` ([`RegisteredFd`]) as soon as the parent receives them; a child
//! of a raw `fork` keeps them. So a worker does not trust its channel: every frame the parent
//! sends carries the worker's secret, which the server draws before forking the worker and
//! passes to the parent after `CTL_SPAWNED`, and which the parent keeps and sends only from a
//! page no forked child gets ([`Secrets`]). A worker that receives a frame without it runs
//! nothing, reports a `VIOLATION` and exits; the parent then breaks the pool (issue 19).
//!
//! # Driving, without helper threads
//!
//! All state lives in [`Core`], under one mutex. There is no background thread: a thread that
//! waits for something (a `map`, an `imap` item, `get`, `result`, `join`) *drives* the engine
//! while it waits. One thread at a time is the driver ([`Core::driving`]): it dispatches queued
//! tasks, then releases the mutex and `poll`s the control socket, every worker channel and an
//! eventfd, then takes the mutex again to read results, handle deaths and dispatch more. Other
//! waiting threads sleep on a condvar with their own deadline, and are woken after each round;
//! one of them takes over when the driver's own wait is over. A thread that changes the state
//! while the driver polls (a submission, a cancel, a terminate) writes to the eventfd so that
//! the driver looks again. No lock is ever held across a user task, a user callback or a `poll`.
//!
//! File descriptors are never closed while the driver polls them: a descriptor retired at that
//! moment goes to [`Core::graveyard`] until the round ends.
//!
//! # Which task a worker holds
//!
//! Each worker has its own channel and a FIFO of the tasks sent to it ([`Worker::inflight`]),
//! pipelined up to a depth that adapts to the tasks' duration (many tiny tasks per write, one
//! long task at a time). The shared [`SlotShm`](super::slots::SlotShm) ring says which of them
//! the worker has started. When the server reports a worker's death, the parent first reads
//! whatever results the worker sent, then fails the task it had started (with
//! [`PoolError::WorkerLost`], or [`PoolError::TaskTimeout`] if the parent killed it for running
//! too long) and sends the ones it had not started to other workers.

//!
//! # Files
//!
//! - [`state`]: the task model and [`Core`], the state under the mutex, with the transitions
//!   that need no I/O (deliver, complete, fail, cancel).
//! - [`scheduler`]: what runs after every change: dispatch and pipelining, stealing back
//!   unstarted tasks, replacing and stopping workers, timeouts (unit-tested without forking).
//! - [`driver`]: the poll loop, and reading control records, results and deaths.
//! - [`channel`]: the parent's ends of the worker channels and of the control socket.
//! - [`spawn`]: creating the server (`fork`, or a launch by the start machinery).
//! - this file: [`Shared`]'s entry points, used by the typed handles.

mod channel;
mod driver;
mod scheduler;
mod spawn;
mod state;

use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use multiproc_sys::time::Deadline;
use multiproc_sys::{Pid, Signal};

#[cfg(doc)]
use crate::fd_registry::RegisteredFd;
#[cfg(doc)]
use crate::pool::secret::Secrets;

use super::error::PoolError;
use super::proto::{self, Ctl};
use super::work::Job;

#[cfg(doc)]
use self::channel::Worker;
pub(crate) use self::spawn::start;
use self::state::{Batch, Payload, Phase, SlotState, TaskEntry, TaskState};
pub(crate) use self::state::{
    BatchId, Callback, ChunkOut, Completed, Core, Mode, Shared, StreamChunk, TaskId,
};

/// How long `terminate` waits for the server beyond the workers' grace period before it kills
/// the server itself.
const SERVER_MARGIN: Duration = Duration::from_secs(2);

/// How long [`Shared::worker_pids`] waits for the server to report the workers it was asked
/// to fork (it answers within milliseconds unless the system is overloaded).
const SPAWN_WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Shared: the entry points used by the typed handles

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Core> {
        // Every state change is completed before any call that could panic, so a poisoned
        // mutex still guards consistent state.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lock, if called in the process that created the pool.
    pub(crate) fn lock_checked(&self) -> Result<MutexGuard<'_, Core>, PoolError> {
        self.check_creator()?;
        Ok(self.lock())
    }

    /// Errors unless called in the process that created the pool.
    pub(crate) fn check_creator(&self) -> Result<(), PoolError> {
        if self.is_creator() {
            Ok(())
        } else {
            Err(PoolError::InvalidState("a pool can only be used by the process that created it"))
        }
    }

    pub(crate) fn is_creator(&self) -> bool {
        spawn::is_creator(self.creator)
    }

    /// Tells a driver blocked in `poll` to look at the state again.
    fn wake_driver(&self, core: &Core) {
        if core.polling {
            let _ = multiproc_sys::io::fd::write_once(
                std::os::fd::AsFd::as_fd(&self.wake),
                &1u64.to_ne_bytes(),
            );
        }
    }

    /// The error a new submission gets, if the pool does not accept one.
    fn refuse(&self, core: &Core) -> Option<PoolError> {
        if let Some(b) = &core.broken {
            return Some(match b {
                PoolError::BrokenPool(_) if self.cfg.executor => PoolError::BrokenPool(
                    "A child process terminated abruptly, the process pool is not usable anymore"
                        .into(),
                ),
                other => other.clone(),
            });
        }
        match core.phase {
            Phase::Running => None,
            _ if self.cfg.executor => Some(PoolError::Shutdown),
            _ => Some(PoolError::NotRunning),
        }
    }

    /// Checks that `job` may run on this pool.
    fn check_job(&self, job: Job) -> Result<(), PoolError> {
        match job {
            Job::Code { .. } => Ok(()),
            Job::Registered { pool, index } => {
                if pool != self.cfg.pool_id || index >= self.cfg.registered.len() {
                    Err(PoolError::InvalidArgument("this Task was registered with another pool"))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Submits a new batch made of `chunks` (a range of `buf` holding the chunk's payload,
    /// and its item count) and dispatches what it can. `sealed`: no more chunks will be added
    /// (streams pass `false` and add chunks later).
    pub(crate) fn submit(
        self: &Arc<Self>,
        mode: Mode,
        job: Job,
        buf: Vec<u8>,
        chunks: Vec<(Range<usize>, usize)>,
        sealed: bool,
    ) -> Result<BatchId, PoolError> {
        let buf = Arc::new(buf);
        self.check_creator()?;
        self.check_job(job)?;
        let mut g = self.lock();
        if let Some(e) = self.refuse(&g) {
            return Err(e);
        }
        let id = g.next_id();
        let total = if mode == Mode::Collect { chunks.len() } else { 0 };
        let mut batch = Batch::new(mode, total, sealed || mode == Mode::Collect);
        if mode != Mode::Collect && !batch.sealed {
            g.open_streams += 1;
        }
        let single = chunks.len() == 1;
        let chunk_count = chunks.len();
        let mut first_task = None;
        g.queue.reserve(chunk_count);
        for (chunk, (range, n)) in chunks.into_iter().enumerate() {
            let payload = Payload { buf: buf.clone(), range };
            let tid = g.tasks.insert(TaskEntry {
                job,
                payload,
                n,
                batch: id,
                chunk,
                state: TaskState::Queued,
                timed_out: false,
            });
            first_task.get_or_insert(tid);
            g.queue.push_back(tid);
            g.queued += 1;
        }
        if mode != Mode::Collect {
            batch.outstanding = chunk_count;
        }
        if single {
            batch.task = first_task;
        }
        let empty_collect = mode == Mode::Collect && chunk_count == 0;
        g.batches.insert(id, batch);
        if empty_collect {
            g.complete(id);
        }
        g.maintain(&self.cfg, &self.slots);
        self.wake_driver(&g);
        let cbs = std::mem::take(&mut g.callbacks);
        drop(g);
        self.run_callbacks(cbs);
        Ok(id)
    }

    /// Adds a chunk to a stream batch. If the pool no longer runs, the chunk fails at once
    /// with the reason, which is also returned.
    pub(crate) fn add_chunk(
        &self,
        batch: BatchId,
        job: Job,
        chunk: usize,
        payload: Vec<u8>,
        n: usize,
    ) -> Result<(), PoolError> {
        self.check_creator()?;
        let mut g = self.lock();
        let refused = match (&g.broken, g.phase) {
            (Some(b), _) => Some(b.clone()),
            (None, Phase::Terminated | Phase::Joined) => Some(PoolError::Terminated),
            _ => None,
        };
        let Some(b) = g.batches.get_mut(&batch) else { return Err(PoolError::Terminated) };
        if let Some(e) = refused {
            b.push_ready(chunk, StreamChunk { result: Err(e.clone()), n });
            return Err(e);
        }
        b.outstanding += 1;
        let len = payload.len();
        let payload = Payload { buf: Arc::new(payload), range: 0..len };
        let tid = g.tasks.insert(TaskEntry {
            job,
            payload,
            n,
            batch,
            chunk,
            state: TaskState::Queued,
            timed_out: false,
        });
        g.queue.push_back(tid);
        g.queued += 1;
        g.maintain(&self.cfg, &self.slots);
        self.wake_driver(&g);
        Ok(())
    }

    /// Adds to a stream batch a one-item chunk that failed before it could be sent (its
    /// argument could not be encoded): it is ready at once, with `err`.
    pub(crate) fn add_failed_chunk(&self, batch: BatchId, chunk: usize, err: PoolError) {
        if !self.is_creator() {
            return;
        }
        if let Some(b) = self.lock().batches.get_mut(&batch) {
            b.push_ready(chunk, StreamChunk { result: Err(err), n: 1 });
        }
    }

    /// Marks a stream batch as complete on the input side.
    pub(crate) fn seal(&self, batch: BatchId) {
        if !self.is_creator() {
            return;
        }
        let mut g = self.lock();
        if let Some(b) = g.batches.get_mut(&batch)
            && !b.sealed
        {
            b.sealed = true;
            g.open_streams -= 1;
            g.maintain(&self.cfg, &self.slots);
            self.wake_driver(&g);
        }
    }

    /// A new handle to `batch` (a cloned future).
    pub(crate) fn retain(&self, batch: BatchId) {
        if !self.is_creator() {
            return;
        }
        if let Some(b) = self.lock().batches.get_mut(&batch) {
            b.handles += 1;
        }
    }

    /// A handle to `batch` was dropped.
    pub(crate) fn release(&self, batch: BatchId) {
        // A copy inherited by a forked child must not touch the parent's pool (its mutex may
        // even have been held by another thread at the fork).
        if !self.is_creator() {
            return;
        }
        let mut g = self.lock();
        let Some(b) = g.batches.get_mut(&batch) else { return };
        b.handles -= 1;
        if b.handles > 0 {
            return;
        }
        match b.mode {
            Mode::Collect => {
                if b.done.is_some() {
                    g.batches.remove(&batch);
                }
                // Otherwise it stays until it completes, so that its callbacks run.
            }
            Mode::Ordered | Mode::Unordered => {
                // Nobody will read the rest: forget it. Queued tasks are dropped at dispatch;
                // results of tasks already sent are discarded when they arrive.
                if !b.sealed {
                    g.open_streams -= 1;
                }
                g.batches.remove(&batch);
                g.maintain(&self.cfg, &self.slots);
                self.wake_driver(&g);
            }
        }
    }

    /// Registers a callback for a collect batch, or returns its results if it is already done
    /// (the caller then runs the callback itself, outside the lock).
    pub(crate) fn on_done(
        &self,
        batch: BatchId,
        cb: Callback,
    ) -> Option<(Arc<Completed>, Callback)> {
        if !self.is_creator() {
            return None;
        }
        let mut g = self.lock();
        let b = g.batches.get_mut(&batch)?;
        match &b.done {
            Some(done) => Some((done.clone(), cb)),
            None => {
                b.callbacks.push(cb);
                None
            }
        }
    }

    /// Runs callbacks (outside the lock). A panicking callback is reported on stderr and
    /// ignored, as Python logs and ignores an exception in a done-callback.
    pub(crate) fn run_callbacks(self: &Arc<Self>, cbs: Vec<(BatchId, Arc<Completed>, Callback)>) {
        if cbs.is_empty() {
            return;
        }
        let mut ran = Vec::with_capacity(cbs.len());
        for (batch, done, cb) in cbs {
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| cb(self, batch, &done))) {
                eprintln!(
                    "multiproc: a pool callback panicked (ignored): {}",
                    crate::fork_safety::panic_message(&*p)
                );
            }
            ran.push(batch);
        }
        // Batches kept only for their callbacks can go now.
        let mut g = self.lock();
        for batch in ran {
            if g.batches.get(&batch).is_some_and(|b| b.handles == 0 && b.done.is_some()) {
                g.batches.remove(&batch);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Lifecycle

    /// Stops accepting tasks; workers exit once the work already submitted is done.
    pub(crate) fn close(&self) -> Result<(), PoolError> {
        self.check_creator()?;
        let mut g = self.lock();
        if g.phase == Phase::Running {
            g.phase = Phase::Closed;
            g.maintain(&self.cfg, &self.slots);
            self.wake_driver(&g);
        }
        Ok(())
    }

    /// Cancels every task that no worker has started (executor `cancel_futures`).
    pub(crate) fn cancel_pending(self: &Arc<Self>) {
        if !self.is_creator() {
            return;
        }
        let mut g = self.lock();
        let ids: Vec<TaskId> = g.tasks.ids();
        for id in ids {
            g.cancel_task(&self.slots, id);
        }
        g.maintain(&self.cfg, &self.slots);
        self.wake_driver(&g);
        let cbs = std::mem::take(&mut g.callbacks);
        drop(g);
        self.run_callbacks(cbs);
    }

    /// Waits for the workers and the server to exit after `close` (Python's `join`).
    pub(crate) fn join_within(
        self: &Arc<Self>,
        timeout: Option<Duration>,
    ) -> Result<(), PoolError> {
        self.check_creator()?;
        let deadline = Deadline::after(timeout);
        {
            let mut g = self.lock();
            match g.phase {
                Phase::Running => {
                    return Err(PoolError::InvalidState(if self.cfg.executor {
                        "the executor is still running"
                    } else {
                        "Pool is still running"
                    }));
                }
                Phase::Joined => return Ok(()),
                Phase::Terminated => {}
                Phase::Closed => {
                    // Streams stop pulling input: what was submitted is what gets done.
                    let open: Vec<BatchId> =
                        g.batches.iter().filter(|(_, b)| !b.sealed).map(|(&id, _)| id).collect();
                    for id in open {
                        if let Some(b) = g.batches.get_mut(&id) {
                            b.sealed = true;
                        }
                    }
                    g.open_streams = 0;
                }
            }
        }
        let idle = self.wait_until(deadline, |c| {
            c.phase == Phase::Terminated
                || (c.queued == 0 && c.slots.iter().all(|s| matches!(s, SlotState::Empty)))
        })?;
        if !idle {
            return Err(PoolError::Timeout);
        }
        {
            let mut g = self.lock();
            if !g.exit_sent {
                g.exit_sent = true;
                g.send_ctl(Ctl::new(proto::CTL_EXIT, 0));
                g.flush_control();
            }
        }
        if !self.reap_server(deadline)? {
            return Err(PoolError::Timeout);
        }
        let mut g = self.lock();
        if g.phase == Phase::Closed {
            g.phase = Phase::Joined;
        }
        g.release_fds();
        Ok(())
    }

    /// Stops the workers now: SIGTERM, a grace period, SIGKILL, reap; fails every pending task
    /// with [`PoolError::Terminated`]. Bounded in time.
    pub(crate) fn terminate(self: &Arc<Self>) -> Result<(), PoolError> {
        self.check_creator()?;
        let grace = self.cfg.terminate_grace;
        {
            let mut g = self.lock();
            if matches!(g.phase, Phase::Terminated | Phase::Joined) && g.server_reaped {
                return Ok(());
            }
            if g.phase != Phase::Joined {
                g.phase = Phase::Terminated;
            }
            g.fail_all(&PoolError::Terminated);
            for id in g.batches.keys().copied().collect::<Vec<_>>() {
                if let Some(b) = g.batches.get_mut(&id)
                    && !b.sealed
                {
                    b.sealed = true;
                }
            }
            g.open_streams = 0;
            if !g.exit_sent {
                g.exit_sent = true;
                let grace_ns = u64::try_from(grace.as_nanos()).unwrap_or(u64::MAX);
                let mut c = Ctl::new(proto::CTL_TERMINATE, 0);
                c.arg = grace_ns;
                g.send_ctl(c);
                g.flush_control_blocking(Deadline::after(Some(Duration::from_millis(500))));
            }
            self.wake_driver(&g);
            let cbs = std::mem::take(&mut g.callbacks);
            drop(g);
            self.run_callbacks(cbs);
        }
        let deadline = Deadline::after(Some(grace.saturating_add(SERVER_MARGIN)));
        if !self.reap_server(deadline)? {
            // The server did not finish in time: kill it (its workers get their parent-death
            // SIGKILL) and reap it.
            let _ = self.server_proc.signal(Signal::KILL);
            self.reap_server(Deadline::FOREVER)?;
        }
        self.lock().release_fds();
        Ok(())
    }

    /// Waits for the server to exit and reaps it. `Ok(false)` on timeout.
    fn reap_server(&self, deadline: Deadline) -> Result<bool, PoolError> {
        if self.lock().server_reaped {
            return Ok(true);
        }
        match self.server_proc.wait(deadline) {
            Ok(None) => Ok(false),
            Ok(Some(_)) => {
                self.lock().server_reaped = true;
                Ok(true)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The pids of the live workers, by slot.
    ///
    /// Reads what the server has reported first (deaths, replacements), and waits (at most
    /// [`SPAWN_WAIT`]) for its answer to every fork asked of it, so that a worker it is forking
    /// — right after the pool was created, or replacing one — is listed as soon as it exists.
    pub(crate) fn worker_pids(self: &Arc<Self>) -> Vec<Pid> {
        if !self.is_creator() {
            return Vec::new();
        }
        let _ = self.wait_until(Deadline::after(Some(Duration::ZERO)), |_| false);
        let _ = self.wait_until(Deadline::after(Some(SPAWN_WAIT)), |c| {
            c.control.is_none()
                || c.broken.is_some()
                || matches!(c.phase, Phase::Terminated | Phase::Joined)
                || !c.slots.iter().any(|s| matches!(s, SlotState::Spawning))
        });
        self.lock()
            .slots
            .iter()
            .filter_map(|s| match s {
                SlotState::Live(w) if !w.eof => Some(w.pid),
                _ => None,
            })
            .collect()
    }

    // -----------------------------------------------------------------------------------------
    // Futures

    /// Cancels the batch's single task if no worker has started it.
    pub(crate) fn cancel(self: &Arc<Self>, batch: BatchId) -> bool {
        if !self.is_creator() {
            return false;
        }
        let mut g = self.lock();
        let Some(b) = g.batches.get(&batch) else { return false };
        if let Some(done) = &b.done {
            return matches!(
                done.chunks.first(),
                Some(ChunkOut { result: Err(PoolError::Cancelled), .. })
            );
        }
        let Some(task) = b.task else { return false };
        let ok = g.cancel_task(&self.slots, task);
        if ok {
            g.maintain(&self.cfg, &self.slots);
            self.wake_driver(&g);
        }
        let cbs = std::mem::take(&mut g.callbacks);
        drop(g);
        self.run_callbacks(cbs);
        ok
    }

    /// Whether a worker has started the batch's single task and it is not done.
    pub(crate) fn running(&self, batch: BatchId) -> bool {
        if !self.is_creator() {
            return false;
        }
        let g = self.lock();
        let Some(b) = g.batches.get(&batch) else { return false };
        if b.done.is_some() {
            return false;
        }
        let Some(t) = b.task.and_then(|t| g.tasks.get(t)) else { return false };
        match t.state {
            TaskState::Sent { worker, seq } => self.slots.get(worker).started(seq),
            TaskState::Queued => false,
        }
    }
}
