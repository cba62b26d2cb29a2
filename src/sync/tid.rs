//! The calling thread's kernel thread id, cached ([`current_tid`]): how the locks of this
//! module record and recognise their holder.

use std::cell::Cell;

use multiproc_sys::process::pid::current_pid;
use multiproc_sys::process::thread::gettid;

thread_local! {
    /// `(pid, tid)`: the calling thread's kernel thread id, valid while `pid` is the process's
    /// id (0 = not cached yet).
    static TID: Cell<(i32, u32)> = const { Cell::new((0, 0)) };
}

/// The calling thread's kernel thread id (`gettid()`), cached.
///
/// Thread ids are unique system-wide among live threads (within a PID namespace), so this
/// tells apart threads of one process *and* processes. The cache is a thread-local trusted only
/// while it was made in this process: [`current_pid`], the crate's one
/// fork detection, differs in every forked child (however it was forked), so a child never
/// mistakes itself for the parent thread it was copied from. Costs a thread-local read and an
/// atomic load.
#[inline(always)]
pub(crate) fn current_tid() -> u32 {
    let pid = current_pid().as_raw_nonzero().get();
    let (cached_pid, tid) = TID.get();
    if cached_pid == pid {
        return tid;
    }
    refresh_tid(pid)
}

#[cold]
fn refresh_tid(pid: i32) -> u32 {
    let tid = gettid().as_raw_nonzero().get() as u32;
    TID.set((pid, tid));
    tid
}
