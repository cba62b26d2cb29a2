//! File descriptors: pipes, sockets, passing descriptors, `poll`, and reads and writes.
//!
//! | module | what it holds |
//! |---|---|
//! | [`fd`] | one call on one descriptor: `read`, `write`, `pread`/`pwrite`, flags, `close`, sizes, anonymous files, `eventfd` |
//! | [`stream`] | whole-buffer reads and writes on pipes and stream sockets, never raising `SIGPIPE` |
//! | [`pipe`] | [`pipe`](pipe::pipe) and the [`PIPE_BUF`](pipe::PIPE_BUF) atomicity rule |
//! | [`socket`] | [`socketpair`](socket::socketpair), a non-blocking vectored send, the send buffer |
//! | [`scm`] | passing descriptors (`SCM_RIGHTS`) over record-oriented socketpairs |
//! | [`poll`] | [`poll`](poll::poll) with a [`Deadline`](crate::time::Deadline), [`wait_readable`](poll::wait_readable), [`wait_writable`](poll::wait_writable) |
//!
//! # Invariants
//!
//! - **Close-on-exec**: every descriptor made here has `FD_CLOEXEC`, set atomically
//!   (`O_CLOEXEC`, `SOCK_CLOEXEC`, `MSG_CMSG_CLOEXEC`), so none leaks into a program another
//!   thread `exec`s.
//! - **No `SIGPIPE`**: the writes of [`stream`] and [`scm`] report a dead peer as
//!   [`Errno::PIPE`](crate::Errno::PIPE) and never raise `SIGPIPE` (the one-call
//!   [`fd::write_once`] leaves `SIGPIPE` to the process's disposition, and says so).
//! - Async-signal-safe and allocation-free throughout, so a freshly forked child of a
//!   multithreaded parent may use all of it.

pub mod fd;
pub mod pipe;
pub mod poll;
pub mod scm;
pub mod socket;
pub mod stream;

// The paths these functions had before the layer was grouped by concept
// (`multiproc_sys::io::read_once`): kept so that existing code compiles unchanged; new code
// names the module (`io::fd::read_once`).
#[doc(hidden)]
pub use fd::{
    anonymous_file, eventfd_nonblocking, file_identity, file_size, open_read_only, pread,
    pread_uninit, pwrite, read_once, read_uninit, truncate, write_once,
};
#[doc(hidden)]
pub use socket::{send_vectored_nonblocking, set_send_buffer_size};
