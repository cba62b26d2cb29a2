//! `Pool` and `ProcessPoolExecutor` against Python's `multiprocessing.Pool` /
//! `ProcessPoolExecutor` (fork start method) and a raw fork-and-pipe pool written here, in the
//! same run.
//!
//! - Pool creation + `close` + `join` (2 workers).
//! - Pool creation by each start method (`Context::new(method).pool(2)`, one `apply` so both
//!   ends are up, `terminate`), against a raw fork+pipe pool doing the same, one raw `fork` +
//!   `execve` of this binary (the floor under `spawn`, whose pool server is one exec), and
//!   Python's `get_context(method).Pool(2)` + `apply` + `terminate`.
//! - `Pool::map` over 100 000 trivial tasks (`x * x`) with 2 workers, at Python's default chunk
//!   size, chunk size 1 and chunk size 1000. Target (issue 6): ≥ 10× Python at every chunk size.
//! - Executor `submit` → `result` round trip, one call at a time.
//! - The tutorial's sum of 1..=100 000 000 split over 1, 2 and 8 workers (each worker sums its
//!   range with a loop the compiler cannot turn into a formula), plus the plain loop in this
//!   process. Target: 2 workers ≥ 1.8× faster than 1 (the machine has 2 CPUs).
//!
//! Run with `cargo bench --bench pool` (`MULTIPROC_BENCH_QUICK=1` for a rough, fast run).
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

use std::collections::VecDeque;
use std::hint::black_box;

use crate::common::{
    Case, ExecSelf, PY_REPORT, Stats, Table, compare, headline, python, python_file, quick, rounds,
};
use multiproc::{Context, Pool, ProcessPoolExecutor, StartMethod};

const N: u64 = 100_000;
const SUM_TO: u64 = 100_000_000;

fn square(x: u64) -> u64 {
    x * x
}

/// Sums `lo..=hi` one number at a time (`black_box` keeps LLVM from using the closed form).
fn sum_range((lo, hi): (u64, u64)) -> u64 {
    let mut s = 0u64;
    let mut i = lo;
    while i <= hi {
        s = s.wrapping_add(black_box(i));
        i += 1;
    }
    s
}

/// `1..=SUM_TO` cut into `n` ranges.
fn ranges(n: u64) -> Vec<(u64, u64)> {
    let step = SUM_TO / n;
    (0..n).map(|k| (k * step + 1, if k == n - 1 { SUM_TO } else { (k + 1) * step })).collect()
}

// ---------------------------------------------------------------------------------------------
// A raw fork-and-pipe pool: the floor for "ship chunks of u64 to two processes and back".

struct RawWorker {
    pid: i32,
    to: i32,
    from: i32,
}

struct RawPool {
    workers: Vec<RawWorker>,
}

fn read_exact(fd: i32, buf: &mut [u8]) -> bool {
    let mut got = 0;
    while got < buf.len() {
        let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        got += n as usize;
    }
    true
}

fn write_all(fd: i32, buf: &[u8]) {
    let mut done = 0;
    while done < buf.len() {
        let n = unsafe { libc::write(fd, buf[done..].as_ptr().cast(), buf.len() - done) };
        assert!(n > 0, "raw pool write: {}", std::io::Error::last_os_error());
        done += n as usize;
    }
}

impl RawPool {
    fn new(n: usize) -> RawPool {
        let mut workers: Vec<RawWorker> = Vec::with_capacity(n);
        for _ in 0..n {
            workers.push({
                let mut to = [0; 2];
                let mut from = [0; 2];
                unsafe {
                    assert_eq!(libc::pipe2(to.as_mut_ptr(), libc::O_CLOEXEC), 0);
                    assert_eq!(libc::pipe2(from.as_mut_ptr(), libc::O_CLOEXEC), 0);
                }
                let pid = unsafe { libc::fork() };
                assert!(pid >= 0);
                if pid == 0 {
                    unsafe {
                        libc::close(to[1]);
                        libc::close(from[0]);
                        // The earlier workers' parent ends too, or they never see end of file.
                        for w in &workers {
                            libc::close(w.to);
                            libc::close(w.from);
                        }
                    }
                    let mut buf: Vec<u8> = Vec::new();
                    loop {
                        let mut hdr = [0u8; 8];
                        if !read_exact(to[0], &mut hdr) {
                            unsafe { libc::_exit(0) };
                        }
                        let count = u64::from_le_bytes(hdr) as usize;
                        buf.resize(count * 8, 0);
                        if !read_exact(to[0], &mut buf) {
                            unsafe { libc::_exit(0) };
                        }
                        for c in buf.chunks_exact_mut(8) {
                            let x = u64::from_le_bytes(c.try_into().unwrap());
                            c.copy_from_slice(&square(x).to_le_bytes());
                        }
                        write_all(from[1], &buf);
                    }
                }
                unsafe {
                    libc::close(to[0]);
                    libc::close(from[1]);
                }
                RawWorker { pid, to: to[1], from: from[0] }
            });
        }
        RawPool { workers }
    }

    fn map(&self, items: &[u64], cs: usize) -> Vec<u64> {
        let chunks: Vec<&[u64]> = items.chunks(cs).collect();
        let mut out = vec![0u64; items.len()];
        // Keep what is in flight per worker within a pipe's capacity both ways.
        let window = (32 * 1024 / (8 * cs + 8)).clamp(1, 64);
        let mut pending: Vec<VecDeque<usize>> = vec![VecDeque::new(); self.workers.len()];
        let mut next = 0;
        let mut msg = Vec::new();
        let mut res = Vec::new();
        loop {
            for (w, q) in self.workers.iter().zip(pending.iter_mut()) {
                while q.len() < window && next < chunks.len() {
                    msg.clear();
                    msg.extend_from_slice(&(chunks[next].len() as u64).to_le_bytes());
                    for x in chunks[next] {
                        msg.extend_from_slice(&x.to_le_bytes());
                    }
                    write_all(w.to, &msg);
                    q.push_back(next);
                    next += 1;
                }
            }
            if pending.iter().all(VecDeque::is_empty) {
                return out;
            }
            let mut pfds: Vec<libc::pollfd> = self
                .workers
                .iter()
                .zip(&pending)
                .filter(|(_, q)| !q.is_empty())
                .map(|(w, _)| libc::pollfd { fd: w.from, events: libc::POLLIN, revents: 0 })
                .collect();
            unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, -1) };
            for p in pfds.iter().filter(|p| p.revents != 0) {
                let k = self.workers.iter().position(|w| w.from == p.fd).unwrap();
                let c = pending[k].pop_front().unwrap();
                let len = chunks[c].len();
                res.resize(len * 8, 0);
                assert!(read_exact(p.fd, &mut res));
                let base = c * cs;
                for (i, b) in res.chunks_exact(8).enumerate() {
                    out[base + i] = u64::from_le_bytes(b.try_into().unwrap());
                }
            }
        }
    }
}

impl Drop for RawPool {
    fn drop(&mut self) {
        for w in &self.workers {
            unsafe {
                libc::close(w.to);
                libc::close(w.from);
                let mut st = 0;
                libc::waitpid(w.pid, &mut st, 0);
            }
        }
    }
}

/// The sum over `n` freshly forked children, each summing its range and writing the result to
/// a pipe: the floor for the tutorial's program (which starts its processes for each run).
fn raw_fork_sum(n: u64) -> u64 {
    let mut kids = Vec::new();
    for (lo, hi) in ranges(n) {
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            write_all(fds[1], &sum_range((lo, hi)).to_le_bytes());
            unsafe { libc::_exit(0) };
        }
        unsafe { libc::close(fds[1]) };
        kids.push((pid, fds[0]));
    }
    let mut total = 0u64;
    for (pid, fd) in kids {
        let mut b = [0u8; 8];
        assert!(read_exact(fd, &mut b));
        total = total.wrapping_add(u64::from_le_bytes(b));
        unsafe {
            libc::close(fd);
            let mut st = 0;
            libc::waitpid(pid, &mut st, 0);
        }
    }
    total
}

/// A forked child that echoes 8 bytes over a socketpair: the floor for one round trip.
struct RawEcho {
    pid: i32,
    fd: i32,
}

impl RawEcho {
    fn new() -> RawEcho {
        let mut sv = [0; 2];
        assert_eq!(
            unsafe {
                libc::socketpair(
                    libc::AF_UNIX,
                    libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                    0,
                    sv.as_mut_ptr(),
                )
            },
            0
        );
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            unsafe { libc::close(sv[0]) };
            let mut b = [0u8; 8];
            while read_exact(sv[1], &mut b) {
                write_all(sv[1], &b);
            }
            unsafe { libc::_exit(0) };
        }
        unsafe { libc::close(sv[1]) };
        RawEcho { pid, fd: sv[0] }
    }

    fn round_trip(&self) {
        let mut b = [7u8; 8];
        write_all(self.fd, &b);
        assert!(read_exact(self.fd, &mut b));
    }
}

impl Drop for RawEcho {
    fn drop(&mut self) {
        unsafe {
            libc::close(self.fd);
            let mut st = 0;
            libc::waitpid(self.pid, &mut st, 0);
        }
    }
}

// ---------------------------------------------------------------------------------------------

fn py_map(chunksize: Option<usize>, samples: usize) -> Option<Stats> {
    let cs = chunksize.map_or("None".to_string(), |c| c.to_string());
    let script = format!(
        r#"{PY_REPORT}
import multiprocessing as mp, time
def sq(x): return x * x
mp.set_start_method('fork')
with mp.Pool(2) as p:
    p.map(sq, range(100))
    s = []
    for _ in range({samples}):
        t = time.perf_counter_ns(); p.map(sq, range({N}), chunksize={cs}); s.append(time.perf_counter_ns() - t)
report(s)
"#
    );
    python(&format!("Pool.map chunksize={cs}"), &script)
}

/// `Pool(2)` by `method`, one `apply` (so the workers are really up), `terminate`.
fn pool_by(method: StartMethod) {
    let p = Context::new(method).pool(2).unwrap();
    assert_eq!(p.apply(square, 3).unwrap(), 9);
    p.terminate().unwrap();
}

/// The raw floor of the same: fork two pipe workers, one task through one of them, close, reap.
fn raw_pool_one_task() {
    let raw = RawPool::new(2);
    assert_eq!(raw.map(&[3], 1), [9]);
}

/// Python's `get_context(method).Pool(2)` + one `apply` + `terminate` (which joins the workers),
/// from a file (spawn and forkserver re-import the main module to find `sq`).
fn py_pool_by(method: &str) -> Option<Stats> {
    let (warm, samples) = match (method, quick()) {
        ("fork", false) => (3, 25),
        ("forkserver", false) => (3, 15),
        (_, false) => (1, 8),
        (_, true) => (1, 3),
    };
    let script = format!(
        r#"{PY_REPORT}
import multiprocessing as mp, time
def sq(x): return x * x
def once(ctx):
    p = ctx.Pool(2)
    assert p.apply(sq, (3,)) == 9
    p.terminate()
if __name__ == "__main__":
    ctx = mp.get_context("{method}")
    for _ in range({warm}): once(ctx)
    s = []
    for _ in range({samples}):
        t = time.perf_counter_ns(); once(ctx); s.append(time.perf_counter_ns() - t)
    report(s)
"#
    );
    python_file(&format!("{method} Pool creation"), &script)
}

/// Pool creation by each start method, its floors and Python's three methods.
fn create_by_start_method() {
    let t = Table::new("Pool(2) + one apply + terminate, by start method", None);
    let exec_self = ExecSelf::new();
    for m in [StartMethod::Fork, StartMethod::Forkserver, StartMethod::Spawn] {
        pool_by(m); // the fork server and the page cache warm
    }
    let mut cases = [
        Case::new("raw fork+pipe pool(2) + one task", raw_pool_one_task),
        Case::new("raw fork + execve(this binary) + waitpid", || exec_self.run()),
        Case::new("multiproc fork: ctx.pool(2)+apply+terminate", || pool_by(StartMethod::Fork)),
        Case::new("multiproc forkserver: same", || pool_by(StartMethod::Forkserver)),
        Case::new("multiproc spawn: same", || pool_by(StartMethod::Spawn)),
    ];
    let s = compare(rounds(20), 4, &mut cases);
    let py: Vec<Option<Stats>> =
        ["fork", "forkserver", "spawn"].iter().map(|m| py_pool_by(m)).collect();
    t.row(cases[0].name, &s[0], None);
    t.row(cases[1].name, &s[1], None);
    t.row(cases[2].name, &s[2], Some(("raw pool", &s[0])));
    t.row(cases[3].name, &s[3], Some(("multiproc fork", &s[2])));
    t.row(cases[4].name, &s[4], Some(("raw fork+execve", &s[1])));
    for (name, (py, ours)) in
        ["fork", "forkserver", "spawn"].iter().zip(py.iter().zip([&s[2], &s[3], &s[4]]))
    {
        if let Some(py) = py {
            t.row(&format!("Python get_context({name:?}).Pool(2)"), py, Some(("multiproc", ours)));
        }
    }
    if let Some(py) = &py[2] {
        t.target_throughput("spawn Pool(2) creation vs Python spawn", &s[4], py, 10.0);
    }
    let rows = [
        ("Pool(2) + apply + terminate, fork", &s[2], ("fork+pipe pool", &s[0]), &py[0]),
        ("Pool(2) + apply + terminate, forkserver", &s[3], ("fork+pipe pool", &s[0]), &py[1]),
        ("Pool(2) + apply + terminate, spawn", &s[4], ("fork+execve self/waitpid", &s[1]), &py[2]),
    ];
    for (what, ours, raw, py) in rows {
        headline(what, ours, Some(raw), py.as_ref());
    }
}

/// Whether the section `name` should run (`MULTIPROC_BENCH_ONLY=create,map,rt,sum`; all by
/// default).
fn section(name: &str) -> bool {
    std::env::var("MULTIPROC_BENCH_ONLY")
        .map_or(true, |only| only.split(',').any(|s| s.trim() == name))
}

/// Runs every case of this file and prints its tables.
pub fn run() {
    println!("# multiproc Pool / ProcessPoolExecutor vs Python 3 (fork) and a raw fork+pipe pool");
    println!("# medians over interleaved rounds; 2 CPUs shared with other load: expect noise");

    // --- creation first, while the process is small (fork cost grows with its memory) -------
    if section("create") {
        let t = Table::new("Pool(2) creation + close + join", None);
        let mut create = [Case::new("multiproc Pool::new(2) + close + join", || {
            let p = Pool::new(2).unwrap();
            p.close().unwrap();
            p.join().unwrap();
        })];
        let ours = compare(rounds(20), 5, &mut create)[0];
        let py = python(
            "Pool creation",
            &format!(
                r#"{PY_REPORT}
import multiprocessing as mp, time
mp.set_start_method('fork')
s = []
for _ in range(25):
    t = time.perf_counter_ns(); p = mp.Pool(2); p.close(); p.join(); s.append(time.perf_counter_ns() - t)
report(s[3:])
"#
            ),
        );
        t.row("multiproc Pool::new(2) + close + join", &ours, py.as_ref().map(|p| ("python", p)));
        if let Some(py) = &py {
            t.row("python Pool(2) + close() + join()", py, None);
        }
        headline("Pool(2) creation + close + join", &ours, None, py.as_ref());
        create_by_start_method();
    }

    // --- Pool.map over 100 000 trivial tasks -----------------------------------------------
    if section("map") {
        let items: Vec<u64> = (0..N).collect();
        let pool = Pool::new(2).unwrap();
        let raw = RawPool::new(2);
        assert_eq!(pool.map(square, items.clone()).unwrap(), raw.map(&items, 12_500));
        let configs: [(&str, Option<usize>, usize); 3] =
            [("default (12 500)", None, 9), ("1", Some(1), 5), ("1000", Some(1000), 9)];
        for (label, cs, r) in configs {
            let raw_cs = cs.unwrap_or(12_500);
            let t = Table::new(&format!("map 100 000 × x*x, 2 workers, chunksize {label}"), None);
            let mut cases = [
                Case::new("multiproc Pool::map", || {
                    let v = match cs {
                        None => pool.map(square, items.iter().copied()).unwrap(),
                        Some(c) => pool.map_chunksize(square, items.iter().copied(), c).unwrap(),
                    };
                    black_box(v);
                }),
                Case::new("raw fork+pipe pool", || {
                    black_box(raw.map(&items, raw_cs));
                }),
            ];
            let s = compare(rounds(r), 1, &mut cases);
            let py = py_map(cs, if cs == Some(1) { rounds(5).min(5) } else { rounds(9) });
            t.row("multiproc Pool::map", &s[0], Some(("raw", &s[1])));
            t.row("raw fork+pipe pool", &s[1], None);
            if let Some(py) = &py {
                t.row("python Pool.map", py, Some(("multiproc", &s[0])));
                t.target_throughput(&format!("map chunksize {label} vs Python"), &s[0], py, 10.0);
            }
            headline(
                &format!("Pool.map 100 000 × x*x, chunksize {label}"),
                &s[0],
                Some(("fork+pipe pool", &s[1])),
                py.as_ref(),
            );
        }
        drop(pool);
        drop(raw);
    }

    // --- executor round trip -------------------------------------------------------------
    if section("rt") {
        let t = Table::new("ProcessPoolExecutor(2): submit -> result, one at a time", None);
        let ex = ProcessPoolExecutor::new(2).unwrap();
        let echo = RawEcho::new();
        let mut i = 0u64;
        let mut rt = [
            Case::new("multiproc submit().result()", || {
                i += 1;
                black_box(ex.submit(square, i).unwrap().result().unwrap());
            }),
            Case::new("raw socketpair ping-pong (floor)", || echo.round_trip()),
        ];
        let s = compare(rounds(15), 500, &mut rt);
        drop(rt);
        let ours = s[0];
        drop(echo);
        let py = python(
            "executor round trip",
            &format!(
                r#"{PY_REPORT}
import multiprocessing as mp, time
from concurrent.futures import ProcessPoolExecutor
def sq(x): return x * x
with ProcessPoolExecutor(2, mp_context=mp.get_context('fork')) as ex:
    for i in range(200): ex.submit(sq, i).result()
    s = []
    for _ in range(8):
        t = time.perf_counter_ns()
        for i in range(500): ex.submit(sq, i).result()
        s.append((time.perf_counter_ns() - t) / 500)
report(s)
"#
            ),
        );
        t.row("multiproc submit().result()", &ours, Some(("raw", &s[1])));
        t.row("raw socketpair ping-pong (floor)", &s[1], None);
        if let Some(py) = &py {
            t.row("python submit().result()", py, Some(("multiproc", &ours)));
        }
        headline(
            "Executor submit → result round trip",
            &ours,
            Some(("socketpair ping-pong", &s[1])),
            py.as_ref(),
        );
        drop(ex);
    }

    // --- the tutorial's sum ----------------------------------------------------------------
    if section("sum") {
        let t = Table::new("sum of 1..=100 000 000 (loop per number), split over N workers", None);
        // Pool(2) twice: as is, and with its workers pinned to distinct CPUs as the tutorial's
        // refined version does (psutil cpu_affinity). Unpinned, a socket wake-up is a "sync"
        // wake-up, which places both woken workers on the parent's CPU until the scheduler
        // spreads them again, a few milliseconds later.
        let ncpu = multiproc::process_cpu_count();
        let pinned = Pool::builder().processes(2).cpus(0..ncpu).build().unwrap();
        let pools: Vec<(u64, Pool)> =
            [1u64, 2, 8].iter().map(|&n| (n, Pool::new(n as usize).unwrap())).collect();
        let expect = SUM_TO * (SUM_TO + 1) / 2;
        for (n, p) in &pools {
            assert_eq!(
                p.map_chunksize(sum_range, ranges(*n), 1).unwrap().iter().sum::<u64>(),
                expect
            );
        }
        let mut cases: Vec<Case<'_>> = vec![Case::new("single-process loop", || {
            assert_eq!(sum_range((1, SUM_TO)), expect);
        })];
        for (n, p) in &pools {
            let name: &'static str = match n {
                1 => "Pool(1)",
                2 => "Pool(2)",
                _ => "Pool(8)",
            };
            let n = *n;
            cases.push(Case::new(name, move || {
                let parts = p.map_chunksize(sum_range, ranges(n), 1).unwrap();
                assert_eq!(parts.iter().sum::<u64>(), expect);
            }));
        }
        cases.push(Case::new("Pool(2) pinned", || {
            let parts = pinned.map_chunksize(sum_range, ranges(2), 1).unwrap();
            assert_eq!(parts.iter().sum::<u64>(), expect);
        }));
        for n in [1u64, 2] {
            let name: &'static str = if n == 1 { "raw fork ×1" } else { "raw fork ×2" };
            cases.push(Case::new(name, move || assert_eq!(raw_fork_sum(n), expect)));
        }
        // The machine's own ceiling for this split: the same two halves on two threads of this
        // process (no fork, no messages). On a shared 2-vCPU machine it is well under 2×.
        cases.push(Case::new("2 threads", || {
            let [a, b] = [(1, SUM_TO / 2), (SUM_TO / 2 + 1, SUM_TO)];
            let total = std::thread::scope(|sc| {
                let h = sc.spawn(move || sum_range(b));
                sum_range(a) + h.join().unwrap()
            });
            assert_eq!(total, expect);
        }));
        let s = compare(rounds(25), 1, &mut cases);
        t.row("single-process loop", &s[0], None);
        t.row("Pool(1)", &s[1], Some(("loop", &s[0])));
        t.row("Pool(2)", &s[2], Some(("Pool(1)", &s[1])));
        t.row("Pool(8)", &s[3], Some(("Pool(1)", &s[1])));
        t.row("Pool(2) pinned to CPUs 0,1", &s[4], Some(("Pool(1)", &s[1])));
        t.row("raw fork ×1", &s[5], Some(("loop", &s[0])));
        t.row("raw fork ×2", &s[6], Some(("raw fork ×1", &s[5])));
        t.target_throughput("Pool(2) vs Pool(1)", &s[2], &s[1], 1.8);
        t.target_throughput("Pool(2) pinned vs Pool(1)", &s[4], &s[1], 1.8);
        t.row("2 threads in this process", &s[7], Some(("loop", &s[0])));
        println!(
            "  (the same split over raw forks: {:.3}×; over 2 threads: {:.3}× — what this machine allows)",
            s[5].median / s[6].median,
            s[0].median / s[7].median
        );
        println!(
            "  (undisturbed runs, 10th percentiles: Pool(2) vs Pool(1) {:.3}×, pinned {:.3}×, threads {:.3}×)",
            s[1].p10 / s[2].p10,
            s[1].p10 / s[4].p10,
            s[0].p10 / s[7].p10
        );
        for n in [1, 2, 8] {
            let py = python(
                &format!("sum over {n}"),
                &format!(
                    r#"{PY_REPORT}
import multiprocessing as mp, time
def part(r): return sum(range(r[0], r[1] + 1))
mp.set_start_method('fork')
n = {n}; N = {SUM_TO}; step = N // n
rs = [(k * step + 1, N if k == n - 1 else (k + 1) * step) for k in range(n)]
with mp.Pool(n) as p:
    p.map(part, [(1, 10)] * n)
    s = []
    for _ in range(3):
        t = time.perf_counter_ns(); assert sum(p.map(part, rs, chunksize=1)) == N * (N + 1) // 2; s.append(time.perf_counter_ns() - t)
report(s)
"#
                ),
            );
            let ours = &s[match n {
                1 => 1,
                2 => 2,
                _ => 3,
            }];
            if let Some(py) = &py {
                t.row(
                    &format!("python Pool({n}).map(sum(range)) (C-level sum)"),
                    py,
                    Some(("multiproc", ours)),
                );
            }
            headline(
                &format!("sum 1..=10^8 over Pool({n}) (Python: C sum)"),
                ours,
                Some(("one-process loop", &s[0])),
                py.as_ref(),
            );
        }
    }
}
