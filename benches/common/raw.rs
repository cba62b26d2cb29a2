//! The raw baselines' building blocks that more than one bench uses: whole reads and writes on
//! a descriptor with libc, pinning to a CPU, and the CPU placements a round trip is measured
//! at.

/// Reads exactly `buf.len()` bytes; false at EOF.
pub fn raw_read_full(fd: i32, buf: &mut [u8]) -> bool {
    let mut done = 0;
    while done < buf.len() {
        let n = unsafe { libc::read(fd, buf[done..].as_mut_ptr().cast(), buf.len() - done) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return false;
        }
        done += n as usize;
    }
    true
}

/// Sends all of `buf` on a socket (`MSG_NOSIGNAL`); panics on an error.
pub fn raw_write_all(fd: i32, mut buf: &[u8]) {
    while !buf.is_empty() {
        let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) };
        assert!(n > 0, "send: {}", std::io::Error::last_os_error());
        buf = &buf[n as usize..];
    }
}

/// Pins the calling process (all its threads: the bench is single-threaded) to `cpu`.
pub fn pin(cpu: usize) {
    let set = multiproc::CpuSet::from_cpus(&[cpu]).unwrap();
    multiproc::sys::affinity::sched_setaffinity(None, &set).unwrap();
}

/// Where the parent and the children run: same CPU, or two different CPUs. On 2 vCPUs the
/// round trip is bimodal (a cross-CPU wakeup costs an IPI, expensive in a VM), so unpinned
/// medians mean little: each configuration is measured on its own.
#[derive(Clone, Copy)]
pub struct Placement {
    /// "same CPU" or "cross-CPU".
    pub name: &'static str,
    /// The parent's CPU.
    pub parent: usize,
    /// The child's CPU.
    pub child: usize,
}

/// Same CPU, and cross-CPU when this process may run on two.
pub fn placements() -> Vec<Placement> {
    let allowed: Vec<usize> =
        multiproc::sys::affinity::sched_getaffinity(None).unwrap().iter().collect();
    let mut v = vec![Placement { name: "same CPU", parent: allowed[0], child: allowed[0] }];
    if allowed.len() > 1 {
        v.push(Placement { name: "cross-CPU", parent: allowed[0], child: allowed[1] });
    }
    v
}
