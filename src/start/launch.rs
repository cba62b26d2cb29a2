//! Launching a child from a clean source: the message a parent sends to the fork server (or to
//! a fresh `exec` of the program), what the launched child runs, and the handle the parent
//! keeps.
//!
//! # The launch message
//!
//! One record (a `SOCK_SEQPACKET` message, at most [`MAX_MESSAGE`] bytes) plus descriptors
//! (`SCM_RIGHTS`):
//!
//! | field | type | meaning |
//! |---|---|---|
//! | magic | `u32` | [`MAGIC`]: a stray writer is refused |
//! | entry | `u64` | the address of the [`EntryFn`] to run, in the sender; 0: become a fork server |
//! | anchor | `u64` | the address of [`anchor`] in the sender: code addresses in the payload are relocated by the difference, since an `exec`'d image sits elsewhere (ASLR) |
//! | exe | `u64`, `u64` | device and inode of the sender's executable: a different executable refuses the message instead of jumping to a wrong address |
//! | payload | `Vec<u8>` | the entry's own arguments |
//!
//! The receiver (a child forked by the fork server, or a spawned program inside
//! [`init`](crate::init)) checks the magic and, when it is a different image, the executable,
//! then runs the entry and never returns.
#![allow(unsafe_code)] // `transmute`s of relocated code addresses (`run_code`, `LaunchHeader::entry_fn`).

use std::os::fd::{AsFd, OwnedFd};
use std::sync::OnceLock;

use multiproc_sys::io::poll::wait_readable;
use multiproc_sys::io::scm;
use multiproc_sys::process::pidfd::{Pidfd, pidfd_open};
use multiproc_sys::process::signal::kill;
use multiproc_sys::process::wait::{ExitStatus, wait_deadline};
use multiproc_sys::time::Deadline;
use multiproc_sys::{Errno, Pid, Signal};

use crate::codec::{Decode, Decoder, Encode};

/// "MPL1", little-endian.
pub(crate) const MAGIC: u32 = 0x314c_504d;

/// The largest launch message (header and payload).
pub(crate) const MAX_MESSAGE: usize = 60 * 1024;

/// What a launched child runs: its relocation, the payload and the descriptors of the launch
/// message. It never returns (it ends the child with `_exit`).
pub(crate) type EntryFn = fn(Relocation, &[u8], Vec<OwnedFd>) -> !;

/// A pool trampoline: decodes a chunk payload, runs each item, appends the item results to
/// `out`. `ctx` is its context word (a `fn` pointer, or 0). Sent by address, like an entry.
pub(crate) type Tramp = unsafe fn(ctx: usize, payload: &[u8], out: &mut Vec<u8>);

/// A function of this crate whose address the launch message carries, so that a receiver
/// can relocate code addresses taken in the sender.
#[inline(never)]
pub(crate) fn anchor() -> usize {
    anchor as fn() -> usize as usize
}

/// Device and inode of the running executable (`/proc/self/exe`), once per process.
pub(crate) fn exe_identity() -> (u64, u64) {
    static ID: OnceLock<(u64, u64)> = OnceLock::new();
    *ID.get_or_init(|| multiproc_sys::io::fd::file_identity(c"/proc/self/exe").unwrap_or((0, 0)))
}

/// The header of a launch message, as decoded by the receiver.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LaunchHeader {
    /// The sender's address of the entry to run, 0 for a fork server.
    pub entry: u64,
    /// The sender's [`anchor`].
    pub anchor: u64,
    pub exe: (u64, u64),
}

impl LaunchHeader {
    /// How far code addresses taken in the sender must move to be valid here.
    pub(crate) fn relocation(&self) -> Relocation {
        Relocation { delta: (anchor() as u64).wrapping_sub(self.anchor) }
    }

    /// The entry to run, here; `None` for "become a fork server".
    pub(crate) fn entry_fn(&self) -> Option<EntryFn> {
        let addr = self.relocation().code(self.entry);
        // SAFETY: the sender took `entry` from an `EntryFn` of the same executable (the
        // receiver checked the magic, and `spawn` the executable; the fork server is a fork of
        // it), and the relocation maps its address to this process.
        (addr != 0).then(|| unsafe { std::mem::transmute::<usize, EntryFn>(addr as usize) })
    }
}

/// Encodes a launch message.
pub(crate) fn encode(entry: Option<EntryFn>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + payload.len());
    MAGIC.encode(&mut out);
    entry.map_or(0, |f| f as usize as u64).encode(&mut out);
    (anchor() as u64).encode(&mut out);
    let (dev, ino) = exe_identity();
    dev.encode(&mut out);
    ino.encode(&mut out);
    out.extend_from_slice(payload);
    out
}

/// Decodes a launch message's header; the rest is the payload.
pub(crate) fn decode(bytes: &[u8]) -> Result<(LaunchHeader, &[u8]), String> {
    let mut d = Decoder::new(bytes);
    let magic = u32::decode(&mut d).map_err(|e| e.to_string())?;
    if magic != MAGIC {
        return Err(format!("not a multiproc launch message (magic {magic:#x})"));
    }
    let entry = u64::decode(&mut d).map_err(|e| e.to_string())?;
    let anchor = u64::decode(&mut d).map_err(|e| e.to_string())?;
    let dev = u64::decode(&mut d).map_err(|e| e.to_string())?;
    let ino = u64::decode(&mut d).map_err(|e| e.to_string())?;
    let used = bytes.len() - d.remaining();
    Ok((LaunchHeader { entry, anchor, exe: (dev, ino) }, &bytes[used..]))
}

/// Moves code addresses taken in a sender to where the same code is in this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Relocation {
    delta: u64,
}

impl Relocation {
    /// The address `addr` of the sender, here; 0 stays 0 (no function).
    pub(crate) fn code(&self, addr: u64) -> u64 {
        if addr == 0 { 0 } else { addr.wrapping_add(self.delta) }
    }
}

/// Runs a pool trampoline (`work::Tramp`) named by sender addresses on a chunk payload.
///
/// # Safety
/// - `tramp` and `ctx` must have been taken by `Work::job` in a process running the same
///   executable, and `reloc` must map that process's addresses to this one's (the launch
///   message's executable check guarantees both for launched children).
pub(crate) unsafe fn run_code(
    reloc: Relocation,
    tramp: u64,
    ctx: u64,
    payload: &[u8],
    out: &mut Vec<u8>,
) {
    let tramp = reloc.code(tramp) as usize;
    let ctx = reloc.code(ctx) as usize;
    // SAFETY: per this function's contract, `tramp` is the relocated address of a `Tramp` of
    // this executable, and `ctx` its relocated context word.
    unsafe {
        let f = std::mem::transmute::<*const (), Tramp>(tramp as *const ());
        f(ctx, payload, out);
    }
}

/// A launched child, as its parent sees it: a direct child (spawned) or a child of the fork
/// server, whose exit status the server sends on `status` when it reaps it.
#[derive(Debug)]
pub(crate) struct Launched {
    pub pid: Pid,
    pub pidfd: Option<Pidfd>,
    /// For a child of the fork server: the socket on which its exit status arrives (readable
    /// once it has ended: the child's sentinel).
    pub status: Option<OwnedFd>,
    /// The status once received from the fork server.
    got: OnceLock<Option<ExitStatus>>,
}

impl Launched {
    /// A direct child of this process.
    pub(crate) fn direct(pid: Pid) -> Launched {
        Launched { pid, pidfd: pidfd_open(pid).ok(), status: None, got: OnceLock::new() }
    }

    /// A child of the fork server.
    pub(crate) fn via_server(pid: Pid, pidfd: Option<Pidfd>, status: OwnedFd) -> Launched {
        Launched { pid, pidfd, status: Some(status), got: OnceLock::new() }
    }

    /// Waits until the child ends or `deadline` passes. `Ok(None)` on timeout, `Ok(Some(None))`
    /// if it ended with an unknown status (reaped elsewhere, or the fork server died).
    pub(crate) fn wait(&self, deadline: Deadline) -> Result<Option<Option<ExitStatus>>, Errno> {
        let Some(sock) = &self.status else {
            return match wait_deadline(self.pid, self.pidfd.as_ref(), deadline) {
                Ok(s) => Ok(s.map(Some)),
                Err(Errno::CHILD) => Ok(Some(None)),
                Err(e) => Err(e),
            };
        };
        if let Some(s) = self.got.get() {
            return Ok(Some(*s));
        }
        if !wait_readable(sock.as_fd(), deadline)? {
            return Ok(None);
        }
        let mut buf = [0u8; 8];
        let status = match scm::recv_fds(sock.as_fd(), &mut buf, &mut []) {
            Ok(r) if r.bytes == 5 => decode_status(&buf[..5]),
            _ => None,
        };
        Ok(Some(*self.got.get_or_init(|| status)))
    }

    /// Sends `signal` to the child, through its pidfd where there is one (never reaching a
    /// process that reused the pid).
    pub(crate) fn signal(&self, signal: Signal) -> Result<(), Errno> {
        match &self.pidfd {
            Some(p) => p.send_signal(signal),
            None => kill(self.pid, signal),
        }
    }
}

/// Encodes an exit status as the fork server sends it: a kind byte and a value.
pub(crate) fn encode_status(status: ExitStatus) -> [u8; 5] {
    let (kind, value) = match status {
        ExitStatus::Exited(code) => (0u8, code),
        ExitStatus::Signaled(sig) => (1u8, sig),
    };
    let mut out = [kind, 0, 0, 0, 0];
    out[1..].copy_from_slice(&value.to_le_bytes());
    out
}

fn decode_status(b: &[u8]) -> Option<ExitStatus> {
    let value = i32::from_le_bytes(b.get(1..5)?.try_into().ok()?);
    match b.first()? {
        0 => Some(ExitStatus::Exited(value)),
        1 => Some(ExitStatus::Signaled(value)),
        _ => None,
    }
}
