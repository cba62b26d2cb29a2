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
#![allow(unsafe_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{IoSlice, Write};
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once};
use std::time::Duration;

use multiproc_sys::fork::{self as sysfork, ForkOutcome};
use multiproc_sys::pipe::{self as syspipe, PollFd, PollFlags};
use multiproc_sys::scm;
use multiproc_sys::time::{Deadline, Timespec};
use multiproc_sys::wait::ExitStatus;
use multiproc_sys::{Errno, Pid, Signal};

use crate::codec::{Decode, Decoder, Encode};
use crate::start::StartMethod;
use crate::start::launch::{Launched, Relocation};

use super::error::PoolError;
use super::proto::{self, Ctl};
use super::secret::Secrets;
use super::slots::{RING, Slots, now_ns};
use super::work::{Job, Runner};
use crate::fd_registry::RegisteredFd;

/// Identifies a task (one chunk of one batch).
pub(crate) type TaskId = u64;
/// Identifies a batch: what one call (`map`, `apply_async`, `imap`, `submit`) submitted.
pub(crate) type BatchId = u64;

/// Pipelining target: keep about this much work (in nanoseconds of measured task time) queued
/// in each worker's channel.
const PIPELINE_NS: u64 = 100_000;

/// How long `terminate` waits for the server beyond the workers' grace period before it kills
/// the server itself.
const SERVER_MARGIN: Duration = Duration::from_secs(2);

/// Everything a pool is configured with. Built by the builders; inherited by the fork server
/// and hence by every worker.
pub(crate) struct Config {
    pub processes: usize,
    pub max_tasks_per_child: Option<u64>,
    pub task_timeout: Option<Duration>,
    pub cpus: Vec<usize>,
    pub initializer: Option<Box<dyn Fn() -> Result<(), String> + Send + Sync>>,
    pub registered: Vec<Runner>,
    pub terminate_grace: Duration,
    pub break_on_worker_death: bool,
    /// Executor flavour: `Shutdown` instead of `NotRunning`, `BrokenPool` wording.
    pub executor: bool,
    pub pool_id: u64,
    /// How code addresses sent by the parent map to this process's (non-zero only in a pool
    /// whose server was launched by `spawn`, or by a spawned fork server).
    pub reloc: Relocation,
}

/// The result of one task of a collect batch: where its item results are in the batch's
/// arena (to be decoded by the typed handle), or an error for all its `n` items.
pub(crate) struct ChunkOut {
    pub result: Result<Range<usize>, PoolError>,
    pub n: usize,
}

/// The results of a finished collect batch, in chunk order.
pub(crate) struct Completed {
    arena: Vec<u8>,
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
struct Payload {
    buf: Arc<Vec<u8>>,
    range: Range<usize>,
}

impl Payload {
    fn bytes(&self) -> &[u8] {
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
enum TaskState {
    Queued,
    Sent { worker: usize, seq: u64 },
}

struct TaskEntry {
    job: Job,
    payload: Payload,
    n: usize,
    batch: BatchId,
    chunk: usize,
    state: TaskState,
    timed_out: bool,
}

pub(crate) struct Batch {
    mode: Mode,
    /// Collect: results by chunk index, their bytes in `arena`.
    slots: Vec<Option<ChunkOut>>,
    arena: Vec<u8>,
    remaining: usize,
    done: Option<Arc<Completed>>,
    callbacks: Vec<Callback>,
    /// Streams: finished chunks not yet taken (keyed by chunk index, or by arrival order).
    ready: BTreeMap<usize, StreamChunk>,
    arrivals: usize,
    /// Streams: chunks submitted and not finished.
    outstanding: usize,
    /// Streams: no more chunks will be added.
    sealed: bool,
    /// Live handles (AsyncResult, Future clones, IMap).
    handles: usize,
    /// Single-task batches (futures): the task, until it is resolved.
    task: Option<TaskId>,
}

impl Batch {
    /// Stores a finished chunk of a stream.
    fn push_ready(&mut self, chunk: usize, out: StreamChunk) {
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

    fn new(mode: Mode, chunks: usize, sealed: bool) -> Batch {
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
struct Tasks {
    entries: Vec<(u32, Option<TaskEntry>)>,
    free: Vec<u32>,
    generation: u32,
    len: usize,
}

impl Tasks {
    fn split(id: TaskId) -> (u32, usize) {
        ((id >> 32) as u32, (id & 0xffff_ffff) as usize)
    }

    fn insert(&mut self, t: TaskEntry) -> TaskId {
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

    fn get(&self, id: TaskId) -> Option<&TaskEntry> {
        let (g, i) = Self::split(id);
        match self.entries.get(i) {
            Some((eg, Some(t))) if *eg == g => Some(t),
            _ => None,
        }
    }

    fn get_mut(&mut self, id: TaskId) -> Option<&mut TaskEntry> {
        let (g, i) = Self::split(id);
        match self.entries.get_mut(i) {
            Some((eg, Some(t))) if *eg == g => Some(t),
            _ => None,
        }
    }

    fn contains(&self, id: TaskId) -> bool {
        self.get(id).is_some()
    }

    fn remove(&mut self, id: TaskId) -> Option<TaskEntry> {
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

    fn ids(&self) -> Vec<TaskId> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, (_, t))| t.is_some())
            .map(|(i, (g, _))| (u64::from(*g) << 32) | i as u64)
            .collect()
    }

    fn drain(&mut self) -> Vec<TaskEntry> {
        let out = self.entries.drain(..).filter_map(|(_, t)| t).collect();
        self.free.clear();
        self.len = 0;
        out
    }
}

/// The parent's view of a worker.
struct Worker {
    pid: Pid,
    chan: RegisteredFd,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    /// Where the frames in `wbuf` have their secret (zeros there: the bytes are sent from
    /// [`Secrets`]), in increasing order; those before `wpos` are sent.
    secret_at: Vec<usize>,
    /// Tasks sent and not resolved, in the order sent: `(seq, task)`.
    inflight: VecDeque<(u64, TaskId)>,
    next_seq: u64,
    /// Tasks it may still be sent (`max_tasks_per_child`).
    budget: Option<u64>,
    ready: bool,
    /// Reading reached end of file.
    eof: bool,
    /// Writing failed (the worker is gone); what it sent may still be read.
    write_dead: bool,
    stop_sent: bool,
    kill_sent: bool,
    init_failed: bool,
}

impl Worker {
    fn accepting(&self) -> bool {
        !self.eof && !self.write_dead && !self.stop_sent && !self.kill_sent && !self.init_failed
    }
}

enum SlotState {
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

struct Control {
    fd: RegisteredFd,
    outq: VecDeque<[u8; proto::CTL_LEN]>,
}

/// What a poll entry belongs to.
#[derive(Debug, Clone, Copy)]
enum Owner {
    Wake,
    Control,
    Worker(usize, Pid),
}

/// The engine's state (under [`Shared::core`]).
pub(crate) struct Core {
    pub(crate) phase: Phase,
    broken: Option<PoolError>,
    driving: bool,
    polling: bool,
    waiters: usize,
    control: Option<Control>,
    exit_sent: bool,
    server_reaped: bool,
    slots: Vec<SlotState>,
    queue: VecDeque<TaskId>,
    queued: usize,
    tasks: Tasks,
    batches: HashMap<BatchId, Batch>,
    next_id: u64,
    callbacks: Vec<(BatchId, Arc<Completed>, Callback)>,
    open_streams: usize,
    graveyard: Vec<RegisteredFd>,
    /// Each worker slot's secret, in memory no forked child gets (see [`Secrets`]).
    secrets: Secrets,
    /// A read buffer, kept between reads (so it is not zeroed each time).
    scratch: Vec<u8>,
    /// Moving average of measured chunk durations (ns); 0 before the first result.
    ema_ns: u64,
}

/// A pool engine: the state, and the handles to the processes.
pub(crate) struct Shared {
    core: Mutex<Core>,
    cond: Condvar,
    wake: OwnedFd,
    pub(crate) cfg: Arc<Config>,
    slots: Slots,
    /// The fork generation of the creating process (see [`fork_generation`]).
    creator: u64,
    pub(crate) server: Pid,
    /// The server process: a direct child (`fork`, `spawn`) or a child of the fork server.
    server_proc: Launched,
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
// Creation

/// Incremented in every child forked through libc's `fork` (a `pthread_atfork` handler), so a
/// pool can tell, without a `getpid` system call per operation, that it is being used in a
/// forked child of its creator (which it refuses: the child would write into the parent's
/// channels).
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

extern "C" fn bump_fork_generation() {
    // Async-signal-safe: one atomic add.
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// The calling process's fork generation, registering the handler on first use.
fn fork_generation() -> u64 {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: the handler is a plain `extern "C" fn` that only does an atomic add, which is
        // allowed in a forked child; registering it has no other effect.
        unsafe { libc::pthread_atfork(None, None, Some(bump_fork_generation)) };
    });
    FORK_GENERATION.load(Ordering::Relaxed)
}

/// Creates the shared segment, the control socket and the fork server, and asks the server for
/// the workers. Returns at once: the workers start while the caller goes on.
pub(crate) fn start(cfg: Config, method: Option<StartMethod>) -> Result<Arc<Shared>, PoolError> {
    let has_closures = cfg.initializer.is_some() || !cfg.registered.is_empty();
    let method = crate::start::resolve(method, has_closures).map_err(PoolError::InvalidArgument)?;
    let n = cfg.processes;
    let slots = Slots::new(n)?;
    let (p_ctl, s_ctl) = scm::seqpacket_pair()?;
    let wake = rustix::event::eventfd(
        0,
        rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
    )?;
    let cfg = Arc::new(cfg);
    let parent = sysfork::getpid();
    let generation = fork_generation();

    let server_proc = if method != StartMethod::Fork {
        let payload = encode_server_spec(&cfg, parent);
        let fds = vec![s_ctl, slots.fd()?];
        crate::start::launch(method, server_entry, &payload, fds)?
    } else {
        // Hold stdout's and stderr's locks across the fork: another thread holding one at that
        // moment would leave it locked forever in the server and in every worker. Flush them too,
        // or the server's copy of the buffers would be printed again by the workers.
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr().lock();
        let plan = crate::fork_safety::before_fork();
        let _ = out.flush();
        let _ = err.flush();
        // SAFETY: the child branch is the fork server. It runs single-threaded; it first releases
        // the two stdio locks this thread holds (their owner is this thread, which is the one that
        // exists in the child), then runs `server_main`, which never returns. The only locks it
        // takes are those it owns; with glibc, malloc is reset for the child by fork itself.
        let server = match unsafe { sysfork::fork() } {
            Err(e) => return Err(e.into()),
            Ok(ForkOutcome::Child) => {
                crate::fork_safety::in_child(plan);
                drop(p_ctl);
                drop(wake);
                drop(out);
                drop(err);
                super::server::server_main(&cfg, s_ctl, parent, true, &slots)
            }
            Ok(ForkOutcome::Parent { child }) => child,
        };
        drop(out);
        drop(err);
        drop(s_ctl);
        Launched::direct(server)
    };
    let server = server_proc.pid;
    syspipe::set_nonblocking(p_ctl.as_fd(), true)?;

    let mut control = Control { fd: RegisteredFd::new(p_ctl), outq: VecDeque::new() };
    for i in 0..n {
        control.outq.push_back(Ctl::new(proto::CTL_SPAWN, i).to_bytes());
    }
    let mut core = Core {
        phase: Phase::Running,
        broken: None,
        driving: false,
        polling: false,
        waiters: 0,
        control: Some(control),
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
    };
    core.flush_control();
    Ok(Arc::new(Shared {
        core: Mutex::new(core),
        cond: Condvar::new(),
        wake,
        cfg,
        slots,
        creator: generation,
        server,
        server_proc,
    }))
}

/// The part of a [`Config`] a launched server needs (no closures: a launched pool has none).
fn encode_server_spec(cfg: &Config, parent: Pid) -> Vec<u8> {
    let mut out = Vec::new();
    (cfg.processes as u64).encode(&mut out);
    cfg.max_tasks_per_child.encode(&mut out);
    cfg.task_timeout.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)).encode(&mut out);
    cfg.cpus.iter().map(|&c| c as u64).collect::<Vec<u64>>().encode(&mut out);
    u64::try_from(cfg.terminate_grace.as_nanos()).unwrap_or(u64::MAX).encode(&mut out);
    cfg.break_on_worker_death.encode(&mut out);
    cfg.executor.encode(&mut out);
    cfg.pool_id.encode(&mut out);
    parent.as_raw_nonzero().get().encode(&mut out);
    out
}

/// A launched pool server's life (see `context::launch`): descriptor 0 is the control socket,
/// 1 the slots segment. Never returns.
pub(crate) fn server_entry(reloc: Relocation, payload: &[u8], mut fds: Vec<OwnedFd>) -> ! {
    let spec = (|| {
        let mut d = Decoder::new(payload);
        let processes = usize::try_from(u64::decode(&mut d).ok()?).ok()?;
        let max_tasks_per_child = Option::<u64>::decode(&mut d).ok()?;
        let task_timeout = Option::<u64>::decode(&mut d).ok()?.map(Duration::from_nanos);
        let cpus = Vec::<u64>::decode(&mut d).ok()?;
        let terminate_grace = Duration::from_nanos(u64::decode(&mut d).ok()?);
        let break_on_worker_death = bool::decode(&mut d).ok()?;
        let executor = bool::decode(&mut d).ok()?;
        let pool_id = u64::decode(&mut d).ok()?;
        let parent = Pid::from_raw(i32::decode(&mut d).ok()?)?;
        let cfg = Config {
            processes,
            max_tasks_per_child,
            task_timeout,
            cpus: cpus.into_iter().map(|c| c as usize).collect(),
            initializer: None,
            registered: Vec::new(),
            terminate_grace,
            break_on_worker_death,
            executor,
            pool_id,
            reloc,
        };
        Some((cfg, parent))
    })();
    let Some((cfg, parent)) = spec else { sysfork::exit_now(127) };
    if fds.len() != 2 {
        sysfork::exit_now(127);
    }
    let slots_fd = fds.pop().unwrap_or_else(|| sysfork::exit_now(127));
    let ctl = fds.pop().unwrap_or_else(|| sysfork::exit_now(127));
    let Ok(slots) = Slots::from_fd(slots_fd, cfg.processes) else { sysfork::exit_now(127) };
    let direct = sysfork::getppid() == Some(parent);
    super::server::server_main(&cfg, ctl, parent, direct, &slots)
}

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
        FORK_GENERATION.load(Ordering::Relaxed) == self.creator
    }

    /// Tells a driver blocked in `poll` to look at the state again.
    fn wake_driver(&self, core: &Core) {
        if core.polling {
            let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
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
        g.maintain(self);
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
        g.maintain(self);
        self.wake_driver(&g);
        Ok(())
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
            g.maintain(self);
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
                g.maintain(self);
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
    fn round<'a>(
        self: &'a Arc<Self>,
        mut g: MutexGuard<'a, Core>,
        deadline: Deadline,
    ) -> MutexGuard<'a, Core> {
        g.driving = true;
        g.maintain(self);
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
                let ev = if w.wpos < w.wbuf.len() && !w.write_dead {
                    PollFlags::IN | PollFlags::OUT
                } else {
                    PollFlags::IN
                };
                plan.push((w.chan.as_raw_fd(), ev, Owner::Worker(i, w.pid)));
            }
        }
        let wake_at = g.next_wakeup(self).min(deadline);
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
            match syspipe::poll(&mut fds, wake_at) {
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
                    let _ = rustix::io::read(&self.wake, &mut b);
                }
                Owner::Control => g.on_control(self, rev),
                Owner::Worker(i, pid) => g.on_worker(self, i, pid, rev),
            }
        }
        g.maintain(self);
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

    // -----------------------------------------------------------------------------------------
    // Lifecycle

    /// Stops accepting tasks; workers exit once the work already submitted is done.
    pub(crate) fn close(&self) -> Result<(), PoolError> {
        self.check_creator()?;
        let mut g = self.lock();
        if g.phase == Phase::Running {
            g.phase = Phase::Closed;
            g.maintain(self);
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
            g.cancel_task(self, id);
        }
        g.maintain(self);
        self.wake_driver(&g);
        let cbs = std::mem::take(&mut g.callbacks);
        drop(g);
        self.run_callbacks(cbs);
    }

    /// Waits for the workers and the server to exit after `close` (Python's `join`).
    pub(crate) fn join(self: &Arc<Self>, timeout: Option<Duration>) -> Result<(), PoolError> {
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
    pub(crate) fn worker_pids(&self) -> Vec<Pid> {
        if !self.is_creator() {
            return Vec::new();
        }
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
        let ok = g.cancel_task(self, task);
        if ok {
            g.maintain(self);
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

// ---------------------------------------------------------------------------------------------
// Core: the engine's state machine (always under the lock)

impl Core {
    fn next_id(&mut self) -> u64 {
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
    fn deliver(&mut self, task: TaskEntry, result: Result<&[u8], PoolError>) {
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
    fn complete(&mut self, batch: BatchId) {
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
    fn fail_all(&mut self, err: &PoolError) {
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
    fn break_pool(&mut self, err: PoolError) {
        if self.broken.is_some() || matches!(self.phase, Phase::Terminated | Phase::Joined) {
            return;
        }
        self.broken = Some(err.clone());
        self.fail_all(&err);
    }

    /// Cancels task `id` unless a worker has started it.
    fn cancel_task(&mut self, sh: &Shared, id: TaskId) -> bool {
        let Some(t) = self.tasks.get(id) else { return false };
        match t.state {
            TaskState::Queued => {
                self.queued -= 1;
            }
            TaskState::Sent { worker, seq } => {
                if !sh.slots.get(worker).cancel(seq) {
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

    fn send_ctl(&mut self, c: Ctl) {
        if let Some(ctl) = &mut self.control {
            ctl.outq.push_back(c.to_bytes());
        }
    }

    fn flush_control(&mut self) {
        let Some(ctl) = &mut self.control else { return };
        while let Some(m) = ctl.outq.front() {
            match scm::send_fds(ctl.fd.as_fd(), m, &[]) {
                Ok(_) => {
                    ctl.outq.pop_front();
                }
                Err(Errno::AGAIN) => return,
                Err(_) => {
                    // The server is gone; its EOF is handled when read.
                    ctl.outq.clear();
                    return;
                }
            }
        }
    }

    fn flush_control_blocking(&mut self, deadline: Deadline) {
        loop {
            self.flush_control();
            let Some(ctl) = &self.control else { return };
            if ctl.outq.is_empty() {
                return;
            }
            match syspipe::wait_writable(ctl.fd.as_fd(), deadline) {
                Ok(true) => {}
                _ => return,
            }
        }
    }

    /// Closes an fd, or keeps it until the current poll is over.
    fn retire(&mut self, fd: RegisteredFd) {
        if self.polling {
            self.graveyard.push(fd);
        }
    }

    /// Closes the worker channels and the control socket once nothing runs anymore.
    fn release_fds(&mut self) {
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

    /// Housekeeping after every change: timeouts, replacement workers, dispatch, stopping idle
    /// workers of a closed pool, killing workers of a broken pool, flushing.
    fn maintain(&mut self, sh: &Shared) {
        if matches!(self.phase, Phase::Terminated | Phase::Joined) {
            return;
        }
        if self.broken.is_some() {
            self.kill_all(sh);
        } else {
            self.check_timeouts(sh);
            self.respawn(sh);
            self.rebalance(sh);
            self.dispatch(sh);
            self.stop_idle();
        }
        for (i, s) in self.slots.iter_mut().enumerate() {
            if let SlotState::Live(w) = s {
                flush_worker(w, self.secrets.get(i));
            }
        }
        self.flush_control();
    }

    fn kill_all(&mut self, _sh: &Shared) {
        let mut kills = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if let SlotState::Live(w) = s
                && !w.kill_sent
            {
                w.kill_sent = true;
                kills.push((i, w.pid));
            }
        }
        for (i, pid) in kills {
            self.send_kill(i, pid, Signal::KILL);
        }
    }

    fn send_kill(&mut self, slot: usize, pid: Pid, sig: Signal) {
        let mut c = Ctl::new(proto::CTL_KILL, slot);
        c.pid = pid.as_raw_nonzero().get();
        c.value = sig.as_raw();
        self.send_ctl(c);
    }

    /// Whether workers are still needed.
    fn want_workers(&self) -> bool {
        match self.phase {
            Phase::Running => true,
            Phase::Closed => self.queued > 0 || self.open_streams > 0,
            _ => false,
        }
    }

    fn respawn(&mut self, sh: &Shared) {
        if self.control.is_none() || self.exit_sent || !self.want_workers() {
            return;
        }
        let mut spawn = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if matches!(s, SlotState::Empty) {
                *s = SlotState::Spawning;
                spawn.push(i);
            }
        }
        for i in spawn {
            sh.slots.get(i).reset();
            self.send_ctl(Ctl::new(proto::CTL_SPAWN, i));
        }
    }

    /// How many tasks to keep in flight per worker, from the measured task duration.
    fn depth(&self) -> usize {
        match PIPELINE_NS.checked_div(self.ema_ns) {
            None => 1,
            Some(depth) => depth.clamp(1, RING as u64) as usize,
        }
    }

    /// Sends queued tasks to workers with room, one task per worker in turn.
    ///
    /// A worker is refilled only once at most half its pipeline is left, and then up to the
    /// full depth, so that many tiny tasks travel in one write.
    fn dispatch(&mut self, sh: &Shared) {
        if self.queued == 0 {
            // Drop stale ids (cancelled tasks) so the queue does not grow.
            self.queue.clear();
            return;
        }
        let depth = self.depth();
        let mut room: Vec<usize> = self
            .slots
            .iter()
            .map(|s| match s {
                SlotState::Live(w) if w.accepting() && w.inflight.len() <= depth / 2 => {
                    // Seqs in flight must span less than the ring: a new seq reuses the entry of
                    // the seq RING before it, which must be resolved by then (tasks stolen back
                    // by `rebalance` can leave a gap between the count and the span).
                    let span = match w.inflight.front() {
                        Some(&(oldest, _)) => {
                            (oldest + RING as u64).saturating_sub(w.next_seq) as usize
                        }
                        None => RING,
                    };
                    let r = (depth - w.inflight.len()).min(span);
                    w.budget.map_or(r, |b| r.min(usize::try_from(b).unwrap_or(usize::MAX)))
                }
                _ => 0,
            })
            .collect();
        let mut left: usize = room.iter().sum();
        // Least loaded first: a single task goes to an idle worker, never behind a long one.
        let mut order: Vec<usize> = (0..room.len()).filter(|&i| room[i] > 0).collect();
        order.sort_by_key(|&i| match &self.slots[i] {
            SlotState::Live(w) => w.inflight.len(),
            _ => usize::MAX,
        });
        while left > 0 && self.queued > 0 {
            for &i in &order {
                if room[i] == 0 {
                    continue;
                }
                let Some(id) = self.pop_queued() else { break };
                let SlotState::Live(w) = &mut self.slots[i] else {
                    unreachable!("room only for live workers")
                };
                let t = self.tasks.get_mut(id).expect("pop_queued returns live tasks");
                let seq = w.next_seq;
                w.next_seq += 1;
                sh.slots.get(i).publish(seq);
                encode_task(&mut w.wbuf, &mut w.secret_at, seq, t.job, t.payload.bytes());
                t.state = TaskState::Sent { worker: i, seq };
                w.inflight.push_back((seq, id));
                if let Some(b) = &mut w.budget {
                    *b -= 1;
                }
                room[i] -= 1;
                left -= 1;
            }
        }
    }

    /// Moves tasks that a busy worker has not started to an idle one: when nothing is queued
    /// and some worker is idle, the not-yet-started tail of the most loaded worker's pipeline
    /// is cancelled in its ring (so that worker will skip those frames) and queued again.
    fn rebalance(&mut self, sh: &Shared) {
        if self.queued > 0 {
            return;
        }
        let idle = self.slots.iter().any(|s| {
            matches!(s, SlotState::Live(w) if w.accepting() && w.inflight.is_empty()
                && w.budget.is_none_or(|b| b > 0))
        });
        if !idle {
            return;
        }
        let Some(busiest) = (0..self.slots.len())
            .filter(|&i| matches!(&self.slots[i], SlotState::Live(w) if w.inflight.len() >= 2))
            .max_by_key(|&i| match &self.slots[i] {
                SlotState::Live(w) => w.inflight.len(),
                _ => 0,
            })
        else {
            return;
        };
        let SlotState::Live(w) = &mut self.slots[busiest] else { return };
        let shm = sh.slots.get(busiest);
        let mut stolen = Vec::new();
        let take = w.inflight.len() / 2;
        while stolen.len() < take && w.inflight.len() > 1 {
            let Some(&(seq, id)) = w.inflight.back() else { break };
            if !shm.cancel(seq) {
                break; // the worker got there first: the ones before are started too
            }
            w.inflight.pop_back();
            if let Some(b) = &mut w.budget {
                *b += 1;
            }
            stolen.push(id);
        }
        for id in stolen {
            // `stolen` is newest first: pushing each to the front restores the order.
            if let Some(t) = self.tasks.get_mut(id) {
                t.state = TaskState::Queued;
                self.queue.push_front(id);
                self.queued += 1;
            }
        }
    }

    /// Pops the next queued task whose batch still wants it.
    fn pop_queued(&mut self) -> Option<TaskId> {
        while let Some(id) = self.queue.pop_front() {
            let Some(t) = self.tasks.get(id) else { continue };
            if t.state != TaskState::Queued {
                continue;
            }
            self.queued -= 1;
            if !self.batches.contains_key(&t.batch) {
                // Its stream was dropped: nobody wants the result.
                self.tasks.remove(id);
                continue;
            }
            return Some(id);
        }
        None
    }

    /// A closed pool with nothing left to do tells its idle workers to exit.
    fn stop_idle(&mut self) {
        if self.phase != Phase::Closed || self.queued > 0 || self.open_streams > 0 {
            return;
        }
        for s in &mut self.slots {
            if let SlotState::Live(w) = s
                && w.inflight.is_empty()
                && !w.stop_sent
                && !w.eof
                && !w.write_dead
            {
                w.stop_sent = true;
                let at = proto::begin_frame(&mut w.wbuf, proto::STOP);
                w.secret_at.push(w.wbuf.len());
                w.wbuf.extend_from_slice(&[0; proto::SECRET_LEN]);
                debug_assert_eq!(w.wbuf.len() - at - proto::HEADER, proto::STOP_LEN);
                proto::end_frame(&mut w.wbuf, at);
            }
        }
    }

    /// Kills workers whose task ran past the per-task timeout.
    fn check_timeouts(&mut self, sh: &Shared) {
        let Some(limit) = sh.cfg.task_timeout else { return };
        let limit_ns = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
        let now = now_ns();
        let mut kills = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            let SlotState::Live(w) = s else { continue };
            if w.kill_sent || w.inflight.is_empty() {
                continue;
            }
            let shm = sh.slots.get(i);
            let Some((seq, started)) = shm.running() else { continue };
            let Some(&(_, id)) = w.inflight.iter().find(|&&(s, _)| s == seq) else { continue };
            if shm.started(seq) && now.saturating_sub(started) >= limit_ns {
                if let Some(t) = self.tasks.get_mut(id) {
                    t.timed_out = true;
                }
                w.kill_sent = true;
                kills.push((i, w.pid));
            }
        }
        for (i, pid) in kills {
            self.send_kill(i, pid, Signal::KILL);
        }
    }

    /// When the driver must wake up at the latest (per-task timeouts).
    fn next_wakeup(&self, sh: &Shared) -> Deadline {
        let Some(limit) = sh.cfg.task_timeout else { return Deadline::FOREVER };
        let limit_ns = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
        let now = now_ns();
        let mut at = u64::MAX;
        for (i, s) in self.slots.iter().enumerate() {
            let SlotState::Live(w) = s else { continue };
            if w.kill_sent || w.inflight.is_empty() {
                continue;
            }
            let shm = sh.slots.get(i);
            let due = match shm.running() {
                Some((seq, started))
                    if w.inflight.iter().any(|&(s, _)| s == seq) && shm.started(seq) =>
                {
                    started.saturating_add(limit_ns)
                }
                // Nothing started yet: nothing can be due before a full timeout from now.
                _ => now.saturating_add(limit_ns),
            };
            at = at.min(due);
        }
        if at == u64::MAX {
            return Deadline::FOREVER;
        }
        // A millisecond late rather than early: the check compares with the same clock.
        let at = at.saturating_add(1_000_000);
        Deadline::at(Timespec {
            tv_sec: (at / 1_000_000_000) as i64,
            tv_nsec: (at % 1_000_000_000) as i64,
        })
    }

    // -----------------------------------------------------------------------------------------
    // Events

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
            let mut record = [0u8; proto::CTL_LEN];
            record.copy_from_slice(&buf[..proto::CTL_LEN]);
            // Registered at once, so that children forked from now on close it.
            let [fd] = fds;
            let fd = fd.map(RegisteredFd::new);
            match received {
                Err(Errno::AGAIN) => return,
                Ok(r) if r.bytes == 0 && r.fds == 0 => {
                    self.server_gone(sh);
                    return;
                }
                Ok(r) if r.bytes == proto::CTL_LEN || r.bytes == proto::SPAWNED_LEN => {
                    let c = Ctl::from_bytes(&record);
                    let with_secret = r.bytes == proto::SPAWNED_LEN;
                    if (c.kind == proto::CTL_SPAWNED) == with_secret {
                        self.on_ctl(sh, c, fd);
                    }
                    self.secrets.clear_recv();
                }
                Ok(_) => self.secrets.clear_recv(), // a malformed record: ignore it
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
                let _ = syspipe::set_nonblocking(fd.as_fd(), true);
                // Its secret followed the record (checked by `on_control`).
                self.secrets.adopt(i);
                self.slots[i] = SlotState::Live(Box::new(Worker {
                    pid,
                    chan: fd,
                    rbuf: Vec::new(),
                    wbuf: Vec::new(),
                    wpos: 0,
                    secret_at: Vec::new(),
                    inflight: VecDeque::new(),
                    next_seq: 1,
                    budget: sh.cfg.max_tasks_per_child,
                    ready: false,
                    eof: false,
                    write_dead: false,
                    stop_sent: false,
                    kill_sent: false,
                    init_failed: false,
                }));
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
            match rustix::io::read(&w.chan, &mut buf[..]) {
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
        let mut used = 0;
        while let Some((body, len)) = proto::split_frame(&rbuf[used..]) {
            used += len;
            self.on_frame(sh, i, w, body);
        }
        w.rbuf = rbuf;
        w.rbuf.drain(..used);
    }

    fn on_frame(&mut self, _sh: &Shared, _i: usize, w: &mut Worker, body: &[u8]) {
        match body.first() {
            Some(&proto::READY) => w.ready = true,
            Some(&proto::VIOLATION) => {
                // Another process holds this worker's channel and wrote to it (issue 19). The
                // worker ran none of it and exits; the pool cannot vouch for its channels any
                // longer, so it stops, loudly.
                let why = crate::codec::from_bytes::<String>(&body[1..])
                    .unwrap_or_else(|e| format!("<unreadable reason: {e}>"));
                self.break_pool(PoolError::BrokenPool(format!(
                    "pool worker {} refused {why}: another process wrote to its channel, so \
                     the pool stops",
                    w.pid.as_raw_nonzero()
                )));
            }
            Some(&proto::INIT_FAILED) => {
                w.init_failed = true;
                let msg = crate::codec::from_bytes::<String>(&body[1..])
                    .unwrap_or_else(|e| format!("<unreadable reason: {e}>"));
                self.break_pool(PoolError::InitializerFailed(msg));
            }
            Some(&proto::RESULT) if body.len() >= proto::RESULT_PREFIX => {
                let seq = proto::u64_at(body, 1);
                let elapsed = proto::u64_at(body, 9).max(1);
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
                    self.deliver(t, Ok(&body[proto::RESULT_PREFIX..]));
                }
            }
            _ => {}
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
        if running && !w.ready && !w.init_failed && !w.kill_sent && self.broken.is_none() {
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
        super::error::describe_exitcode(f, self.0)
    }
}

/// Appends a TASK frame, with zeros where the worker's secret goes (recorded in `secret_at`:
/// [`flush_worker`] sends the secret itself from the wiped page).
fn encode_task(out: &mut Vec<u8>, secret_at: &mut Vec<usize>, seq: u64, job: Job, payload: &[u8]) {
    let at = proto::begin_frame(out, proto::TASK);
    out.extend_from_slice(&seq.to_le_bytes());
    let (kind, a, b) = match job {
        Job::Code { tramp, ctx } => (proto::JOB_CODE, tramp as u64, ctx as u64),
        Job::Registered { index, .. } => (proto::JOB_REGISTERED, index as u64, 0),
    };
    out.push(kind);
    out.extend_from_slice(&a.to_le_bytes());
    out.extend_from_slice(&b.to_le_bytes());
    debug_assert_eq!(out.len() - at - proto::HEADER, proto::TASK_SECRET_AT);
    secret_at.push(out.len());
    out.extend_from_slice(&[0; proto::SECRET_LEN]);
    out.extend_from_slice(payload);
    proto::end_frame(out, at);
}

/// Most pieces one `sendmsg` gathers: a full pipeline (`RING` task frames and a STOP, two
/// pieces per frame, and the rest) goes in one call. Well under `IOV_MAX` (1024 on Linux).
const MAX_IOV: usize = 2 * RING + 4;

/// Writes as much of the worker's pending frames as the socket takes, without blocking.
///
/// The frames' secret fields are zeros in `wbuf`; `sendmsg` gathers `secret` (in the wiped
/// page, see [`Secrets`]) in their place, so the secret never sits in memory a fork copies.
fn flush_worker(w: &mut Worker, secret: &[u8; proto::SECRET_LEN]) {
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
        match rustix::net::sendmsg(
            &w.chan,
            &iov[..len],
            &mut rustix::net::SendAncillaryBuffer::default(),
            rustix::net::SendFlags::NOSIGNAL | rustix::net::SendFlags::DONTWAIT,
        ) {
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
    use super::*;

    /// A worker record around one end of a fresh socketpair; the other end is returned.
    fn worker() -> (Worker, OwnedFd) {
        let (a, b) = syspipe::socketpair().unwrap();
        syspipe::set_nonblocking(a.as_fd(), true).unwrap();
        let w = Worker {
            pid: sysfork::getpid(),
            chan: RegisteredFd::new(a),
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            wpos: 0,
            secret_at: Vec::new(),
            inflight: VecDeque::new(),
            next_seq: 1,
            budget: None,
            ready: true,
            eof: false,
            write_dead: false,
            stop_sent: false,
            kill_sent: false,
            init_failed: false,
        };
        (w, b)
    }

    /// Reads what `flush_worker` sent and checks every frame's secret and seq.
    fn check_frames(peer: &OwnedFd, frames: usize, secret: &[u8; 8], payload: &[u8]) {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut seen = 0;
        while seen < frames {
            let n = rustix::io::read(peer, &mut buf[..]).unwrap();
            assert!(n > 0, "end of file after {seen} frames");
            got.extend_from_slice(&buf[..n]);
            let mut used = 0;
            while let Some((body, len)) = proto::split_frame(&got[used..]) {
                used += len;
                seen += 1;
                if body[0] == proto::TASK {
                    assert_eq!(proto::u64_at(body, proto::TASK_SEQ_AT), seen as u64);
                    let at = proto::TASK_SECRET_AT;
                    assert_eq!(&body[at..at + 8], secret, "frame {seen}");
                    assert_eq!(&body[proto::TASK_PREFIX..], payload, "frame {seen}");
                } else {
                    assert_eq!(body[0], proto::STOP);
                    assert_eq!(&body[proto::STOP_SECRET_AT..], secret, "frame {seen}");
                }
            }
            got.drain(..used);
        }
        assert!(got.is_empty());
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
                rustix::net::sockopt::set_socket_send_buffer_size(&w.chan, size).unwrap();
            }
            let payload: Vec<u8> = (0..payload_len).map(|i| i as u8).collect();
            for seq in 1..=tasks {
                encode_task(&mut w.wbuf, &mut w.secret_at, seq as u64, job, &payload);
            }
            if stop {
                let at = proto::begin_frame(&mut w.wbuf, proto::STOP);
                w.secret_at.push(w.wbuf.len());
                w.wbuf.extend_from_slice(&[0; proto::SECRET_LEN]);
                proto::end_frame(&mut w.wbuf, at);
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
                    syspipe::wait_writable(w.chan.as_fd(), Deadline::FOREVER).unwrap();
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
        let first = proto::HEADER + proto::TASK_SECRET_AT;
        for cut in [first, first + 1, first + 7, first + 8, first + 9] {
            let (mut w, peer) = worker();
            for seq in 1..=200 {
                encode_task(&mut w.wbuf, &mut w.secret_at, seq, job, b"xyz");
            }
            let reader = std::thread::spawn(move || check_frames(&peer, 200, &secret, b"xyz"));
            // Send the first `cut` bytes as the earlier send did (with the secret in place).
            let mut sent = w.wbuf[..cut].to_vec();
            let field = w.secret_at[0];
            let end = cut.min(field + proto::SECRET_LEN);
            if end > field {
                sent[field..end].copy_from_slice(&secret[..end - field]);
            }
            syspipe::set_nonblocking(w.chan.as_fd(), false).unwrap();
            syspipe::send_all(w.chan.as_fd(), &sent).unwrap();
            syspipe::set_nonblocking(w.chan.as_fd(), true).unwrap();
            w.wpos = cut;
            w.secret_at.retain(|&f| f + proto::SECRET_LEN > cut);
            while !w.wbuf.is_empty() {
                flush_worker(&mut w, &secret);
                assert!(!w.write_dead);
                if !w.wbuf.is_empty() {
                    syspipe::wait_writable(w.chan.as_fd(), Deadline::FOREVER).unwrap();
                }
            }
            reader.join().unwrap();
        }
    }
}
