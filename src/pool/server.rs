//! The fork server: a single-threaded process, forked once by `Pool::new`, that forks and
//! reaps the pool's workers on the parent's behalf.
//!
//! # Why it exists
//!
//! `fork` copies only the calling thread: a lock another thread of the parent holds at that
//! moment stays locked forever in the child. The parent of a pool may have any number of
//! threads by the time a worker must be replaced, so the parent never forks a worker. The
//! server does: it has one thread, and its memory is the parent's as it was when the pool was
//! created, so every worker, including every replacement, starts from that same state (with
//! the closures given to the builder).
//!
//! # Lifetime
//!
//! - The server watches the control socket and a pidfd of the parent. When the parent dies
//!   (even by `SIGKILL`), the pidfd becomes readable (and the socket reaches end of file once
//!   no process holds the parent's end anymore): the server SIGKILLs its workers, reaps them
//!   and exits. Both are independent of the parent's threads; `PR_SET_PDEATHSIG` is not used
//!   for the server, because it fires when the *thread* that forked it exits, which may be
//!   long before the parent does. Without pidfds (Linux < 5.3), it checks `getppid()` every
//!   50 ms instead.
//! - Workers set `PR_SET_PDEATHSIG(SIGKILL)` towards the server (whose only thread lives as long
//!   as it does) and check `getppid()` to close the race, so they die with it.
//! - It reaps every worker (pidfd or `waitpid` polling) and reports its exit status; it never
//!   calls `waitpid(-1)`. Its own `SIGCHLD` disposition is reset to the default, so a parent
//!   that ignores `SIGCHLD` cannot make the kernel reap the workers behind its back (the
//!   workers get the parent's disposition back).
#![allow(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use multiproc_sys::io::fd::{self, close_inherited};
use multiproc_sys::io::poll::{self, PollFd, PollFlags};
use multiproc_sys::io::{scm, socket};
use multiproc_sys::process::fork::{ForkOutcome, fork};
use multiproc_sys::process::parent::getppid;
use multiproc_sys::process::pidfd::{self, Pidfd};
use multiproc_sys::process::signal::{self, Disposition, SavedAction};
use multiproc_sys::process::wait::{self, ExitStatus};
use multiproc_sys::process::{exit, pid};
use multiproc_sys::time::Deadline;
use multiproc_sys::{Errno, Pid, Signal};

use crate::start::launch::Relocation;

use super::config::{self, Config};
use super::proto::{self, Ctl};
use super::slots::Slots;

/// A worker as the server sees it.
struct Child {
    pid: Pid,
    pidfd: Option<Pidfd>,
}

/// How often the server looks when it has no pidfd to wait on.
const POLL_SLICE: Duration = Duration::from_millis(50);

struct Server<'a> {
    cfg: &'a Config,
    slots: &'a Slots,
    ctl: OwnedFd,
    parent: Pid,
    direct: bool,
    parent_pidfd: Option<Pidfd>,
    workers: Vec<Option<Child>>,
    /// The parent's `SIGCHLD` action, which workers get back (`None` if it could not be reset).
    sigchld: Option<SavedAction>,
}

/// A launched pool server's life (see `start::launch`): descriptor 0 is the control socket,
/// 1 the slots segment; the payload is [`config::encode_launch`]'s. Never returns.
pub(crate) fn server_entry(reloc: Relocation, payload: &[u8], mut fds: Vec<OwnedFd>) -> ! {
    let Some((cfg, parent)) = config::decode_launch(reloc, payload) else { exit::exit_now(127) };
    if fds.len() != 2 {
        exit::exit_now(127);
    }
    let slots_fd = fds.pop().unwrap_or_else(|| exit::exit_now(127));
    let ctl = fds.pop().unwrap_or_else(|| exit::exit_now(127));
    let Ok(slots) = Slots::from_fd(slots_fd, cfg.processes) else { exit::exit_now(127) };
    let direct = getppid() == Some(parent);
    server_main(&cfg, ctl, parent, direct, &slots)
}

/// The fork server's life. Never returns.
///
/// `parent` is the process that uses the pool; `direct` says whether it is also this process's
/// parent (it is not when the fork server started this one): only then does a change of
/// `getppid` mean that it died.
pub(crate) fn server_main(
    cfg: &Config,
    ctl: OwnedFd,
    parent: Pid,
    direct: bool,
    slots: &Slots,
) -> ! {
    // The channels and control sockets of the parent's other pools: neither this server nor
    // the workers it forks may hold them (issue 19). This pool's own parent-side sockets are
    // not among them: the parent registers its end of the control socket after the fork, and
    // the worker channels do not exist yet.
    crate::fd_registry::close_inherited();
    // The server resets `SIGCHLD` so that it can reap its workers; each gets the parent's
    // action back just after its fork.
    let sigchld = signal::replace_disposition(Signal::CHILD, Disposition::Default).ok();
    if direct && getppid() != Some(parent) {
        exit::exit_now(0);
    }
    let parent_pidfd = pidfd::pidfd_open(parent).ok();
    if !direct && parent_pidfd.is_none() && signal::probe(parent).is_err() {
        exit::exit_now(0);
    }
    if fd::set_nonblocking(ctl.as_fd(), true).is_err() {
        exit::exit_now(1);
    }
    let mut s = Server {
        cfg,
        slots,
        ctl,
        parent,
        direct,
        parent_pidfd,
        workers: (0..cfg.processes).map(|_| None).collect(),
        sigchld,
    };
    s.run()
}

impl Server<'_> {
    fn run(&mut self) -> ! {
        let mut fds: Vec<(RawFd, usize)> = Vec::with_capacity(self.workers.len() + 2);
        loop {
            // Poll: control, parent pidfd, worker pidfds.
            fds.clear();
            fds.push((self.ctl.as_raw_fd(), usize::MAX));
            let mut need_slices = self.parent_pidfd.is_none();
            if let Some(p) = &self.parent_pidfd {
                fds.push((p.as_raw_fd(), usize::MAX - 1));
            }
            for (i, w) in self.workers.iter().enumerate() {
                match w {
                    Some(Child { pidfd: Some(p), .. }) => fds.push((p.as_raw_fd(), i)),
                    Some(Child { pidfd: None, .. }) => need_slices = true,
                    None => {}
                }
            }
            let deadline =
                if need_slices { Deadline::after(Some(POLL_SLICE)) } else { Deadline::FOREVER };
            let revents: Vec<PollFlags> = {
                let mut pfds: Vec<PollFd<'_>> = fds
                    .iter()
                    .map(|&(fd, _)| {
                        // SAFETY: every fd listed is owned by `self` and not closed during
                        // the poll (this process has one thread).
                        PollFd::from_borrowed_fd(
                            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
                            PollFlags::IN,
                        )
                    })
                    .collect();
                match poll::poll(&mut pfds, deadline) {
                    Ok(_) => pfds.iter().map(PollFd::revents).collect(),
                    Err(_) => vec![PollFlags::empty(); pfds.len()],
                }
            };
            let parent_dead = (self.direct && getppid() != Some(self.parent))
                || fds
                    .iter()
                    .zip(&revents)
                    .any(|(&(_, tag), r)| tag == usize::MAX - 1 && !r.is_empty());
            if parent_dead {
                self.kill_all_and_exit(Signal::KILL, Duration::ZERO);
            }
            // Reap.
            for i in 0..self.workers.len() {
                let ready = match &self.workers[i] {
                    Some(Child { pidfd: Some(_), .. }) => {
                        fds.iter().zip(&revents).any(|(&(_, tag), r)| tag == i && !r.is_empty())
                    }
                    Some(Child { pidfd: None, .. }) => true,
                    None => false,
                };
                if ready {
                    self.try_reap(i, true);
                }
            }
            if !revents.first().is_some_and(|r| r.is_empty()) {
                self.read_control();
            }
        }
    }

    /// Reaps the worker of slot `i` if it has exited, and reports it (if `report`).
    fn try_reap(&mut self, i: usize, report: bool) -> bool {
        let Some(child) = &self.workers[i] else { return true };
        let pid = child.pid;
        let status = match wait::waitpid(pid, false) {
            Ok(None) => return false,
            Ok(Some(status)) => Some(status),
            Err(_) => None, // ECHILD: reaped elsewhere; exited, status unknown
        };
        self.workers[i] = None;
        if report {
            let mut c = Ctl::new(proto::CTL_EXITED, i);
            c.pid = pid.as_raw_nonzero().get();
            match status {
                Some(ExitStatus::Exited(code)) => {
                    c.arg = proto::STATUS_EXITED;
                    c.value = code;
                }
                Some(ExitStatus::Signaled(sig)) => {
                    c.arg = proto::STATUS_SIGNALED;
                    c.value = sig;
                }
                None => c.arg = proto::STATUS_UNKNOWN,
            }
            self.send(c, None);
        }
        true
    }

    /// Sends a record to the parent, waiting while its buffer is full. If the parent is gone,
    /// cleans up and exits.
    fn send(&mut self, c: Ctl, fd: Option<&OwnedFd>) {
        self.send_bytes(&c.to_bytes(), fd);
    }

    /// Sends one control message (a record, maybe followed by more bytes), as [`send`](Self::send).
    fn send_bytes(&mut self, bytes: &[u8], fd: Option<&OwnedFd>) {
        loop {
            let r = match fd {
                Some(fd) => scm::send_fds(self.ctl.as_fd(), bytes, &[fd.as_fd()]),
                None => scm::send_fds(self.ctl.as_fd(), bytes, &[]),
            };
            match r {
                Ok(_) => return,
                Err(Errno::AGAIN) => {
                    let _ =
                        poll::wait_writable(self.ctl.as_fd(), Deadline::after(Some(POLL_SLICE)));
                    if getppid() != Some(self.parent) {
                        self.kill_all_and_exit(Signal::KILL, Duration::ZERO);
                    }
                }
                Err(_) => self.kill_all_and_exit(Signal::KILL, Duration::ZERO),
            }
        }
    }

    fn read_control(&mut self) {
        loop {
            let mut buf = [0u8; proto::CTL_LEN];
            match scm::recv_fds(self.ctl.as_fd(), &mut buf, &mut []) {
                Err(Errno::AGAIN) => return,
                Ok(r) if r.bytes == 0 => self.kill_all_and_exit(Signal::KILL, Duration::ZERO),
                Ok(r) if r.bytes == proto::CTL_LEN => self.on_ctl(Ctl::from_bytes(&buf)),
                Ok(_) => {}
                Err(_) => self.kill_all_and_exit(Signal::KILL, Duration::ZERO),
            }
        }
    }

    fn on_ctl(&mut self, c: Ctl) {
        let i = c.slot as usize;
        match c.kind {
            proto::CTL_SPAWN if i < self.workers.len() && self.workers[i].is_none() => {
                self.spawn(i);
            }
            proto::CTL_KILL if i < self.workers.len() => {
                if let Some(child) = &self.workers[i]
                    && child.pid.as_raw_nonzero().get() == c.pid
                    && let Some(sig) = signal::signal_from_raw(c.value)
                {
                    // The child is not reaped yet (only this process reaps it), so its pid
                    // cannot have been reused.
                    let _ = signal::kill(child.pid, sig);
                }
            }
            proto::CTL_TERMINATE => {
                let grace = Duration::from_nanos(c.arg);
                self.kill_all_and_exit(Signal::TERM, grace);
            }
            proto::CTL_EXIT => self.kill_all_and_exit(Signal::KILL, Duration::ZERO),
            _ => {}
        }
    }

    /// Forks the worker of slot `i` and hands the parent its channel and its secret.
    fn spawn(&mut self, i: usize) {
        let secret = match new_secret() {
            Ok(secret) => secret,
            Err(e) => {
                let mut c = Ctl::new(proto::CTL_SPAWN_FAILED, i);
                c.value = e.raw_os_error();
                self.send(c, None);
                return;
            }
        };
        let (p_end, w_end) = match socket::socketpair() {
            Ok(pair) => pair,
            Err(e) => {
                let mut c = Ctl::new(proto::CTL_SPAWN_FAILED, i);
                c.value = e.raw_os_error();
                self.send(c, None);
                return;
            }
        };
        let me = pid::getpid();
        // SAFETY: this process has a single thread, so the child may do anything; the child
        // branch ends in `worker_main`, which never returns.
        match unsafe { fork() } {
            Err(e) => {
                let mut c = Ctl::new(proto::CTL_SPAWN_FAILED, i);
                c.value = e.raw_os_error();
                self.send(c, None);
            }
            Ok(ForkOutcome::Child) => {
                drop(p_end);
                // The worker keeps none of the server's descriptors: not the control socket
                // (the parent must see EOF when the server dies), not the pidfds.
                let mut close: Vec<RawFd> = vec![self.ctl.as_raw_fd()];
                close.extend(self.parent_pidfd.as_ref().map(AsRawFd::as_raw_fd));
                close.extend(
                    self.workers
                        .iter()
                        .flatten()
                        .filter_map(|c| c.pidfd.as_ref().map(AsRawFd::as_raw_fd)),
                );
                for fd in close {
                    // SAFETY: these fds are owned by the server's structures, which this
                    // process never uses again (worker_main does not return).
                    unsafe { close_inherited(fd) };
                }
                // The worker gets the parent's disposition back.
                if let Some(saved) = &self.sigchld {
                    let _ = saved.restore();
                }
                super::worker::worker_main(self.cfg, i, w_end, me, self.slots, secret)
            }
            Ok(ForkOutcome::Parent { child }) => {
                drop(w_end);
                let pidfd = pidfd::pidfd_open(child).ok();
                self.workers[i] = Some(Child { pid: child, pidfd });
                let mut c = Ctl::new(proto::CTL_SPAWNED, i);
                c.pid = child.as_raw_nonzero().get();
                let msg = c.with_secret(&secret);
                self.send_bytes(&msg, Some(&p_end));
            }
        }
    }

    /// Sends `sig` to every worker, waits up to `grace` for them, SIGKILLs the rest, reaps
    /// them all, and exits.
    fn kill_all_and_exit(&mut self, sig: Signal, grace: Duration) -> ! {
        for child in self.workers.iter().flatten() {
            let _ = signal::kill(child.pid, sig);
        }
        let deadline = Deadline::after(Some(grace));
        loop {
            let mut left = false;
            for i in 0..self.workers.len() {
                if !self.try_reap(i, false) {
                    left = true;
                }
            }
            if !left || deadline.has_expired() {
                break;
            }
            let fds: Vec<RawFd> = self
                .workers
                .iter()
                .flatten()
                .filter_map(|c| c.pidfd.as_ref().map(AsRawFd::as_raw_fd))
                .collect();
            let slice = Deadline::after(Some(Duration::from_millis(5))).min(deadline);
            if fds.len() == self.workers.iter().flatten().count() && !fds.is_empty() {
                let mut pfds: Vec<PollFd<'_>> = fds
                    .iter()
                    .map(|&fd| {
                        PollFd::from_borrowed_fd(
                            // SAFETY: the pidfds are owned by `self.workers` and stay open here.
                            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
                            PollFlags::IN,
                        )
                    })
                    .collect();
                let _ = poll::poll(&mut pfds, deadline);
            } else {
                let _ = poll::poll(&mut [], slice);
            }
        }
        for i in 0..self.workers.len() {
            if let Some(child) = self.workers[i].take() {
                let _ = signal::kill(child.pid, Signal::KILL);
                let _ = wait::waitpid(child.pid, true);
            }
        }
        exit::exit_now(0)
    }
}

/// A worker's secret: 8 random bytes, never all zero (the value a forked child's wiped copy of
/// the parent's secrets holds).
fn new_secret() -> Result<[u8; proto::SECRET_LEN], Errno> {
    let mut secret = [0u8; proto::SECRET_LEN];
    while secret == [0; proto::SECRET_LEN] {
        multiproc_sys::random::getrandom(&mut secret)?;
    }
    Ok(secret)
}
