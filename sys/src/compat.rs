//! The paths the layer's items had before it was grouped by concept, kept so that existing code
//! (`multiproc_sys::fork::getpid`, `multiproc_sys::pipe::poll`, `multiproc_sys::wait::kill`)
//! compiles unchanged. Hidden from the docs: new code names the concept module
//! (`process::pid::getpid`, `io::poll::poll`, `process::signal::kill`).
//!
//! Modules that moved whole are re-exported at the crate root (`multiproc_sys::futex` is
//! `sync::futex`); the three whose items went to several places are rebuilt here.

/// `multiproc_sys::fork`: now [`process::fork`](crate::process::fork) and its neighbours.
pub mod fork {
    pub use crate::io::fd::close_inherited;
    pub use crate::process::exit::{at_exit, exit_now};
    pub use crate::process::fork::{ForkOutcome, fork};
    pub use crate::process::parent::{clear_parent_death_signal, getppid, set_parent_death_signal};
    pub use crate::process::pid::{current_pid, getpid};
    pub use crate::process::thread::{gettid, thread_count};
}

/// `multiproc_sys::wait`: now [`process::wait`](crate::process::wait),
/// [`process::pidfd`](crate::process::pidfd) and [`process::signal`](crate::process::signal).
pub mod wait {
    pub use crate::process::pidfd::{Pidfd, is_pidfd_available, pidfd_open};
    pub use crate::process::signal::{kill, probe, signal_from_raw, signal_name};
    pub use crate::process::wait::{ExitStatus, peek_exit, wait_deadline, waitpid};
}

/// `multiproc_sys::pipe`: now [`io::stream`](crate::io::stream), [`io::pipe`](crate::io::pipe),
/// [`io::socket`](crate::io::socket), [`io::poll`](crate::io::poll) and [`io::fd`](crate::io::fd).
pub mod pipe {
    pub use crate::io::fd::{bytes_available, close, set_cloexec, set_nonblocking};
    pub use crate::io::pipe::{PIPE_BUF, pipe};
    pub use crate::io::poll::{PollFd, PollFlags, poll, wait_readable, wait_writable};
    pub use crate::io::socket::{is_socket, socketpair};
    pub use crate::io::stream::{
        read, read_full, send_all, write_all, write_all_vectored, writev_all,
    };
}
