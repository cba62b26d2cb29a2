//! `multiproc_sys::process::signal`: a disposition replaced by `replace_disposition` comes back
//! whole with `SavedAction::restore` (a handler too), in the process and in a child forked
//! after the replacement.
//!
//! Only this test binary's own signal (`SIGUSR1`) is touched, by one test at a time (a lock),
//! so the tests cannot disturb each other under the multithreaded harness.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

use common::{Exit, TEST_LIMIT, fork_child, watchdog};
use multiproc_sys::process::signal::{Disposition, replace_disposition, set_disposition};
use multiproc_sys::{Errno, Signal};

/// Held by every test that changes `SIGUSR1`.
static USR1: Mutex<()> = Mutex::new(());
/// How many times `on_usr1` ran.
static CAUGHT: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_usr1(_: libc::c_int) {
    CAUGHT.fetch_add(1, SeqCst);
}

/// Installs `on_usr1` for `SIGUSR1` with plain libc, as a program would.
fn install_handler() {
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_usr1 as extern "C" fn(libc::c_int) as libc::sighandler_t;
    assert_eq!(unsafe { libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()) }, 0);
}

/// Raises `SIGUSR1` in the calling thread (the handler, if any, has run on return).
fn raise_usr1() {
    assert_eq!(unsafe { libc::raise(libc::SIGUSR1) }, 0);
}

#[test]
fn a_replaced_handler_is_restored_and_runs_again() {
    let _w = watchdog(TEST_LIMIT);
    let _g = USR1.lock().unwrap();
    install_handler();
    let before = CAUGHT.load(SeqCst);
    raise_usr1();
    assert_eq!(CAUGHT.load(SeqCst), before + 1);

    let saved = replace_disposition(Signal::USR1, Disposition::Ignore).unwrap();
    assert_eq!(saved.signal(), Signal::USR1);
    assert_eq!(saved.disposition(), None, "a handler is no disposition");
    raise_usr1(); // ignored: neither the handler nor the default action (death) runs
    assert_eq!(CAUGHT.load(SeqCst), before + 1);

    saved.restore().unwrap();
    raise_usr1();
    assert_eq!(CAUGHT.load(SeqCst), before + 2, "the handler came back");
    set_disposition(Signal::USR1, Disposition::Ignore).unwrap();
}

#[test]
fn a_forked_child_restores_what_its_parent_replaced() {
    let _w = watchdog(TEST_LIMIT);
    let _g = USR1.lock().unwrap();
    install_handler();
    let saved = replace_disposition(Signal::USR1, Disposition::Default).unwrap();
    // In the child (async-signal-safe calls only): the default action is in force until the
    // child restores the handler, which then counts the signal in the child's copy of CAUGHT.
    let child = fork_child(move || {
        let before = CAUGHT.load(SeqCst);
        if saved.restore().is_err() {
            return 2;
        }
        raise_usr1();
        i32::from(CAUGHT.load(SeqCst) != before + 1)
    });
    assert_eq!(child.wait(TEST_LIMIT), Exit::Code(0));
    // The parent still has the default action it set; it ignores the signal from here on.
    let default = replace_disposition(Signal::USR1, Disposition::Ignore).unwrap();
    assert_eq!(default.disposition(), Some(Disposition::Default));
}

#[test]
fn sigkill_and_sigstop_cannot_be_replaced() {
    for signal in [Signal::KILL, Signal::STOP] {
        let err = replace_disposition(signal, Disposition::Ignore).map(|s| s.signal());
        assert_eq!(err, Err(Errno::INVAL));
    }
}
