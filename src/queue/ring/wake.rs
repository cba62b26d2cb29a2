//! Waiting and waking on the ring's futex words ([`WakeWord`]): the sleeper-count protocol of
//! the [ring's docs](super#waiting), over the crate's one waiting policy (`crate::wait`).

use std::sync::atomic::Ordering::{Relaxed, Release, SeqCst};
use std::sync::atomic::fence;
use std::time::Duration;

use multiproc_sys::Errno;
use multiproc_sys::sync::futex;
use multiproc_sys::time::Deadline;

use super::fail::{Fail, RingResult};
use super::layout::WakeWord;
use super::raw::RawQueue;
use crate::wait::{Patience, Spin};

/// How long a consumer waiting for a stream sleeps between checks that its producer is alive.
const LIVENESS_SLICE: Duration = Duration::from_millis(20);

impl RawQueue {
    /// Wakes the sleepers of `w` if there are any. Call after storing the change they wait for.
    #[inline]
    pub(super) fn wake(&self, w: &WakeWord) {
        // Pairs with the fence in `wait_on`: either we see the sleeper's count, or it sees our
        // change before it sleeps.
        fence(SeqCst);
        if w.waiters.load(Relaxed) != 0 {
            self.wake_now(w);
        }
    }

    /// [`wake`](Self::wake) right after a `SeqCst` read-modify-write of the published word
    /// (`swap` of `tail` or `head`), which orders it before the sleeper check as the fence
    /// would (C++20 [atomics.order]: the sleeper's fence and our `SeqCst` operations are all in
    /// one total order), more cheaply.
    #[inline]
    pub(super) fn wake_after_swap(&self, w: &WakeWord) {
        if w.waiters.load(SeqCst) != 0 {
            self.wake_now(w);
        }
    }

    /// Wakes every sleeper of `w`, whether or not the count shows one.
    #[cold]
    pub(super) fn wake_now(&self, w: &WakeWord) {
        w.seq.fetch_add(1, Release);
        let _ = futex::futex_wake_all(&w.seq);
    }

    /// Waits until `ready` returns true (`Ok(true)`) or `patience` runs out (`Ok(false)`):
    /// one check, then `spin`'s spin phase, then sleeps on `w`.
    ///
    /// `ready(check)` is called repeatedly; `check` is true once before the first sleep and
    /// then after every `LIVENESS_SLICE` of sleep when `sliced` (the caller then checks that
    /// the process it waits for is alive).
    pub(super) fn wait_on(
        &self,
        w: &WakeWord,
        patience: Patience,
        sliced: bool,
        spin: Spin,
        mut ready: impl FnMut(bool) -> RingResult<bool>,
    ) -> RingResult<bool> {
        if ready(false)? {
            return Ok(true);
        }
        if patience.is_try() {
            return Ok(false);
        }
        let spun = spin.run(patience, || match ready(false) {
            Ok(false) => None,
            done => Some(done),
        });
        if let Some(done) = spun {
            return done;
        }
        let mut check = sliced;
        loop {
            w.waiters.fetch_add(1, Relaxed);
            fence(SeqCst);
            let seen = w.seq.load(Relaxed);
            let r = ready(check);
            check = false;
            if !matches!(r, Ok(false)) {
                w.waiters.fetch_sub(1, Relaxed);
                return r;
            }
            if patience.deadline().has_expired() {
                w.waiters.fetch_sub(1, Relaxed);
                return Ok(false);
            }
            let sleep_until = if sliced {
                patience.deadline().min(Deadline::after(Some(LIVENESS_SLICE)))
            } else {
                patience.deadline()
            };
            let res = futex::futex_wait(&w.seq, seen, sleep_until);
            w.waiters.fetch_sub(1, Relaxed);
            match res {
                Ok(()) => {}
                Err(Errno::TIMEDOUT) => check = sliced,
                Err(e) => return Err(Fail::Os(e)),
            }
        }
    }
}
