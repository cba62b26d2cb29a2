//! The paths the layer's items had before it was grouped by concept still name the same items:
//! code written against `multiproc_sys::fork`, `::wait`, `::pipe`, `::poll`, `::pid`,
//! `::signal`, `::mmap`, `::shm_safe`, `::futex`, `::semaphore`, `::pthread`, `::scm` and the
//! one-call functions under `::io` compiles unchanged. Each old name is checked to be the new
//! item (the same type, or a function of the same signature giving the same answer).

use std::any::TypeId;

use multiproc_sys::time::Deadline;
use multiproc_sys::{Errno, Pid, Result, Signal};

#[test]
fn old_type_paths_name_the_new_types() {
    fn same<A: 'static, B: 'static>() -> bool {
        TypeId::of::<A>() == TypeId::of::<B>()
    }
    use multiproc_sys::{io, mem, process, sync};
    assert!(same::<multiproc_sys::fork::ForkOutcome, process::fork::ForkOutcome>());
    assert!(same::<multiproc_sys::wait::ExitStatus, process::wait::ExitStatus>());
    assert!(same::<multiproc_sys::wait::Pidfd, process::pidfd::Pidfd>());
    assert!(same::<multiproc_sys::pid::Pid, Pid>());
    assert!(same::<multiproc_sys::signal::Signal, Signal>());
    assert!(same::<multiproc_sys::signal::Disposition, process::signal::Disposition>());
    assert!(same::<multiproc_sys::pipe::PollFd<'static>, io::poll::PollFd<'static>>());
    assert!(same::<multiproc_sys::poll::PollFlags, io::poll::PollFlags>());
    assert!(same::<multiproc_sys::scm::Received, io::scm::Received>());
    assert!(same::<multiproc_sys::mmap::Segment, mem::mmap::Segment>());
    assert!(same::<multiproc_sys::mmap::WipeOnFork, mem::mmap::WipeOnFork>());
    assert!(same::<multiproc_sys::semaphore::RawSemaphore, sync::semaphore::RawSemaphore>());
    assert!(same::<multiproc_sys::pthread::RobustMutex, sync::pthread::RobustMutex>());
    assert!(same::<multiproc_sys::pthread::Condvar, sync::pthread::Condvar>());
    assert!(same::<multiproc_sys::pthread::LockOutcome, sync::pthread::LockOutcome>());
    assert_eq!(multiproc_sys::pipe::PIPE_BUF, io::pipe::PIPE_BUF);
    assert_eq!(multiproc_sys::scm::MAX_FDS, io::scm::MAX_FDS);
}

#[test]
fn old_function_paths_call_the_new_functions() {
    // Identity and process functions answer as their new paths do.
    assert_eq!(multiproc_sys::fork::getpid(), multiproc_sys::process::pid::getpid());
    assert_eq!(multiproc_sys::fork::current_pid(), multiproc_sys::process::pid::current_pid());
    assert_eq!(multiproc_sys::fork::getppid(), multiproc_sys::process::parent::getppid());
    assert_eq!(multiproc_sys::fork::gettid(), multiproc_sys::process::thread::gettid());
    assert!(multiproc_sys::fork::thread_count().is_some());
    assert_eq!(multiproc_sys::wait::signal_name(libc::SIGTERM), Some("SIGTERM"));
    assert_eq!(multiproc_sys::wait::signal_from_raw(libc::SIGTERM), Some(Signal::TERM));
    let me = multiproc_sys::fork::getpid();
    assert_eq!(multiproc_sys::wait::probe(me), Ok(()));
    assert_eq!(multiproc_sys::wait::waitpid(me, false), Err(Errno::CHILD));
    assert_eq!(multiproc_sys::wait::peek_exit(me), Err(Errno::CHILD));
    let _: bool = multiproc_sys::wait::is_pidfd_available();

    // A byte through a pipe, over the old pipe, poll and io paths.
    let (r, w) = multiproc_sys::pipe::pipe().unwrap();
    use multiproc_sys::fd::AsFd;
    multiproc_sys::pipe::write_all(w.as_fd(), b"ab").unwrap();
    assert!(multiproc_sys::pipe::wait_readable(r.as_fd(), Deadline::FOREVER).unwrap());
    let mut fds = [multiproc_sys::poll::PollFd::new(&r, multiproc_sys::poll::PollFlags::IN)];
    assert_eq!(multiproc_sys::poll::poll(&mut fds, Deadline::FOREVER).unwrap(), 1);
    assert_eq!(multiproc_sys::pipe::bytes_available(r.as_fd()), Ok(2));
    let mut one = [0u8; 1];
    assert_eq!(multiproc_sys::io::read_once(r.as_fd(), &mut one), Ok(1));
    assert_eq!(multiproc_sys::pipe::read_full(r.as_fd(), &mut one), Ok(1));
    assert_eq!(&one, b"b");
    assert!(!multiproc_sys::pipe::is_socket(r.as_fd()));
    multiproc_sys::pipe::set_nonblocking(r.as_fd(), true).unwrap();
    assert_eq!(multiproc_sys::pipe::read(r.as_fd(), &mut one), Err(Errno::AGAIN));
    multiproc_sys::pipe::close(w).unwrap();

    // Signatures of the rest, as their users name them.
    let _: unsafe fn() -> Result<multiproc_sys::fork::ForkOutcome> = multiproc_sys::fork::fork;
    let _: fn(i32) -> ! = multiproc_sys::fork::exit_now;
    let _: unsafe fn(multiproc_sys::fd::RawFd) = multiproc_sys::fork::close_inherited;
    let _: fn(Pid, Signal) -> Result<()> = multiproc_sys::wait::kill;
    let _: fn(Pid) -> Result<multiproc_sys::wait::Pidfd> = multiproc_sys::wait::pidfd_open;
    let _ = multiproc_sys::wait::wait_deadline;
    let _ = multiproc_sys::fork::set_parent_death_signal;
    let _ = multiproc_sys::fork::clear_parent_death_signal;
    let _ = multiproc_sys::fork::at_exit;
    let _ = multiproc_sys::pipe::socketpair;
    let _ = multiproc_sys::pipe::send_all;
    let _ = multiproc_sys::pipe::write_all_vectored;
    let _ = multiproc_sys::pipe::writev_all;
    let _ = multiproc_sys::pipe::wait_writable;
    let _ = multiproc_sys::pipe::set_cloexec;
    let _ = multiproc_sys::signal::set_disposition;
    let _ = multiproc_sys::scm::seqpacket_pair;
    let _ = multiproc_sys::scm::send_fds;
    let _ = multiproc_sys::scm::recv_fds;
    let _ = multiproc_sys::mmap::page_size;
    let _ = multiproc_sys::mmap::advise_huge_pages;
    let _ = multiproc_sys::futex::futex_wait;
    let _ = multiproc_sys::futex::futex_wake_all;
    let _ = multiproc_sys::io::read_uninit;
    let _ = multiproc_sys::io::write_once;
    let _ = multiproc_sys::io::send_vectored_nonblocking;
    let _ = multiproc_sys::io::set_send_buffer_size;
    let _ = multiproc_sys::io::pread;
    let _ = multiproc_sys::io::pread_uninit;
    let _ = multiproc_sys::io::pwrite;
    let _ = multiproc_sys::io::truncate;
    let _ = multiproc_sys::io::file_size;
    let _ = multiproc_sys::io::file_identity;
    let _ = multiproc_sys::io::open_read_only;
    let _ = multiproc_sys::io::anonymous_file;
    let _ = multiproc_sys::io::eventfd_nonblocking;
    fn takes_shm_safe<T: multiproc_sys::shm_safe::ShmSafe>() {}
    takes_shm_safe::<u64>();
}
