//! Signals: the crate's own [`Signal`] number type, and dispositions (ignoring a signal, or
//! restoring its default action, for a process that the crate runs itself: a fork server, a
//! launched child).
//!
//! Only `SIG_IGN` and `SIG_DFL` are offered: installing a handler is the program's business,
//! and these two install no code, so they are safe anywhere, including in a freshly forked child
//! of a multithreaded process.
#![allow(unsafe_code)]

use core::fmt;
use core::num::NonZeroI32;

use crate::errno::{Errno, Result};

/// A signal number that may be sent: a standard signal, or a real-time one the libc leaves to
/// applications. The crate's own type, so that no dependency's version leaks into this API.
///
/// ```
/// use multiproc_sys::Signal;
///
/// assert_eq!(Signal::TERM.as_raw(), libc::SIGTERM);
/// assert_eq!(Signal::from_raw(libc::SIGKILL), Some(Signal::KILL));
/// assert_eq!(Signal::from_raw(0), None);
/// assert_eq!(Signal::KILL.name(), Some("SIGKILL"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Signal(NonZeroI32);

impl Signal {
    /// `SIGHUP`.
    pub const HUP: Signal = Signal::named(libc::SIGHUP);
    /// `SIGINT`.
    pub const INT: Signal = Signal::named(libc::SIGINT);
    /// `SIGQUIT`.
    pub const QUIT: Signal = Signal::named(libc::SIGQUIT);
    /// `SIGILL`.
    pub const ILL: Signal = Signal::named(libc::SIGILL);
    /// `SIGTRAP`.
    pub const TRAP: Signal = Signal::named(libc::SIGTRAP);
    /// `SIGABRT`.
    pub const ABORT: Signal = Signal::named(libc::SIGABRT);
    /// `SIGBUS`.
    pub const BUS: Signal = Signal::named(libc::SIGBUS);
    /// `SIGFPE`.
    pub const FPE: Signal = Signal::named(libc::SIGFPE);
    /// `SIGKILL`.
    pub const KILL: Signal = Signal::named(libc::SIGKILL);
    /// `SIGUSR1`.
    pub const USR1: Signal = Signal::named(libc::SIGUSR1);
    /// `SIGSEGV`.
    pub const SEGV: Signal = Signal::named(libc::SIGSEGV);
    /// `SIGUSR2`.
    pub const USR2: Signal = Signal::named(libc::SIGUSR2);
    /// `SIGPIPE`.
    pub const PIPE: Signal = Signal::named(libc::SIGPIPE);
    /// `SIGALRM`.
    pub const ALARM: Signal = Signal::named(libc::SIGALRM);
    /// `SIGTERM`.
    pub const TERM: Signal = Signal::named(libc::SIGTERM);
    /// `SIGCHLD`.
    pub const CHILD: Signal = Signal::named(libc::SIGCHLD);
    /// `SIGCONT`.
    pub const CONT: Signal = Signal::named(libc::SIGCONT);
    /// `SIGSTOP`.
    pub const STOP: Signal = Signal::named(libc::SIGSTOP);
    /// `SIGTSTP`.
    pub const TSTP: Signal = Signal::named(libc::SIGTSTP);
    /// `SIGTTIN`.
    pub const TTIN: Signal = Signal::named(libc::SIGTTIN);
    /// `SIGTTOU`.
    pub const TTOU: Signal = Signal::named(libc::SIGTTOU);
    /// `SIGURG`.
    pub const URG: Signal = Signal::named(libc::SIGURG);
    /// `SIGXCPU`.
    pub const XCPU: Signal = Signal::named(libc::SIGXCPU);
    /// `SIGXFSZ`.
    pub const XFSZ: Signal = Signal::named(libc::SIGXFSZ);
    /// `SIGVTALRM`.
    pub const VTALARM: Signal = Signal::named(libc::SIGVTALRM);
    /// `SIGPROF`.
    pub const PROF: Signal = Signal::named(libc::SIGPROF);
    /// `SIGWINCH`.
    pub const WINCH: Signal = Signal::named(libc::SIGWINCH);
    /// `SIGIO`.
    pub const IO: Signal = Signal::named(libc::SIGIO);
    /// `SIGPWR`.
    pub const POWER: Signal = Signal::named(libc::SIGPWR);
    /// `SIGSYS`.
    pub const SYS: Signal = Signal::named(libc::SIGSYS);

    /// A named constant (all of them are positive).
    const fn named(n: i32) -> Signal {
        match NonZeroI32::new(n) {
            Some(n) => Signal(n),
            None => panic!("signal 0"),
        }
    }

    /// The signal numbered `n`: a standard signal, or one of `SIGRTMIN()..=SIGRTMAX()` that
    /// libc leaves to applications. `None` for 0, negative and unknown numbers and for the
    /// real-time signals the libc reserves for itself (glibc's 32 and 33).
    ///
    /// Async-signal-safe (`SIGRTMIN()` reads a libc variable).
    ///
    /// # References
    /// - [POSIX `<signal.h>`]
    /// - [Linux `signal(7)`]
    ///
    /// [POSIX `<signal.h>`]: https://pubs.opengroup.org/onlinepubs/9799919799/basedefs/signal.h.html
    /// [Linux `signal(7)`]: https://man7.org/linux/man-pages/man7/signal.7.html
    #[must_use]
    pub fn from_raw(n: i32) -> Option<Signal> {
        if crate::wait::signal_name(n).is_some() {
            return Some(Signal::named(n));
        }
        let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
        if min > 0 && (min..=max).contains(&n) { NonZeroI32::new(n).map(Signal) } else { None }
    }

    /// The signal's number.
    #[inline]
    #[must_use]
    pub const fn as_raw(self) -> i32 {
        self.0.get()
    }

    /// The C name of a standard signal (`"SIGKILL"`); `None` for a real-time signal.
    #[must_use]
    pub fn name(self) -> Option<&'static str> {
        crate::wait::signal_name(self.as_raw())
    }

    /// The same signal as rustix's type, for the calls that take it.
    pub(crate) fn to_rustix(self) -> rustix::process::Signal {
        // SAFETY: every `Signal` is a standard signal or an application real-time signal (the
        // constructors above admit nothing else), which is what `from_raw_unchecked` requires.
        unsafe { rustix::process::Signal::from_raw_unchecked(self.as_raw()) }
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "Signal({})", self.as_raw()),
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "SIGRTMIN+{}", self.as_raw() - libc::SIGRTMIN()),
        }
    }
}

/// What a process does when a signal arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Disposition {
    /// `SIG_DFL`: the signal's default action (terminate, ignore, stop, ...).
    Default,
    /// `SIG_IGN`: the signal is discarded.
    Ignore,
}

/// `sigaction(signal, {disposition, no flags, empty mask}, NULL)` — sets what `signal` does.
///
/// A disposition set to `Ignore` survives `execve`, and one set to `Default` is what a new
/// program starts with, so the choice also reaches programs this process runs. Async-signal-safe.
///
/// # Errors
/// [`Errno::INVAL`] for `SIGKILL` and `SIGSTOP`, whose actions cannot be changed.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/sigaction.html
/// [Linux]: https://man7.org/linux/man-pages/man2/sigaction.2.html
#[doc(alias = "sigaction")]
pub fn set_disposition(signal: Signal, disposition: Disposition) -> Result<()> {
    // SAFETY: an all-zero sigaction is a valid value (SIG_DFL, empty mask, no flags).
    let mut action: libc::sigaction = unsafe { core::mem::zeroed() };
    action.sa_sigaction = match disposition {
        Disposition::Default => libc::SIG_DFL,
        Disposition::Ignore => libc::SIG_IGN,
    };
    // SAFETY: `action` is a valid sigaction that installs no handler code; a null old-action
    // pointer is allowed.
    let r = unsafe { libc::sigaction(signal.as_raw(), &action, core::ptr::null_mut()) };
    if r == 0 { Ok(()) } else { Err(Errno::INVAL) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_cannot_be_ignored_and_an_ignored_signal_is_discarded() {
        assert_eq!(set_disposition(Signal::KILL, Disposition::Ignore), Err(Errno::INVAL));
        set_disposition(Signal::USR2, Disposition::Ignore).unwrap();
        // Discarded: were it not, SIGUSR2's default action would end the test process.
        // SAFETY: raising a signal whose disposition is SIG_IGN has no effect.
        assert_eq!(unsafe { libc::raise(libc::SIGUSR2) }, 0);
        set_disposition(Signal::USR2, Disposition::Default).unwrap();
    }
}
