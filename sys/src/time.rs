//! Monotonic deadlines.
//!
//! Every blocking call in multiproc takes an `Option<Duration>` timeout and turns it into a
//! [`Deadline`] once, at the start: an absolute point on `CLOCK_MONOTONIC` (never the wall clock,
//! which NTP or an administrator can step). Retries after `EINTR` or a spurious wake-up wait only
//! for the time that is left, and a timeout is reported only when the clock has really passed
//! the deadline.
//!
//! | timeout              | deadline                                       |
//! |----------------------|------------------------------------------------|
//! | `None`               | [`Deadline::FOREVER`]                          |
//! | `Some(Duration::ZERO)` | now: the operation tries once                |
//! | `Some(d)`            | now + d; a sum that overflows is "forever"     |
//!
//! Everything here is async-signal-safe (`clock_gettime` is on the POSIX list).
//!
//! # References
//! - [POSIX `clock_gettime`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/clock_gettime.html)
//! - [Linux `clock_gettime(2)`](https://man7.org/linux/man-pages/man2/clock_gettime.2.html)

use core::time::Duration;

/// A point in time as the kernel counts it: seconds and nanoseconds since a clock's epoch
/// (C's `struct timespec`, with 64-bit fields on every target). The crate's own type, so that
/// no dependency's version leaks into this API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(C)]
pub struct Timespec {
    /// Whole seconds.
    pub tv_sec: i64,
    /// Nanoseconds, `0..1_000_000_000` when normalised.
    pub tv_nsec: i64,
}

impl Timespec {
    /// The same time as rustix's type, for the calls that take it.
    #[inline]
    pub(crate) fn to_rustix(self) -> rustix::time::Timespec {
        rustix::time::Timespec { tv_sec: self.tv_sec, tv_nsec: self.tv_nsec as _ }
    }
}

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// `clock_gettime(CLOCK_MONOTONIC)` — the current monotonic time.
///
/// Async-signal-safe.
#[inline]
pub fn monotonic_now() -> Timespec {
    clock_gettime(libc::CLOCK_MONOTONIC)
}

/// `clock_gettime(CLOCK_REALTIME)` — the current wall-clock time.
///
/// Only for calls that accept nothing but a `CLOCK_REALTIME` deadline (see
/// [`Deadline::to_realtime`]). Async-signal-safe.
#[inline]
pub fn realtime_now() -> Timespec {
    clock_gettime(libc::CLOCK_REALTIME)
}

/// libc's `clock_gettime` (through the vDSO that libc set up at start-up). Not rustix's: rustix
/// initialises its own vDSO lookup lazily on first use, which may read `/proc/self/auxv` into a
/// heap buffer, and that first use could happen in a freshly forked child.
#[inline]
fn clock_gettime(clock: libc::clockid_t) -> Timespec {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC and CLOCK_REALTIME always
    // exist on Linux, so the call cannot fail (checked in debug builds).
    let r = unsafe { libc::clock_gettime(clock, &mut ts) };
    debug_assert_eq!(r, 0);
    Timespec { tv_sec: ts.tv_sec, tv_nsec: ts.tv_nsec }
}

/// An absolute point in time on `CLOCK_MONOTONIC`, or "forever".
///
/// Built once from a caller's timeout with [`Deadline::after`]; see the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    at: Option<Timespec>,
}

impl Deadline {
    /// The deadline that never comes.
    pub const FOREVER: Deadline = Deadline { at: None };

    /// The deadline for a timeout that starts now: `None` is [`Deadline::FOREVER`], `Some(ZERO)`
    /// is now (try once), and a deadline past what a `timespec` can hold is also "forever".
    ///
    /// Async-signal-safe.
    #[inline]
    pub fn after(timeout: Option<Duration>) -> Deadline {
        match timeout {
            None => Deadline::FOREVER,
            Some(d) => Deadline { at: add(monotonic_now(), d) },
        }
    }

    /// A deadline at an absolute monotonic time, as returned by [`monotonic_now`].
    ///
    /// A `timespec` that is not normalised is clamped: negative times mean "already passed",
    /// and `tv_nsec` outside `0..1_000_000_000` is brought into range. Async-signal-safe.
    #[inline]
    pub const fn at(when: Timespec) -> Deadline {
        let tv_nsec = if when.tv_nsec < 0 {
            0
        } else if when.tv_nsec >= NANOS_PER_SEC {
            NANOS_PER_SEC - 1
        } else {
            when.tv_nsec
        };
        let tv_sec = if when.tv_sec < 0 { 0 } else { when.tv_sec };
        Deadline { at: Some(Timespec { tv_sec, tv_nsec }) }
    }

    /// Whether this is [`Deadline::FOREVER`].
    #[inline]
    pub const fn is_forever(&self) -> bool {
        self.at.is_none()
    }

    /// The absolute `CLOCK_MONOTONIC` time, or `None` for "forever". This is what futexes
    /// (`FUTEX_WAIT_BITSET`), `sem_clockwait`, `pthread_mutex_clocklock` and condvars created on
    /// `CLOCK_MONOTONIC` take.
    #[inline]
    pub const fn as_timespec(&self) -> Option<&Timespec> {
        self.at.as_ref()
    }

    /// Whether the monotonic clock has reached the deadline. "Forever" never expires.
    ///
    /// Async-signal-safe.
    #[inline]
    pub fn has_expired(&self) -> bool {
        match self.at {
            None => false,
            Some(at) => !is_before(monotonic_now(), at),
        }
    }

    /// The time left: `None` for "forever", `Some(ZERO)` once expired.
    ///
    /// Async-signal-safe.
    #[inline]
    pub fn remaining(&self) -> Option<Duration> {
        self.at.map(|at| sub(at, monotonic_now()))
    }

    /// The earlier of two deadlines.
    #[inline]
    pub fn min(self, other: Deadline) -> Deadline {
        match (self.at, other.at) {
            (None, _) => other,
            (_, None) => self,
            (Some(a), Some(b)) => {
                if is_before(a, b) {
                    self
                } else {
                    other
                }
            }
        }
    }

    /// The same instant expressed on `CLOCK_REALTIME`, for the few calls that only take a
    /// wall-clock deadline (`sem_timedwait`, `pthread_mutex_timedlock` on libcs without the
    /// `clock*` variants). Recompute it before every retry: a wall-clock step between two calls
    /// is then corrected, and callers re-check [`has_expired`](Self::has_expired) on the
    /// monotonic clock before they report a timeout.
    ///
    /// Async-signal-safe.
    pub fn to_realtime(&self) -> Option<Timespec> {
        self.remaining().map(|left| add(realtime_now(), left).unwrap_or(MAX_TIMESPEC))
    }

    /// How long a `poll(2)`-style call may sleep: the time left, rounded **up** to whole
    /// milliseconds so the call never returns before the deadline, capped at `i32::MAX`
    /// milliseconds; `-1` for "forever".
    pub fn poll_timeout_ms(&self) -> i32 {
        match self.remaining() {
            None => -1,
            Some(left) => {
                let ms = left.as_nanos().div_ceil(1_000_000);
                i32::try_from(ms).unwrap_or(i32::MAX)
            }
        }
    }
}

/// The largest `timespec` we ever produce: far enough away to mean "forever".
const MAX_TIMESPEC: Timespec = Timespec { tv_sec: i64::MAX, tv_nsec: NANOS_PER_SEC - 1 };

/// `t + d`, or `None` if it does not fit.
fn add(t: Timespec, d: Duration) -> Option<Timespec> {
    let secs = i64::try_from(d.as_secs()).ok()?;
    let mut tv_sec = t.tv_sec.checked_add(secs)?;
    let mut tv_nsec = t.tv_nsec + i64::from(d.subsec_nanos());
    if tv_nsec >= NANOS_PER_SEC {
        tv_nsec -= NANOS_PER_SEC;
        tv_sec = tv_sec.checked_add(1)?;
    }
    Some(Timespec { tv_sec, tv_nsec })
}

/// `a - b`, saturating at zero. Both are normalised (`0 <= tv_nsec < 1e9`, `tv_sec >= 0`:
/// clock readings and [`Deadline::at`] guarantee it), so nothing here can overflow.
fn sub(a: Timespec, b: Timespec) -> Duration {
    if !is_before(b, a) {
        return Duration::ZERO;
    }
    let mut secs = a.tv_sec.saturating_sub(b.tv_sec);
    let mut nanos = a.tv_nsec - b.tv_nsec;
    if nanos < 0 {
        nanos += NANOS_PER_SEC;
        secs = secs.saturating_sub(1);
    }
    // a > b, so both are non-negative; the casts cannot lose anything.
    Duration::new(u64::try_from(secs).unwrap_or(0), u32::try_from(nanos).unwrap_or(0))
}

/// `a < b`.
fn is_before(a: Timespec, b: Timespec) -> bool {
    (a.tv_sec, a.tv_nsec) < (b.tv_sec, b.tv_nsec)
}

/// The type of libc's `timespec::tv_sec`: `time_t`.
///
/// On musl, `libc` deprecates its `time_t` alias (it plans to follow musl 1.2's 64-bit `time_t`
/// on 32-bit targets in a future release), so there we name the type it defines today, `c_long`
/// (64 bits on x86_64 and aarch64). The `const` item below stops the build if `tv_sec` is ever
/// anything else, so the two cannot drift apart silently.
#[cfg(target_env = "musl")]
type TimeT = core::ffi::c_long;
#[cfg(not(target_env = "musl"))]
type TimeT = libc::time_t;

// Compiles only if `libc::timespec::tv_sec` is exactly a `TimeT` (a type check, stricter than a
// size assertion).
const _: fn(libc::timespec) -> TimeT = |ts| ts.tv_sec;

/// Converts to libc's `timespec` for the `sem_*`/`pthread_*` calls.
///
/// A time past what `time_t` holds (after 2038 on targets with a 32-bit `time_t`) becomes the
/// largest `time_t`, which still means "far in the future".
#[inline]
pub(crate) fn to_libc(t: &Timespec) -> libc::timespec {
    let tv_sec = TimeT::try_from(t.tv_sec).unwrap_or(TimeT::MAX);
    libc::timespec { tv_sec, tv_nsec: t.tv_nsec as _ }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_is_forever_and_never_expires() {
        let d = Deadline::after(None);
        assert!(d.is_forever());
        assert!(!d.has_expired());
        assert_eq!(d.remaining(), None);
        assert_eq!(d.poll_timeout_ms(), -1);
    }

    #[test]
    fn zero_has_expired_at_once() {
        let d = Deadline::after(Some(Duration::ZERO));
        assert!(d.has_expired());
        assert_eq!(d.remaining(), Some(Duration::ZERO));
        assert_eq!(d.poll_timeout_ms(), 0);
    }

    #[test]
    fn overflowing_timeout_means_forever() {
        assert!(Deadline::after(Some(Duration::MAX)).is_forever());
        // The first whole second past what `tv_sec` holds, whatever the clock reads (a
        // monotonic clock may start near zero: in a new time namespace, or under Miri).
        assert!(Deadline::after(Some(Duration::from_secs(i64::MAX as u64 + 1))).is_forever());
    }

    #[test]
    fn remaining_counts_down_and_poll_rounds_up() {
        let d = Deadline::after(Some(Duration::from_millis(1500)));
        let left = d.remaining().unwrap();
        assert!(left <= Duration::from_millis(1500) && left > Duration::from_millis(1000));
        let ms = d.poll_timeout_ms();
        assert!((1000..=1500).contains(&ms));
        let tiny = Deadline::at(add(monotonic_now(), Duration::from_nanos(10_000)).unwrap());
        assert!(tiny.poll_timeout_ms() <= 1);
    }

    #[test]
    fn min_picks_the_earlier() {
        let a = Deadline::after(Some(Duration::from_secs(1)));
        let b = Deadline::after(Some(Duration::from_secs(10)));
        assert_eq!(a.min(b), a);
        assert_eq!(b.min(a), a);
        assert_eq!(Deadline::FOREVER.min(b), b);
        assert_eq!(b.min(Deadline::FOREVER), b);
    }

    #[test]
    fn unnormalised_deadlines_are_clamped_not_overflowed() {
        let d = Deadline::at(Timespec { tv_sec: i64::MAX, tv_nsec: i64::MIN });
        assert!(d.remaining().unwrap() > Duration::from_secs(1 << 40));
        let clamped = Deadline::at(Timespec { tv_sec: -5, tv_nsec: 2 * NANOS_PER_SEC });
        assert_eq!(
            clamped.as_timespec(),
            Some(&Timespec { tv_sec: 0, tv_nsec: NANOS_PER_SEC - 1 })
        );
        // Time zero has passed on any clock reading (even one that started a moment ago).
        let past = Deadline::at(Timespec { tv_sec: -5, tv_nsec: -3 });
        assert_eq!(past.as_timespec(), Some(&Timespec { tv_sec: 0, tv_nsec: 0 }));
        assert!(past.has_expired());
        assert_eq!(past.remaining(), Some(Duration::ZERO));
    }

    #[test]
    fn add_and_sub_carry_nanoseconds() {
        let t = Timespec { tv_sec: 5, tv_nsec: 900_000_000 };
        let u = add(t, Duration::from_millis(200)).unwrap();
        assert_eq!((u.tv_sec, u.tv_nsec), (6, 100_000_000));
        assert_eq!(sub(u, t), Duration::from_millis(200));
        assert_eq!(sub(t, u), Duration::ZERO);
    }

    #[test]
    fn realtime_equivalent_is_about_as_far_away() {
        let d = Deadline::after(Some(Duration::from_secs(2)));
        let rt = d.to_realtime().unwrap();
        let now = realtime_now();
        let gap = sub(rt, now);
        assert!(gap > Duration::from_millis(1500) && gap <= Duration::from_secs(2));
    }

    #[test]
    fn to_libc_keeps_the_time_and_saturates_past_time_t() {
        let ts = to_libc(&Timespec { tv_sec: 1_234, tv_nsec: 999_999_999 });
        assert_eq!((ts.tv_sec, ts.tv_nsec), (1_234, 999_999_999));
        let far = to_libc(&Timespec { tv_sec: i64::MAX, tv_nsec: 0 });
        assert_eq!(far.tv_sec, TimeT::MAX);
    }
}
