//! CPU affinity: which CPUs a thread may run on, and how many there are.
//!
//! [`CpuSet`] is a fixed, inline bitmap of [`MAX_CPUS`] (8192) CPUs: the largest `NR_CPUS` a
//! Linux kernel can be configured with, so no machine has a CPU it cannot name. libc's
//! `cpu_set_t` (and rustix's `CpuSet`, built on it) stop at 1024 CPUs, which large servers
//! already exceed; that is why [`sched_setaffinity`] and [`sched_getaffinity`] issue the raw
//! syscalls with our own, larger mask instead of calling the libc wrappers. A `CpuSet` is
//! 1 KiB, never allocates, and is plain data (it may live in shared memory).
//!
//! Affinity belongs to a *thread*: `None` names the calling thread, `Some(pid)` the thread
//! whose id is `pid` (for a single-threaded process, the process). A forked child starts with
//! the mask of the thread that forked it.
//!
//! | item | what it answers | async-signal-safe |
//! |---|---|---|
//! | [`cpu_count`] | CPUs online in the system (Python's `os.cpu_count()`) | no |
//! | [`process_cpu_count`] | CPUs the calling thread may run on (`os.process_cpu_count()`) | yes, except its fallback |
//! | [`sched_getaffinity`] / [`sched_setaffinity`] | a thread's mask | yes (raw syscalls) |
//! | [`sched_getcpu`] | the CPU the caller is running on now | yes |
//!
//! # References
//! - [Linux `sched_setaffinity(2)`](https://man7.org/linux/man-pages/man2/sched_setaffinity.2.html)
//! - [Linux `CPU_SET(3)`](https://man7.org/linux/man-pages/man3/CPU_SET.3.html)
//! - [Linux `sched_getcpu(3)`](https://man7.org/linux/man-pages/man3/sched_getcpu.3.html)

use core::ffi::c_ulong;
use core::fmt;
use core::iter::FusedIterator;

use crate::Pid;
use crate::cvt::{cvt, cvt_long};
use crate::errno::{Errno, Result};
use crate::mem::shm_safe::ShmSafe;

/// The number of CPUs a [`CpuSet`] can hold: 8192, Linux's largest configurable `NR_CPUS`
/// (`CONFIG_MAXSMP` on x86-64). CPU numbers run from `0` to `MAX_CPUS - 1`.
pub const MAX_CPUS: usize = 8192;

/// One word of the mask. The kernel reads and writes affinity masks as arrays of `unsigned
/// long` (bit `n % BITS` of word `n / BITS` is CPU `n`); using the same word type keeps the
/// layout right on 32-bit big-endian targets, where an array of `u64` would not be.
type Word = c_ulong;
const WORD_BITS: usize = Word::BITS as usize;
const WORDS: usize = MAX_CPUS / WORD_BITS;

/// A set of CPU numbers below [`MAX_CPUS`]: the mask that `sched_setaffinity(2)` takes and
/// `sched_getaffinity(2)` returns.
///
/// A fixed 1 KiB bitmap stored inline: no allocation, `Copy`, and its layout is exactly the
/// kernel's (an array of `unsigned long`). Every bit pattern is a valid set, so it is
/// [`ShmSafe`] and may be placed in shared memory.
///
/// `Debug` prints the CPUs as ranges, like the kernel's `cpuset` lists: `{0-3,7}`.
///
/// Every method is async-signal-safe (pure bit manipulation).
///
/// # Examples
///
/// ```
/// use multiproc_sys::affinity::CpuSet;
/// # fn main() -> multiproc_sys::Result<()> {
/// let mut set = CpuSet::from_cpus(&[0, 1, 2, 3, 7])?;
/// set.set(5000)?; // beyond libc's 1024-CPU cpu_set_t
/// assert_eq!(set.count(), 6);
/// assert!(set.set(8192).is_err());
/// set.unset(5000);
/// assert_eq!(format!("{set:?}"), "{0-3,7}");
/// # Ok(())
/// # }
/// ```
///
/// # References
/// - [Linux `CPU_SET(3)`][linux]
///
/// [linux]: https://man7.org/linux/man-pages/man3/CPU_SET.3.html
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CpuSet {
    bits: [Word; WORDS],
}

static_assertions::const_assert_eq!(MAX_CPUS % WORD_BITS, 0);
static_assertions::assert_eq_size!(CpuSet, [u8; MAX_CPUS / 8]);
static_assertions::assert_impl_all!(CpuSet: ShmSafe);
static_assertions::const_assert_eq!(core::mem::align_of::<CpuSet>(), core::mem::align_of::<Word>());
// Strictly larger than libc's mask: the point of the type.
static_assertions::const_assert!(
    core::mem::size_of::<CpuSet>() > core::mem::size_of::<libc::cpu_set_t>()
);

// SAFETY: `CpuSet` is `#[repr(C)]` around an array of integers: no pointers, no file
// descriptors, no padding, no `Drop`, and every bit pattern is a valid (possibly odd) set.
unsafe impl ShmSafe for CpuSet {}

impl CpuSet {
    /// The empty set.
    #[inline]
    pub const fn new() -> CpuSet {
        CpuSet { bits: [0; WORDS] }
    }

    /// The set of all [`MAX_CPUS`] CPUs.
    ///
    /// Given to [`sched_setaffinity`] it means "any CPU": the kernel ignores the CPUs that
    /// do not exist, and those a cpuset cgroup forbids.
    #[inline]
    pub const fn full() -> CpuSet {
        CpuSet { bits: [Word::MAX; WORDS] }
    }

    /// The set of the given CPUs (duplicates are fine).
    ///
    /// # Errors
    ///
    /// [`Errno::INVAL`] if a CPU number is [`MAX_CPUS`] or more.
    pub fn from_cpus(cpus: &[usize]) -> Result<CpuSet> {
        let mut set = CpuSet::new();
        for &cpu in cpus {
            set.set(cpu)?;
        }
        Ok(set)
    }

    /// Adds `cpu` to the set.
    ///
    /// # Errors
    ///
    /// [`Errno::INVAL`] if `cpu` is [`MAX_CPUS`] or more (no Linux kernel has such a CPU);
    /// the set is then unchanged.
    #[inline]
    pub fn set(&mut self, cpu: usize) -> Result<()> {
        if cpu >= MAX_CPUS {
            return Err(Errno::INVAL);
        }
        self.bits[cpu / WORD_BITS] |= bit(cpu);
        Ok(())
    }

    /// Removes `cpu` from the set. A CPU number of [`MAX_CPUS`] or more is never in a set,
    /// so removing it does nothing.
    #[inline]
    pub fn unset(&mut self, cpu: usize) {
        if cpu < MAX_CPUS {
            self.bits[cpu / WORD_BITS] &= !bit(cpu);
        }
    }

    /// Whether `cpu` is in the set (`false` for [`MAX_CPUS`] or more).
    #[inline]
    pub const fn is_set(&self, cpu: usize) -> bool {
        cpu < MAX_CPUS && self.bits[cpu / WORD_BITS] & bit(cpu) != 0
    }

    /// The number of CPUs in the set (`CPU_COUNT`).
    pub fn count(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|&w| w == 0)
    }

    /// Removes every CPU (`CPU_ZERO`).
    #[inline]
    pub fn clear(&mut self) {
        self.bits = [0; WORDS];
    }

    /// The lowest CPU in the set, if any.
    pub fn first(&self) -> Option<usize> {
        self.iter().next()
    }

    /// The highest CPU in the set, if any.
    pub fn last(&self) -> Option<usize> {
        let (i, w) = self.bits.iter().enumerate().rev().find(|(_, w)| **w != 0)?;
        Some(i * WORD_BITS + (WORD_BITS - 1 - w.leading_zeros() as usize))
    }

    /// The CPUs in the set, in increasing order.
    #[inline]
    pub fn iter(&self) -> Cpus<'_> {
        Cpus { words: &self.bits, index: 0, word: self.bits[0] }
    }
}

/// The bit for `cpu` within its word.
#[inline]
const fn bit(cpu: usize) -> Word {
    1 << (cpu % WORD_BITS)
}

impl Default for CpuSet {
    /// The empty set.
    #[inline]
    fn default() -> CpuSet {
        CpuSet::new()
    }
}

impl fmt::Debug for CpuSet {
    /// Writes the CPUs as a list of ranges: `{}`, `{5}`, `{0-3,7,5000}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn range(f: &mut fmt::Formatter<'_>, first: bool, lo: usize, hi: usize) -> fmt::Result {
            let sep = if first { "" } else { "," };
            if lo == hi { write!(f, "{sep}{lo}") } else { write!(f, "{sep}{lo}-{hi}") }
        }

        f.write_str("{")?;
        let mut run: Option<(usize, usize)> = None;
        let mut first = true;
        for cpu in self {
            run = match run {
                Some((lo, hi)) if hi + 1 == cpu => Some((lo, cpu)),
                Some((lo, hi)) => {
                    range(f, first, lo, hi)?;
                    first = false;
                    Some((cpu, cpu))
                }
                None => Some((cpu, cpu)),
            };
        }
        if let Some((lo, hi)) = run {
            range(f, first, lo, hi)?;
        }
        f.write_str("}")
    }
}

impl<'a> IntoIterator for &'a CpuSet {
    type Item = usize;
    type IntoIter = Cpus<'a>;

    #[inline]
    fn into_iter(self) -> Cpus<'a> {
        self.iter()
    }
}

/// The CPUs of a [`CpuSet`] in increasing order: see [`CpuSet::iter`].
#[derive(Clone, Debug)]
pub struct Cpus<'a> {
    words: &'a [Word; WORDS],
    /// Index of the word being drained.
    index: usize,
    /// The bits of `words[index]` not yet returned.
    word: Word,
}

impl Iterator for Cpus<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        while self.word == 0 {
            self.index += 1;
            self.word = *self.words.get(self.index)?;
        }
        let cpu = self.index * WORD_BITS + self.word.trailing_zeros() as usize;
        // Clear the lowest set bit.
        self.word &= self.word - 1;
        Some(cpu)
    }
}

impl FusedIterator for Cpus<'_> {}

/// `sched_setaffinity(pid, sizeof(set), set)` — restricts a thread to the CPUs in `set`.
///
/// `None` is the calling thread; `Some(pid)` is the thread with that id (a process's main
/// thread has the process's id). The other threads of the process keep their masks; children
/// forked afterwards by this thread inherit the new one. When this returns, the thread is
/// already running on a CPU of `set` (the kernel migrates it first).
///
/// The kernel drops the CPUs of `set` that do not exist or that the thread's cpuset cgroup
/// does not allow; what is left must not be empty. The raw syscall is used, with the full
/// [`MAX_CPUS`]-bit mask, not libc's 1024-CPU `cpu_set_t`.
///
/// Async-signal-safe (one raw syscall).
///
/// # Errors
///
/// - [`Errno::INVAL`]: no CPU of `set` is both present and allowed (e.g. an empty set).
/// - [`Errno::SRCH`]: no thread has id `pid`.
/// - [`Errno::PERM`]: `pid` belongs to another user and the caller lacks `CAP_SYS_NICE`.
///
/// # References
/// - POSIX: none (Linux-specific)
/// - [Linux `sched_setaffinity(2)`][linux]
///
/// [linux]: https://man7.org/linux/man-pages/man2/sched_setaffinity.2.html
pub fn sched_setaffinity(pid: Option<Pid>, set: &CpuSet) -> Result<()> {
    // SAFETY: the kernel reads at most `size_of::<CpuSet>()` bytes from a pointer made from a
    // live reference to a `CpuSet` of exactly that size; it writes nothing.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_sched_setaffinity,
            libc::c_long::from(pid.map_or(0, Pid::as_raw)),
            core::mem::size_of::<CpuSet>(),
            core::ptr::from_ref(set).cast::<Word>(),
        )
    };
    cvt_long(ret).map(drop)
}

/// `sched_getaffinity(pid, sizeof(set), set)` — the CPUs a thread may run on.
///
/// `None` is the calling thread; `Some(pid)` is the thread with that id. The raw syscall is
/// used, with the full [`MAX_CPUS`]-bit mask: it returns how many bytes of the mask the
/// kernel wrote (its own `cpumask` size), and the bytes after those stay zero.
///
/// Async-signal-safe (one raw syscall).
///
/// # Errors
///
/// - [`Errno::SRCH`]: no thread has id `pid`.
/// - [`Errno::INVAL`]: the kernel was built for more than [`MAX_CPUS`] CPUs (no released
///   configuration allows that).
///
/// # References
/// - POSIX: none (Linux-specific)
/// - [Linux `sched_getaffinity(2)`][linux]
///
/// [linux]: https://man7.org/linux/man-pages/man2/sched_setaffinity.2.html
pub fn sched_getaffinity(pid: Option<Pid>) -> Result<CpuSet> {
    // Start from the empty set: the bytes the kernel does not write (past its own mask size)
    // must read as "not allowed", so they are zeroed up front.
    let mut set = CpuSet::new();
    // SAFETY: the kernel writes at most `size_of::<CpuSet>()` bytes (the length we pass)
    // through a pointer made from a unique reference to a `CpuSet` of exactly that size, and
    // any bytes it writes form a valid `CpuSet` (every bit pattern is one).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_sched_getaffinity,
            libc::c_long::from(pid.map_or(0, Pid::as_raw)),
            core::mem::size_of::<CpuSet>(),
            core::ptr::from_mut(&mut set).cast::<Word>(),
        )
    };
    let written = cvt_long(ret)?;
    debug_assert!((0..=core::mem::size_of::<CpuSet>() as libc::c_long).contains(&written));
    Ok(set)
}

/// `sysconf(_SC_NPROCESSORS_ONLN)` — the number of CPUs online in the system, at least 1.
///
/// This is Python's `os.cpu_count()`: it counts the machine's CPUs, not the ones this process
/// may use (see [`process_cpu_count`] for that, which is what sizing a worker pool usually
/// wants). Where Python would return `None` (the libc cannot tell, `-1`), this returns 1.
///
/// **Not async-signal-safe**: `sysconf` is not on the POSIX list, and glibc answers by
/// opening and reading `/sys/devices/system/cpu/online` (falling back to `/proc/stat`); older
/// glibc versions read it through stdio, which allocates. Call it before forking. (musl
/// answers from `sched_getaffinity` instead, so there it equals [`process_cpu_count`] of the
/// calling thread.)
///
/// # References
/// - [POSIX `sysconf`][posix]
/// - [Linux `sysconf(3)`][linux]
///
/// [posix]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/sysconf.html
/// [linux]: https://man7.org/linux/man-pages/man3/sysconf.3.html
#[doc(alias = "sysconf")]
#[doc(alias = "_SC_NPROCESSORS_ONLN")]
pub fn cpu_count() -> usize {
    // SAFETY: `sysconf` takes an integer name and touches no memory of ours.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(0).max(1)
}

/// `sched_getaffinity(0)` counted — the number of CPUs the calling thread may run on, at least 1.
///
/// This is Python's `os.process_cpu_count()` (and `len(os.sched_getaffinity(0))`): the CPUs
/// left after `taskset`, cpuset cgroups and earlier [`sched_setaffinity`] calls, so at most
/// [`cpu_count`] on glibc. It is the right default for the number of worker processes. CPU
/// *quotas* (cgroup `cpu.max`) do not show up here.
///
/// Async-signal-safe, except in its fallback: if `sched_getaffinity` fails (it does not for
/// the calling thread on Linux, short of a seccomp filter), the answer is [`cpu_count`],
/// which is not.
///
/// # References
/// - POSIX: none (Linux-specific)
/// - [Linux `sched_getaffinity(2)`][linux]
///
/// [linux]: https://man7.org/linux/man-pages/man2/sched_setaffinity.2.html
pub fn process_cpu_count() -> usize {
    match sched_getaffinity(None) {
        Ok(set) => set.count().max(1),
        Err(_) => cpu_count(),
    }
}

/// `sched_getcpu()` — the number of the CPU the calling thread is running on.
///
/// The answer can be stale by the time it is used, since the scheduler may move the thread at
/// any moment, unless the thread is pinned to a single CPU with [`sched_setaffinity`]. It is
/// meant for picking a per-CPU slot (a shard of a counter), where a stale answer costs only
/// some contention.
///
/// Async-signal-safe in practice: glibc reads the value from the thread's `rseq` area or
/// calls the vDSO's `getcpu` (falling back to the `getcpu` syscall); musl does the same
/// without `rseq`. Neither takes a lock or allocates. (libc's function is used rather than
/// rustix's, which cannot report an error and resolves the vDSO lazily on first use.)
///
/// # Errors
///
/// [`Errno::NOSYS`] if neither the vDSO nor the syscall is available (a seccomp sandbox).
///
/// # References
/// - POSIX: none (Linux-specific)
/// - [Linux `sched_getcpu(3)`][linux]
///
/// [linux]: https://man7.org/linux/man-pages/man3/sched_getcpu.3.html
pub fn sched_getcpu() -> Result<usize> {
    // SAFETY: `sched_getcpu` takes no arguments and touches no memory of ours.
    let cpu = cvt(unsafe { libc::sched_getcpu() })?;
    // `cvt` let through every value but -1; a CPU number is never negative.
    usize::try_from(cpu).map_err(|_| Errno::INVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iter_walks_word_boundaries_in_order() {
        let cpus = [0, 1, 63, 64, 65, 127, 128, 1023, 1024, 5000, MAX_CPUS - 1];
        let set = CpuSet::from_cpus(&cpus).unwrap();
        assert!(set.iter().eq(cpus.iter().copied()));
        assert_eq!(set.count(), cpus.len());
        assert_eq!(set.first(), Some(0));
        assert_eq!(set.last(), Some(MAX_CPUS - 1));
        assert_eq!(CpuSet::new().iter().next(), None);
        assert_eq!(CpuSet::new().last(), None);
        assert_eq!(CpuSet::full().count(), MAX_CPUS);
        assert!(CpuSet::full().iter().eq(0..MAX_CPUS));
    }
}
