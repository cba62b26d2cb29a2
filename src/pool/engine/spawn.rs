//! Creating a pool's processes: the shared slot ring, the control socket and the server,
//! forked here (`fork`) or launched by the start machinery (`spawn`, `forkserver`, which run
//! [`server_entry`]); and telling a pool's creator from its forked children.
#![allow(unsafe_code)] // the `fork` of the server: see its SAFETY comment.

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::{Arc, Condvar, Mutex};

use multiproc_sys::io::fd::{eventfd_nonblocking, set_nonblocking};
use multiproc_sys::io::scm;
use multiproc_sys::process::fork::{ForkOutcome, fork};
use multiproc_sys::process::pid::{current_pid, getpid};

use crate::fd_registry::RegisteredFd;
use crate::pool::config::{self, Config};
use crate::pool::error::PoolError;
use crate::pool::proto::{self, Ctl};
use crate::pool::server::{server_entry, server_main};
use crate::pool::slots::Slots;
use crate::start::StartMethod;
use crate::start::launch::Launched;

use super::channel::Control;
use super::state::{Core, Shared};

/// Creates the shared segment, the control socket and the fork server, and asks the server for
/// the workers. Returns at once: the workers start while the caller goes on.
pub(crate) fn start(cfg: Config, method: Option<StartMethod>) -> Result<Arc<Shared>, PoolError> {
    let has_closures = cfg.initializer.is_some() || !cfg.registered.is_empty();
    let method = crate::start::resolve(method, has_closures).map_err(PoolError::InvalidArgument)?;
    let n = cfg.processes;
    let slots = Slots::new(n)?;
    let (p_ctl, s_ctl) = scm::seqpacket_pair()?;
    let wake = eventfd_nonblocking()?;
    let cfg = Arc::new(cfg);
    let parent = getpid();
    let creator = current_pid();

    let server_proc = if method != StartMethod::Fork {
        let payload = config::encode_launch(&cfg, parent);
        let fds = vec![s_ctl, slots.fd()?];
        crate::start::launch(method, server_entry, &payload, fds)?
    } else {
        // Hold stdout's and stderr's locks across the fork: another thread holding one at that
        // moment would leave it locked forever in the server and in every worker. Flush them too,
        // or the server's copy of the buffers would be printed again by the workers.
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr().lock();
        let plan = crate::fork_safety::before_fork();
        let _ = out.flush();
        let _ = err.flush();
        // SAFETY: the child branch is the fork server. It runs single-threaded; it first releases
        // the two stdio locks this thread holds (their owner is this thread, which is the one that
        // exists in the child), then runs `server_main`, which never returns. The only locks it
        // takes are those it owns; with glibc, malloc is reset for the child by fork itself.
        let server = match unsafe { fork() } {
            Err(e) => return Err(e.into()),
            Ok(ForkOutcome::Child) => {
                crate::fork_safety::in_child(plan);
                drop(p_ctl);
                drop(wake);
                drop(out);
                drop(err);
                server_main(&cfg, s_ctl, parent, true, &slots)
            }
            Ok(ForkOutcome::Parent { child }) => child,
        };
        drop(out);
        drop(err);
        drop(s_ctl);
        Launched::direct(server)
    };
    let server = server_proc.pid;
    set_nonblocking(p_ctl.as_fd(), true)?;

    let mut control = Control::new(RegisteredFd::new(p_ctl));
    for i in 0..n {
        control.send(Ctl::new(proto::CTL_SPAWN, i));
    }
    let mut core = Core::new(n, Some(control))?;
    core.flush_control();
    Ok(Arc::new(Shared {
        core: Mutex::new(core),
        cond: Condvar::new(),
        wake,
        cfg,
        slots,
        creator,
        server,
        server_proc,
    }))
}

/// Whether the calling process is `creator` (cached: no `getpid`; see
/// [`current_pid`](multiproc_sys::process::pid::current_pid), the crate's one fork detection).
pub(super) fn is_creator(creator: multiproc_sys::Pid) -> bool {
    current_pid() == creator
}
