//! The crate's one waiting policy: how long a blocking call may wait ([`Patience`]) and how it
//! waits — spin briefly ([`Spin`]), then sleep in the kernel until the deadline.
//!
//! Every blocking operation of the shared-memory objects (`Lock`, `RLock`, `Condition`,
//! `Event`, `Semaphore`, the queue ring) waits the same way:
//!
//! 1. one attempt; with a zero timeout ([`Patience::Try`]) that is all, with no clock read;
//! 2. a short spin ([`Spin::run`]): a few polls of the condition, `gap` `pause` instructions
//!    apart, then (for the queue's streams) polls for a fixed time, then a few `sched_yield`s.
//!    A release that comes that soon (a short critical section on another CPU, a ping-pong
//!    between two processes) then costs neither side a system call;
//! 3. sleep in the kernel (a shared futex, or `pthread_mutex_clocklock`) until the deadline.
//!    How a sleeper registers and is woken is each primitive's own protocol (documented in its
//!    module); the deadline comes from here ([`Patience::deadline`]).
//!
//! The spin presets, with the measurements behind them, are the constants of [`Spin`].

use std::time::Duration;

use multiproc_sys::time::Deadline;

/// How long a blocking call may wait: the caller's timeout, as Python gives it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Patience {
    /// One attempt, no waiting and no clock read (a zero timeout: Python's `block=False`).
    Try,
    /// This long, counted from when the waiter goes to sleep (after its spin phase): a wake-up
    /// during the spin then costs no clock read, and the timeout can only end later for it,
    /// never earlier. Made by [`Patience::lazy`].
    Within(Duration),
    /// Until this deadline ([`Deadline::FOREVER`] for no limit).
    Until(Deadline),
}

impl Patience {
    /// Wait as long as it takes.
    pub(crate) const FOREVER: Patience = Patience::Until(Deadline::FOREVER);

    /// Python's timeout convention, with the deadline fixed now: `None` forever, `Some(ZERO)`
    /// one try. For calls that may wait more than once against the same timeout (a queue's
    /// lock, then its data).
    #[inline]
    pub(crate) fn from_timeout(timeout: Option<Duration>) -> Patience {
        match timeout {
            Some(Duration::ZERO) => Patience::Try,
            t => Patience::Until(Deadline::after(t)),
        }
    }

    /// Python's timeout convention, with the deadline fixed only when the waiter goes to sleep
    /// ([`Patience::Within`]). For calls that wait once.
    #[inline]
    pub(crate) fn lazy(timeout: Option<Duration>) -> Patience {
        match timeout {
            None => Patience::FOREVER,
            Some(Duration::ZERO) => Patience::Try,
            Some(d) => Patience::Within(d),
        }
    }

    /// Whether this is one attempt only (no spinning, no sleeping).
    #[inline]
    pub(crate) fn is_try(self) -> bool {
        matches!(self, Patience::Try)
    }

    /// The deadline to sleep until; [`Patience::Within`] starts counting now. An expired
    /// deadline for [`Patience::Try`] (a sleep then only looks).
    #[inline]
    pub(crate) fn deadline(self) -> Deadline {
        match self {
            Patience::Try => Deadline::after(Some(Duration::ZERO)),
            Patience::Within(d) => Deadline::after(Some(d)),
            Patience::Until(d) => d,
        }
    }

    /// Whether the time is up: always for [`Patience::Try`], never for a
    /// [`Patience::Within`] whose count has not started.
    #[inline]
    pub(crate) fn expired(self) -> bool {
        match self {
            Patience::Try => true,
            Patience::Within(d) => d.is_zero(),
            Patience::Until(d) => d.has_expired(),
        }
    }
}

/// Sleeps until `deadline` has passed on `CLOCK_MONOTONIC` (never returns early; a signal
/// handler that interrupts the sleep costs only a retry for the time left). The deadline must
/// not be [`Deadline::FOREVER`] (it returns at once then).
///
/// For the one wait that nothing can end early: a timed acquire of a lock that only the
/// waiting thread itself could release.
pub(crate) fn sleep_until(deadline: Deadline) {
    debug_assert!(!deadline.is_forever(), "sleep_until(FOREVER) would never return");
    while let Some(left) = deadline.remaining() {
        if left.is_zero() {
            break;
        }
        // `nanosleep` on Linux measures on CLOCK_MONOTONIC; the loop re-checks anyway.
        std::thread::sleep(left);
    }
}

/// How a waiter spins before it sleeps: `polls` polls, each after `gap` `pause` instructions
/// (`spin_loop`); then polls for up to `linger` (in rounds of 64 pauses); then `yields` polls,
/// each after a `sched_yield`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Spin {
    polls: u32,
    gap: u32,
    linger: Duration,
    yields: u32,
}

impl Spin {
    /// For a contended lock acquire: a few polls, far apart (about 4 µs in all on a CPU whose
    /// `pause` takes 35 ns).
    ///
    /// Every poll pulls the lock's cache line away from the holder, which then waits for it
    /// back on its next lock or unlock. A waiter polling at every `pause` (as glibc's adaptive
    /// mutex does) slows a holder that takes the lock again and again so much that two
    /// processes incrementing a shared counter got about half the throughput of a plain robust
    /// mutex (whose waiter sleeps at once); polls 32 `pause`s apart disturb the holder rarely
    /// and still catch many releases without a system call: in `benches/sync.rs` (two
    /// processes pinned to two CPUs) that is on a par with the plain robust mutex, and twice
    /// the throughput of polling at every `pause`.
    pub(crate) const LOCK: Spin = Spin { polls: 4, gap: 32, linger: Duration::ZERO, yields: 0 };

    /// For a `Condition` waiter taking its [`Lock`](crate::Lock) back: the holder is then
    /// usually the notifier, about to release the lock, so polling at every `pause` hands it
    /// over fastest.
    pub(crate) const RELOCK: Spin = Spin { polls: 128, gap: 1, linger: Duration::ZERO, yields: 0 };

    /// For a waiter on a flag or counter that another process changes (`Condition`, `Event`,
    /// `Semaphore`): 100 polls, one `pause` apart (a few microseconds in all). A notify that
    /// comes that soon (a ping-pong between two processes, a producer that is just finishing)
    /// then costs neither side a system call.
    pub(crate) const WAKE: Spin = Spin { polls: 100, gap: 1, linger: Duration::ZERO, yields: 0 };

    /// For the queue ring's usual wait for an item or for room: 200 polls one `pause` apart,
    /// then 8 polls after a `sched_yield` each (on a busy machine the other side may be
    /// runnable on this CPU).
    pub(crate) const QUEUE: Spin = Spin { polls: 200, gap: 1, linger: Duration::ZERO, yields: 8 };

    /// For the two sides of a queue stream waiting for each other's next piece: as
    /// [`QUEUE`](Self::QUEUE), with polls for up to 100 µs before the yields. The other side is
    /// copying a piece (typically a few microseconds), which takes less than a futex round trip.
    pub(crate) const STREAM: Spin =
        Spin { polls: 200, gap: 1, linger: Duration::from_micros(100), yields: 8 };

    /// The spin phase: calls `poll` as this policy says, until it returns `Some`; `None` once
    /// the spin is over (the caller then sleeps). The linger phase ends at `patience`'s
    /// deadline if that comes first.
    #[inline]
    pub(crate) fn run<T>(
        self,
        patience: Patience,
        mut poll: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        for _ in 0..self.polls {
            for _ in 0..self.gap {
                std::hint::spin_loop();
            }
            if let Some(done) = poll() {
                return Some(done);
            }
        }
        if !self.linger.is_zero() {
            let stop = Deadline::after(Some(self.linger)).min(patience.deadline());
            loop {
                for _ in 0..64 {
                    std::hint::spin_loop();
                    if let Some(done) = poll() {
                        return Some(done);
                    }
                }
                if stop.has_expired() {
                    break;
                }
            }
        }
        for _ in 0..self.yields {
            std::thread::yield_now();
            if let Some(done) = poll() {
                return Some(done);
            }
        }
        None
    }
}
