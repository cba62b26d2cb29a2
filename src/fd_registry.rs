//! The crate's own descriptors that no child it forks may keep: a registry read by a freshly
//! forked child, which closes them before running anything else.
//!
//! # Why
//!
//! A forked child inherits every descriptor of its parent. Close-on-exec does not help (there is
//! no `exec`), and Linux has no `O_CLOFORK`. Some descriptors give their holder powers the child
//! must not have: the parent's end of a pool worker's channel lets its holder write frames that
//! the worker reads as coming from the pool (and read the worker's results), the parent's end
//! of a pool's control socket lets it talk to the fork server. So the pool registers those
//! descriptors here ([`RegisteredFd`]), and every child the crate forks (a
//! [`Process`](crate::Process) child, a pool's fork server) calls [`close_inherited`] first.
//!
//! # The child takes no lock and allocates nothing
//!
//! The parent may have any number of threads, and the child has only the one that forked: a
//! lock held elsewhere at that moment stays held forever. The registry is therefore a fixed
//! array of atomic words in static memory ([`CAPACITY`] of them), each either 0 (free) or
//! `token << 32 | fd`. [`close_inherited`] reads the words up to a high-water mark, clears them
//! and closes the descriptors, with atomics and `close` only.
//!
//! # Owners that outlive the close
//!
//! The child also inherits the `OwnedFd`s that own those numbers (inside a pool's state that the
//! child never uses, but may drop). After [`close_inherited`] a number may be reused by the
//! child's own `open`, and closing it again would close something else. So a [`RegisteredFd`]
//! closes its descriptor only if its own entry (with its own token, unique per registration in
//! this process and its descendants) is still in the registry: in a child that cleared it, the
//! drop closes nothing.
//!
//! # Races with a concurrent fork
//!
//! `fork` copies the descriptor table before memory, so a descriptor is registered only after
//! it exists, and unregistered before it is closed: a child never closes a number that is not
//! the registered descriptor. The price is two short windows (between receiving a descriptor and
//! registering it, and between unregistering and closing it) in which a child forked by another
//! thread keeps that one descriptor. The pool does not rely on this registry alone: a worker
//! only runs frames that carry its secret, which no forked child has (see
//! [`pool::core`](crate::pool)).
#![allow(unsafe_code)]

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Most descriptors registered at once. Beyond that, [`RegisteredFd::new`] leaves a descriptor
/// unregistered (children keep it; the pool's secret still protects its workers).
pub(crate) const CAPACITY: usize = 4096;

/// The registry: `token << 32 | fd` (token ≥ 1), or 0 for a free entry.
static ENTRIES: [AtomicU64; CAPACITY] = [const { AtomicU64::new(0) }; CAPACITY];
/// Entries `[0, HIGH)` may be in use; [`close_inherited`] looks no further.
static HIGH: AtomicUsize = AtomicUsize::new(0);
/// The next registration token (never 0, so no entry is ever 0 while in use).
static NEXT_TOKEN: AtomicU32 = AtomicU32::new(1);

fn entry_word(token: u32, fd: RawFd) -> u64 {
    (u64::from(token) << 32) | u64::from(fd as u32)
}

/// A descriptor registered as the crate's own: closed in every child the crate forks (see the
/// [module docs](self)), closed on drop in the process that registered it.
pub(crate) struct RegisteredFd {
    fd: Option<OwnedFd>,
    /// `(entry index, entry word)`, or `None` if the registry was full.
    entry: Option<(usize, u64)>,
}

impl RegisteredFd {
    /// Registers `fd`. Call it as soon as the descriptor exists in this process.
    pub(crate) fn new(fd: OwnedFd) -> RegisteredFd {
        let mut token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        if token == 0 {
            // Wrapped around after 2^32 registrations: skip the value that means "free".
            token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        }
        let word = entry_word(token, fd.as_raw_fd());
        let mut entry = None;
        for (i, slot) in ENTRIES.iter().enumerate() {
            if slot.load(Ordering::Relaxed) != 0 {
                continue;
            }
            // Raise the high-water mark before the entry can be seen, so that a child that
            // sees the entry also scans that far.
            HIGH.fetch_max(i + 1, Ordering::SeqCst);
            // SeqCst: a fork by another thread right after this store copies the entry.
            if slot.compare_exchange(0, word, Ordering::SeqCst, Ordering::Relaxed).is_ok() {
                entry = Some((i, word));
                break;
            }
        }
        RegisteredFd { fd: Some(fd), entry }
    }
}

impl Drop for RegisteredFd {
    fn drop(&mut self) {
        let Some(fd) = self.fd.take() else { return };
        if let Some((i, word)) = self.entry
            && ENTRIES[i].compare_exchange(word, 0, Ordering::SeqCst, Ordering::Relaxed).is_err()
        {
            // Our entry is gone: this is a forked child that already closed the descriptor in
            // `close_inherited`, and the number may now be someone else's. Close nothing.
            std::mem::forget(fd);
            return;
        }
        drop(fd);
    }
}

impl AsFd for RegisteredFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_ref().expect("present until drop").as_fd()
    }
}

impl AsRawFd for RegisteredFd {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl fmt::Debug for RegisteredFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredFd")
            .field("fd", &self.as_raw_fd())
            .field("registered", &self.entry.is_some())
            .finish()
    }
}

/// In a freshly forked child, before anything else: closes every descriptor the parent had
/// registered, and empties the registry (this process no longer holds them).
///
/// Allocation-free and lock-free (atomics and `close` only), so safe in a child of a
/// multithreaded parent. Registrations this process makes afterwards are unaffected.
pub(crate) fn close_inherited() {
    let high = HIGH.load(Ordering::SeqCst).min(CAPACITY);
    for slot in &ENTRIES[..high] {
        let word = slot.swap(0, Ordering::SeqCst);
        if word != 0 {
            // SAFETY: the number was registered by a `RegisteredFd` of the parent, whose copy in
            // this process will not close it (its entry is gone: see its `Drop`), and nothing
            // else in the crate uses a registered number in a child: the pool refuses to be
            // used outside the process that created it.
            unsafe { multiproc_sys::io::fd::close_inherited(word as u32 as RawFd) };
        }
    }
}

/// The descriptors registered in the calling process.
#[cfg(test)]
fn registered_fds() -> Vec<RawFd> {
    let high = HIGH.load(Ordering::SeqCst).min(CAPACITY);
    ENTRIES[..high]
        .iter()
        .map(|e| e.load(Ordering::SeqCst))
        .filter(|&w| w != 0)
        .map(|w| w as u32 as RawFd)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_fd() -> OwnedFd {
        multiproc_sys::io::pipe::pipe().unwrap().0
    }

    #[test]
    fn registered_descriptors_are_listed_until_dropped() {
        let a = RegisteredFd::new(open_fd());
        let b = RegisteredFd::new(open_fd());
        let fds = registered_fds();
        assert!(fds.contains(&a.as_raw_fd()) && fds.contains(&b.as_raw_fd()));
        let raw = a.as_raw_fd();
        drop(a);
        assert!(!registered_fds().contains(&raw) || b.as_raw_fd() == raw);
        assert!(registered_fds().contains(&b.as_raw_fd()));
    }

    #[test]
    fn an_owner_whose_entry_was_cleared_closes_nothing() {
        let a = RegisteredFd::new(open_fd());
        let raw = a.as_raw_fd();
        let (i, word) = a.entry.unwrap();
        // What `close_inherited` does in a child, without closing: the entry is cleared.
        assert_eq!(ENTRIES[i].swap(0, Ordering::SeqCst), word);
        drop(a);
        // The descriptor is still open (leaked on purpose): closing it succeeds, where closing a
        // number that is not open fails with EBADF.
        // SAFETY: leaked by the drop above, so this is its only owner.
        let leaked = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        let closed = multiproc_sys::io::fd::close(leaked);
        assert_eq!(closed, Ok(()), "the owner closed a descriptor it no longer owned");
    }
}
