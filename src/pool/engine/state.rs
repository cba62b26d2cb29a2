//! The engine's state: tasks, batches, the worker slots, and [`Core`], which holds them all
//! under [`Shared`]'s mutex, with the state transitions that need no I/O beyond queueing
//! (delivering a result, completing a batch, failing, cancelling, retiring descriptors).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex};

use multiproc_sys::Pid;
use multiproc_sys::time::Deadline;

use crate::fd_registry::RegisteredFd;
use crate::start::launch::Launched;

use super::super::config::Config;
use super::super::error::PoolError;
use super::super::proto::Ctl;
use super::super::secret::Secrets;
use super::super::slots::Slots;
use super::super::work::Job;
use super::channel::{Control, Worker};

/// Identifies a task (one chunk of one batch).
pub(crate) type TaskId = u64;
/// Identifies a batch: what one call (`map`, `apply_async`, `imap`, `submit`) submitted.
pub(crate) type BatchId = u64;

/// The result of one task of a collect batch: where its item results are in the batch's
/// arena (to be decoded by the typed handle), or an error for all its `n` items.
pub(crate) struct ChunkOut {
    pub result: Result<Range<usize>, PoolError>,
    pub n: usize,
}

/// The results of a finished collect batch, in chunk order.
pub(crate) struct Completed {
    pub(super) arena: Vec<u8>,
    pub chunks: Vec<ChunkOut>,
}

impl Completed {
    /// Chunk `c`'s item-result bytes, or its error.
    pub(crate) fn bytes(&self, c: &ChunkOut) -> Result<&[u8], PoolError> {
        match &c.result {
            Ok(r) => Ok(&self.arena[r.clone()]),
            Err(e) => Err(e.clone()),
        }
    }
}

/// A finished chunk of a stream batch.
pub(crate) struct StreamChunk {
    pub result: Result<Vec<u8>, PoolError>,
    pub n: usize,
}

/// A callback to run when a collect batch completes (outside the lock).
pub(crate) type Callback = Box<dyn FnOnce(&Arc<Shared>, BatchId, &Arc<Completed>) + Send>;

/// A chunk's encoded arguments: a range of a buffer shared by the chunks of one submission.
pub(super) struct Payload {
    pub(super) buf: Arc<Vec<u8>>,
    pub(super) range: Range<usize>,
}

impl Payload {
    pub(super) fn bytes(&self) -> &[u8] {
        &self.buf[self.range.clone()]
    }
}

/// How a batch hands its results out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// All chunks are submitted at once; the batch is done when all are back (`map`,
    /// `apply_async`, futures). The results stay available for repeated `get`s.
    Collect,
    /// A stream taken out chunk by chunk in submission order (`imap`).
    Ordered,
    /// A stream taken out in completion order (`imap_unordered`).
    Unordered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TaskState {
    Queued,
    Sent { worker: usize, seq: u64 },
}

pub(super) struct TaskEntry {
    pub(super) job: Job,
    pub(super) payload: Payload,
    pub(super) n: usize,
    pub(super) batch: BatchId,
    pub(super) chunk: usize,
    pub(super) state: TaskState,
    pub(super) timed_out: bool,
}

pub(crate) struct Batch {
    pub(super) mode: Mode,
    /// Collect: results by chunk index, their bytes in `arena`.
    pub(super) slots: Vec<Option<ChunkOut>>,
    pub(super) arena: Vec<u8>,
    pub(super) remaining: usize,
    pub(super) done: Option<Arc<Completed>>,
    pub(super) callbacks: Vec<Callback>,
    /// Streams: finished chunks not yet taken (keyed by chunk index, or by arrival order).
    pub(super) ready: BTreeMap<usize, StreamChunk>,
    pub(super) arrivals: usize,
    /// Streams: chunks submitted and not finished.
    pub(super) outstanding: usize,
    /// Streams: no more chunks will be added.
    pub(super) sealed: bool,
    /// Live handles (AsyncResult, Future clones, IMap).
    pub(super) handles: usize,
    /// Single-task batches (futures): the task, until it is resolved.
    pub(super) task: Option<TaskId>,
}

impl Batch {
    /// Stores a finished chunk of a stream.
    pub(super) fn push_ready(&mut self, chunk: usize, out: StreamChunk) {
        match self.mode {
            Mode::Unordered => {
                self.ready.insert(self.arrivals, out);
                self.arrivals += 1;
            }
            _ => {
                self.ready.insert(chunk, out);
            }
        }
    }

    pub(super) fn new(mode: Mode, chunks: usize, sealed: bool) -> Batch {
        Batch {
            mode,
            slots: (0..chunks).map(|_| None).collect(),
            arena: Vec::new(),
            remaining: chunks,
            done: None,
            callbacks: Vec::new(),
            ready: BTreeMap::new(),
            arrivals: 0,
            outstanding: 0,
            sealed,
            handles: 1,
            task: None,
        }
    }
}

/// Task storage: a slab indexed by the low 32 bits of a [`TaskId`], with a generation in the
/// high bits so that a stale id (left in the queue by a cancel) never finds a newer task.
#[derive(Default)]
pub(super) struct Tasks {
    pub(super) entries: Vec<(u32, Option<TaskEntry>)>,
    pub(super) free: Vec<u32>,
    pub(super) generation: u32,
    pub(super) len: usize,
}

impl Tasks {
    pub(super) fn split(id: TaskId) -> (u32, usize) {
        ((id >> 32) as u32, (id & 0xffff_ffff) as usize)
    }

    pub(super) fn insert(&mut self, t: TaskEntry) -> TaskId {
        self.generation = self.generation.wrapping_add(1);
        let g = self.generation;
        let idx = match self.free.pop() {
            Some(i) => {
                self.entries[i as usize] = (g, Some(t));
                i
            }
            None => {
                self.entries.push((g, Some(t)));
                (self.entries.len() - 1) as u32
            }
        };
        self.len += 1;
        (u64::from(g) << 32) | u64::from(idx)
    }

    pub(super) fn get(&self, id: TaskId) -> Option<&TaskEntry> {
        let (g, i) = Self::split(id);
        match self.entries.get(i) {
            Some((eg, Some(t))) if *eg == g => Some(t),
            _ => None,
        }
    }

    pub(super) fn get_mut(&mut self, id: TaskId) -> Option<&mut TaskEntry> {
        let (g, i) = Self::split(id);
        match self.entries.get_mut(i) {
            Some((eg, Some(t))) if *eg == g => Some(t),
            _ => None,
        }
    }

    pub(super) fn contains(&self, id: TaskId) -> bool {
        self.get(id).is_some()
    }

    pub(super) fn remove(&mut self, id: TaskId) -> Option<TaskEntry> {
        let (g, i) = Self::split(id);
        let t = match self.entries.get_mut(i) {
            Some((eg, slot @ Some(_))) if *eg == g => slot.take(),
            _ => return None,
        };
        self.free.push(i as u32);
        self.len -= 1;
        if self.len == 0 && self.entries.len() > 4096 {
            // Give the memory of a big batch back (the generation keeps counting).
            self.entries = Vec::new();
            self.free = Vec::new();
        }
        t
    }

    pub(super) fn ids(&self) -> Vec<TaskId> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, (_, t))| t.is_some())
            .map(|(i, (g, _))| (u64::from(*g) << 32) | i as u64)
            .collect()
    }

    pub(super) fn drain(&mut self) -> Vec<TaskEntry> {
        let out = self.entries.drain(..).filter_map(|(_, t)| t).collect();
        self.free.clear();
        self.len = 0;
        out
    }
}

pub(super) enum SlotState {
    Empty,
    Spawning,
    Live(Box<Worker>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Running,
    Closed,
    Terminated,
    Joined,
}

/// The engine's state (under [`Shared::core`]).
pub(crate) struct Core {
    pub(crate) phase: Phase,
    pub(super) broken: Option<PoolError>,
    pub(super) driving: bool,
    pub(super) polling: bool,
    pub(super) waiters: usize,
    pub(super) control: Option<Control>,
    /// Workers that died before they were ready since one last was (see `worker_exited`).
    pub(super) early_deaths: usize,
    pub(super) exit_sent: bool,
    pub(super) server_reaped: bool,
    pub(super) slots: Vec<SlotState>,
    pub(super) queue: VecDeque<TaskId>,
    pub(super) queued: usize,
    pub(super) tasks: Tasks,
    pub(super) batches: HashMap<BatchId, Batch>,
    pub(super) next_id: u64,
    pub(super) callbacks: Vec<(BatchId, Arc<Completed>, Callback)>,
    pub(super) open_streams: usize,
    pub(super) graveyard: Vec<RegisteredFd>,
    /// Each worker slot's secret, in memory no forked child gets (see [`Secrets`]).
    pub(super) secrets: Secrets,
    /// A read buffer, kept between reads (so it is not zeroed each time).
    pub(super) scratch: Vec<u8>,
    /// Moving average of measured chunk durations (ns); 0 before the first result.
    pub(super) ema_ns: u64,
}

/// A pool engine: the state, and the handles to the processes.
pub(crate) struct Shared {
    pub(super) core: Mutex<Core>,
    pub(super) cond: Condvar,
    pub(super) wake: OwnedFd,
    pub(crate) cfg: Arc<Config>,
    pub(super) slots: Slots,
    /// The creating process: a pool is used only there (see `spawn::is_creator`).
    pub(super) creator: Pid,
    pub(crate) server: Pid,
    /// The server process: a direct child (`fork`, `spawn`) or a child of the fork server.
    pub(super) server_proc: Launched,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.cfg.processes)
            .field("server", &self.server.as_raw_nonzero())
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// Core: the engine's state machine (always under the lock)

impl Core {
    /// The state of a new pool of `n` workers, all being spawned (the `CTL_SPAWN` records are
    /// queued on `control`).
    pub(super) fn new(n: usize, control: Option<Control>) -> std::io::Result<Core> {
        Ok(Core {
            phase: Phase::Running,
            broken: None,
            driving: false,
            polling: false,
            waiters: 0,
            control,
            early_deaths: 0,
            exit_sent: false,
            server_reaped: false,
            slots: (0..n).map(|_| SlotState::Spawning).collect(),
            queue: VecDeque::new(),
            queued: 0,
            tasks: Tasks::default(),
            batches: HashMap::new(),
            next_id: 1,
            callbacks: Vec::new(),
            open_streams: 0,
            graveyard: Vec::new(),
            secrets: Secrets::new(n)?,
            scratch: Vec::new(),
            ema_ns: 0,
        })
    }

    pub(super) fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// A collect batch's results, once it is done.
    pub(crate) fn done(&self, batch: BatchId) -> Option<Arc<Completed>> {
        self.batches.get(&batch).and_then(|b| b.done.clone())
    }

    /// Whether the batch still exists.
    pub(crate) fn has_batch(&self, batch: BatchId) -> bool {
        self.batches.contains_key(&batch)
    }

    /// Takes the next chunk of a stream: chunk `next` of an ordered one, the oldest finished
    /// chunk of an unordered one.
    pub(crate) fn take_chunk(&mut self, batch: BatchId, next: usize) -> Option<StreamChunk> {
        let b = self.batches.get_mut(&batch)?;
        match b.mode {
            Mode::Ordered => b.ready.remove(&next),
            Mode::Unordered => b.ready.pop_first().map(|(_, c)| c),
            Mode::Collect => None,
        }
    }

    /// Delivers a task's result to its batch.
    pub(super) fn deliver(&mut self, task: TaskEntry, result: Result<&[u8], PoolError>) {
        let Some(b) = self.batches.get_mut(&task.batch) else { return };
        match b.mode {
            Mode::Collect => {
                if let Some(slot) = b.slots.get_mut(task.chunk)
                    && slot.is_none()
                {
                    let result = result.map(|bytes| {
                        let start = b.arena.len();
                        b.arena.extend_from_slice(bytes);
                        start..b.arena.len()
                    });
                    *slot = Some(ChunkOut { result, n: task.n });
                    b.remaining -= 1;
                    b.task = None;
                    if b.remaining == 0 {
                        self.complete(task.batch);
                    }
                }
            }
            Mode::Ordered | Mode::Unordered => {
                b.push_ready(
                    task.chunk,
                    StreamChunk { result: result.map(<[u8]>::to_vec), n: task.n },
                );
                b.outstanding = b.outstanding.saturating_sub(1);
            }
        }
    }

    /// A collect batch has all its results: publish them and queue its callbacks.
    pub(super) fn complete(&mut self, batch: BatchId) {
        let Some(b) = self.batches.get_mut(&batch) else { return };
        let chunks: Vec<ChunkOut> = b
            .slots
            .drain(..)
            .map(|s| s.unwrap_or(ChunkOut { result: Err(PoolError::Terminated), n: 0 }))
            .collect();
        let done = Arc::new(Completed { arena: std::mem::take(&mut b.arena), chunks });
        b.done = Some(done.clone());
        if b.handles == 0 && b.callbacks.is_empty() {
            self.batches.remove(&batch);
            return;
        }
        // A batch with callbacks but no handle is removed after they ran (`run_callbacks`).
        for cb in b.callbacks.drain(..) {
            self.callbacks.push((batch, done.clone(), cb));
        }
    }

    /// Fails every task that is queued or in flight with `err`.
    pub(super) fn fail_all(&mut self, err: &PoolError) {
        let tasks: Vec<TaskEntry> = self.tasks.drain();
        self.queue.clear();
        self.queued = 0;
        for s in &mut self.slots {
            if let SlotState::Live(w) = s {
                w.inflight.clear();
            }
        }
        for t in tasks {
            self.deliver(t, Err(err.clone()));
        }
    }

    /// Marks the pool broken (once): pending tasks fail with `err`, workers are killed, later
    /// submissions fail.
    pub(super) fn break_pool(&mut self, err: PoolError) {
        if self.broken.is_some() || matches!(self.phase, Phase::Terminated | Phase::Joined) {
            return;
        }
        self.broken = Some(err.clone());
        self.fail_all(&err);
    }

    /// Cancels task `id` unless a worker has started it.
    pub(super) fn cancel_task(&mut self, slots: &Slots, id: TaskId) -> bool {
        let Some(t) = self.tasks.get(id) else { return false };
        match t.state {
            TaskState::Queued => {
                self.queued -= 1;
            }
            TaskState::Sent { worker, seq } => {
                if !slots.get(worker).cancel(seq) {
                    return false;
                }
                if let SlotState::Live(w) = &mut self.slots[worker] {
                    w.inflight.retain(|&(s, _)| s != seq);
                    if let Some(b) = &mut w.budget {
                        *b += 1;
                    }
                }
            }
        }
        if let Some(t) = self.tasks.remove(id) {
            self.deliver(t, Err(PoolError::Cancelled));
        }
        true
    }

    /// Queues a control record for the server.
    pub(super) fn send_ctl(&mut self, c: Ctl) {
        if let Some(ctl) = &mut self.control {
            ctl.send(c);
        }
    }

    /// Sends what the control socket takes now.
    pub(super) fn flush_control(&mut self) {
        if let Some(ctl) = &mut self.control {
            ctl.flush();
        }
    }

    /// Sends every queued control record, waiting until `deadline` at most.
    pub(super) fn flush_control_blocking(&mut self, deadline: Deadline) {
        if let Some(ctl) = &mut self.control {
            ctl.flush_blocking(deadline);
        }
    }

    /// Closes an fd, or keeps it until the current poll is over.
    pub(super) fn retire(&mut self, fd: RegisteredFd) {
        if self.polling {
            self.graveyard.push(fd);
        }
    }

    /// Closes the worker channels and the control socket once nothing runs anymore.
    pub(super) fn release_fds(&mut self) {
        let slots: Vec<SlotState> =
            self.slots.iter_mut().map(|s| std::mem::replace(s, SlotState::Empty)).collect();
        for s in slots {
            if let SlotState::Live(w) = s {
                self.retire(w.chan);
            }
        }
        if let Some(c) = self.control.take() {
            self.retire(c.fd);
        }
    }
}
