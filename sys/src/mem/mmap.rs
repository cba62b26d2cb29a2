//! Shared memory segments: `MAP_SHARED` mappings that a forked child (or a process that received
//! the memfd) sees and writes together with its parent.
//!
//! # Shared means `MAP_SHARED`
//!
//! A [`Segment`] is always mapped `MAP_SHARED`, never `MAP_PRIVATE`: after `fork` the parent and
//! the child see **the same physical pages**, and a write by either is visible to the other.
//! (A `MAP_PRIVATE` mapping, which is what memmap2's `MmapOptions::map_anon` makes, turns every
//! write after `fork` into a private copy-on-write page: the other process never sees it.)
//!
//! # Lifetime: nothing leaks
//!
//! Anonymous and memfd segments have no name in any file system. Their memory is freed by the
//! kernel when the last mapping and the last fd referring to it are gone, which happens on
//! `munmap`/`close`, on `exec`, and on process death, including `SIGKILL`. No resource tracker
//! and no cleanup on exit are needed.
//!
//! # The memory is shared with other processes
//!
//! Every process that maps the segment may read and write it at any time, concurrently with
//! this one, and a peer may be buggy or die mid-write. Rust references demand that nobody else
//! writes the bytes while a `&[u8]` lives (or reads them while a `&mut [u8]` lives), which this
//! process cannot promise on another's behalf. So a segment hands out raw pointers
//! ([`Segment::as_ptr`]); build atomics or process-shared objects at fixed offsets from it, and
//! treat whatever is read from it as untrusted input. [`Segment::as_slice`] and
//! [`Segment::as_mut_slice`] exist for phases where the caller *knows* nobody else touches the
//! memory (before the first fork, for instance), and are `unsafe` for that reason.
//!
//! # References
//! - [POSIX `mmap`]
//! - [Linux `mmap(2)`], [Linux `memfd_create(2)`]
//!
//! [POSIX `mmap`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/mmap.html
//! [Linux `mmap(2)`]: https://man7.org/linux/man-pages/man2/mmap.2.html
//! [Linux `memfd_create(2)`]: https://man7.org/linux/man-pages/man2/memfd_create.2.html

use crate::errno::IntoErrno;
use core::ffi::{CStr, c_void};
use core::fmt;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::fd::{AsFd, BorrowedFd, OwnedFd, from_rx, rx};
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

use crate::errno::{Errno, Result};

/// The page size, or 0 before the first call to [`page_size`].
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// `sysconf(_SC_PAGESIZE)` — the size of a memory page, in bytes (cached after the first call).
///
/// Segment lengths are rounded up to a multiple of it. Async-signal-safe: `sysconf` is on the
/// POSIX list, and for this name glibc and musl return a value they read at start-up.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/sysconf.html
/// [Linux]: https://man7.org/linux/man-pages/man3/sysconf.3.html
#[doc(alias = "sysconf")]
#[doc(alias = "getpagesize")]
pub fn page_size() -> usize {
    // Relaxed: the value is the same for every thread; a race only means calling sysconf twice.
    let cached = PAGE_SIZE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: `sysconf` has no preconditions; `_SC_PAGESIZE` is always supported on Linux.
    let raw = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    // A page is at least 4 KiB on every Linux target; fall back to that if sysconf misbehaves,
    // so the rounding below always has a non-zero power of two.
    let size = usize::try_from(raw).ok().filter(|s| s.is_power_of_two()).unwrap_or(4096);
    PAGE_SIZE.store(size, Ordering::Relaxed);
    size
}

/// `len` rounded up to whole pages: `EINVAL` for zero, `ENOMEM` if the rounding overflows (the
/// error `mmap` itself gives for a length it cannot place).
fn round_to_pages(len: usize) -> Result<usize> {
    if len == 0 {
        return Err(Errno::INVAL);
    }
    let page = page_size();
    len.checked_add(page - 1).map(|l| l & !(page - 1)).ok_or(Errno::NOMEM)
}

/// A mapping this process made and owns: `len` bytes (a whole number of pages) at `ptr`,
/// unmapped on drop. What [`Segment`] and [`WipeOnFork`] are built on.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a `Mapping` is a range of addresses this process owns, not any thread-bound state: it
// may be moved to and dropped on another thread. `&Mapping` only exposes the address and the
// length; every access to the bytes goes through raw pointers whose users bring their own
// synchronisation.
unsafe impl Send for Mapping {}
// SAFETY: see `Send` above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// `mmap(NULL, len, PROT_READ | PROT_WRITE, flags | MAP_ANONYMOUS, -1, 0)` — a fresh
    /// zero-filled mapping of `len` (already page-rounded, non-zero) bytes.
    fn anonymous(len: usize, flags: MapFlags) -> Result<Mapping> {
        // SAFETY: a null hint lets the kernel choose fresh addresses, so no existing memory is
        // replaced.
        let ptr = unsafe {
            rustix::mm::mmap_anonymous(
                ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                flags,
            )
            .errno()?
        };
        Mapping::adopt(ptr, len)
    }

    /// `mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)` — maps `len` (already
    /// page-rounded, non-zero) bytes of `fd`.
    fn shared_file(fd: BorrowedFd<'_>, len: usize) -> Result<Mapping> {
        // SAFETY: a null hint lets the kernel choose fresh addresses, so no existing memory is
        // replaced.
        let ptr = unsafe {
            rustix::mm::mmap(
                ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                rx(fd),
                0,
            )
            .errno()?
        };
        Mapping::adopt(ptr, len)
    }

    /// Takes ownership of the mapping a successful `mmap` just returned.
    fn adopt(ptr: *mut c_void, len: usize) -> Result<Mapping> {
        match NonNull::new(ptr.cast::<u8>()) {
            Some(ptr) => Ok(Mapping { ptr, len }),
            // Without MAP_FIXED the kernel never places a mapping at address 0 (mmap_min_addr),
            // but a null pointer cannot be handed out: undo the mapping and fail.
            None => {
                // SAFETY: `ptr`/`len` is the mapping `mmap` just created; nothing refers to it.
                let _ = unsafe { rustix::mm::munmap(ptr, len).errno() };
                Err(Errno::NOMEM)
            }
        }
    }
}

impl Drop for Mapping {
    /// `munmap(ptr, len)`. Other processes' mappings of the same memory are unaffected.
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping this value created and owns; it is
        // unmapped once, here. The owners ([`Segment`], [`WipeOnFork`]) let no reference into it
        // outlive them (`as_slice` and `as_mut_slice` borrow the segment) and document that
        // their raw pointers die with them.
        let ret = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len).errno() };
        debug_assert!(ret.is_ok(), "munmap of our own mapping failed: {ret:?}");
    }
}

/// A `MAP_SHARED`, read-write, zero-filled memory segment, unmapped on drop.
///
/// Made by [`Segment::anonymous`] (shared with children forked after it), [`Segment::memfd`]
/// (also passable to other processes as an fd), or [`Segment::from_fd`] (a memfd received from
/// elsewhere). Its length is a whole number of pages.
///
/// - **After `fork`** both processes map the same pages: writes by either are seen by the
///   other. Each process unmaps its own copy of the mapping when its `Segment` drops (or when it
///   exits or `exec`s); the memory goes when the last mapping and fd go, so a `SIGKILL`ed
///   process leaks nothing.
/// - **Concurrent access**: other processes may write the memory at any time, so only raw
///   pointers are handed out safely; see the [module docs](self).
/// - `Send + Sync`: the segment is a range of addresses plus an fd; what is built inside it must
///   bring its own synchronisation (atomics, process-shared locks).
pub struct Segment {
    /// Dropped (unmapped) before `fd` is closed.
    map: Mapping,
    fd: Option<OwnedFd>,
}

impl Segment {
    /// `mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)` — maps a new
    /// zero-filled shared segment of at least `len` bytes.
    ///
    /// Shared with every child forked after this call; it has no fd, so it cannot be given to
    /// an unrelated process (use [`Segment::memfd`] for that). Async-signal-safe (a raw
    /// system call).
    ///
    /// # Errors
    /// - [`Errno::INVAL`] if `len` is zero;
    /// - [`Errno::NOMEM`] if `len` rounded up to pages overflows, or the kernel cannot place or
    ///   account the mapping.
    ///
    /// # References
    /// - [POSIX]
    /// - [Linux]
    ///
    /// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/mmap.html
    /// [Linux]: https://man7.org/linux/man-pages/man2/mmap.2.html
    pub fn anonymous(len: usize) -> Result<Segment> {
        let map = Mapping::anonymous(round_to_pages(len)?, MapFlags::SHARED)?;
        Ok(Segment { map, fd: None })
    }

    /// `memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL)` + `ftruncate` +
    /// `fcntl(F_ADD_SEALS)` + `mmap(MAP_SHARED)` — maps a new zero-filled shared segment of at
    /// least `len` bytes, backed by an anonymous memory file.
    ///
    /// The file's size is sealed (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`): no process that
    /// receives the fd can shrink it under another's mapping, which would make every access to
    /// the lost pages raise `SIGBUS`. `MFD_NOEXEC_SEAL` (Linux 6.3+, required where
    /// `vm.memfd_noexec = 2`) is used where the kernel knows it.
    ///
    /// The segment keeps the fd ([`Segment::fd`]): send it to another process (over a Unix
    /// socket with `SCM_RIGHTS`) and map it there with [`Segment::from_fd`]. `name` only shows
    /// up in `/proc/<pid>/fd` and `/proc/<pid>/maps` (for debugging); names need not be unique.
    /// The file is as long as the segment. Async-signal-safe (raw system calls).
    ///
    /// # Errors
    /// - [`Errno::INVAL`] if `len` is zero or `name` is longer than 249 bytes;
    /// - [`Errno::NOMEM`] if `len` rounded up to pages overflows or cannot be mapped;
    /// - [`Errno::MFILE`]/[`Errno::NFILE`] if no fd is available; others from `ftruncate`.
    ///
    /// # References
    /// - [POSIX `ftruncate`], [POSIX `mmap`] (`memfd_create` is Linux-only)
    /// - [Linux `memfd_create(2)`], [Linux `ftruncate(2)`], [Linux `mmap(2)`]
    ///
    /// [POSIX `ftruncate`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/ftruncate.html
    /// [POSIX `mmap`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/mmap.html
    /// [Linux `memfd_create(2)`]: https://man7.org/linux/man-pages/man2/memfd_create.2.html
    /// [Linux `ftruncate(2)`]: https://man7.org/linux/man-pages/man2/ftruncate.2.html
    /// [Linux `mmap(2)`]: https://man7.org/linux/man-pages/man2/mmap.2.html
    #[doc(alias = "memfd_create")]
    pub fn memfd(name: &CStr, len: usize) -> Result<Segment> {
        let len = round_to_pages(len)?;
        let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
        let fd = match rustix::fs::memfd_create(name, flags | MemfdFlags::NOEXEC_SEAL).errno() {
            // Kernels before 6.3 reject the unknown flag.
            Err(Errno::INVAL) => rustix::fs::memfd_create(name, flags).errno()?,
            other => other?,
        };
        let fd = from_rx(fd);
        // usize -> u64 never truncates on Linux targets.
        rustix::fs::ftruncate(rx(fd.as_fd()), len as u64).errno()?;
        rustix::fs::fcntl_add_seals(
            rx(fd.as_fd()),
            SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
        )
        .errno()?;
        Segment::map_fd(fd, len)
    }

    /// `fstat(fd)` + `mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)` — maps an
    /// existing memory file (typically a memfd another process created and sent), taking
    /// ownership of the fd.
    ///
    /// The length is checked against the file's current size first: mapping beyond the end of
    /// a file succeeds but touching those pages raises `SIGBUS`, so a `len` larger than the
    /// file is an error here. The mapping is `len` rounded up to pages; bytes between the end
    /// of the file and the end of its last page read as zero. The fd should be close-on-exec;
    /// it is kept and returned by [`Segment::fd`] (and closed if this call fails).
    ///
    /// The file must be sealed against shrinking (`F_SEAL_SHRINK`, as [`Segment::memfd`]
    /// does): otherwise whoever else holds the fd could truncate it after the size check and
    /// turn every access to this mapping into a `SIGBUS`. Async-signal-safe (raw system calls).
    ///
    /// # Errors
    /// - [`Errno::INVAL`] if `len` is zero or larger than the file (also when `fd` is not a
    ///   regular file, whose size reads as zero);
    /// - [`Errno::PERM`] if the file is not sealed against shrinking;
    /// - [`Errno::NOMEM`] if `len` rounded up to pages overflows or cannot be mapped;
    /// - [`Errno::ACCESS`] if `fd` is not open for reading and writing; others from `fstat`.
    ///
    /// # References
    /// - [POSIX `fstat`], [POSIX `mmap`]
    /// - [Linux `fstat(2)`], [Linux `mmap(2)`]
    ///
    /// [POSIX `fstat`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/fstat.html
    /// [POSIX `mmap`]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/mmap.html
    /// [Linux `fstat(2)`]: https://man7.org/linux/man-pages/man2/fstat.2.html
    /// [Linux `mmap(2)`]: https://man7.org/linux/man-pages/man2/mmap.2.html
    pub fn from_fd(fd: OwnedFd, len: usize) -> Result<Segment> {
        let rounded = round_to_pages(len)?;
        let size = rustix::fs::fstat(rx(fd.as_fd())).errno()?.st_size;
        // A negative size (never seen on Linux) is treated as empty.
        let size = u64::try_from(size).unwrap_or(0);
        if len as u64 > size {
            return Err(Errno::INVAL);
        }
        let seals = rustix::fs::fcntl_get_seals(rx(fd.as_fd())).errno().map_err(|_| Errno::PERM)?;
        if !seals.contains(SealFlags::SHRINK) {
            return Err(Errno::PERM);
        }
        Segment::map_fd(fd, rounded)
    }

    /// Maps `len` (already page-rounded, non-zero) bytes of `fd` shared, read-write.
    fn map_fd(fd: OwnedFd, len: usize) -> Result<Segment> {
        let map = Mapping::shared_file(fd.as_fd(), len)?;
        Ok(Segment { map, fd: Some(fd) })
    }

    /// The first byte of the segment, page-aligned. Valid for reads and writes of
    /// [`len`](Self::len) bytes until the segment is dropped; other processes may access the
    /// same bytes concurrently (see the [module docs](self)).
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.ptr.as_ptr()
    }

    /// The length in bytes: the requested length rounded up to a whole number of pages.
    #[inline]
    pub fn len(&self) -> usize {
        self.map.len
    }

    /// Always `false`: a segment is at least one page long.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.map.len == 0
    }

    /// The memfd behind the segment, for sending to another process; `None` for an
    /// [anonymous](Self::anonymous) segment.
    #[inline]
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|fd| fd.as_fd())
    }

    /// The segment as a byte slice.
    ///
    /// # Safety
    /// - No process (this one through another pointer, or any other that maps the segment)
    ///   writes to the segment while the returned slice is alive.
    #[inline]
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes that live as long as `self`; `len` fits in
        // `isize` because the kernel mapped it; the caller promised no concurrent writes.
        unsafe { core::slice::from_raw_parts(self.as_ptr(), self.len()) }
    }

    /// The segment as a mutable byte slice.
    ///
    /// # Safety
    /// - No process (this one through another pointer, or any other that maps the segment)
    ///   reads or writes the segment while the returned slice is alive.
    #[inline]
    pub unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` writable bytes that live as long as `self`, borrowed
        // mutably here; `len` fits in `isize`; the caller promised exclusive access across
        // processes.
        unsafe { core::slice::from_raw_parts_mut(self.as_ptr(), self.len()) }
    }
}

/// `Segment { ptr, len, fd }`.
impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("ptr", &self.map.ptr)
            .field("len", &self.map.len)
            .field("fd", &self.fd)
            .finish()
    }
}

/// Size of a transparent huge page on x86-64 and most aarch64 kernels.
const HUGE_PAGE: usize = 2 << 20;

/// Asks the kernel to back `buf` with transparent huge pages where it can (`MADV_HUGEPAGE` on
/// the 2 MiB-aligned part of it), before it is first written.
///
/// Filling a fresh multi-megabyte buffer page by page costs one page fault per 4 KiB, which on
/// a virtual machine can cost more than copying the data; with huge pages it is one fault per
/// 2 MiB. Meant for large private buffers (a message being received); a buffer smaller than
/// two huge pages is left alone. Only a hint: contents and validity of the memory never
/// change, and an error (no THP support, `transparent_hugepage=never`) is ignored.
pub fn advise_huge_pages(buf: &mut [core::mem::MaybeUninit<u8>]) {
    if buf.len() < 2 * HUGE_PAGE {
        return;
    }
    let start = buf.as_mut_ptr() as usize;
    let first = start.next_multiple_of(HUGE_PAGE);
    let end = (start + buf.len()) & !(HUGE_PAGE - 1);
    if end <= first {
        return;
    }
    // SAFETY: `[first, end)` lies inside `buf`, memory this process owns exclusively (the
    // `&mut`), and is page-aligned. `MADV_HUGEPAGE` only changes how the kernel may back the
    // range later; it never changes its contents or unmaps it, so nothing any Rust reference
    // relies on changes.
    let _ = unsafe {
        rustix::mm::madvise(first as *mut c_void, end - first, rustix::mm::Advice::LinuxHugepage)
            .errno()
    };
}

/// A private, read-write, zero-filled mapping whose contents forked children do not get:
/// `MADV_WIPEONFORK` makes the kernel give every child (however it was forked: libc `fork`,
/// `_Fork`, a raw `clone`) zero-filled pages in its place.
///
/// For secrets a process must hold and its children must not read: a child forked while the
/// secret is in use sees zeros, whatever the other threads of the parent are doing at that
/// moment. Copies the process makes elsewhere (on its stack, in a heap buffer) are not
/// covered, so keep the secret in the mapping and hand it to the kernel from there.
///
/// Unmapped on drop. Not `Sync`-shared memory: only this process sees writes to it.
///
/// # References
/// - [Linux `madvise(2)`] (`MADV_WIPEONFORK`, Linux 4.14)
///
/// [Linux `madvise(2)`]: https://man7.org/linux/man-pages/man2/madvise.2.html
pub struct WipeOnFork {
    map: Mapping,
}

impl WipeOnFork {
    /// `mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)` then
    /// `madvise(MADV_WIPEONFORK)` — maps at least `len` zero-filled bytes that no forked child
    /// inherits.
    ///
    /// Async-signal-safe (raw system calls).
    ///
    /// # Errors
    /// - [`Errno::INVAL`] if `len` is zero, or if the kernel does not know `MADV_WIPEONFORK`
    ///   (before Linux 4.14): the mapping is then removed again, never handed out unwiped;
    /// - [`Errno::NOMEM`] if the kernel cannot place or account the mapping.
    pub fn new(len: usize) -> Result<WipeOnFork> {
        let map = Mapping::anonymous(round_to_pages(len)?, MapFlags::PRIVATE)?;
        // SAFETY: `map` is the mapping made above, not handed out yet; the advice changes what
        // children get, never this process's view of the pages. On failure `map` is unmapped
        // on drop, never handed out unwiped.
        unsafe {
            rustix::mm::madvise(
                map.ptr.as_ptr().cast(),
                map.len,
                rustix::mm::Advice::LinuxWipeOnFork,
            )
            .errno()?;
        }
        Ok(WipeOnFork { map })
    }

    /// The first byte of the mapping (page-aligned). Valid for [`len`](Self::len) bytes until
    /// `self` drops; zero in every forked child.
    #[inline]
    #[must_use]
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.ptr.as_ptr()
    }

    /// Length in bytes (a whole number of pages).
    #[inline]
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.len
    }

    /// Always `false`: a mapping has at least one page.
    #[inline]
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.map.len == 0
    }
}

/// `WipeOnFork { ptr, len }`.
impl fmt::Debug for WipeOnFork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WipeOnFork")
            .field("ptr", &self.map.ptr)
            .field("len", &self.map.len)
            .finish()
    }
}
