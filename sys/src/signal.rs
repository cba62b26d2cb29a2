//! Signal dispositions: ignoring a signal, or restoring its default action, for a process that
//! the crate runs itself (a fork server, a launched child).
//!
//! Only `SIG_IGN` and `SIG_DFL` are offered: installing a handler is the program's business,
//! and these two install no code, so they are safe anywhere, including in a freshly forked child
//! of a multithreaded process.
#![allow(unsafe_code)]

use rustix::process::Signal;

use crate::errno::{Errno, Result};

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
