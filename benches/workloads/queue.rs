//! `Queue` against, in the same run: a raw C-style single-producer single-consumer ring in
//! shared memory (written here: fixed slots, two atomics, spin-then-futex, no locks, no
//! framing, no encoding), a raw pipe (one `write`/`read` per item), `memcpy` into shared memory,
//! and Python's `multiprocessing.Queue` (via `python3`).
//!
//! - Throughput, 1 producer child → the parent, with 8-byte items (`u64`) and 1 KiB items
//!   (`Arc<Vec<u8>>`: the producer shares one buffer, so the numbers measure the queue, not the
//!   producer's allocation; the consumer gets a fresh `Vec` per item, as any user would).
//! - Round trip: the parent puts into one queue, an echo child gets and puts into another.
//! - 64 MiB items, through the default 1 MiB ring (streaming) and through a 128 MiB ring.
//!
//! Each producer child sends batches on request (a futex word), so every case measures the
//! whole pipeline, from the request to the last item out of the parent's `get`.
//!
//! Targets (issue 5 §4): ≥ 5 M items/s for 8-byte items (≥ 20× Python); ≥ 2 GB/s for 1 KiB
//! items; round trip ≤ 2× the raw spin-then-futex ping-pong; 64 MiB ≥ 50% of `memcpy` into
//! shared memory.
//!
//! Run with `cargo bench --bench queue` (`MULTIPROC_BENCH_QUICK=1` for a rough run; a first
//! argument `throughput_8`, `throughput_1k`, `round_trip` or `big` runs one table). Two modes
//! for profiling: `-- local` (put + get in one process: the software cost alone) and
//! `-- profile_big [ring_bytes] [bytes]` (the 64 MiB case in a loop, for `perf record`).
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use crate::common::{Case, PY_REPORT, Stats, Table, compare, headline, python, rounds};
use multiproc::sys::affinity::{self, CpuSet};
use multiproc::{Process, ProcessBuilder, Queue, Signal};

// ---------------------------------------------------------------------------------------------
// Raw building blocks (libc only)
// ---------------------------------------------------------------------------------------------

/// A `MAP_SHARED | MAP_ANONYMOUS` mapping, inherited by forked children.
struct Shm {
    ptr: *mut u8,
    len: usize,
}

unsafe impl Send for Shm {}
unsafe impl Sync for Shm {}

impl Shm {
    fn new(len: usize) -> Shm {
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        Shm { ptr: ptr.cast(), len }
    }

    fn at<T>(&self, off: usize) -> &T {
        assert!(off + size_of::<T>() <= self.len);
        unsafe { &*self.ptr.add(off).cast::<T>() }
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

fn futex_wait(w: &AtomicU32, v: u32) {
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            w.as_ptr(),
            libc::FUTEX_WAIT,
            v,
            std::ptr::null::<u8>(),
            0,
            0,
        )
    };
}

fn futex_wake(w: &AtomicU32) {
    unsafe { libc::syscall(libc::SYS_futex, w.as_ptr(), libc::FUTEX_WAKE, i32::MAX, 0, 0, 0) };
}

/// A futex word plus a sleeper count: spin, then sleep; wake only if someone sleeps.
#[repr(C)]
struct Signal32 {
    seq: AtomicU32,
    waiters: AtomicU32,
}

impl Signal32 {
    fn wait_until(&self, mut ready: impl FnMut() -> bool) {
        for _ in 0..200 {
            if ready() {
                return;
            }
            std::hint::spin_loop();
        }
        loop {
            self.waiters.fetch_add(1, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            let v = self.seq.load(Ordering::Relaxed);
            if ready() {
                self.waiters.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            futex_wait(&self.seq, v);
            self.waiters.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn notify(&self) {
        fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::Relaxed) != 0 {
            self.seq.fetch_add(1, Ordering::Release);
            futex_wake(&self.seq);
        }
    }
}

/// The request word the parent bumps to ask a producer child for one more batch.
struct Control {
    shm: Shm,
}

const STOP: u32 = u32::MAX;

impl Control {
    fn new() -> Control {
        Control { shm: Shm::new(4096) }
    }
    fn req(&self) -> &AtomicU32 {
        self.shm.at(0)
    }
    fn sig(&self) -> &Signal32 {
        self.shm.at(64)
    }
    /// Parent: ask for the next batch.
    fn request(&self) {
        self.req().fetch_add(1, Ordering::Release);
        self.sig().notify();
    }
    fn stop(&self) {
        self.req().store(STOP, Ordering::Release);
        self.sig().notify();
    }
    /// Child: wait for a request after `seen`; false on stop.
    fn next(&self, seen: &mut u32) -> bool {
        self.sig().wait_until(|| self.req().load(Ordering::Acquire) != *seen);
        *seen = self.req().load(Ordering::Acquire);
        *seen != STOP
    }
}

/// The raw baseline ring: `slots` fixed-size slots, `head`/`tail` counters on their own lines,
/// each side caching the other's counter privately (reloaded only when the ring looks full or
/// empty), spin-then-futex on both sides. What a C programmer would write for one producer and
/// one consumer of fixed-size items.
struct RawRing {
    shm: Shm,
    slots: u64,
    slot: usize,
    /// The producer's cached `head` and the consumer's cached `tail`: process-private (each
    /// process has its own copy of this struct after `fork`).
    head_cache: AtomicU64,
    tail_cache: AtomicU64,
}

const RING_DATA: usize = 512;

impl RawRing {
    fn new(bytes: usize, slot: usize) -> RawRing {
        RawRing {
            shm: Shm::new(RING_DATA + bytes),
            slots: (bytes / slot) as u64,
            slot,
            head_cache: AtomicU64::new(0),
            tail_cache: AtomicU64::new(0),
        }
    }
    fn head(&self) -> &AtomicU64 {
        self.shm.at(0)
    }
    fn tail(&self) -> &AtomicU64 {
        self.shm.at(128)
    }
    fn data_sig(&self) -> &Signal32 {
        self.shm.at(256)
    }
    fn space_sig(&self) -> &Signal32 {
        self.shm.at(384)
    }
    fn slot_ptr(&self, i: u64) -> *mut u8 {
        unsafe { self.shm.ptr.add(RING_DATA + (i % self.slots) as usize * self.slot) }
    }
    fn push(&self, src: &[u8]) {
        let t = self.tail().load(Ordering::Relaxed);
        if t - self.head_cache.load(Ordering::Relaxed) == self.slots {
            let fresh = || {
                let h = self.head().load(Ordering::Acquire);
                self.head_cache.store(h, Ordering::Relaxed);
                t - h < self.slots
            };
            self.space_sig().wait_until(fresh);
        }
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.slot_ptr(t), self.slot) };
        self.tail().store(t + 1, Ordering::Release);
        self.data_sig().notify();
    }
    fn pop(&self, dst: &mut [u8]) {
        let h = self.head().load(Ordering::Relaxed);
        if self.tail_cache.load(Ordering::Relaxed) == h {
            let fresh = || {
                let t = self.tail().load(Ordering::Acquire);
                self.tail_cache.store(t, Ordering::Relaxed);
                t != h
            };
            self.data_sig().wait_until(fresh);
        }
        unsafe { std::ptr::copy_nonoverlapping(self.slot_ptr(h), dst.as_mut_ptr(), self.slot) };
        self.head().store(h + 1, Ordering::Release);
        self.space_sig().notify();
    }
}

fn raw_pipe() -> (i32, i32) {
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    (fds[0], fds[1])
}

fn read_full(fd: i32, buf: &mut [u8]) {
    let mut done = 0;
    while done < buf.len() {
        let n = unsafe { libc::read(fd, buf[done..].as_mut_ptr().cast(), buf.len() - done) };
        assert!(n > 0, "read: {}", std::io::Error::last_os_error());
        done += n as usize;
    }
}

fn write_all(fd: i32, mut buf: &[u8]) {
    while !buf.is_empty() {
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        assert!(n > 0, "write: {}", std::io::Error::last_os_error());
        buf = &buf[n as usize..];
    }
}

/// A child that dies with the bench if the bench dies.
fn child<F: FnOnce() + Send + 'static>(f: F) -> Process<()> {
    let p = ProcessBuilder::new().death_signal(Some(Signal::KILL)).target(f);
    p.start().expect("start child");
    p
}

/// Stats of a batch case, per item.
fn per_item(s: &Stats, n: usize) -> Stats {
    let n = n as f64;
    Stats { median: s.median / n, p10: s.p10 / n, p90: s.p90 / n, samples: s.samples }
}

// ---------------------------------------------------------------------------------------------
// Throughput, 1 producer → 1 consumer
// ---------------------------------------------------------------------------------------------

const PY_THROUGHPUT: &str = r#"
import multiprocessing as mp, time, sys
N, ROUNDS, SIZE = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def producer(q, req, item):
    while True:
        n = req.get()
        if n == 0:
            break
        for _ in range(n):
            q.put(item)
mp.set_start_method('fork')
q, req = mp.Queue(), mp.Queue()
item = 12345678 if SIZE == 8 else bytes(SIZE)
p = mp.Process(target=producer, args=(q, req, item))
p.start()
samples = []
for r in range(ROUNDS + 1):
    t = time.perf_counter()
    req.put(N)
    for _ in range(N):
        q.get()
    dt = time.perf_counter() - t
    if r > 0:
        samples.append(dt * 1e9 / N)
req.put(0)
p.join()
report(samples)
"#;

fn py(script: &str, args: &[String]) -> String {
    // `python()` runs `python3 -c <script>`; pass arguments through `sys.argv` by prefixing.
    format!("import sys\nsys.argv = ['-c', {}]\n{PY_REPORT}\n{script}", args.join(", "))
}

fn throughput_8() {
    let n = 200_000;
    let rounds = rounds(15);
    let table = Table::new("Queue throughput, 8-byte items, 1 producer child → parent", Some(8));

    let q: Queue<u64> = Queue::new().unwrap();
    let qctl = Arc::new(Control::new());
    let (cq, ctl) = (q.clone(), Arc::clone(&qctl));
    let qp = child(move || {
        let mut seen = 0;
        while ctl.next(&mut seen) {
            for i in 0..n as u64 {
                cq.put(i).unwrap();
            }
        }
    });

    let ring = Arc::new(RawRing::new(1 << 20, 8));
    let rctl = Arc::new(Control::new());
    let (cring, ctl) = (Arc::clone(&ring), Arc::clone(&rctl));
    let rp = child(move || {
        let mut seen = 0;
        while ctl.next(&mut seen) {
            for i in 0..n as u64 {
                cring.push(&i.to_le_bytes());
            }
        }
    });

    let (prd, pwr) = raw_pipe();
    let pctl = Arc::new(Control::new());
    let ctl = Arc::clone(&pctl);
    let pp = child(move || {
        unsafe { libc::close(prd) };
        let mut seen = 0;
        while ctl.next(&mut seen) {
            for i in 0..n as u64 {
                write_all(pwr, &i.to_le_bytes());
            }
        }
    });
    unsafe { libc::close(pwr) };

    let mut buf = [0u8; 8];
    let stats = compare(
        rounds,
        1,
        &mut [
            Case::new("multiproc Queue<u64>", || {
                qctl.request();
                let mut sum = 0u64;
                for _ in 0..n {
                    sum = sum.wrapping_add(q.get().unwrap());
                }
                std::hint::black_box(sum);
            }),
            Case::new("raw SPSC shared-memory ring (8 B slots)", || {
                rctl.request();
                for _ in 0..n {
                    ring.pop(&mut buf);
                }
            }),
            Case::new("raw pipe (write/read per item)", || {
                pctl.request();
                let mut b = [0u8; 8];
                for _ in 0..n {
                    read_full(prd, &mut b);
                }
            }),
        ],
    );
    qctl.stop();
    rctl.stop();
    pctl.stop();
    qp.join().unwrap();
    rp.join().unwrap();
    pp.join().unwrap();
    unsafe { libc::close(prd) };

    let ours = per_item(&stats[0], n);
    let raw = per_item(&stats[1], n);
    let pipe = per_item(&stats[2], n);
    table.row("multiproc Queue<u64>", &ours, None);
    table.row("raw SPSC shared-memory ring", &raw, Some(("ours", &ours)));
    table.row("raw pipe", &pipe, Some(("ours", &ours)));
    let pyn = 20_000;
    let pys = python(
        "Queue 8 B",
        &py(PY_THROUGHPUT, &[pyn.to_string(), rounds.min(7).to_string(), "8".into()]),
    );
    if let Some(p) = &pys {
        table.row("Python multiprocessing.Queue (int)", p, Some(("ours", &ours)));
    }
    let rate = 1e9 / ours.median / 1e6;
    println!(
        "target: ≥ 5 M items/s: {rate:.2} M items/s — {}",
        if rate >= 5.0 { "met" } else { "MISSED" }
    );
    if let Some(p) = &pys {
        table.target_throughput("≥ 20× Python's items/s", &ours, p, 20.0);
    }
    headline(
        "Queue 8-byte items, 1 → 1 (per item)",
        &ours,
        Some(("SPSC shm ring", &raw)),
        pys.as_ref(),
    );
}

fn throughput_1k() {
    const SIZE: usize = 1024;
    let n = 100_000;
    let rounds = rounds(15);
    let table =
        Table::new("Queue throughput, 1 KiB items, 1 producer child → parent", Some(SIZE as u64));

    let q: Queue<Arc<Vec<u8>>> = Queue::new().unwrap();
    let qctl = Arc::new(Control::new());
    let (cq, ctl) = (q.clone(), Arc::clone(&qctl));
    let qp = child(move || {
        let item = Arc::new(vec![0x5au8; SIZE]);
        let mut seen = 0;
        while ctl.next(&mut seen) {
            for _ in 0..n {
                cq.put(Arc::clone(&item)).unwrap();
            }
        }
    });

    let ring = Arc::new(RawRing::new(1 << 20, SIZE));
    let rctl = Arc::new(Control::new());
    let (cring, ctl) = (Arc::clone(&ring), Arc::clone(&rctl));
    let rp = child(move || {
        let item = vec![0x5au8; SIZE];
        let mut seen = 0;
        while ctl.next(&mut seen) {
            for _ in 0..n {
                cring.push(&item);
            }
        }
    });

    let (prd, pwr) = raw_pipe();
    let pctl = Arc::new(Control::new());
    let ctl = Arc::clone(&pctl);
    let pp = child(move || {
        unsafe { libc::close(prd) };
        let item = vec![0x5au8; SIZE];
        let mut seen = 0;
        while ctl.next(&mut seen) {
            for _ in 0..n {
                write_all(pwr, &item);
            }
        }
    });
    unsafe { libc::close(pwr) };

    let mut buf = vec![0u8; SIZE];
    let mut pbuf = vec![0u8; SIZE];
    let stats = compare(
        rounds,
        1,
        &mut [
            Case::new("multiproc Queue<Arc<Vec<u8>>>", || {
                qctl.request();
                for _ in 0..n {
                    std::hint::black_box(q.get().unwrap());
                }
            }),
            Case::new("raw SPSC ring (1 KiB slots)", || {
                rctl.request();
                for _ in 0..n {
                    ring.pop(&mut buf);
                }
            }),
            Case::new("raw pipe", || {
                pctl.request();
                for _ in 0..n {
                    read_full(prd, &mut pbuf);
                }
            }),
        ],
    );
    qctl.stop();
    rctl.stop();
    pctl.stop();
    qp.join().unwrap();
    rp.join().unwrap();
    pp.join().unwrap();
    unsafe { libc::close(prd) };

    let ours = per_item(&stats[0], n);
    let raw = per_item(&stats[1], n);
    let pipe = per_item(&stats[2], n);
    table.row("multiproc Queue (1 KiB Vec<u8>)", &ours, None);
    table.row("raw SPSC shared-memory ring", &raw, Some(("ours", &ours)));
    table.row("raw pipe", &pipe, Some(("ours", &ours)));
    let pys = python(
        "Queue 1 KiB",
        &py(PY_THROUGHPUT, &["20000".into(), rounds.min(7).to_string(), SIZE.to_string()]),
    );
    if let Some(p) = &pys {
        table.row("Python multiprocessing.Queue (bytes)", p, Some(("ours", &ours)));
    }
    let gbs = SIZE as f64 / ours.median;
    println!("target: ≥ 2 GB/s: {gbs:.2} GB/s — {}", if gbs >= 2.0 { "met" } else { "MISSED" });
    if let Some(p) = &pys {
        println!("(vs Python: {:.1}× the throughput)", p.median / ours.median);
    }
    headline(
        "Queue 1 KiB items, 1 → 1 (per item)",
        &ours,
        Some(("SPSC shm ring", &raw)),
        pys.as_ref(),
    );
}

// ---------------------------------------------------------------------------------------------
// Round trip
// ---------------------------------------------------------------------------------------------

const PY_ROUND_TRIP: &str = r#"
import multiprocessing as mp, time, sys
N, ROUNDS = int(sys.argv[1]), int(sys.argv[2])
def echo(a, b):
    while True:
        v = a.get()
        if v is None:
            break
        b.put(v)
mp.set_start_method('fork')
a, b = mp.Queue(), mp.Queue()
p = mp.Process(target=echo, args=(a, b))
p.start()
samples = []
for r in range(ROUNDS + 1):
    t = time.perf_counter()
    for i in range(N):
        a.put(i)
        b.get()
    dt = time.perf_counter() - t
    if r > 0:
        samples.append(dt * 1e9 / N)
a.put(None)
p.join()
report(samples)
"#;

fn round_trip() {
    let iters = 20_000;
    let rounds = rounds(15);
    let table = Table::new("Round trip: put → echo child get + put → get (8-byte items)", None);
    // Both cases with the same placement: the children on the last allowed CPU, this process on
    // the first. Unpinned, each case flips between "both on one CPU" (a futex sleep per hop)
    // and "on two CPUs" (a cache-line transfer per hop), and the medians compare placements.
    let all = affinity::sched_getaffinity(None).unwrap();
    let (here, there) = (all.first().unwrap(), all.last().unwrap());
    let only = |cpu: usize| affinity::sched_setaffinity(None, &CpuSet::from_cpus(&[cpu]).unwrap());
    only(there).unwrap();

    let (q1, q2): (Queue<u64>, Queue<u64>) = (Queue::new().unwrap(), Queue::new().unwrap());
    let (c1, c2) = (q1.clone(), q2.clone());
    let qp = child(move || {
        loop {
            let v = c1.get().unwrap();
            if v == u64::MAX {
                break;
            }
            c2.put(v).unwrap();
        }
    });

    // Raw ping-pong: two words, spin then futex.
    let words = Arc::new(Shm::new(4096));
    let cw = Arc::clone(&words);
    let rp = child(move || {
        let ping: &AtomicU32 = cw.at(0);
        let ping_sig: &Signal32 = cw.at(128);
        let pong: &AtomicU32 = cw.at(256);
        let pong_sig: &Signal32 = cw.at(384);
        let mut seen = 0;
        loop {
            ping_sig.wait_until(|| ping.load(Ordering::Acquire) != seen);
            seen = ping.load(Ordering::Acquire);
            if seen == STOP {
                break;
            }
            pong.store(seen, Ordering::Release);
            pong_sig.notify();
        }
    });
    // The raw SPSC ring both ways: a ring without locks, validation or encoding, what an
    // ideal lock-free design would cost on top of the ping-pong (its extra cache lines).
    let (r1, r2) = (Arc::new(RawRing::new(8 << 10, 8)), Arc::new(RawRing::new(8 << 10, 8)));
    let (cr1, cr2) = (Arc::clone(&r1), Arc::clone(&r2));
    let sp = child(move || {
        let mut buf = [0u8; 8];
        loop {
            cr1.pop(&mut buf);
            if u64::from_le_bytes(buf) == u64::MAX {
                break;
            }
            cr2.push(&buf);
        }
    });
    only(here).unwrap();
    println!("(this process on CPU {here}, the echo children on CPU {there})");
    let mut s = 0u64;
    let ping: &AtomicU32 = words.at(0);
    let ping_sig: &Signal32 = words.at(128);
    let pong: &AtomicU32 = words.at(256);
    let pong_sig: &Signal32 = words.at(384);
    let mut i = 0u64;
    let mut k = 0u32;
    // What one hop costs besides moving cache lines: a put and a get with nobody else involved,
    // and the robust mutex each of them takes (`Lock` is the same pthread mutex).
    let local: Queue<u64> = Queue::new().unwrap();
    let lock = multiproc::Lock::new().unwrap();
    let mut j = 0u64;
    let stats = compare(
        rounds,
        iters,
        &mut [
            Case::new("multiproc Queue", || {
                i += 1;
                q1.put(i).unwrap();
                assert_eq!(q2.get().unwrap(), i);
            }),
            Case::new("put + get in one process", || {
                j += 1;
                local.put(j).unwrap();
                assert_eq!(local.get().unwrap(), j);
            }),
            Case::new("robust mutex lock + unlock", || {
                drop(lock.lock().unwrap());
            }),
            Case::new("raw spin-then-futex ping-pong", || {
                k = k.wrapping_add(1) % (STOP - 1);
                let v = k + 1;
                ping.store(v, Ordering::Release);
                ping_sig.notify();
                pong_sig.wait_until(|| pong.load(Ordering::Acquire) == v);
            }),
            Case::new("raw SPSC ring both ways", || {
                s += 1;
                r1.push(&s.to_le_bytes());
                let mut buf = [0u8; 8];
                r2.pop(&mut buf);
                assert_eq!(u64::from_le_bytes(buf), s);
            }),
        ],
    );
    r1.push(&u64::MAX.to_le_bytes());
    sp.join().unwrap();
    q1.put(u64::MAX).unwrap();
    ping.store(STOP, Ordering::Release);
    ping_sig.notify();
    qp.join().unwrap();
    rp.join().unwrap();
    affinity::sched_setaffinity(None, &all).unwrap();

    let (ours, work, mutex, raw, ring) = (&stats[0], &stats[1], &stats[2], &stats[3], &stats[4]);
    table.row("multiproc Queue", ours, None);
    table.row("raw spin-then-futex ping-pong", raw, Some(("ours", ours)));
    table.row("raw SPSC ring both ways (no locks)", ring, Some(("ours", ours)));
    let pys =
        python("Queue round trip", &py(PY_ROUND_TRIP, &["5000".into(), rounds.min(7).to_string()]));
    if let Some(p) = &pys {
        table.row("Python multiprocessing.Queue", p, Some(("ours", ours)));
    }
    table.row("put + get in one process (W)", work, None);
    table.row("robust mutex lock + unlock (M)", mutex, None);
    // A round trip is two hops, each a put and a get. Within 2× the raw round trip, the work
    // of both hops has to fit in one raw round trip, less what of it overlaps the cache-line
    // transfers (much of it when the CPUs are far apart, little when they are close).
    println!(
        "budget: ≤ 2× raw leaves {:.0} ns (one raw round trip) for two puts and two gets: \
         2W = {:.0} ns when nothing overlaps, of which 4M = {:.0} ns in robust mutexes",
        raw.median,
        2.0 * work.median,
        4.0 * mutex.median,
    );
    println!(
        "the lock-free SPSC ring itself is {:.2}× the raw ping-pong in this run",
        ring.median / raw.median
    );
    table.target("round trip vs raw ping-pong", ours, raw, 2.0);
    headline(
        "Queue put → get round trip",
        ours,
        Some(("spin-then-futex ping-pong", raw)),
        pys.as_ref(),
    );
}

// ---------------------------------------------------------------------------------------------
// 64 MiB items
// ---------------------------------------------------------------------------------------------

const PY_BIG: &str = r#"
import multiprocessing as mp, time, sys
SIZE, ROUNDS = int(sys.argv[1]), int(sys.argv[2])
def producer(q, req):
    item = bytes(SIZE)
    while True:
        n = req.get()
        if n == 0:
            break
        q.put(item)
mp.set_start_method('fork')
q, req = mp.Queue(), mp.Queue()
p = mp.Process(target=producer, args=(q, req))
p.start()
samples = []
for r in range(ROUNDS + 1):
    t = time.perf_counter()
    req.put(1)
    q.get()
    dt = time.perf_counter() - t
    if r > 0:
        samples.append(dt * 1e9)
req.put(0)
p.join()
report(samples)
"#;

fn big_items() {
    const SIZE: usize = 64 << 20;
    let rounds = rounds(10);
    let table = Table::new("64 MiB items, producer child → parent", Some(SIZE as u64));
    // The producers on the last CPU, this process on the first (as in the round trip): left to
    // the scheduler, a woken producer sometimes lands on the consumer's CPU and the two copies
    // of a streamed item, meant to overlap, take turns.
    let all = affinity::sched_getaffinity(None).unwrap();
    let (here, there) = (all.first().unwrap(), all.last().unwrap());
    let only = |cpu: usize| affinity::sched_setaffinity(None, &CpuSet::from_cpus(&[cpu]).unwrap());
    only(there).unwrap();

    let spawn_producer = |q: Queue<Arc<Vec<u8>>>, ctl: Arc<Control>| {
        child(move || {
            let item = Arc::new(vec![0x5au8; SIZE]);
            let mut seen = 0;
            while ctl.next(&mut seen) {
                q.put(Arc::clone(&item)).unwrap();
            }
        })
    };
    let q_small: Queue<Arc<Vec<u8>>> = Queue::new().unwrap();
    let ctl_small = Arc::new(Control::new());
    let p_small = spawn_producer(q_small.clone(), Arc::clone(&ctl_small));
    let q_big: Queue<Arc<Vec<u8>>> = Queue::builder().capacity_bytes(128 << 20).build().unwrap();
    let ctl_big = Arc::new(Control::new());
    let p_big = spawn_producer(q_big.clone(), Arc::clone(&ctl_big));
    // put_bytes / get_bytes_into: one copy in, one copy out, into a reused buffer.
    let spawn_bytes_producer = |q: Queue<Vec<u8>>, ctl: Arc<Control>| {
        child(move || {
            let item = vec![0x5au8; SIZE];
            let mut seen = 0;
            while ctl.next(&mut seen) {
                q.put_bytes(&item).unwrap();
            }
        })
    };
    let qb_small: Queue<Vec<u8>> = Queue::new().unwrap();
    let ctlb_small = Arc::new(Control::new());
    let pb_small = spawn_bytes_producer(qb_small.clone(), Arc::clone(&ctlb_small));
    let qb_big: Queue<Vec<u8>> = Queue::builder().capacity_bytes(128 << 20).build().unwrap();
    let ctlb_big = Arc::new(Control::new());
    let pb_big = spawn_bytes_producer(qb_big.clone(), Arc::clone(&ctlb_big));
    let mut bbuf = Vec::new();
    let mut bbuf2 = Vec::new();

    let (prd, pwr) = raw_pipe();
    let pctl = Arc::new(Control::new());
    let ctl = Arc::clone(&pctl);
    let pp = child(move || {
        unsafe { libc::close(prd) };
        let item = vec![0x5au8; SIZE];
        let mut seen = 0;
        while ctl.next(&mut seen) {
            write_all(pwr, &item);
        }
    });
    unsafe { libc::close(pwr) };

    let src = vec![0x5au8; SIZE];
    let dst = Shm::new(SIZE);
    let mut pbuf = vec![0u8; SIZE];
    only(here).unwrap();
    let stats = compare(
        rounds,
        1,
        &mut [
            Case::new("memcpy into shared memory", || unsafe {
                std::ptr::copy_nonoverlapping(src.as_ptr(), dst.ptr, SIZE);
                std::hint::black_box(dst.ptr);
            }),
            Case::new("Queue, 1 MiB ring (streams)", || {
                ctl_small.request();
                let v = q_small.get().unwrap();
                assert_eq!(v.len(), SIZE);
            }),
            Case::new("Queue, 128 MiB ring", || {
                ctl_big.request();
                let v = q_big.get().unwrap();
                assert_eq!(v.len(), SIZE);
            }),
            Case::new("raw pipe", || {
                pctl.request();
                read_full(prd, &mut pbuf);
            }),
            Case::new("put_bytes/get_bytes_into, 1 MiB ring", || {
                ctlb_small.request();
                assert_eq!(qb_small.get_bytes_into(&mut bbuf).unwrap(), SIZE);
            }),
            Case::new("put_bytes/get_bytes_into, 128 MiB ring", || {
                ctlb_big.request();
                assert_eq!(qb_big.get_bytes_into(&mut bbuf2).unwrap(), SIZE);
            }),
        ],
    );
    ctl_small.stop();
    ctl_big.stop();
    ctlb_small.stop();
    ctlb_big.stop();
    pctl.stop();
    p_small.join().unwrap();
    p_big.join().unwrap();
    pb_small.join().unwrap();
    pb_big.join().unwrap();
    pp.join().unwrap();
    affinity::sched_setaffinity(None, &all).unwrap();
    unsafe { libc::close(prd) };

    table.row("memcpy into shared memory", &stats[0], None);
    table.row("Queue put/get, 1 MiB ring (new Vec each)", &stats[1], Some(("memcpy", &stats[0])));
    table.row("Queue put/get, 128 MiB ring (new Vec each)", &stats[2], Some(("memcpy", &stats[0])));
    table.row("Queue put_bytes/get_bytes_into, 1 MiB ring", &stats[4], Some(("memcpy", &stats[0])));
    table.row("Queue put_bytes/get_bytes_into, 128 MiB", &stats[5], Some(("memcpy", &stats[0])));
    table.row("raw pipe (into a reused buffer)", &stats[3], Some(("memcpy", &stats[0])));
    let pys = python("Queue 64 MiB", &py(PY_BIG, &[SIZE.to_string(), rounds.min(5).to_string()]));
    if let Some(p) = &pys {
        table.row("Python multiprocessing.Queue (bytes)", p, Some(("memcpy", &stats[0])));
    }
    table.target_throughput("64 MiB put/get, 1 MiB ring vs memcpy", &stats[1], &stats[0], 0.5);
    table.target_throughput("64 MiB put/get, 128 MiB ring vs memcpy", &stats[2], &stats[0], 0.5);
    table.target_throughput("64 MiB bytes API, 1 MiB ring vs memcpy", &stats[4], &stats[0], 0.5);
    table.target_throughput("64 MiB bytes API, 128 MiB ring vs memcpy", &stats[5], &stats[0], 0.5);
    headline(
        "Queue 64 MiB item (put/get, 1 MiB ring)",
        &stats[1],
        Some(("memcpy", &stats[0])),
        pys.as_ref(),
    );
    headline(
        "Queue 64 MiB item (put_bytes/get_bytes_into)",
        &stats[4],
        Some(("memcpy", &stats[0])),
        pys.as_ref(),
    );
    // What a fresh 64 MiB Vec costs by itself (allocation, page faults, free): the floor for
    // any `get` that returns a new Vec.
    // And with huge pages, as a typed `get` reserves it: the floor for the typed rows above.
    let fresh = compare(
        rounds,
        1,
        &mut [
            Case::new("to_vec", || {
                std::hint::black_box(src.to_vec());
            }),
            Case::new("huge pages", || {
                let mut v = Vec::<u8>::with_capacity(SIZE);
                multiproc::sys::mem::mmap::advise_huge_pages(v.spare_capacity_mut());
                v.extend_from_slice(&src);
                std::hint::black_box(v);
            }),
        ],
    );
    table.row("(a fresh 64 MiB Vec: to_vec + drop)", &fresh[0], Some(("memcpy", &stats[0])));
    table.row("(the same, advised MADV_HUGEPAGE first)", &fresh[1], Some(("memcpy", &stats[0])));
}

/// `cargo bench --bench queue -- profile_big [ring_bytes] [bytes]`: only our 64 MiB case, in a
/// loop (for `perf record`); `bytes` uses `put_bytes`/`get_bytes_into`.
fn profile_big(ring: usize, bytes: bool) {
    const SIZE: usize = 64 << 20;
    let q: Queue<Vec<u8>> = Queue::builder().capacity_bytes(ring).build().unwrap();
    let ctl = Arc::new(Control::new());
    let (cq, cctl) = (q.clone(), Arc::clone(&ctl));
    let p = child(move || {
        let item = vec![0x5au8; SIZE];
        let mut seen = 0;
        while cctl.next(&mut seen) {
            if bytes {
                cq.put_bytes(&item).unwrap();
            } else {
                cq.put(item.clone()).unwrap();
            }
        }
    });
    let mut buf = Vec::new();
    let mut one = || {
        ctl.request();
        if bytes {
            q.get_bytes_into(&mut buf).unwrap();
        } else {
            std::hint::black_box(q.get().unwrap());
        }
    };
    for _ in 0..3 {
        one();
    }
    let start = std::time::Instant::now();
    for _ in 0..20 {
        one();
    }
    println!(
        "64 MiB through a {ring}-byte ring (bytes API: {bytes}): {:?} per item",
        start.elapsed() / 20
    );
    ctl.stop();
    p.join().unwrap();
}

/// Runs every case of this file and prints its tables.
pub fn run() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if args.first().map(String::as_str) == Some("local") {
        // put + get in one process: the software cost without cross-core traffic.
        let q: Queue<u64> = Queue::new().unwrap();
        for _ in 0..3 {
            let start = std::time::Instant::now();
            for i in 0..1_000_000u64 {
                q.put(i).unwrap();
                std::hint::black_box(q.get().unwrap());
            }
            println!("local put+get: {:?}", start.elapsed() / 1_000_000);
        }
        return;
    }
    if args.first().map(String::as_str) == Some("profile_big") {
        profile_big(
            args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1 << 20),
            args.get(2).is_some_and(|a| a == "bytes"),
        );
        return;
    }
    let only = args.first().cloned();
    let run = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    println!("# multiproc Queue benchmarks ({} CPUs)", multiproc::cpu_count());
    if run("throughput_8") {
        throughput_8();
    }
    if run("throughput_1k") {
        throughput_1k();
    }
    if run("round_trip") {
        round_trip();
    }
    if run("big") {
        big_items();
    }
}
