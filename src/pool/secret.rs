//! Per-worker secrets, held by the parent in memory that no forked child gets.
//!
//! Every frame the parent writes to a worker starts with that worker's secret, and the worker
//! runs nothing else (see [`proto`](super::proto)). The fork server draws the secret (8 bytes
//! from `getrandom`) just before it forks the worker, so the worker has it from birth, and hands
//! it to the parent after the `CTL_SPAWNED` record. In the parent it must stay out of reach of
//! every process the parent forks later (a `Process` child, another pool's fork server, a child
//! of a raw `fork`), whatever the parent's other threads are doing at that moment. So it lives
//! only in a [`WipeOnFork`] page, which the kernel zero-fills in every child:
//!
//! - the control message is received straight into that page ([`Secrets::recv_buf`]), and the
//!   secret is moved from there to its slot's word in the same page;
//! - frames are built in the worker's ordinary write buffer with zeros where the secret goes,
//!   and sent with `sendmsg`, whose gather list points at the secret in this page for those
//!   bytes: the secret is never copied into memory a fork would copy.
//!
//! On a kernel without `MADV_WIPEONFORK` (before Linux 4.14) the page is ordinary private
//! memory, and a forked child holds a copy of the secrets; the other defences (children the
//! crate forks close the pool's channels, the claim ring only accepts published sequence
//! numbers) still hold.
#![allow(unsafe_code)]

use std::io;

use multiproc_sys::mem::mmap::WipeOnFork;

use super::proto::{CTL_LEN, SECRET_LEN, SPAWNED_LEN};

const _: () = assert!(CTL_LEN.is_multiple_of(8) && SECRET_LEN == 8 && SPAWNED_LEN == CTL_LEN + 8);

/// Where the memory comes from.
enum Storage {
    Wiped(WipeOnFork),
    /// No `MADV_WIPEONFORK` (see the module docs).
    Plain(Box<[u64]>),
}

/// The parent's copy of each worker's secret, and the control receive buffer, in one page that
/// forked children get zero-filled. Accessed only by the holder of the pool's core lock.
pub(crate) struct Secrets {
    storage: Storage,
    n: usize,
}

/// Bytes before the first slot's secret: the receive buffer, rounded up to whole words.
const RECV_WORDS: usize = SPAWNED_LEN.div_ceil(8);

impl Secrets {
    /// Room for the secrets of `n` worker slots.
    pub(crate) fn new(n: usize) -> io::Result<Secrets> {
        let words = n
            .checked_add(RECV_WORDS)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "too many workers"))?;
        let storage = match WipeOnFork::new(words * 8) {
            Ok(page) => Storage::Wiped(page),
            Err(e) if e == multiproc_sys::Errno::INVAL => {
                Storage::Plain(vec![0u64; words].into_boxed_slice())
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Secrets { storage, n })
    }

    /// The start of the memory: `RECV_WORDS + n` zero-initialised, 8-byte-aligned words. For
    /// reading only.
    fn base(&self) -> *const u8 {
        match &self.storage {
            Storage::Wiped(page) => page.as_ptr(),
            Storage::Plain(words) => words.as_ptr().cast(),
        }
    }

    /// As [`base`](Self::base), for writing.
    fn base_mut(&mut self) -> *mut u8 {
        match &mut self.storage {
            Storage::Wiped(page) => page.as_ptr(),
            Storage::Plain(words) => words.as_mut_ptr().cast(),
        }
    }

    /// Whether forked children get zeros instead of these secrets.
    #[cfg(test)]
    pub(crate) fn wiped_on_fork(&self) -> bool {
        matches!(self.storage, Storage::Wiped(_))
    }

    /// The buffer to receive a control message into.
    pub(crate) fn recv_buf(&mut self) -> &mut [u8; SPAWNED_LEN] {
        // SAFETY: the first `RECV_WORDS * 8 >= SPAWNED_LEN` bytes of the memory are ours (sized
        // in `new`, alive as long as `self`), initialised, and borrowed mutably through
        // `&mut self`, so nothing else reads or writes them meanwhile.
        unsafe { &mut *self.base_mut().cast::<[u8; SPAWNED_LEN]>() }
    }

    /// After a `CTL_SPAWNED` message was received into [`recv_buf`](Self::recv_buf): makes the
    /// secret that followed the record slot `slot`'s, and wipes it from the buffer.
    ///
    /// # Panics
    /// If `slot` is out of range (the caller has checked it).
    pub(crate) fn adopt(&mut self, slot: usize) {
        assert!(slot < self.n, "slot {slot} out of range");
        let base = self.base_mut();
        // SAFETY: bytes `CTL_LEN..SPAWNED_LEN` (one 8-byte-aligned word: `CTL_LEN` is a multiple
        // of 8) and word `RECV_WORDS + slot` (`slot < n`) are inside the memory, initialised,
        // aligned for `u64`, and ours alone through `&mut self`. The value moves through a
        // register, never through memory a fork would copy; the volatile store makes sure the
        // buffer's copy is really wiped.
        unsafe {
            let from = base.add(CTL_LEN).cast::<u64>();
            let value = from.read();
            base.add((RECV_WORDS + slot) * 8).cast::<u64>().write(value);
            from.write_volatile(0);
        }
    }

    /// Wipes whatever followed the last record in the receive buffer.
    pub(crate) fn clear_recv(&mut self) {
        // SAFETY: as in `adopt`, for the word after the record.
        unsafe { self.base_mut().add(CTL_LEN).cast::<u64>().write_volatile(0) };
    }

    /// Slot `slot`'s secret (zeros before its first worker).
    ///
    /// # Panics
    /// If `slot` is out of range (a bug in the pool: slot numbers come from the pool itself).
    pub(crate) fn get(&self, slot: usize) -> &[u8; SECRET_LEN] {
        assert!(slot < self.n, "slot {slot} out of range");
        // SAFETY: word `RECV_WORDS + slot` is inside the memory (`slot < n`), initialised, and
        // aligned; writes to it need `&mut self`, so it does not change while this borrow lives.
        unsafe { &*self.base().add((RECV_WORDS + slot) * 8).cast::<[u8; SECRET_LEN]>() }
    }
}

// SAFETY: `Secrets` owns its memory (a private mapping or a box); access follows Rust's borrow
// rules through `&self`/`&mut self`, so moving it or sharing `&Secrets` across threads is as
// safe as for a `Box<[u64]>`.
unsafe impl Send for Secrets {}
// SAFETY: as above: `&Secrets` only reads.
unsafe impl Sync for Secrets {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_received_secret_moves_to_its_slot_and_leaves_the_buffer() {
        let mut s = Secrets::new(3).unwrap();
        assert!(s.wiped_on_fork(), "this kernel has MADV_WIPEONFORK");
        s.recv_buf()[CTL_LEN..].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        s.adopt(2);
        assert_eq!(s.get(2), &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(s.get(1), &[0; 8]);
        assert!(s.recv_buf().iter().all(|&b| b == 0));
    }

    #[test]
    fn the_fallback_without_wipe_on_fork_keeps_secrets_too() {
        let mut s = Secrets { storage: Storage::Plain(vec![0u64; RECV_WORDS + 2].into()), n: 2 };
        assert!(!s.wiped_on_fork());
        s.recv_buf()[CTL_LEN..].copy_from_slice(&[7; 8]);
        s.adopt(1);
        assert_eq!((s.get(0), s.get(1)), (&[0; 8], &[7; 8]));
        assert!(s.recv_buf().iter().all(|&b| b == 0));
    }

    #[test]
    fn a_forked_child_sees_zeros() {
        let mut s = Secrets::new(1).unwrap();
        s.recv_buf()[CTL_LEN..].copy_from_slice(&[9; 8]);
        s.adopt(0);
        use multiproc_sys::process::exit::exit_now;
        use multiproc_sys::process::fork::{ForkOutcome, fork};
        use multiproc_sys::process::wait::{ExitStatus, waitpid};
        // SAFETY: the child only reads memory and calls `_exit` (async-signal-safe).
        let child = match unsafe { fork() }.unwrap() {
            ForkOutcome::Child => exit_now(if s.get(0) == &[0; 8] { 0 } else { 1 }),
            ForkOutcome::Parent { child } => child,
        };
        let status = waitpid(child, true).unwrap();
        assert_eq!(status, Some(ExitStatus::Exited(0)), "child saw the secret");
        assert_eq!(s.get(0), &[9; 8]);
    }
}
