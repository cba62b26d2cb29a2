//! The fork server (a zygote): a single-threaded process, made while the program is still
//! single-threaded (by [`init`](crate::init)) or by a fresh `exec` of the program, from which
//! the `forkserver` start method forks its children.
//!
//! # Protocol
//!
//! The parent holds one end of a `SOCK_SEQPACKET` socketpair (the request socket). To launch a
//! child it makes a second socketpair (the child's status socket), and sends one record: a
//! [launch message](super::launch) with the server's end of the status socket as the first
//! descriptor and the entry's own descriptors after it. The server forks; the child closes
//! everything of the server's and runs the entry. The server sends on the status socket the
//! child's pid (`i32`, with its pidfd as `SCM_RIGHTS` where the kernel has pidfds), and, once it
//! has reaped the child, its exit status (5 bytes, see `launch::encode_status`), then closes its
//! end. A parent that closes its end early loses nothing but the status.
//!
//! The server exits when no process holds the request socket any more (end of file) and, when
//! it was forked by the main thread, when its parent dies (`PR_SET_PDEATHSIG`). Its children
//! outlive it, as Python's do; pool servers watch their own parent and stop with it.
//!
//! The server ignores `SIGINT` (a Ctrl-C in the terminal goes to the whole process group; the
//! parent decides what its children do), and resets `SIGCHLD`; children get `SIGINT` back.
#![allow(unsafe_code)] // `fork`, and closing the server's descriptors in a child (`start_kid`).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use multiproc_sys::io::fd::close_inherited;
use multiproc_sys::io::poll::{PollFd, PollFlags, poll};
use multiproc_sys::io::scm;
use multiproc_sys::process::exit::exit_now;
use multiproc_sys::process::fork::{ForkOutcome, fork};
use multiproc_sys::process::parent::set_parent_death_signal;
use multiproc_sys::process::pid::getpid;
use multiproc_sys::process::pidfd::{Pidfd, pidfd_open};
use multiproc_sys::process::signal::{Disposition, set_disposition};
use multiproc_sys::process::thread::gettid;
use multiproc_sys::process::wait::waitpid;
use multiproc_sys::time::Deadline;
use multiproc_sys::{Errno, Pid, Signal};

use super::launch::{self, EntryFn, Launched, MAX_MESSAGE};
use crate::fd_registry::RegisteredFd;

/// The parent's handle on a running fork server.
#[derive(Debug)]
pub(crate) struct Zygote {
    /// Registered: a child the crate forks closes it, so that no other process (one that
    /// dropped privileges, say) can make this server run code.
    request: RegisteredFd,
    /// The process that made it (a forked child of that process must make its own).
    pub(crate) owner: Pid,
}

impl Zygote {
    /// Forks a fork server from this process, which the caller has checked is single-threaded.
    pub(crate) fn fork_now() -> io::Result<Zygote> {
        let (mine, theirs) = scm::seqpacket_pair()?;
        crate::fork_safety::before_clean_fork();
        let parent = getpid();
        let on_main_thread = gettid() == parent;
        let _ = std::io::Write::flush(&mut std::io::stdout());
        // SAFETY: the caller checked that this process is single-threaded, so the child may do
        // anything; its branch ends in `serve`, which never returns.
        match unsafe { fork()? } {
            ForkOutcome::Child => {
                drop(mine);
                if on_main_thread && set_parent_death_signal(Signal::KILL, parent).is_err() {
                    exit_now(0);
                }
                serve(theirs)
            }
            ForkOutcome::Parent { .. } => {
                Ok(Zygote { request: RegisteredFd::new(mine), owner: parent })
            }
        }
    }

    /// Starts a fork server as a fresh `exec` of the program (from any state: many threads, an
    /// async runtime).
    pub(crate) fn spawn_now() -> io::Result<Zygote> {
        let (mine, theirs) = scm::seqpacket_pair()?;
        // The server is a direct child that lives as long as the program (it stops on end of
        // file of `mine`, or with this process): its handle is not kept.
        drop(super::spawn::launch(None, &[], vec![theirs])?);
        Ok(Zygote { request: RegisteredFd::new(mine), owner: getpid() })
    }

    /// Asks the server for a child running `entry`.
    pub(crate) fn launch(
        &self,
        entry: Option<EntryFn>,
        payload: &[u8],
        fds: &[OwnedFd],
    ) -> io::Result<Launched> {
        let msg = launch::encode(entry, payload);
        if msg.len() > MAX_MESSAGE {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "launch message too large"));
        }
        let (mine, theirs) = scm::seqpacket_pair()?;
        let mut pass = vec![theirs.as_fd()];
        pass.extend(fds.iter().map(AsFd::as_fd));
        scm::send_fds(self.request.as_fd(), &msg, &pass).map_err(gone)?;
        drop(pass);
        drop(theirs);
        let mut buf = [0u8; 8];
        let mut pidfd = [None];
        let r = scm::recv_fds(mine.as_fd(), &mut buf, &mut pidfd)?;
        if r.bytes != 4 {
            return Err(gone(Errno::PIPE));
        }
        let raw = i32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let pid = Pid::from_raw(raw).ok_or_else(|| gone(Errno::PIPE))?;
        let [pidfd] = pidfd;
        Ok(Launched::via_server(pid, pidfd.map(Pidfd::from_owned), mine))
    }
}

fn gone(e: Errno) -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        format!("the multiproc fork server is gone ({e}); it cannot start children"),
    )
}

/// A child of the server, until it is reaped.
struct Kid {
    pid: Pid,
    pidfd: Option<Pidfd>,
    status: OwnedFd,
}

/// How often the server looks for ended children when it has no pidfds.
const POLL_SLICE: std::time::Duration = std::time::Duration::from_millis(20);

/// The server's life. Never returns.
pub(crate) fn serve(request: OwnedFd) -> ! {
    // A server made after pools exist must not hold their channels, nor pass them on.
    crate::fd_registry::close_inherited();
    let _ = set_disposition(Signal::INT, Disposition::Ignore);
    let _ = set_disposition(Signal::CHILD, Disposition::Default);
    // As Rust's runtime does before `main` (the server may have been forked before it).
    let _ = set_disposition(Signal::PIPE, Disposition::Ignore);
    let mut kids: Vec<Kid> = Vec::new();
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    loop {
        let slices = kids.iter().any(|k| k.pidfd.is_none());
        let deadline = if slices { Deadline::after(Some(POLL_SLICE)) } else { Deadline::FOREVER };
        let ready: Vec<bool> = {
            let mut pfds = Vec::with_capacity(kids.len() + 1);
            pfds.push(PollFd::new(&request, PollFlags::IN));
            for k in &kids {
                if let Some(p) = &k.pidfd {
                    pfds.push(PollFd::new(p, PollFlags::IN));
                }
            }
            match poll(&mut pfds, deadline) {
                Ok(_) => pfds.iter().map(|p| !p.revents().is_empty()).collect(),
                Err(_) => vec![false; pfds.len()],
            }
        };
        // Reap.
        let mut i = 0;
        kids.retain(|k| {
            let look = match &k.pidfd {
                Some(_) => {
                    i += 1;
                    ready.get(i).copied().unwrap_or(false)
                }
                None => true,
            };
            if !look {
                return true;
            }
            match waitpid(k.pid, false) {
                Ok(None) => true,
                Ok(Some(status)) => {
                    let _ = scm::send_fds(k.status.as_fd(), &launch::encode_status(status), &[]);
                    false
                }
                Err(_) => false, // its end of the status socket closes: "status unknown"
            }
        });
        if ready[0] {
            let mut fds: [Option<OwnedFd>; scm::MAX_FDS] = Default::default();
            match scm::recv_fds(request.as_fd(), &mut buf, &mut fds) {
                Ok(r) if r.bytes == 0 && r.fds == 0 => exit_now(0),
                Ok(r) if !r.truncated => {
                    let fds: Vec<OwnedFd> = fds.into_iter().take(r.fds).flatten().collect();
                    if let Some(kid) = start_kid(&request, &kids, &buf[..r.bytes], fds) {
                        kids.push(kid);
                    }
                }
                Ok(_) => {} // a malformed request: its descriptors are closed, nothing starts
                Err(Errno::INTR | Errno::AGAIN) => {}
                Err(_) => exit_now(0),
            }
        }
    }
}

/// Forks the child a request asks for; `None` if the request is malformed or `fork` failed
/// (the requester then sees its status socket close without a pid).
fn start_kid(request: &OwnedFd, kids: &[Kid], msg: &[u8], mut fds: Vec<OwnedFd>) -> Option<Kid> {
    if fds.is_empty() {
        return None;
    }
    let status = fds.remove(0);
    let (header, payload) = launch::decode(msg).ok()?;
    if header.entry == 0 {
        return None; // a fork server does not fork fork servers
    }
    // SAFETY: this process is single-threaded; the child branch ends in `run_entry`, which
    // never returns.
    match unsafe { fork() } {
        Err(_) => None,
        Ok(ForkOutcome::Child) => {
            // Keep nothing of the server's: its request socket, the other children's pidfds and
            // status sockets, and this child's own status socket.
            let mut close = vec![request.as_raw_fd(), status.as_raw_fd()];
            for k in kids {
                close.push(k.status.as_raw_fd());
                close.extend(k.pidfd.as_ref().map(AsRawFd::as_raw_fd));
            }
            for fd in close {
                // SAFETY: these descriptors belong to the server's structures, which this
                // process never uses again (`run_entry` does not return).
                unsafe { close_inherited(fd) };
            }
            let _ = set_disposition(Signal::INT, Disposition::Default);
            super::run_entry(header, payload, fds)
        }
        Ok(ForkOutcome::Parent { child }) => {
            drop(fds);
            let pidfd = pidfd_open(child).ok();
            let pid = child.as_raw_nonzero().get().to_le_bytes();
            let pass: Vec<_> = pidfd.iter().map(AsFd::as_fd).collect();
            let _ = scm::send_fds(status.as_fd(), &pid, &pass);
            Some(Kid { pid: child, pidfd, status })
        }
    }
}
