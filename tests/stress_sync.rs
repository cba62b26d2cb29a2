//! Stress suite for the process-shared primitives (issue 19): SIGKILL storms on holders and
//! waiters of `Lock`, `RLock`, `Value`'s lock, `Semaphore`, `BoundedSemaphore`, `Condition`,
//! `Barrier` and `Event`.
//!
//! Runs for a few seconds per test by default; set `MULTIPROC_STRESS_SECS` to run each test
//! that long (the long form, e.g. `MULTIPROC_STRESS_SECS=150 cargo test --release --test
//! stress_sync -- --nocapture --test-threads=1`). Each test prints its figures.
//!
//! Children (`multiproc::Process`es, killed and replaced every few milliseconds) hammer one
//! primitive and keep their accounting in a separate shared page: a critical-section flag that
//! every holder swaps (mutual exclusion), per-child state words (idle / waiting / holding) that
//! the parent reads after each kill, and counters. Afterwards:
//! - mutual exclusion was never broken (a `Semaphore(k)` never admitted more than `k`);
//! - every holder death was reported: the `OwnerDied` reports lie between the holders killed
//!   for certain (state "holding") and that plus the kills whose state was ambiguous (a child
//!   killed between the call returning and its state store); a clean acquire never sees the
//!   flag a dead holder left raised; for a semaphore (which has no owner, and documents that a
//!   dead holder's permit is lost), the permits lost match the kills exactly in the same way;
//!   for a `Barrier`, every party killed inside `wait` breaks the barrier (or its cycle had
//!   completed);
//! - 0 hangs: every wait is bounded (5 s) and a timeout is counted as a hang.
//!
//! Children never print and never assert (they count); every test holds a watchdog, so a
//! deadlock fails in seconds.
#![allow(clippy::undocumented_unsafe_blocks, unsafe_code)]

mod common;
#[path = "common/stress.rs"]
mod stress;

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use multiproc::{
    AcquireError, Barrier, BarrierError, BoundedSemaphore, Condition, Event, Lock, Process, RLock,
    Semaphore, Value, WaitError,
};
use stress::{Rng, shared_words, spawn_child, spin, stress_secs};

/// Every wait in this file is bounded by this; reaching it counts as a hang.
const HANG: Duration = Duration::from_secs(5);

// Shared words: globals, then per-child state and an auxiliary word per child.
const STOP: usize = 0;
const CS: usize = 1;
const VIOL: usize = 2;
const OPS: usize = 3;
const DIED: usize = 4;
const TMO: usize = 5;
const ERR: usize = 6;
const DIRTY: usize = 7;
const GEN: usize = 8;
const EPOCH: usize = 9;
const BROKEN: usize = 10;
const MAXIN: usize = 11;
const ST: usize = 16;
const AUX: usize = 48;
const WORDS: usize = 80;

// Child states.
const IDLE: u64 = 0;
const WAIT: u64 = 1;
const HOLD: u64 = 2;
/// Semaphore: about to release. Condition: inside `wait`. Barrier: saw it broken.
const OTHER: u64 = 3;

fn add(w: &[AtomicU64], i: usize) {
    w[i].fetch_add(1, SeqCst);
}

/// Enters the critical section guarded by a lock: the flag must be down.
fn cs_enter(w: &[AtomicU64]) {
    if w[CS].swap(1, SeqCst) != 0 {
        add(w, VIOL);
    }
}

fn cs_exit(w: &[AtomicU64]) {
    add(w, OPS);
    w[CS].store(0, SeqCst);
}

/// What a kill storm saw, from the parent's side.
#[derive(Default, Debug)]
struct Kills {
    total: u64,
    holding: u64,
    waiting: u64,
    other: u64,
}

/// What a storm calls back (all optional).
#[derive(Default)]
struct Hooks<'a> {
    /// After child `c` was killed and reaped, before its replacement starts, with its last
    /// state word.
    on_dead: Option<&'a mut dyn FnMut(usize, u64)>,
    /// About every 200 µs.
    tick: Option<&'a mut dyn FnMut()>,
    /// Every so often, all children are asked to stop (`STOP`), joined, this runs, and they
    /// are restarted.
    quiesce: Option<(Duration, &'a mut dyn FnMut())>,
    /// At the end, before `STOP` is raised (children still running).
    before_stop: Option<&'a mut dyn FnMut()>,
    /// At the end, after `STOP` is raised, before the children are joined.
    after_stop: Option<&'a mut dyn FnMut()>,
}

/// Runs `n` children (`spawn(c, seed)`) for `secs` seconds, SIGKILLing a random one every 1 to
/// 10 ms and replacing it, then raises `STOP`: every child must exit within 30 s.
fn storm(
    w: &'static [AtomicU64],
    n: usize,
    secs: u64,
    seed: u64,
    spawn: &dyn Fn(usize, u64) -> Process<()>,
    mut h: Hooks<'_>,
) -> Kills {
    let mut rng = Rng::new(seed);
    let mut inc = 0u64;
    let mut next_seed = |rng: &mut Rng| {
        inc += 1;
        seed ^ rng.next() ^ (inc << 32)
    };
    let mut kids: Vec<Process<()>> = (0..n).map(|c| spawn(c, next_seed(&mut rng))).collect();
    let mut kills = Kills::default();
    let start = Instant::now();
    let mut last_quiesce = Instant::now();
    let mut next_kill = Instant::now() + Duration::from_micros(1000 + rng.below(9000));
    while start.elapsed() < Duration::from_secs(secs) {
        if let Some(tick) = h.tick.as_mut() {
            tick();
        }
        if Instant::now() >= next_kill {
            let c = rng.below(n as u64) as usize;
            kids[c].kill().unwrap();
            assert!(kids[c].join_timeout(Duration::from_secs(10)).is_err(), "killed child exited");
            let state = w[ST + c].swap(IDLE, SeqCst);
            kills.total += 1;
            match state {
                HOLD => kills.holding += 1,
                WAIT => kills.waiting += 1,
                _ => kills.other += 1,
            }
            if let Some(on_dead) = h.on_dead.as_mut() {
                on_dead(c, state);
            }
            kids[c] = spawn(c, next_seed(&mut rng));
            next_kill = Instant::now() + Duration::from_micros(1000 + rng.below(9000));
        }
        if let Some((every, hook)) = h.quiesce.as_mut()
            && last_quiesce.elapsed() >= *every
        {
            w[STOP].store(1, SeqCst);
            for k in &kids {
                k.join_timeout(Duration::from_secs(30)).expect("a child stops when asked");
            }
            hook();
            w[STOP].store(0, SeqCst);
            for (c, k) in kids.iter_mut().enumerate() {
                *k = spawn(c, next_seed(&mut rng));
            }
            last_quiesce = Instant::now();
        }
        // The storm's pace (not a synchronisation): look again in 200 µs.
        std::thread::sleep(Duration::from_micros(200));
    }
    if let Some(f) = h.before_stop.as_mut() {
        f();
    }
    w[STOP].store(1, SeqCst);
    if let Some(f) = h.after_stop.as_mut() {
        f();
    }
    for k in &kids {
        k.join_timeout(Duration::from_secs(30)).expect("a child stops when asked");
    }
    kills
}

fn rd(w: &[AtomicU64], i: usize) -> u64 {
    w[i].load(SeqCst)
}

/// The checks shared by the lock-like primitives, after the storm and the parent's own last
/// acquire (whose report, if any, is in `DIED`).
fn check_lock_like(name: &str, secs: u64, w: &[AtomicU64], k: &Kills) {
    let (died, certain, bound) = (rd(w, DIED), k.holding, k.total);
    println!(
        "stress_sync {name}, {secs} s: kills {} (holding {}, waiting {}, other {}), ops {}, \
         violations {}, owner-died reports {died} (bound {certain}..={bound}), dirty data \
         repaired {}, hangs {}, errors {}",
        k.total,
        k.holding,
        k.waiting,
        k.other,
        rd(w, OPS),
        rd(w, VIOL),
        rd(w, DIRTY),
        rd(w, TMO),
        rd(w, ERR),
    );
    assert!(rd(w, OPS) > 0 && k.total > 0, "{name}: no progress");
    assert_eq!(rd(w, VIOL), 0, "{name}: mutual exclusion broken (or a death not reported)");
    assert!(died >= certain, "{name}: {certain} holders killed, only {died} deaths reported");
    assert!(died <= bound, "{name}: {died} deaths reported for {bound} kills");
    assert_eq!(rd(w, TMO), 0, "{name}: hangs (waits that reached {HANG:?})");
    assert_eq!(rd(w, ERR), 0, "{name}: unexpected errors");
}

/// The parent's last acquire: never a hang; a report from the last dead holder is counted.
fn final_acquire<G>(w: &[AtomicU64], r: Result<G, AcquireError<G>>) -> G {
    match r {
        Ok(g) => g,
        Err(AcquireError::OwnerDied(g)) => {
            add(w, DIED);
            w[CS].store(0, SeqCst);
            g
        }
        Err(e) => panic!("final acquire: {e}"),
    }
}

#[test]
fn lock_holder_and_waiter_kill_storm() {
    let secs = stress_secs(2);
    let _wd = common::watchdog(Duration::from_secs(secs + 90));
    let w = shared_words(WORDS);
    let lock = Lock::new().unwrap();
    let spawn = |c: usize, seed: u64| {
        let lock = lock.clone();
        spawn_child(move || {
            let mut rng = Rng::new(seed);
            while w[STOP].load(SeqCst) == 0 {
                w[ST + c].store(WAIT, SeqCst);
                let g = match lock.lock_timeout(HANG) {
                    Ok(g) => g,
                    Err(AcquireError::OwnerDied(g)) => {
                        add(w, DIED);
                        w[CS].store(0, SeqCst);
                        g
                    }
                    Err(AcquireError::Timeout) => {
                        add(w, TMO);
                        continue;
                    }
                    Err(_) => {
                        add(w, ERR);
                        continue;
                    }
                };
                w[ST + c].store(HOLD, SeqCst);
                cs_enter(w);
                spin(rng.below(400));
                cs_exit(w);
                w[ST + c].store(IDLE, SeqCst);
                drop(g);
                spin(rng.below(200));
            }
        })
    };
    let k = storm(w, 4, secs, 0x10c4, &spawn, Hooks::default());
    let g = final_acquire(w, lock.lock_timeout(HANG));
    cs_enter(w);
    cs_exit(w);
    drop(g);
    check_lock_like("Lock", secs, w, &k);
}

#[test]
fn rlock_holder_and_waiter_kill_storm_at_any_depth() {
    let secs = stress_secs(2);
    let _wd = common::watchdog(Duration::from_secs(secs + 90));
    let w = shared_words(WORDS);
    let rl = RLock::new().unwrap();
    let spawn = |c: usize, seed: u64| {
        let rl = rl.clone();
        spawn_child(move || {
            let mut rng = Rng::new(seed);
            while w[STOP].load(SeqCst) == 0 {
                w[ST + c].store(WAIT, SeqCst);
                let first = match rl.lock_timeout(HANG) {
                    Ok(g) => g,
                    Err(AcquireError::OwnerDied(g)) => {
                        add(w, DIED);
                        w[CS].store(0, SeqCst);
                        g
                    }
                    Err(AcquireError::Timeout) => {
                        add(w, TMO);
                        continue;
                    }
                    Err(_) => {
                        add(w, ERR);
                        continue;
                    }
                };
                w[ST + c].store(HOLD, SeqCst);
                cs_enter(w);
                // More levels, through guards and Python's acquire: always granted at once,
                // never a death report (the caller holds the lock).
                let mut guards = vec![first];
                let mut python_levels = 0;
                for _ in 0..rng.below(3) {
                    if rng.below(2) == 0 {
                        match rl.lock_timeout(Duration::ZERO) {
                            Ok(g) => guards.push(g),
                            Err(_) => add(w, ERR),
                        }
                    } else {
                        match rl.acquire_timeout(Duration::ZERO) {
                            Ok(true) => python_levels += 1,
                            _ => add(w, ERR),
                        }
                    }
                    spin(rng.below(100));
                }
                spin(rng.below(300));
                cs_exit(w);
                w[ST + c].store(IDLE, SeqCst);
                for _ in 0..python_levels {
                    if rl.release().is_err() {
                        add(w, ERR);
                    }
                }
                while let Some(g) = guards.pop() {
                    drop(g);
                }
                spin(rng.below(200));
            }
        })
    };
    let k = storm(w, 4, secs, 0x2210c4, &spawn, Hooks::default());
    let g = final_acquire(w, rl.lock_timeout(HANG));
    cs_enter(w);
    cs_exit(w);
    drop(g);
    // Free again at depth 0: a release now is a misuse error, not a success.
    assert!(rl.release().is_err());
    check_lock_like("RLock", secs, w, &k);
}

#[test]
fn value_lock_holder_and_waiter_kill_storm_sees_every_half_update() {
    let secs = stress_secs(2);
    let _wd = common::watchdog(Duration::from_secs(secs + 90));
    let w = shared_words(WORDS);
    // The value is even between updates; a holder makes it odd, works, then even again.
    let v = Value::new(0u64).unwrap();
    let spawn = |c: usize, seed: u64| {
        let v = v.clone();
        spawn_child(move || {
            let mut rng = Rng::new(seed);
            while w[STOP].load(SeqCst) == 0 {
                w[ST + c].store(WAIT, SeqCst);
                let mut g = match v.lock_timeout(HANG) {
                    Ok(g) => g,
                    Err(AcquireError::OwnerDied(mut g)) => {
                        add(w, DIED);
                        w[CS].store(0, SeqCst);
                        if *g & 1 == 1 {
                            // The dead holder was mid-update: repair.
                            add(w, DIRTY);
                            *g += 1;
                        }
                        g
                    }
                    Err(AcquireError::Timeout) => {
                        add(w, TMO);
                        continue;
                    }
                    Err(_) => {
                        add(w, ERR);
                        continue;
                    }
                };
                w[ST + c].store(HOLD, SeqCst);
                cs_enter(w);
                let x = *g;
                if x & 1 == 1 {
                    // A clean acquire found a half-done update.
                    add(w, VIOL);
                }
                let p: *mut u64 = &mut *g;
                unsafe { std::ptr::write_volatile(p, x | 1) };
                spin(rng.below(400));
                unsafe { std::ptr::write_volatile(p, (x | 1) + 1) };
                cs_exit(w);
                w[ST + c].store(IDLE, SeqCst);
                drop(g);
                spin(rng.below(200));
            }
        })
    };
    let k = storm(w, 4, secs, 0x7a1e, &spawn, Hooks::default());
    let mut g = final_acquire(w, v.lock_timeout(HANG));
    if *g & 1 == 1 {
        add(w, DIRTY);
        *g += 1;
    }
    let updates = *g / 2;
    drop(g);
    println!("stress_sync Value: completed updates {updates}");
    assert!(updates > 0);
    assert!(rd(w, DIRTY) <= rd(w, DIED), "half-updates found without a death report");
    check_lock_like("Value", secs, w, &k);
}

/// `Semaphore` or `BoundedSemaphore`, for one storm body.
#[derive(Clone)]
enum Sem {
    Plain(Semaphore),
    Bounded(BoundedSemaphore),
}

impl Sem {
    fn acquire(&self, t: Duration) -> std::io::Result<bool> {
        match self {
            Sem::Plain(s) => s.acquire_timeout(t),
            Sem::Bounded(s) => s.acquire_timeout(t),
        }
    }
    fn release(&self) -> Result<(), multiproc::ReleaseError> {
        match self {
            Sem::Plain(s) => s.release(),
            Sem::Bounded(s) => s.release(),
        }
    }
    fn get_value(&self) -> u32 {
        match self {
            Sem::Plain(s) => s.get_value(),
            Sem::Bounded(s) => s.get_value(),
        }
    }
}

fn semaphore_storm(name: &str, sem: Sem, k: u32, seed: u64) {
    const N: usize = 6;
    let secs = stress_secs(2);
    let _wd = common::watchdog(Duration::from_secs(secs + 90));
    let w = shared_words(WORDS);
    let spawn = |c: usize, seed: u64| {
        let sem = sem.clone();
        spawn_child(move || {
            let mut rng = Rng::new(seed);
            let bit = 1u64 << c;
            'outer: while w[STOP].load(SeqCst) == 0 {
                w[ST + c].store(WAIT, SeqCst);
                // Short slices, so that a stop request is seen; 5 s in all is a hang.
                let start = Instant::now();
                loop {
                    match sem.acquire(Duration::from_millis(100)) {
                        Ok(true) => break,
                        Ok(false) if w[STOP].load(SeqCst) != 0 => {
                            w[ST + c].store(IDLE, SeqCst);
                            break 'outer;
                        }
                        Ok(false) if start.elapsed() >= HANG => {
                            add(w, TMO);
                            continue 'outer;
                        }
                        Ok(false) => {}
                        Err(_) => {
                            add(w, ERR);
                            continue 'outer;
                        }
                    }
                }
                // Inside: at most k processes.
                let inside = (w[CS].fetch_or(bit, SeqCst) | bit).count_ones();
                w[MAXIN].fetch_max(u64::from(inside), SeqCst);
                if inside > k {
                    add(w, VIOL);
                }
                w[ST + c].store(HOLD, SeqCst);
                spin(rng.below(400));
                add(w, OPS);
                w[ST + c].store(OTHER, SeqCst);
                w[CS].fetch_and(!bit, SeqCst);
                if sem.release().is_err() {
                    add(w, ERR);
                }
                w[ST + c].store(IDLE, SeqCst);
                spin(rng.below(200));
            }
        })
    };
    // A killed holder's permit is lost for good (documented): the parent gives it back when
    // the holder is known ("holding"); a kill in an ambiguous state (in `acquire`, or about to
    // release) may or may not have lost one, which each quiesce measures exactly.
    let (ambiguous, amb_total, leaked_total, given_back) =
        (Cell::new(0u64), Cell::new(0u64), Cell::new(0u64), Cell::new(0u64));
    let mut on_dead = |c: usize, state: u64| {
        w[CS].fetch_and(!(1u64 << c), SeqCst);
        match state {
            HOLD => {
                sem.release().expect("give back a dead holder's permit");
                given_back.set(given_back.get() + 1);
            }
            WAIT | OTHER => ambiguous.set(ambiguous.get() + 1),
            _ => {}
        }
    };
    let mut quiesce = || {
        let v = sem.get_value();
        assert!(v <= k, "{name}: value {v} above the {k} permits created");
        assert_eq!(rd(w, CS), 0, "{name}: a stopped child is still inside");
        let leaked = u64::from(k - v);
        assert!(
            leaked <= ambiguous.get(),
            "{name}: {leaked} permits lost, only {} ambiguous kills",
            ambiguous.get()
        );
        for _ in 0..leaked {
            sem.release().unwrap();
        }
        leaked_total.set(leaked_total.get() + leaked);
        amb_total.set(amb_total.get() + ambiguous.get());
        ambiguous.set(0);
    };
    let hooks = Hooks {
        on_dead: Some(&mut on_dead),
        quiesce: Some((Duration::from_millis(300), &mut quiesce)),
        ..Hooks::default()
    };
    let kills = storm(w, N, secs, seed, &spawn, hooks);
    quiesce();
    println!(
        "stress_sync {name}({k}), {secs} s: kills {} (holding {}, waiting {}, other {}), ops {}, \
         most inside at once {}, violations {}, permits lost with their holder {} (given back), \
         lost in ambiguous kills {} (of {}), hangs {}, errors {}",
        kills.total,
        kills.holding,
        kills.waiting,
        kills.other,
        rd(w, OPS),
        rd(w, MAXIN),
        rd(w, VIOL),
        given_back.get(),
        leaked_total.get(),
        amb_total.get(),
        rd(w, TMO),
        rd(w, ERR),
    );
    assert!(rd(w, OPS) > 0 && kills.total > 0, "{name}: no progress");
    assert_eq!(rd(w, VIOL), 0, "{name}: more than {k} inside");
    assert_eq!(rd(w, TMO), 0, "{name}: hangs");
    assert_eq!(rd(w, ERR), 0, "{name}: unexpected errors");
    assert_eq!(sem.get_value(), k);
}

#[test]
fn semaphore_holder_and_waiter_kill_storm() {
    semaphore_storm("Semaphore", Sem::Plain(Semaphore::new(3).unwrap()), 3, 0x5e3a);
}

#[test]
fn bounded_semaphore_holder_and_waiter_kill_storm() {
    semaphore_storm("BoundedSemaphore", Sem::Bounded(BoundedSemaphore::new(2).unwrap()), 2, 0xb5e3);
}

#[test]
fn condition_notifier_holder_and_waiter_kill_storm() {
    // Children 0 and 1 notify (take the lock, bump `GEN`, notify one or all); the others wait
    // for `GEN` to move with `wait_for`. A waiter woken (or timed out) holds the lock again.
    const N: usize = 6;
    let secs = stress_secs(2);
    let _wd = common::watchdog(Duration::from_secs(secs + 90));
    let w = shared_words(WORDS);
    let cond = Condition::new().unwrap();
    let waits = shared_words(1);
    let spawn = |c: usize, seed: u64| {
        let cond = cond.clone();
        spawn_child(move || {
            let mut rng = Rng::new(seed);
            while w[STOP].load(SeqCst) == 0 {
                w[ST + c].store(WAIT, SeqCst);
                let g = match cond.lock_timeout(HANG) {
                    Ok(g) => g,
                    Err(AcquireError::OwnerDied(g)) => {
                        add(w, DIED);
                        w[CS].store(0, SeqCst);
                        g
                    }
                    Err(AcquireError::Timeout) => {
                        add(w, TMO);
                        continue;
                    }
                    Err(_) => {
                        add(w, ERR);
                        continue;
                    }
                };
                w[ST + c].store(HOLD, SeqCst);
                cs_enter(w);
                if c < 2 {
                    w[GEN].fetch_add(1, SeqCst);
                    let r = if rng.below(4) == 0 { cond.notify(1) } else { cond.notify_all() };
                    if r.is_err() {
                        add(w, ERR);
                    }
                    spin(rng.below(200));
                } else {
                    let g0 = w[GEN].load(SeqCst);
                    // `wait` releases the lock: leave the critical section first.
                    w[CS].store(0, SeqCst);
                    w[ST + c].store(OTHER, SeqCst);
                    let moved = || w[GEN].load(SeqCst) != g0 || w[STOP].load(SeqCst) != 0;
                    match cond.wait_for_timeout(moved, HANG) {
                        Ok(true) => add(waits, 0),
                        Ok(false) => add(w, TMO),
                        Err(WaitError::OwnerDied) => {
                            add(w, DIED);
                            w[CS].store(0, SeqCst);
                        }
                        Err(_) => add(w, ERR),
                    }
                    w[ST + c].store(HOLD, SeqCst);
                    cs_enter(w);
                }
                cs_exit(w);
                w[ST + c].store(IDLE, SeqCst);
                drop(g);
                spin(rng.below(if c < 2 { 2000 } else { 200 }));
            }
            w[AUX + c].store(1, SeqCst);
        })
    };
    // At the end the notifiers stop first: the parent notifies until every waiter has left.
    let mut after_stop = || {
        let all_out = common::eventually(HANG, || {
            let g = final_acquire(w, cond.lock_timeout(HANG));
            cond.notify_all().unwrap();
            drop(g);
            (0..N).all(|c| w[AUX + c].load(SeqCst) == 1)
        });
        assert!(all_out, "waiters did not leave");
    };
    let hooks = Hooks { after_stop: Some(&mut after_stop), ..Hooks::default() };
    let k = storm(w, N, secs, 0xc0d1, &spawn, hooks);
    let g = final_acquire(w, cond.lock_timeout(HANG));
    cs_enter(w);
    cs_exit(w);
    drop(g);
    println!("stress_sync Condition: notifies {}, waits woken {}", rd(w, GEN), rd(waits, 0));
    assert!(rd(waits, 0) > 0, "no waiter was ever woken");
    check_lock_like("Condition", secs, w, &k);
}

#[test]
fn barrier_party_kill_storm_breaks_and_recovers() {
    // Three parties; the action (run once per cycle) bumps `GEN`, so a party released from
    // cycle n sees n + 1 (lockstep; n + 2 only if the next cycle was completed by a party
    // that arrived and was killed before anyone noticed, so at most once per kill in wait). A party killed inside `wait` must break the
    // barrier (or its cycle had completed); the parent resets it once every party has seen it
    // broken.
    const P: usize = 3;
    let secs = stress_secs(2);
    let _wd = common::watchdog(Duration::from_secs(secs + 90));
    let w = shared_words(WORDS);
    let b = Barrier::builder(P)
        .action(move || {
            w[GEN].fetch_add(1, SeqCst);
        })
        .build()
        .unwrap();
    let spawn = |c: usize, _seed: u64| {
        let b = b.clone();
        spawn_child(move || {
            while w[STOP].load(SeqCst) == 0 {
                let g0 = w[GEN].load(SeqCst);
                w[AUX + c].store(g0, SeqCst);
                w[ST + c].store(WAIT, SeqCst);
                let r = b.wait_timeout(HANG);
                let g1 = w[GEN].load(SeqCst);
                match r {
                    Ok(_) => {
                        w[ST + c].store(IDLE, SeqCst);
                        if g1 <= g0 {
                            // Released before the action of its cycle ran.
                            add(w, VIOL);
                        } else if g1 > g0 + 1 {
                            // Another cycle completed before this party looked: possible
                            // only if a party that arrived then died was counted in it
                            // (before the others noticed the death).
                            add(w, DIRTY);
                        }
                        add(w, OPS);
                        continue;
                    }
                    Err(BarrierError::Broken) => add(w, BROKEN),
                    Err(BarrierError::Timeout) => add(w, TMO),
                    Err(_) => add(w, ERR),
                }
                // Broken: wait (bounded) for the parent's reset.
                let e0 = w[EPOCH].load(SeqCst);
                w[ST + c].store(OTHER, SeqCst);
                let start = Instant::now();
                while w[EPOCH].load(SeqCst) == e0 && w[STOP].load(SeqCst) == 0 {
                    if start.elapsed() >= HANG {
                        add(w, TMO);
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(100));
                }
                w[ST + c].store(IDLE, SeqCst);
            }
        })
    };
    let (unreported, in_wait_kills, resets) = (Cell::new(0u64), Cell::new(0u64), Cell::new(0u64));
    // Parties killed in state "waiting" (about to call `wait`, or inside it), with the cycle
    // they were in and when: within 5 s the barrier must break or that cycle complete (with
    // the replacement, if the dead party had not arrived yet).
    let pending = std::cell::RefCell::new(Vec::<(u64, Instant)>::new());
    let resolve = |all: bool| {
        pending.borrow_mut().retain(|&(g0, at)| {
            if b.broken() || w[GEN].load(SeqCst) > g0 {
                return false;
            }
            if all || at.elapsed() >= HANG {
                unreported.set(unreported.get() + 1);
                return false;
            }
            true
        });
    };
    let mut on_dead = |c: usize, state: u64| {
        if state == WAIT {
            in_wait_kills.set(in_wait_kills.get() + 1);
            pending.borrow_mut().push((w[AUX + c].load(SeqCst), Instant::now()));
        }
    };
    let mut tick = || {
        resolve(false);
        if b.broken() && (0..P).all(|c| w[ST + c].load(SeqCst) == OTHER) {
            b.reset().unwrap();
            w[EPOCH].fetch_add(1, SeqCst);
            resets.set(resets.get() + 1);
        }
    };
    let mut before_stop = || {
        // The last kills get their 5 s too, with the parties still running.
        common::eventually(HANG, || {
            resolve(false);
            pending.borrow().is_empty()
        });
        resolve(true);
    };
    // Then everyone is released to see the stop.
    let mut after_stop = || b.abort().unwrap();
    let hooks = Hooks {
        on_dead: Some(&mut on_dead),
        tick: Some(&mut tick),
        before_stop: Some(&mut before_stop),
        after_stop: Some(&mut after_stop),
        ..Hooks::default()
    };
    let k = storm(w, P, secs, 0xba55, &spawn, hooks);
    println!(
        "stress_sync Barrier({P}), {secs} s: kills {} (in wait {}), cycles {}, party passes {}, \
         lockstep violations {}, overtaken by a cycle with a dead arrival {}, broken seen {}, \
         resets {}, kills in wait neither breaking it nor completing their cycle {}, hangs {}, \
         errors {}",
        k.total,
        in_wait_kills.get(),
        rd(w, GEN),
        rd(w, OPS),
        rd(w, VIOL),
        rd(w, DIRTY),
        rd(w, BROKEN),
        resets.get(),
        unreported.get(),
        rd(w, TMO),
        rd(w, ERR),
    );
    assert!(rd(w, GEN) > 0 && k.total > 0, "no progress");
    assert_eq!(rd(w, VIOL), 0, "parties out of lockstep");
    assert!(rd(w, DIRTY) <= in_wait_kills.get(), "parties out of lockstep without kills");
    assert_eq!(unreported.get(), 0, "a party died in wait: the barrier neither broke nor went on");
    assert_eq!(rd(w, TMO), 0, "hangs");
    assert_eq!(rd(w, ERR), 0, "unexpected errors");
    // Usable again after a reset.
    b.reset().unwrap();
    let p = {
        let b = b.clone();
        spawn_child(move || b.wait_timeout(HANG).is_ok())
    };
    let q = {
        let b = b.clone();
        spawn_child(move || b.wait_timeout(HANG).is_ok())
    };
    assert!(b.wait_timeout(HANG).is_ok());
    assert!(p.join_timeout(HANG).unwrap() && q.join_timeout(HANG).unwrap());
}

#[test]
fn event_setter_and_waiter_kill_storm() {
    // Children 0 and 1 set and clear the event in a loop; the others wait for it. A waiter
    // that waits 5 s while setters run is a lost wake-up (a hang).
    const N: usize = 5;
    let secs = stress_secs(2);
    let _wd = common::watchdog(Duration::from_secs(secs + 90));
    let w = shared_words(WORDS);
    let e = Event::new().unwrap();
    let spawn = |c: usize, seed: u64| {
        let e = e.clone();
        spawn_child(move || {
            let mut rng = Rng::new(seed);
            while w[STOP].load(SeqCst) == 0 {
                if c < 2 {
                    w[ST + c].store(HOLD, SeqCst);
                    e.set();
                    w[GEN].fetch_add(1, SeqCst);
                    spin(rng.below(500));
                    e.clear();
                    w[ST + c].store(IDLE, SeqCst);
                    spin(rng.below(2000));
                } else {
                    // Slices of 50 ms, so that a stop request is seen; 5 s in all is a hang.
                    w[ST + c].store(WAIT, SeqCst);
                    let start = Instant::now();
                    loop {
                        if e.wait_timeout(Duration::from_millis(50)) {
                            add(w, OPS);
                            break;
                        }
                        if w[STOP].load(SeqCst) != 0 {
                            break;
                        }
                        if start.elapsed() >= HANG {
                            add(w, TMO);
                            break;
                        }
                    }
                    w[ST + c].store(IDLE, SeqCst);
                }
            }
        })
    };
    let k = storm(w, N, secs, 0xe7e7, &spawn, Hooks::default());
    println!(
        "stress_sync Event, {secs} s: kills {} (setters mid-set {}, waiters in wait {}, other \
         {}), sets {}, waits woken {}, hangs {}",
        k.total,
        k.holding,
        k.waiting,
        k.other,
        rd(w, GEN),
        rd(w, OPS),
        rd(w, TMO),
    );
    assert!(rd(w, OPS) > 0 && k.total > 0, "no progress");
    assert_eq!(rd(w, TMO), 0, "hangs (a wait missed every set for {HANG:?})");
    // Still an event: set wakes, clear resets.
    e.set();
    assert!(e.wait_timeout(HANG) && e.is_set());
    e.clear();
    assert!(!e.wait_timeout(Duration::ZERO));
}
