//! The child's life after `fork`: set up, run the closure, report, `_exit`.
#![allow(unsafe_code)] // running the closure moved out of its box (see `TargetFn`).

use crate::fork_safety::panic_message;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};

use multiproc_sys::affinity::CpuSet;
use multiproc_sys::process::exit::exit_now;
use multiproc_sys::process::parent::set_parent_death_signal;
use multiproc_sys::{Errno, Pid, Signal};

use crate::codec::{Encode, Message};

use super::Target;
use super::report::{TAG_LOST, TAG_PANIC, TAG_SETUP, TAG_VALUE, write_error_report, write_report};

/// The child's life after `fork`: set up, run the closure, report, `_exit`. Never returns.
/// What the child sets up before running the closure.
pub(super) struct ChildSetup<'a> {
    pub(super) parent: Pid,
    pub(super) death_signal: Option<Signal>,
    pub(super) affinity: Option<&'a CpuSet>,
}

impl ChildSetup<'_> {
    /// Sets the parent-death signal and the CPU affinity (allocation- and lock-free).
    pub(super) fn apply(&self) -> Result<(), Errno> {
        if let Some(sig) = self.death_signal {
            set_parent_death_signal(sig, self.parent)?;
        }
        if let Some(set) = self.affinity {
            multiproc_sys::affinity::sched_setaffinity(None, set)?;
        }
        Ok(())
    }
}

pub(super) fn child_main<R: Message>(
    mut target: Target<R>,
    report: OwnedFd,
    mut out: Vec<u8>,
    mut stdout: io::StdoutLock<'static>,
    setup: ChildSetup<'_>,
) -> ! {
    if let Err(e) = setup.apply() {
        write_error_report(report.as_fd(), TAG_SETUP, e);
        exit_now(1);
    }

    // `out` was allocated by the parent: a small value is encoded without touching the
    // allocator. Nothing here is freed: the process ends with `_exit`.
    // SAFETY: `target` is forgotten below, never used or dropped again.
    let code = match catch_unwind(AssertUnwindSafe(|| unsafe { target.run_in_child() })) {
        Ok(Some(value)) => {
            out.push(TAG_VALUE);
            value.encode(&mut out);
            0
        }
        // The target already ran (cannot happen: `start` takes it once). No value.
        Ok(None) => 0,
        Err(payload) => {
            out.push(TAG_PANIC);
            panic_message(&*payload).encode(&mut out);
            std::mem::forget(payload);
            1
        }
    };
    std::mem::forget(target);
    let code = match write_report(report.as_fd(), &out) {
        Ok(()) => code,
        Err(e) => {
            write_error_report(report.as_fd(), TAG_LOST, e);
            1
        }
    };
    // Through the lock inherited from `start` (stderr is unbuffered: nothing to flush). The
    // lock is never released: the process ends here.
    let _ = stdout.flush();
    std::mem::forget(stdout);
    exit_now(code)
}
