//! Stress suite for `Queue`/`JoinableQueue` (issue 19): SIGKILL storms on a small (4 KiB) and
//! a larger (256 KiB) ring with exact accounting, and `task_done`/`join` under concurrency.
//!
//! Runs for a few seconds per test by default; set `MULTIPROC_STRESS_SECS` to run each test
//! that long (the long form, e.g. `MULTIPROC_STRESS_SECS=150 cargo test --release --test
//! stress_queue -- --nocapture`). Each test prints its figures.
//!
//! Accounting lives in a separate shared page (not the crate's): every item carries
//! `(producer slot, sequence number)` and a self-checking pattern; each `(slot, seq)` has a
//! status word (attempted, acknowledged, handed back, receipts). Afterwards: nothing
//! duplicated, torn or reordered (per consumer, per producer: the queue is FIFO), nothing handed
//! back delivered, and acknowledged items lost at most one per consumer killed inside its
//! get-to-`task_done` window. `task_done` never fails with `TooManyCalls`.
//!
//! Children are `multiproc::Process`es (they may allocate); they never print. Every test holds
//! a watchdog, so a deadlock fails in seconds.
#![allow(clippy::undocumented_unsafe_blocks, unsafe_code)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use multiproc::{GetError, JoinableQueue, Process, ProcessBuilder, PutError, TaskDoneError};

const NP: usize = 3;
const NC: usize = 3;
/// Sequence numbers per producer slot (a slot stops putting when it runs out).
const MAXSEQ: u64 = 1 << 22;

// Status word bits of one `(slot, seq)`.
const ATTEMPT: u64 = 1;
const ACKED: u64 = 2;
const HANDED_BACK: u64 = 4;
const RECV: u64 = 256;

// Global counters.
const G_STOP_P: usize = 0;
const G_STOP_C: usize = 1;
const G_TORN: usize = 2;
const G_REORDER: usize = 3;
const G_ERRORS: usize = 4;
const G_TOO_MANY: usize = 5;
const G_BYTES: usize = 6;
const G_GETS: usize = 7;
const G_N: usize = 16;

fn stress_secs(default: u64) -> u64 {
    std::env::var("MULTIPROC_STRESS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// `len` self-checking bytes for item `id` (`len >= 8`).
fn pattern_into(id: u64, len: usize, v: &mut Vec<u8>) {
    v.clear();
    v.extend_from_slice(&id.to_le_bytes());
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let take = (len - v.len()).min(8);
        v.extend_from_slice(&x.to_le_bytes()[..take]);
    }
}

/// The id of a pattern item, or `None` if any byte is wrong.
fn check_pattern(v: &[u8], scratch: &mut Vec<u8>) -> Option<u64> {
    let id = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
    pattern_into(id, v.len(), scratch);
    (scratch[..] == v[..]).then_some(id)
}

/// Shared words: `G_N` globals, `NP` next-sequence words, `NC` "in get" flags, statuses.
struct Board {
    g: &'static [AtomicU64],
    pnext: &'static [AtomicU64],
    in_get: &'static [AtomicU64],
    status: &'static [AtomicU64],
}

impl Board {
    fn new() -> Board {
        let n = G_N + NP + NC + NP * MAXSEQ as usize;
        let page: &'static common::SharedPage = Box::leak(Box::new(common::SharedPage::new(n * 8)));
        let all: &'static [AtomicU64] =
            unsafe { std::slice::from_raw_parts(page.get::<AtomicU64>(0), n) };
        let (g, rest) = all.split_at(G_N);
        let (pnext, rest) = rest.split_at(NP);
        let (in_get, status) = rest.split_at(NC);
        Board { g, pnext, in_get, status }
    }

    fn status(&self, id: u64) -> Option<&'static AtomicU64> {
        let (slot, seq) = ((id >> 40) as usize, id & ((1 << 40) - 1));
        (slot < NP && seq < MAXSEQ).then(|| &self.status[slot * MAXSEQ as usize + seq as usize])
    }
}

fn child<R: multiproc::Message, F: FnOnce() -> R + Send + 'static>(f: F) -> Process<R> {
    ProcessBuilder::new().death_signal(Some(multiproc::Signal::KILL)).target(f)
}

fn producer(q: JoinableQueue<Vec<u8>>, b: &'static Board, slot: usize, seed: u64, ring: usize) {
    let mut rng = Rng(seed | 1);
    let mut buf = Vec::new();
    while b.g[G_STOP_P].load(SeqCst) == 0 {
        // Each sequence number is attempted once, whatever happens to this process.
        let seq = b.pnext[slot].fetch_add(1, SeqCst);
        if seq >= MAXSEQ {
            b.pnext[slot].store(MAXSEQ, SeqCst);
            std::thread::yield_now();
            continue;
        }
        let id = ((slot as u64) << 40) | seq;
        let len = match rng.below(100) {
            0..=59 => 8 + rng.below(200),
            60..=84 => 64 + rng.below(ring as u64 / 4),
            _ => ring as u64 / 4 + rng.below(3 * ring as u64),
        } as usize;
        pattern_into(id, len, &mut buf);
        let timeout = match rng.below(10) {
            0 => Some(Duration::from_micros(100 + rng.below(5000))),
            _ => None,
        };
        let st = b.status(id).unwrap();
        st.fetch_or(ATTEMPT, SeqCst);
        let item = std::mem::take(&mut buf);
        let put = match timeout {
            Some(t) => q.put_timeout(item, t),
            None => q.put(item),
        };
        match put {
            Ok(()) => {
                st.fetch_or(ACKED, SeqCst);
            }
            Err(PutError::Full(back)) => {
                st.fetch_or(HANDED_BACK, SeqCst);
                buf = back;
            }
            Err(_) => {
                b.g[G_ERRORS].fetch_add(1, SeqCst);
            }
        }
    }
}

fn consumer(q: JoinableQueue<Vec<u8>>, b: &'static Board, c: usize, seed: u64) {
    let mut rng = Rng(seed | 1);
    let mut last = [None::<u64>; NP];
    let mut scratch = Vec::new();
    loop {
        let timeout = Duration::from_millis(1 + rng.below(50));
        b.in_get[c].store(1, SeqCst);
        match q.get_timeout(timeout) {
            Ok(v) => {
                b.g[G_GETS].fetch_add(1, SeqCst);
                b.g[G_BYTES].fetch_add(v.len() as u64, SeqCst);
                match check_pattern(&v, &mut scratch).and_then(|id| Some((id, b.status(id)?))) {
                    Some((id, st)) => {
                        st.fetch_add(RECV, SeqCst);
                        let (slot, seq) = ((id >> 40) as usize, id & ((1 << 40) - 1));
                        if last[slot].is_some_and(|l| l >= seq) {
                            b.g[G_REORDER].fetch_add(1, SeqCst);
                        }
                        last[slot] = Some(seq);
                    }
                    None => {
                        b.g[G_TORN].fetch_add(1, SeqCst);
                    }
                }
                match q.task_done() {
                    Ok(()) => {}
                    Err(TaskDoneError::TooManyCalls) => {
                        b.g[G_TOO_MANY].fetch_add(1, SeqCst);
                    }
                    Err(_) => {
                        b.g[G_ERRORS].fetch_add(1, SeqCst);
                    }
                }
            }
            Err(GetError::Empty) => {
                if b.g[G_STOP_C].load(SeqCst) != 0 {
                    b.in_get[c].store(0, SeqCst);
                    return;
                }
            }
            Err(_) => {
                b.g[G_ERRORS].fetch_add(1, SeqCst);
            }
        }
        b.in_get[c].store(0, SeqCst);
    }
}

/// One kill storm on a ring of `ring` bytes for `secs` seconds; asserts the accounting.
fn kill_storm(ring: usize, secs: u64, seed: u64) {
    let _w = common::watchdog(Duration::from_secs(secs + 90));
    let q: JoinableQueue<Vec<u8>> = JoinableQueue::builder().capacity_bytes(ring).build().unwrap();
    let b: &'static Board = Box::leak(Box::new(Board::new()));
    let spawn_p = |slot: usize, inc: u64| {
        let pq = q.clone();
        let p = child(move || producer(pq, b, slot, seed ^ (inc << 20) ^ slot as u64, ring));
        p.start().unwrap();
        p
    };
    let spawn_c = |c: usize, inc: u64| {
        let cq = q.clone();
        let p = child(move || consumer(cq, b, c, seed ^ (inc << 24) ^ (c as u64 + 77)));
        p.start().unwrap();
        p
    };
    let mut inc = 0;
    let mut prods: Vec<Process<()>> = (0..NP)
        .map(|s| {
            inc += 1;
            spawn_p(s, inc)
        })
        .collect();
    let mut cons: Vec<Process<()>> = (0..NC)
        .map(|c| {
            inc += 1;
            spawn_c(c, inc)
        })
        .collect();
    let mut rng = Rng(seed | 1);
    let (mut kills_p, mut kills_c, mut kills_in_get) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        // Progress is observed, never waited for with a sleep: the storm's pace is a sleep.
        std::thread::sleep(Duration::from_micros(1000 + rng.below(10_000)));
        let k = rng.below((NP + NC) as u64) as usize;
        inc += 1;
        if k < NP {
            prods[k].kill().unwrap();
            assert!(prods[k].join_timeout(Duration::from_secs(10)).is_err());
            prods[k] = spawn_p(k, inc);
            kills_p += 1;
        } else {
            let c = k - NP;
            cons[c].kill().unwrap();
            assert!(cons[c].join_timeout(Duration::from_secs(10)).is_err());
            if b.in_get[c].swap(0, SeqCst) != 0 {
                kills_in_get += 1;
            }
            cons[c] = spawn_c(c, inc);
            kills_c += 1;
        }
    }
    // Drain: producers stop, then consumers empty the queue and stop.
    b.g[G_STOP_P].store(1, SeqCst);
    for p in &prods {
        p.join_timeout(Duration::from_secs(30)).expect("producer stops");
    }
    b.g[G_STOP_C].store(1, SeqCst);
    for c in &cons {
        c.join_timeout(Duration::from_secs(30)).expect("consumer stops");
    }
    let mut scratch = Vec::new();
    let mut leftovers = 0u64;
    while let Ok(v) = q.get_timeout(Duration::from_millis(50)) {
        leftovers += 1;
        match check_pattern(&v, &mut scratch).and_then(|id| b.status(id)) {
            Some(st) => {
                st.fetch_add(RECV, SeqCst);
            }
            None => {
                b.g[G_TORN].fetch_add(1, SeqCst);
            }
        }
        q.task_done().unwrap();
    }
    // Exact accounting.
    let (mut acked, mut duplicated, mut lost, mut back_delivered) = (0u64, 0u64, 0u64, 0u64);
    let (mut in_doubt, mut in_doubt_delivered, mut ghosts) = (0u64, 0u64, 0u64);
    for slot in 0..NP {
        let n = b.pnext[slot].load(SeqCst).min(MAXSEQ);
        for seq in 0..n {
            let s = b.status[slot * MAXSEQ as usize + seq as usize].load(SeqCst);
            let recv = s / RECV;
            duplicated += recv.saturating_sub(1);
            if s & ATTEMPT == 0 && recv > 0 {
                ghosts += 1;
            }
            if s & ACKED != 0 {
                acked += 1;
                lost += u64::from(recv == 0);
            } else if s & HANDED_BACK != 0 {
                back_delivered += u64::from(recv > 0);
            } else if s & ATTEMPT != 0 {
                // Its producer was killed inside `put`: delivered or not, both are right.
                in_doubt += 1;
                in_doubt_delivered += u64::from(recv > 0);
            }
        }
    }
    let g = |i: usize| b.g[i].load(SeqCst);
    println!(
        "stress_queue ring {ring} B, {secs} s, seed {seed:#x}: items acked {acked}, got {}, \
         bytes {}, kills {} (producers {kills_p}, consumers {kills_c}, in get {kills_in_get}); \
         duplicated {duplicated}, torn {}, reordered {}, lost {lost} (bound {kills_in_get}), \
         handed back yet delivered {back_delivered}, ghosts {ghosts}, in doubt {in_doubt} \
         (delivered {in_doubt_delivered}), leftovers {leftovers}, q.lost() {}, errors {}, \
         TooManyCalls {}, unfinished {}",
        g(G_GETS),
        g(G_BYTES),
        kills_p + kills_c,
        g(G_TORN),
        g(G_REORDER),
        q.lost(),
        g(G_ERRORS),
        g(G_TOO_MANY),
        q.unfinished_tasks(),
    );
    assert!(acked > 0 && g(G_GETS) > 0, "no progress");
    assert_eq!(duplicated, 0, "duplicated items");
    assert_eq!(g(G_TORN), 0, "torn items");
    assert_eq!(g(G_REORDER), 0, "items out of producer order");
    assert_eq!(ghosts, 0, "items delivered that were never put");
    assert_eq!(back_delivered, 0, "items handed back to their producer yet delivered");
    assert!(lost <= kills_in_get, "{lost} acknowledged items lost, bound {kills_in_get}");
    assert_eq!(g(G_ERRORS), 0, "Corrupt or other errors");
    assert_eq!(g(G_TOO_MANY), 0, "task_done failed with TooManyCalls");
    // Each consumer killed between a get and its task_done leaves one item unfinished.
    assert!(q.unfinished_tasks() <= kills_in_get, "unfinished {}", q.unfinished_tasks());
    assert_eq!(q.qsize(), 0);
    // Still usable, for a small item and one larger than the ring.
    let mut v = Vec::new();
    for (id, len) in [(1u64 << 50, 100), ((1 << 50) + 1, 3 * ring)] {
        pattern_into(id, len, &mut v);
        let pq = q.clone();
        let w = v.clone();
        let p = child(move || pq.put(w).is_ok());
        p.start().unwrap();
        let got = q.get_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(check_pattern(&got, &mut scratch), Some(id));
        assert!(p.join().unwrap());
    }
}

#[test]
fn kill_storm_on_a_4_kib_ring_keeps_exact_accounting() {
    kill_storm(4 << 10, stress_secs(3), 0x4b1d_5eed_0000_0601);
}

#[test]
fn kill_storm_on_a_256_kib_ring_keeps_exact_accounting() {
    kill_storm(256 << 10, stress_secs(3), 0x4b1d_5eed_0000_0302);
}

#[test]
fn task_done_and_join_stay_exact_under_concurrency() {
    // Producers put while consumers get and call `task_done` and the parent `join`s in
    // rounds: `task_done` never fails, and each `join` returns once every item put before it
    // is done.
    let secs = stress_secs(3);
    let _w = common::watchdog(Duration::from_secs(secs + 60));
    let q: JoinableQueue<u64> = JoinableQueue::builder().capacity_bytes(4096).build().unwrap();
    let b: &'static Board = Box::leak(Box::new(Board::new()));
    let prods: Vec<Process<u64>> = (0..NP)
        .map(|_| {
            let pq = q.clone();
            let p = child(move || {
                let mut n = 0u64;
                while b.g[G_STOP_P].load(SeqCst) == 0 {
                    if pq.put_timeout(n, Duration::from_millis(100)).is_ok() {
                        n += 1;
                    }
                }
                n
            });
            p.start().unwrap();
            p
        })
        .collect();
    let cons: Vec<Process<u64>> = (0..NC)
        .map(|_| {
            let cq = q.clone();
            let p = child(move || {
                let mut n = 0u64;
                loop {
                    match cq.get_timeout(Duration::from_millis(20)) {
                        Ok(_) => {
                            n += 1;
                            if let Err(e) = cq.task_done() {
                                b.g[if e == TaskDoneError::TooManyCalls {
                                    G_TOO_MANY
                                } else {
                                    G_ERRORS
                                }]
                                .fetch_add(1, SeqCst);
                            }
                        }
                        Err(GetError::Empty) if b.g[G_STOP_C].load(SeqCst) != 0 => return n,
                        Err(GetError::Empty) => {}
                        Err(_) => {
                            b.g[G_ERRORS].fetch_add(1, SeqCst);
                        }
                    }
                }
            });
            p.start().unwrap();
            p
        })
        .collect();
    let start = Instant::now();
    let mut joins = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        // A join while items flow: it may time out, but never fails otherwise.
        match q.join_timeout(Duration::from_millis(5)) {
            Ok(()) | Err(multiproc::QueueJoinError::Timeout) => joins += 1,
            Err(e) => panic!("join: {e}"),
        }
    }
    b.g[G_STOP_P].store(1, SeqCst);
    let put: u64 = prods.iter().map(|p| p.join_timeout(Duration::from_secs(30)).unwrap()).sum();
    // Every item put is now done or about to be: join returns.
    q.join_timeout(Duration::from_secs(30)).expect("join after the producers stopped");
    assert_eq!(q.unfinished_tasks(), 0);
    b.g[G_STOP_C].store(1, SeqCst);
    let got: u64 = cons.iter().map(|c| c.join_timeout(Duration::from_secs(30)).unwrap()).sum();
    println!(
        "stress_queue task_done/join, {secs} s: put {put}, got {got}, joins while busy {joins}, \
         TooManyCalls {}, errors {}",
        b.g[G_TOO_MANY].load(SeqCst),
        b.g[G_ERRORS].load(SeqCst)
    );
    assert_eq!(put, got);
    assert_eq!(b.g[G_TOO_MANY].load(SeqCst), 0, "task_done failed with TooManyCalls");
    assert_eq!(b.g[G_ERRORS].load(SeqCst), 0);
    assert_eq!(q.task_done(), Err(TaskDoneError::TooManyCalls));
}
