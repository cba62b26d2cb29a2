//! The server's synchronisation objects — `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore`,
//! `Condition`, `Event`, `Barrier`, `Queue`, `JoinableQueue` — built from std's `Mutex` and
//! `Condvar` inside the server process, with `threading`'s semantics.
//!
//! A blocking call ties up only the calling client's server thread. It waits in slices and
//! gives up early if its client hangs up (so a killed client's `get` never takes an item, nor
//! its `acquire` a lock): the client's socket is checked before the wait and after every
//! wake-up. The protocol is strictly one request then its response, so a client socket that
//! is readable while its call runs has hung up (or broken the protocol). Locks are owned by a connection (one per client thread): when a
//! connection ends, the `Lock`s, `RLock`s and `Condition`s it holds are released.

use std::collections::{HashSet, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::data::lock;
use super::error::{ErrorKind, RemoteError};
use super::protocol::{self as p, args};
use crate::codec;

type Res = Result<Vec<u8>, RemoteError>;

fn ok<T: codec::Encode + ?Sized>(v: &T) -> Res {
    Ok(codec::to_bytes(v))
}

fn no_method(ty: &str, method: u16) -> RemoteError {
    RemoteError::new(ErrorKind::NoSuchMethod, format!("'{ty}' object has no method {method}"))
}

/// How long a blocked call sleeps between checks that its client is still there.
const SLICE: Duration = Duration::from_millis(100);

/// The caller of a method: its connection, and how to tell whether it is still connected.
pub(crate) struct Caller<'a> {
    /// The connection's id (owner of the locks it acquires).
    pub(crate) conn: u64,
    /// False once the client has hung up.
    pub(crate) alive: &'a dyn Fn() -> bool,
}

/// The outcome of a wait.
#[derive(PartialEq, Eq)]
enum Waited {
    Ready,
    TimedOut,
}

/// Waits on `cv` until `ready` holds, the deadline passes or the caller hangs up.
fn wait_until<'g, T>(
    cv: &Condvar,
    mut g: MutexGuard<'g, T>,
    deadline: Option<Instant>,
    caller: &Caller<'_>,
    mut ready: impl FnMut(&mut T) -> bool,
) -> (MutexGuard<'g, T>, Waited) {
    // A client that sent its request and died (or hung up) before the server read it: nothing
    // of what it asked for may be taken on its behalf.
    if !(caller.alive)() {
        return (g, Waited::TimedOut);
    }
    loop {
        if ready(&mut g) {
            return (g, Waited::Ready);
        }
        let slice = match deadline {
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return (g, Waited::TimedOut);
                }
                (d - now).min(SLICE)
            }
            None => SLICE,
        };
        g = cv.wait_timeout(g, slice).unwrap_or_else(|e| e.into_inner()).0;
        // Checked after every wake-up, before `ready`: a client that hung up while waiting
        // must not take what it waited for (an item, the lock) from the others.
        if !(caller.alive)() {
            return (g, Waited::TimedOut);
        }
    }
}

/// A deadline from an optional timeout (`None`: forever).
fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// A lock: `Lock` (not reentrant, released by anyone) or `RLock` (reentrant, released by its
/// owner), and the lock inside a `Condition`.
#[derive(Debug, Default)]
struct LockState {
    owner: Option<u64>,
    /// Recursion depth (a `u64`: no client can acquire 2^64 times).
    count: u64,
}

/// `Lock()` and `RLock()`.
#[derive(Debug)]
pub(crate) struct LockObj {
    state: Mutex<LockState>,
    cv: Condvar,
    reentrant: bool,
}

impl LockObj {
    pub(crate) fn new(reentrant: bool) -> LockObj {
        LockObj { state: Mutex::default(), cv: Condvar::new(), reentrant }
    }

    fn ty(&self) -> &'static str {
        if self.reentrant { "RLock" } else { "Lock" }
    }

    pub(crate) fn call(&self, method: u16, a: &[u8], caller: &Caller<'_>) -> Res {
        match method {
            p::ACQUIRE => {
                let timeout: Option<Duration> = args(a)?;
                let g = lock(&self.state);
                let me = caller.conn;
                let reentrant = self.reentrant;
                let (mut g, w) = wait_until(&self.cv, g, deadline(timeout), caller, |s| {
                    s.owner.is_none() || (reentrant && s.owner == Some(me))
                });
                if w == Waited::TimedOut {
                    return ok(&false);
                }
                g.owner = Some(me);
                g.count += 1;
                ok(&true)
            }
            p::RELEASE => {
                let mut g = lock(&self.state);
                match g.owner {
                    None if !self.reentrant => {
                        return Err(RemoteError::new(ErrorKind::Runtime, "release unlocked lock"));
                    }
                    Some(o) if self.reentrant && o != caller.conn => {
                        return Err(RemoteError::new(
                            ErrorKind::Runtime,
                            "cannot release un-acquired lock",
                        ));
                    }
                    None => {
                        return Err(RemoteError::new(
                            ErrorKind::Runtime,
                            "cannot release un-acquired lock",
                        ));
                    }
                    Some(_) => {}
                }
                g.count -= 1;
                if g.count == 0 || !self.reentrant {
                    g.owner = None;
                    g.count = 0;
                    self.cv.notify_all();
                }
                ok(&())
            }
            p::LOCKED => ok(&lock(&self.state).owner.is_some()),
            _ => Err(no_method(self.ty(), method)),
        }
    }

    /// Releases the lock if `conn` holds it (its client disconnected).
    pub(crate) fn release_owned_by(&self, conn: u64) {
        let mut g = lock(&self.state);
        if g.owner == Some(conn) {
            g.owner = None;
            g.count = 0;
            self.cv.notify_all();
        }
    }
}

/// `Semaphore(n)` and `BoundedSemaphore(n)`.
#[derive(Debug)]
pub(crate) struct SemaphoreObj {
    value: Mutex<u64>,
    cv: Condvar,
    bound: Option<u64>,
}

impl SemaphoreObj {
    pub(crate) fn new(value: u64, bounded: bool) -> SemaphoreObj {
        SemaphoreObj {
            value: Mutex::new(value),
            cv: Condvar::new(),
            bound: bounded.then_some(value),
        }
    }

    pub(crate) fn call(&self, method: u16, a: &[u8], caller: &Caller<'_>) -> Res {
        match method {
            p::ACQUIRE => {
                let timeout: Option<Duration> = args(a)?;
                let g = lock(&self.value);
                let (mut g, w) = wait_until(&self.cv, g, deadline(timeout), caller, |v| *v > 0);
                if w == Waited::TimedOut {
                    return ok(&false);
                }
                *g -= 1;
                ok(&true)
            }
            p::RELEASE => {
                let mut g = lock(&self.value);
                if self.bound.is_some_and(|b| *g >= b) {
                    return Err(RemoteError::new(
                        ErrorKind::Value,
                        "Semaphore released too many times",
                    ));
                }
                *g = g.checked_add(1).ok_or_else(|| {
                    RemoteError::new(ErrorKind::Value, "Semaphore value would overflow")
                })?;
                // All, not one: a waiter whose client has hung up gives up without passing a
                // single wake-up on.
                self.cv.notify_all();
                ok(&())
            }
            p::GET_VALUE => ok(&*lock(&self.value)),
            _ => Err(no_method("Semaphore", method)),
        }
    }
}

/// An `Event`'s flag, and how many times it was set (so that a waiter sees a `set` that a
/// `clear` followed before it woke, as Python's does).
#[derive(Debug, Default)]
struct EventState {
    set: bool,
    sets: u64,
}

/// `Event()`.
#[derive(Debug, Default)]
pub(crate) struct EventObj {
    set: Mutex<EventState>,
    cv: Condvar,
}

impl EventObj {
    pub(crate) fn call(&self, method: u16, a: &[u8], caller: &Caller<'_>) -> Res {
        match method {
            p::EVENT_SET => {
                let mut g = lock(&self.set);
                g.set = true;
                // A waiter woken by this `set` returns true even if a `clear` comes first.
                g.sets = g.sets.wrapping_add(1);
                self.cv.notify_all();
                ok(&())
            }
            p::EVENT_CLEAR => {
                lock(&self.set).set = false;
                ok(&())
            }
            p::IS_SET => ok(&lock(&self.set).set),
            p::WAIT => {
                let timeout: Option<Duration> = args(a)?;
                let g = lock(&self.set);
                let seen = g.sets;
                let (_g, w) =
                    wait_until(&self.cv, g, deadline(timeout), caller, |s| s.set || s.sets != seen);
                ok(&(w == Waited::Ready))
            }
            _ => Err(no_method("Event", method)),
        }
    }
}

/// A `Condition`'s state: its `RLock`, and the waiters' tickets.
#[derive(Debug, Default)]
struct CondState {
    lock: LockState,
    next_ticket: u64,
    waiting: VecDeque<u64>,
    notified: HashSet<u64>,
}

/// `Condition()` (over its own `RLock`, as Python's default).
#[derive(Debug, Default)]
pub(crate) struct ConditionObj {
    state: Mutex<CondState>,
    cv: Condvar,
}

impl ConditionObj {
    pub(crate) fn call(&self, method: u16, a: &[u8], caller: &Caller<'_>) -> Res {
        let me = caller.conn;
        let not_owner = |what: &str| {
            RemoteError::new(ErrorKind::Runtime, format!("cannot {what} un-acquired lock"))
        };
        match method {
            p::ACQUIRE => {
                let timeout: Option<Duration> = args(a)?;
                let g = lock(&self.state);
                let (mut g, w) = wait_until(&self.cv, g, deadline(timeout), caller, |s| {
                    s.lock.owner.is_none() || s.lock.owner == Some(me)
                });
                if w == Waited::TimedOut {
                    return ok(&false);
                }
                g.lock.owner = Some(me);
                g.lock.count += 1;
                ok(&true)
            }
            p::RELEASE => {
                let mut g = lock(&self.state);
                if g.lock.owner != Some(me) {
                    return Err(not_owner("release"));
                }
                g.lock.count -= 1;
                if g.lock.count == 0 {
                    g.lock.owner = None;
                    self.cv.notify_all();
                }
                ok(&())
            }
            p::WAIT => {
                let timeout: Option<Duration> = args(a)?;
                let mut g = lock(&self.state);
                if g.lock.owner != Some(me) {
                    return Err(not_owner("wait on"));
                }
                let saved = g.lock.count;
                g.lock.owner = None;
                g.lock.count = 0;
                let ticket = g.next_ticket;
                g.next_ticket += 1;
                g.waiting.push_back(ticket);
                self.cv.notify_all();
                let (mut g, _) = wait_until(&self.cv, g, deadline(timeout), caller, |s| {
                    s.notified.contains(&ticket)
                });
                let notified = g.notified.remove(&ticket);
                if !notified {
                    g.waiting.retain(|&t| t != ticket);
                }
                // Re-acquire, however long it takes (as Python's `wait` does); give up only if
                // the client is gone.
                let (mut g, w) = wait_until(&self.cv, g, None, caller, |s| s.lock.owner.is_none());
                if w == Waited::Ready {
                    g.lock.owner = Some(me);
                    g.lock.count = saved;
                }
                ok(&notified)
            }
            p::NOTIFY | p::NOTIFY_ALL => {
                let n: u64 = if method == p::NOTIFY { args(a)? } else { u64::MAX };
                let mut g = lock(&self.state);
                if g.lock.owner != Some(me) {
                    return Err(not_owner("notify on"));
                }
                let k = usize::try_from(n).unwrap_or(usize::MAX).min(g.waiting.len());
                let woken: Vec<u64> = g.waiting.drain(..k).collect();
                g.notified.extend(woken);
                self.cv.notify_all();
                ok(&())
            }
            _ => Err(no_method("Condition", method)),
        }
    }

    /// Releases the condition's lock if `conn` holds it.
    pub(crate) fn release_owned_by(&self, conn: u64) {
        let mut g = lock(&self.state);
        if g.lock.owner == Some(conn) {
            g.lock.owner = None;
            g.lock.count = 0;
            self.cv.notify_all();
        }
    }
}

/// A `Barrier`'s state.
#[derive(Debug)]
struct BarrierState {
    parties: u64,
    count: u64,
    generation: u64,
    broken: bool,
    /// Waiters of this generation were released by `reset` (they get `BrokenBarrierError`).
    reset_generation: Option<u64>,
}

/// `Barrier(parties)`.
#[derive(Debug)]
pub(crate) struct BarrierObj {
    state: Mutex<BarrierState>,
    cv: Condvar,
}

fn broken() -> RemoteError {
    RemoteError::new(ErrorKind::BrokenBarrier, "the barrier is broken")
}

impl BarrierObj {
    pub(crate) fn new(parties: u64) -> BarrierObj {
        BarrierObj {
            state: Mutex::new(BarrierState {
                parties,
                count: 0,
                generation: 0,
                broken: false,
                reset_generation: None,
            }),
            cv: Condvar::new(),
        }
    }

    pub(crate) fn call(&self, method: u16, a: &[u8], caller: &Caller<'_>) -> Res {
        match method {
            p::WAIT => {
                let timeout: Option<Duration> = args(a)?;
                let mut g = lock(&self.state);
                if g.broken {
                    return Err(broken());
                }
                let index = g.count;
                let gen_ = g.generation;
                g.count += 1;
                if g.count == g.parties {
                    g.count = 0;
                    g.generation += 1;
                    self.cv.notify_all();
                    return ok(&index);
                }
                let (mut g, w) = wait_until(&self.cv, g, deadline(timeout), caller, |s| {
                    s.generation != gen_ || s.broken
                });
                if g.generation != gen_ {
                    if g.reset_generation == Some(gen_) {
                        return Err(broken());
                    }
                    return ok(&index);
                }
                if w == Waited::TimedOut && !g.broken {
                    // A timeout breaks the barrier for everyone (Python's semantics).
                    g.broken = true;
                    self.cv.notify_all();
                }
                g.count = g.count.saturating_sub(1);
                Err(broken())
            }
            p::ABORT => {
                lock(&self.state).broken = true;
                self.cv.notify_all();
                ok(&())
            }
            p::RESET => {
                let mut g = lock(&self.state);
                if g.count > 0 {
                    g.reset_generation = Some(g.generation);
                    g.generation += 1;
                }
                g.count = 0;
                g.broken = false;
                self.cv.notify_all();
                ok(&())
            }
            p::PARTIES => ok(&lock(&self.state).parties),
            p::N_WAITING => ok(&lock(&self.state).count),
            p::BROKEN => ok(&lock(&self.state).broken),
            _ => Err(no_method("Barrier", method)),
        }
    }
}

/// A queue's state.
#[derive(Debug, Default)]
struct QueueState {
    items: VecDeque<Vec<u8>>,
    unfinished: u64,
}

/// `Queue(maxsize)` and `JoinableQueue(maxsize)`.
#[derive(Debug)]
pub(crate) struct QueueObj {
    state: Mutex<QueueState>,
    cv: Condvar,
    /// 0: unbounded.
    maxsize: usize,
    joinable: bool,
}

impl QueueObj {
    pub(crate) fn new(maxsize: usize, joinable: bool) -> QueueObj {
        QueueObj { state: Mutex::default(), cv: Condvar::new(), maxsize, joinable }
    }

    pub(crate) fn call(&self, method: u16, a: &[u8], caller: &Caller<'_>) -> Res {
        let ty = if self.joinable { "JoinableQueue" } else { "Queue" };
        let max = self.maxsize;
        match method {
            p::PUT => {
                let (timeout, item): (Option<Duration>, Vec<u8>) = args(a)?;
                let g = lock(&self.state);
                let (mut g, w) = wait_until(&self.cv, g, deadline(timeout), caller, |s| {
                    max == 0 || s.items.len() < max
                });
                if w == Waited::TimedOut {
                    return Err(RemoteError::new(ErrorKind::Full, "the queue is full"));
                }
                g.items.push_back(item);
                g.unfinished += 1;
                self.cv.notify_all();
                ok(&())
            }
            p::QUEUE_GET => {
                let timeout: Option<Duration> = args(a)?;
                let g = lock(&self.state);
                let (mut g, w) =
                    wait_until(&self.cv, g, deadline(timeout), caller, |s| !s.items.is_empty());
                // Timed out, or the client hung up: take nothing.
                let item = if w == Waited::Ready { g.items.pop_front() } else { None };
                match item {
                    Some(item) => {
                        self.cv.notify_all();
                        Ok(item)
                    }
                    None => Err(RemoteError::new(ErrorKind::Empty, "the queue is empty")),
                }
            }
            p::QSIZE => ok(&(lock(&self.state).items.len() as u64)),
            p::LEN => ok(&(lock(&self.state).items.len() as u64)),
            p::FULL => ok(&(max != 0 && lock(&self.state).items.len() >= max)),
            p::TASK_DONE if self.joinable => {
                let mut g = lock(&self.state);
                if g.unfinished == 0 {
                    return Err(RemoteError::new(
                        ErrorKind::Value,
                        "task_done() called too many times",
                    ));
                }
                g.unfinished -= 1;
                if g.unfinished == 0 {
                    self.cv.notify_all();
                }
                ok(&())
            }
            p::JOIN if self.joinable => {
                let timeout: Option<Duration> = args(a)?;
                let g = lock(&self.state);
                let (_g, w) =
                    wait_until(&self.cv, g, deadline(timeout), caller, |s| s.unfinished == 0);
                ok(&(w == Waited::Ready))
            }
            _ => Err(no_method(ty, method)),
        }
    }
}
