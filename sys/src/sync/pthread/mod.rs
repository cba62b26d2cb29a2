//! Robust, process-shared pthread mutexes and condition variables, for shared memory.
//!
//! - [`RobustMutex`]: `pthread_mutex_t` with `PTHREAD_PROCESS_SHARED`, `PTHREAD_MUTEX_ROBUST`
//!   and `PTHREAD_MUTEX_ERRORCHECK`. A holder that dies is reported to the next locker as
//!   [`LockOutcome::OwnerDied`], never as a hang; unlocking by a non-owner is
//!   [`Errno::PERM`](crate::Errno::PERM), never undefined behaviour.
//! - [`Condvar`]: `pthread_cond_t` with `PTHREAD_PROCESS_SHARED` and `CLOCK_MONOTONIC`, for
//!   cooperating processes that do not die while waiting (see its docs for why).
//!
//! Both are `#[repr(C)]`, exactly the size and alignment of the libc type they wrap, and
//! `!Unpin`. They have no constructor: place them in a `MAP_SHARED` segment, initialise them in
//! place once with the `unsafe fn init(*mut Self)`, and from then on use them through shared
//! references in every process that maps the segment. They never move after `init`.
//!
//! # Examples
//!
//! ```
//! use core::ptr;
//! use multiproc_sys::sync::pthread::{LockOutcome, RobustMutex};
//! use multiproc_sys::time::Deadline;
//!
//! # fn main() -> Result<(), multiproc_sys::Errno> {
//! // A shared anonymous page: survives fork, visible to every child.
//! // SAFETY: a fresh anonymous mapping, checked below.
//! let page = unsafe {
//!     libc::mmap(ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE,
//!                libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0)
//! };
//! assert_ne!(page, libc::MAP_FAILED);
//! let slot = page.cast::<RobustMutex>();
//! // SAFETY: page-aligned, mapped until the munmap below, nobody else uses it yet.
//! unsafe { RobustMutex::init(slot)? };
//! // SAFETY: initialised above; the page stays mapped while `mutex` is used.
//! let mutex = unsafe { &*slot };
//!
//! match mutex.lock(Deadline::FOREVER)? {
//!     LockOutcome::Acquired => {}
//!     // A previous holder died: repair the shared data, then mark it consistent.
//!     LockOutcome::OwnerDied => mutex.consistent()?,
//! }
//! mutex.unlock()?;
//! # unsafe { RobustMutex::destroy(slot)? };
//! # unsafe { libc::munmap(page, 4096) };
//! # Ok(())
//! # }
//! ```
//!
//! # Sharing
//!
//! Both types are `Sync` and `Send`: pthread objects are designed to be used concurrently, by
//! many threads, through a pointer, and libc synchronises every access to their bytes (the
//! `UnsafeCell` inside is there only to hand libc a `*mut` from `&self`). Process-shared ones
//! are also used concurrently by many processes.
//!
//! Memory shared with other processes is otherwise treated as untrusted input in this crate,
//! but a pthread object cannot be: glibc links the robust mutexes a thread holds into a list
//! through the mutexes themselves, so every process must access these objects only through
//! their methods (see [`RobustMutex`]'s "Trust" section).
//!
//! # Signals and `fork`
//!
//! **Nothing in this module is async-signal-safe**: no `pthread_mutex_*` or `pthread_cond_*`
//! function is on the POSIX list. Never call these methods from a signal handler.
//!
//! After `fork` the child has one thread, a copy of the forking one, which was not inside a
//! pthread call. glibc then gives it an empty robust list, and its process-shared mutex and
//! condvar operations take no libc-internal lock and allocate nothing (they are atomics and
//! `futex(2)` calls on the object itself), so a forked child of a multithreaded parent can use
//! the objects in practice; `multiproc`'s tests do. POSIX does not promise it, and other libcs
//! are not checked.
//! A child does not inherit ownership of a mutex its parent held at `fork`.
//!
//! # References
//! - [POSIX `pthread_mutexattr_setpshared`]
//! - [POSIX `pthread_mutexattr_setrobust`]
//! - [POSIX `pthread_condattr_setclock`]
//! - [Linux `pthread_mutexattr_setrobust(3)`]
//! - [Linux `get_robust_list(2)`] (the kernel side of robust mutexes)
//!
//! [POSIX `pthread_mutexattr_setpshared`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pthread_mutexattr_setpshared.html
//! [POSIX `pthread_mutexattr_setrobust`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pthread_mutexattr_setrobust.html
//! [POSIX `pthread_condattr_setclock`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/pthread_condattr_setclock.html
//! [Linux `pthread_mutexattr_setrobust(3)`]: https://man7.org/linux/man-pages/man3/pthread_mutexattr_setrobust.3.html
//! [Linux `get_robust_list(2)`]: https://man7.org/linux/man-pages/man2/get_robust_list.2.html

mod attr;
mod condvar;
mod mutex;

pub use condvar::Condvar;
pub use mutex::{LockOutcome, RobustMutex};
