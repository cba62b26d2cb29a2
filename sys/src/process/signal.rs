//! Signals: the crate's own [`Signal`] number type and the signals' names, sending one to a
//! process ([`kill`], [`probe`]), and dispositions (ignoring a signal, or restoring its default
//! action, for a process that the crate runs itself: a fork server, a launched child).
//!
//! Only `SIG_IGN` and `SIG_DFL` are installed: installing a handler is the program's business,
//! and these two install no code, so they are safe anywhere, including in a freshly forked child
//! of a multithreaded process. [`replace_disposition`] keeps the action it replaced (a handler
//! too) so that [`SavedAction::restore`] can put it back. A pidfd sends signals without the
//! pid-reuse race of [`kill`]: see [`Pidfd::send_signal`](super::pidfd::Pidfd::send_signal).
#![allow(unsafe_code)]

use core::fmt;
use core::mem::MaybeUninit;
use core::num::NonZeroI32;
use core::ptr;

use crate::Pid;
use crate::errno::{Errno, IntoErrno, Result};

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
        if signal_name(n).is_some() {
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
        signal_name(self.as_raw())
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

/// The standard signals by name. Numbers differ between architectures, so the table is built
/// from libc's constants rather than indexed by number.
static SIGNAL_NAMES: [(i32, &str); 30] = [
    (libc::SIGHUP, "SIGHUP"),
    (libc::SIGINT, "SIGINT"),
    (libc::SIGQUIT, "SIGQUIT"),
    (libc::SIGILL, "SIGILL"),
    (libc::SIGTRAP, "SIGTRAP"),
    (libc::SIGABRT, "SIGABRT"),
    (libc::SIGBUS, "SIGBUS"),
    (libc::SIGFPE, "SIGFPE"),
    (libc::SIGKILL, "SIGKILL"),
    (libc::SIGUSR1, "SIGUSR1"),
    (libc::SIGSEGV, "SIGSEGV"),
    (libc::SIGUSR2, "SIGUSR2"),
    (libc::SIGPIPE, "SIGPIPE"),
    (libc::SIGALRM, "SIGALRM"),
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGCHLD, "SIGCHLD"),
    (libc::SIGCONT, "SIGCONT"),
    (libc::SIGSTOP, "SIGSTOP"),
    (libc::SIGTSTP, "SIGTSTP"),
    (libc::SIGTTIN, "SIGTTIN"),
    (libc::SIGTTOU, "SIGTTOU"),
    (libc::SIGURG, "SIGURG"),
    (libc::SIGXCPU, "SIGXCPU"),
    (libc::SIGXFSZ, "SIGXFSZ"),
    (libc::SIGVTALRM, "SIGVTALRM"),
    (libc::SIGPROF, "SIGPROF"),
    (libc::SIGWINCH, "SIGWINCH"),
    (libc::SIGIO, "SIGIO"),
    (libc::SIGPWR, "SIGPWR"),
    (libc::SIGSYS, "SIGSYS"),
];

/// The C name of a standard signal number (`9` -> `"SIGKILL"`), or `None` for real-time and
/// unknown numbers.
///
/// Async-signal-safe.
///
/// # References
/// - [POSIX `<signal.h>`]
/// - [Linux `signal(7)`]
///
/// [POSIX `<signal.h>`]: https://pubs.opengroup.org/onlinepubs/9799919799/basedefs/signal.h.html
/// [Linux `signal(7)`]: https://man7.org/linux/man-pages/man7/signal.7.html
#[must_use]
pub fn signal_name(signal: i32) -> Option<&'static str> {
    SIGNAL_NAMES.iter().find(|&&(n, _)| n == signal).map(|&(_, name)| name)
}

/// The [`Signal`] numbered `n`: [`Signal::from_raw`], as a function.
#[must_use]
pub fn signal_from_raw(n: i32) -> Option<Signal> {
    Signal::from_raw(n)
}

/// `kill(pid, signal)` — sends `signal` to the process `pid`.
///
/// Safe against pid reuse only while `pid` is an unreaped child of the caller (a zombie keeps its
/// id); for any other process prefer
/// [`Pidfd::send_signal`](super::pidfd::Pidfd::send_signal).
///
/// Async-signal-safe.
///
/// # Errors
///
/// - [`Errno::SRCH`]: no such process (a zombie still counts as existing).
/// - [`Errno::PERM`]: the caller may not signal it.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/kill.html
/// [Linux]: https://man7.org/linux/man-pages/man2/kill.2.html
#[inline]
pub fn kill(pid: Pid, signal: Signal) -> Result<()> {
    rustix::process::kill_process(pid.to_rustix(), signal.to_rustix()).errno()
}

/// `kill(pid, 0)` — checks that process `pid` exists (a zombie does) and may be signalled,
/// sending nothing.
///
/// # Errors
/// `ESRCH` if there is no such process; `EPERM` if it exists but this process may not signal
/// it.
#[inline]
pub fn probe(pid: Pid) -> Result<()> {
    rustix::process::test_kill_process(pid.to_rustix()).errno()
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
    sigaction(signal, &action_for(disposition), ptr::null_mut())
}

/// `sigaction(signal, {disposition, no flags, empty mask}, &old)` — sets what `signal` does, as
/// [`set_disposition`] does, and returns the action it replaced (a handler, `SIG_IGN` or
/// `SIG_DFL`, with its flags and mask) so that [`SavedAction::restore`] can put it back.
///
/// For a process that runs code of its own with one disposition and hands the program's back
/// to the children it forks (a pool's fork server resets `SIGCHLD` so that it can reap its
/// workers; each worker gets the program's disposition back). Async-signal-safe.
///
/// # Errors
/// [`Errno::INVAL`] for `SIGKILL` and `SIGSTOP`, whose actions cannot be changed; nothing is
/// changed then.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/sigaction.html
/// [Linux]: https://man7.org/linux/man-pages/man2/sigaction.2.html
#[doc(alias = "sigaction")]
pub fn replace_disposition(signal: Signal, disposition: Disposition) -> Result<SavedAction> {
    let mut old = MaybeUninit::<libc::sigaction>::uninit();
    sigaction(signal, &action_for(disposition), old.as_mut_ptr())?;
    // SAFETY: `sigaction` succeeded, so it wrote the previous action to `old` in full.
    Ok(SavedAction { signal, action: unsafe { old.assume_init() } })
}

/// The action a signal had before [`replace_disposition`] changed it, to be put back with
/// [`SavedAction::restore`]: in this process, or in a child it forked afterwards (which has the
/// same code, so a handler address means the same function there).
pub struct SavedAction {
    signal: Signal,
    action: libc::sigaction,
}

impl SavedAction {
    /// The signal whose action this is.
    #[inline]
    #[must_use]
    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// The saved action as a [`Disposition`]; `None` when it was a handler.
    #[must_use]
    pub fn disposition(&self) -> Option<Disposition> {
        match self.action.sa_sigaction {
            libc::SIG_DFL => Some(Disposition::Default),
            libc::SIG_IGN => Some(Disposition::Ignore),
            _ => None,
        }
    }

    /// `sigaction(signal, &saved, NULL)` — puts the saved action back (handler, flags and mask
    /// as they were). Async-signal-safe.
    ///
    /// # Errors
    /// None expected (the action was accepted once already); the kernel's refusal is
    /// [`Errno::INVAL`].
    pub fn restore(&self) -> Result<()> {
        sigaction(self.signal, &self.action, ptr::null_mut())
    }
}

/// `Signal: SIGCHLD, disposition: Some(Default)` (`None` for a handler).
impl fmt::Debug for SavedAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SavedAction")
            .field("signal", &self.signal)
            .field("disposition", &self.disposition())
            .finish()
    }
}

/// `{disposition, no flags, empty mask}` as a `sigaction`.
fn action_for(disposition: Disposition) -> libc::sigaction {
    // SAFETY: an all-zero sigaction is a valid value (SIG_DFL, empty mask, no flags).
    let mut action: libc::sigaction = unsafe { core::mem::zeroed() };
    action.sa_sigaction = match disposition {
        Disposition::Default => libc::SIG_DFL,
        Disposition::Ignore => libc::SIG_IGN,
    };
    action
}

/// `sigaction(signal, new, old)`; `old` may be null.
fn sigaction(signal: Signal, new: &libc::sigaction, old: *mut libc::sigaction) -> Result<()> {
    // SAFETY: `new` is a valid sigaction: one that installs no handler code (`action_for`), or
    // one the kernel reported for this process, or for the parent it was forked from, whose
    // code this process shares (`SavedAction`). `old` is null or valid for writing a
    // sigaction.
    let r = unsafe { libc::sigaction(signal.as_raw(), new, old) };
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

    #[test]
    fn a_replaced_disposition_is_saved_and_restored() {
        // SIGWINCH: ignored by default, so no setting here can end the test process.
        assert_eq!(
            replace_disposition(Signal::KILL, Disposition::Ignore).map(|s| s.signal()),
            Err(Errno::INVAL)
        );
        let before = replace_disposition(Signal::WINCH, Disposition::Ignore).unwrap();
        assert_eq!(before.signal(), Signal::WINCH);
        let ignored = replace_disposition(Signal::WINCH, Disposition::Default).unwrap();
        assert_eq!(ignored.disposition(), Some(Disposition::Ignore));
        ignored.restore().unwrap();
        let again = replace_disposition(Signal::WINCH, Disposition::Default).unwrap();
        assert_eq!(again.disposition(), Some(Disposition::Ignore));
        before.restore().unwrap();
        let now = replace_disposition(Signal::WINCH, Disposition::Default).unwrap();
        assert_eq!(now.disposition(), before.disposition());
        now.restore().unwrap();
    }

    #[test]
    fn signal_numbers_translate() {
        assert_eq!(signal_name(libc::SIGKILL), Some("SIGKILL"));
        assert_eq!(signal_name(0), None);
        assert_eq!(signal_from_raw(libc::SIGTERM), Some(Signal::TERM));
        assert_eq!(signal_from_raw(0), None);
        assert_eq!(signal_from_raw(-9), None);
        assert_eq!(signal_from_raw(libc::SIGRTMAX() + 1), None);
        let rt = signal_from_raw(libc::SIGRTMIN()).map(Signal::as_raw);
        assert_eq!(rt, Some(libc::SIGRTMIN()));
        if libc::SIGRTMIN() > 32 {
            // glibc and musl reserve the first real-time signals for themselves.
            assert_eq!(signal_from_raw(32), None);
        }
    }
}
