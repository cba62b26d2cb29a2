//! Process ids: the crate's own [`Pid`] type.

use core::fmt;
use core::num::NonZeroI32;

/// A process (or thread) id: a positive number. The crate's own type, so that no dependency's
/// version leaks into this API.
///
/// ```
/// use multiproc_sys::Pid;
///
/// let me = multiproc_sys::fork::getpid();
/// assert_eq!(me.as_raw(), std::process::id() as i32);
/// assert_eq!(Pid::from_raw(me.as_raw()), Some(me));
/// assert_eq!(Pid::from_raw(0), None);
/// assert_eq!(Pid::from_raw(-1), None); // a process group, not a process
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Pid(NonZeroI32);

impl Pid {
    /// The process with id 1 (`init`).
    pub const INIT: Pid = match Pid::from_raw(1) {
        Some(pid) => pid,
        None => panic!("1 is positive"),
    };

    /// The process with id `raw`; `None` unless `raw > 0`.
    #[inline]
    #[must_use]
    pub const fn from_raw(raw: i32) -> Option<Pid> {
        if raw > 0 {
            match NonZeroI32::new(raw) {
                Some(n) => Some(Pid(n)),
                None => None,
            }
        } else {
            None
        }
    }

    /// The id as a number.
    #[inline]
    #[must_use]
    pub const fn as_raw(self) -> i32 {
        self.0.get()
    }

    /// The id as a non-zero number.
    #[inline]
    #[must_use]
    pub const fn as_raw_nonzero(self) -> NonZeroI32 {
        self.0
    }

    /// The same id as rustix's type, for the calls that take it.
    #[inline]
    pub(crate) fn to_rustix(self) -> rustix::process::Pid {
        rustix::process::Pid::from_raw(self.as_raw()).expect("a Pid is positive")
    }

    /// From rustix's type, as the calls return it.
    #[inline]
    pub(crate) fn from_rustix(pid: rustix::process::Pid) -> Pid {
        Pid(pid.as_raw_nonzero())
    }
}

impl fmt::Debug for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pid({})", self.0)
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}
