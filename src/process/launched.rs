//! Function processes: `f(arg)` run in a child, by `fork` (in this process's image) or launched
//! by `forkserver`/`spawn` (see [`context`](crate::context)).
//!
//! The function travels as a pool trampoline address (see `pool::work`) and its argument as a
//! one-item chunk, so a child runs it exactly as a pool worker would. A launched child gets its
//! options in the launch message and the argument in its report file (which it then overwrites
//! with its report), so the message stays small whatever the argument's size.
#![allow(unsafe_code)] // calling trampolines taken by `Work::job`.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use multiproc_sys::io::fd::{file_size, pread, truncate};
use multiproc_sys::process::exit::exit_now;
use multiproc_sys::process::parent::getppid;
use multiproc_sys::process::pid::getpid;
use multiproc_sys::{Errno, Pid, Signal};

use super::Process;
use super::child::ChildSetup;
use super::registry::{SelfInfo, reset_after_fork};
use super::report::{TAG_LOST, TAG_PANIC, TAG_SETUP, TAG_VALUE, write_error_report, write_report};
use crate::codec::{Decode, Decoder, Encode, Message};
use crate::pool::{ITEM_OK, ITEM_PANIC};
use crate::start::StartMethod;
use crate::start::launch::{Relocation, run_code};

/// What a function process launches.
#[derive(Debug)]
pub(super) struct LaunchSpec {
    pub method: StartMethod,
    pub tramp: u64,
    pub ctx: u64,
    /// The argument, as a one-item chunk payload.
    pub chunk: Vec<u8>,
}

/// Runs the function on the chunk in this process (a child forked from the caller) and returns
/// its value; a panic in it continues as this thread's panic, with the same message.
pub(super) fn run_in_this_process<R: Message>(tramp: u64, ctx: u64, chunk: &[u8]) -> R {
    let mut out = Vec::new();
    // SAFETY: `tramp` and `ctx` were taken by `Work::job` in this same image (a fork keeps
    // every address), so no relocation is needed.
    unsafe { run_code(Relocation::default(), tramp, ctx, chunk, &mut out) };
    let mut d = Decoder::new(&out);
    let outcome = match u8::decode(&mut d) {
        Ok(ITEM_OK) => R::decode(&mut d).map_err(|e| e.to_string()),
        Ok(_) => Err(String::decode(&mut d).unwrap_or_else(|e| e.to_string())),
        Err(e) => Err(e.to_string()),
    };
    match outcome {
        Ok(value) => value,
        Err(msg) => std::panic::resume_unwind(Box::new(msg)),
    }
}

/// The launch message's payload for `p`.
pub(super) fn encode_spec<R>(p: &Process<R>, spec: &LaunchSpec) -> Vec<u8> {
    let mut out = Vec::new();
    spec.tramp.encode(&mut out);
    spec.ctx.encode(&mut out);
    p.name.encode(&mut out);
    p.identity.encode(&mut out);
    p.daemon.encode(&mut out);
    p.death_signal.map_or(0, |s| s.as_raw()).encode(&mut out);
    let cpus: Vec<u64> = p.affinity.iter().flat_map(|set| set.iter()).map(|c| c as u64).collect();
    cpus.encode(&mut out);
    p.affinity.is_some().encode(&mut out);
    getpid().as_raw_nonzero().get().encode(&mut out);
    out
}

/// Writes the argument chunk at the start of the report file, behind its length.
pub(super) fn store_arguments(report: BorrowedFd<'_>, chunk: &[u8]) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(8 + chunk.len());
    (chunk.len() as u64).encode(&mut bytes);
    bytes.extend_from_slice(chunk);
    write_report(report, &bytes).map_err(io::Error::from)
}

/// Reads the argument chunk back, in the child.
fn load_arguments(report: BorrowedFd<'_>) -> Result<Vec<u8>, Errno> {
    let mut len = [0u8; 8];
    let n = pread(report, &mut len, 0)?;
    if n != 8 {
        return Err(Errno::IO);
    }
    let len = usize::try_from(u64::from_le_bytes(len)).map_err(|_| Errno::IO)?;
    let size = usize::try_from(file_size(report)?).unwrap_or(usize::MAX);
    if len > size.saturating_sub(8) {
        return Err(Errno::IO);
    }
    let mut chunk = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match pread(report, &mut chunk[done..], (8 + done) as u64) {
            Ok(0) => return Err(Errno::IO),
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(chunk)
}

/// A launched function process's life. Never returns.
pub(crate) fn entry(reloc: Relocation, payload: &[u8], mut fds: Vec<OwnedFd>) -> ! {
    if fds.is_empty() {
        exit_now(127);
    }
    let report = fds.remove(0);
    let spec = (|| {
        let mut d = Decoder::new(payload);
        let tramp = u64::decode(&mut d).ok()?;
        let ctx = u64::decode(&mut d).ok()?;
        let name = String::decode(&mut d).ok()?;
        let identity = String::decode(&mut d).ok()?;
        let daemon = bool::decode(&mut d).ok()?;
        let signal = i32::decode(&mut d).ok()?;
        let cpus = Vec::<u64>::decode(&mut d).ok()?;
        let pinned = bool::decode(&mut d).ok()?;
        let parent = i32::decode(&mut d).ok()?;
        Some((tramp, ctx, name, identity, daemon, signal, cpus, pinned, parent))
    })();
    let Some((tramp, ctx, name, identity, daemon, signal, cpus, pinned, parent)) = spec else {
        write_error_report(report.as_fd(), TAG_SETUP, Errno::INVAL);
        exit_now(1)
    };
    let parent = Pid::from_raw(parent).unwrap_or_else(getpid);
    let info: &'static SelfInfo = Box::leak(Box::new(SelfInfo {
        name: Box::leak(name.into_boxed_str()),
        identity: Box::leak(identity.into_boxed_str()),
        daemon,
        parent: (parent, "MainProcess"),
    }));
    reset_after_fork(info);
    let mut affinity = None;
    if pinned {
        let mut set = multiproc_sys::affinity::CpuSet::new();
        for c in cpus {
            let _ = set.set(c as usize);
        }
        affinity = Some(set);
    }
    let setup = ChildSetup {
        // The process that forked this one: the fork server, or the parent itself (spawn).
        parent: getppid().unwrap_or(parent),
        death_signal: Signal::from_raw(signal),
        affinity: affinity.as_ref(),
    };
    if let Err(e) = setup.apply() {
        write_error_report(report.as_fd(), TAG_SETUP, e);
        exit_now(1);
    }
    let chunk = match load_arguments(report.as_fd()) {
        Ok(c) => c,
        Err(e) => {
            write_error_report(report.as_fd(), TAG_SETUP, e);
            exit_now(1)
        }
    };
    let mut out = Vec::with_capacity(256);
    // SAFETY: the launch message came from a process running this same executable (checked by
    // the fork server's fork, or by `spawn`'s executable check), and `reloc` maps its
    // addresses to ours.
    unsafe { run_code(reloc, tramp, ctx, &chunk, &mut out) };
    let (code, tag) = match out.first() {
        Some(&ITEM_OK) => (0, TAG_VALUE),
        Some(&ITEM_PANIC) => (1, TAG_PANIC),
        _ => (1, TAG_PANIC),
    };
    if let Some(first) = out.first_mut() {
        *first = tag;
    }
    let _ = truncate(report.as_fd(), 0);
    let code = match write_report(report.as_fd(), &out) {
        Ok(()) => code,
        Err(e) => {
            write_error_report(report.as_fd(), TAG_LOST, e);
            1
        }
    };
    use std::io::Write;
    let _ = std::io::stdout().flush();
    exit_now(code)
}
