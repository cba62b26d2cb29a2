//! Cross-process behaviour of `Queue`, `SimpleQueue` and `JoinableQueue`: MPMC delivery, the
//! tutorial scenarios, timeouts, close, items larger than the ring, processes killed in the
//! middle of an item, a garbled segment, and a model check against `VecDeque`.
//!
//! Children are `multiproc::Process`es (they may allocate). Every test holds a watchdog; no test
//! sleeps to synchronise: it waits for a state it can observe (`common::eventually`).
#![allow(clippy::undocumented_unsafe_blocks, unsafe_code)]

mod common;

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multiproc::queue::test_hooks;
use multiproc::{
    GetError, JoinError, JoinableQueue, Process, ProcessBuilder, PutError, Queue, QueueError,
    QueueJoinError, SimpleQueue, TaskDoneError,
};

const SECS: Duration = Duration::from_secs(20);

/// A self-checking item: `len` bytes derived from `id` (`len >= 8`).
fn pattern(id: u64, len: usize) -> Vec<u8> {
    assert!(len >= 8);
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&id.to_le_bytes());
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let take = (len - v.len()).min(8);
        v.extend_from_slice(&x.to_le_bytes()[..take]);
    }
    v
}

/// The id of a [`pattern`] item, or `None` if any byte is wrong (a torn or interleaved item).
fn check_pattern(v: &[u8]) -> Option<u64> {
    let id = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
    (pattern(id, v.len()) == v).then_some(id)
}

/// A child process that dies with the test binary (even if the watchdog aborts it).
fn child<R: multiproc::Message, F: FnOnce() -> R + Send + 'static>(f: F) -> Process<R> {
    ProcessBuilder::new().death_signal(Some(multiproc::Signal::KILL)).target(f)
}

fn pid_of<R: multiproc::Message>(p: &Process<R>) -> libc::pid_t {
    p.pid().expect("started").as_raw_nonzero().get()
}

fn signal<R: multiproc::Message>(p: &Process<R>, sig: i32) {
    assert_eq!(unsafe { libc::kill(pid_of(p), sig) }, 0);
}

/// Sleeper count of the queue's `data` (consumers) or `space` (producers) futex line: the
/// header is 128-byte lines `cfg, prod, cons, data, space, ...`; each wait line is
/// `{ seq: u32, waiters: u32 }`.
fn sleepers<T>(q: &Queue<T>, line: usize) -> u32 {
    let (hdr, len, _, _) = test_hooks::raw_parts(q);
    assert!(len >= (line + 1) * 128);
    unsafe { (*hdr.add(line * 128 + 4).cast::<AtomicU32>()).load(Ordering::SeqCst) }
}
const DATA: usize = 3;
const SPACE: usize = 4;

fn is_debug() -> bool {
    cfg!(debug_assertions)
}

// ---------------------------------------------------------------------------------------------
// Basics in one process

#[test]
fn items_come_out_in_order_with_exact_counts() {
    let _w = common::watchdog(common::TEST_LIMIT);
    let q: Queue<(u32, String)> = Queue::new().unwrap();
    assert!(q.empty());
    assert!(!q.full());
    assert_eq!(q.maxsize(), 0);
    assert_eq!(q.capacity_bytes(), 1 << 20);
    for i in 0..100 {
        q.put((i, format!("item {i}"))).unwrap();
        assert_eq!(q.qsize(), i as usize + 1);
        assert!(!q.empty());
    }
    for i in 0..100 {
        assert_eq!(q.get().unwrap(), (i, format!("item {i}")));
    }
    assert!(q.empty());
    assert_eq!(q.qsize(), 0);
    assert_eq!(q.lost(), 0);
}

#[test]
fn items_of_every_small_size_come_out_intact_whether_read_at_once_or_later() {
    let _w = common::watchdog(common::TEST_LIMIT);
    // A consumer that has caught up and one that is behind, every size around the inline
    // copies' limits (8, 16, 32 bytes), and the first record of a fresh queue (position 0).
    let item = |n: usize| (0..n).map(|i| (i * 7 + n) as u8).collect::<Vec<u8>>();
    for n in 0..=80 {
        let q: Queue<Vec<u8>> = Queue::builder().capacity_bytes(256).build().unwrap();
        q.put(item(n)).unwrap();
        assert_eq!(q.get().unwrap(), item(n), "fresh queue, {n} bytes");
        let mut b = Vec::new();
        q.put_bytes(&item(n)).unwrap();
        assert_eq!(q.get_bytes_into(&mut b).unwrap(), n);
        assert_eq!(b, item(n));
    }
    let q: Queue<Vec<u8>> = Queue::builder().capacity_bytes(4096).build().unwrap();
    for round in 0..3 {
        for n in 0..=48 {
            q.put(item(n)).unwrap();
            if round == 0 {
                assert_eq!(q.get().unwrap(), item(n), "read at once, {n} bytes");
            }
        }
        if round > 0 {
            for n in 0..=48 {
                assert_eq!(q.get().unwrap(), item(n), "read later, {n} bytes");
            }
        }
    }
    assert!(q.empty());
}

#[test]
fn handles_are_send_and_sync_whatever_the_item_type() {
    fn send_sync<T: Send + Sync>() {}
    // Items travel encoded, so even a `!Send` item type gives a shareable handle.
    send_sync::<Queue<std::rc::Rc<u8>>>();
    send_sync::<SimpleQueue<std::rc::Rc<u8>>>();
    send_sync::<JoinableQueue<std::rc::Rc<u8>>>();
    send_sync::<PutError<Vec<u8>>>();
    send_sync::<GetError>();
    // And usable from several threads at once.
    let q: Queue<u32> = Queue::new().unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let q = &q;
            s.spawn(move || {
                for i in 0..1000 {
                    q.put(t * 1000 + i).unwrap();
                }
            });
        }
    });
    let mut all: Vec<u32> = (0..4000).map(|_| q.get_nowait().unwrap()).collect();
    all.sort_unstable();
    assert!(all.iter().copied().eq(0..4000));
}

#[test]
fn full_queue_hands_the_item_back_and_empty_queue_says_empty() {
    let _w = common::watchdog(common::TEST_LIMIT);
    let q: Queue<String> = Queue::with_maxsize(2).unwrap();
    q.put_nowait("a".into()).unwrap();
    assert!(!q.full());
    q.put_nowait("b".into()).unwrap();
    assert!(q.full());
    match q.put_nowait("c".into()) {
        Err(PutError::Full(item)) => assert_eq!(item, "c"),
        other => panic!("{other:?}"),
    }
    assert_eq!(q.qsize(), 2);
    assert_eq!(q.get_nowait().unwrap(), "a");
    q.put_nowait("c".into()).unwrap();
    assert_eq!(q.get_nowait().unwrap(), "b");
    assert_eq!(q.get_nowait().unwrap(), "c");
    assert!(matches!(q.get_nowait(), Err(GetError::Empty)));

    // Byte capacity: a 64-byte ring holds one 24-byte record of a u64 but not three.
    let small: Queue<u64> = Queue::builder().capacity_bytes(64).build().unwrap();
    assert_eq!(small.capacity_bytes(), 64);
    small.put_nowait(1).unwrap();
    small.put_nowait(2).unwrap();
    assert!(matches!(small.put_nowait(3), Err(PutError::Full(3))));
    assert_eq!(small.get_nowait().unwrap(), 1);
    small.put_nowait(3).unwrap();
    assert_eq!(small.get_nowait().unwrap(), 2);
    assert_eq!(small.get_nowait().unwrap(), 3);
}

/// An item whose encoding fails (by panicking, as `Serde<T>` does) for the value 0.
#[derive(Debug, PartialEq)]
struct Picky(u8);

impl multiproc::codec::Encode for Picky {
    fn encode(&self, out: &mut Vec<u8>) {
        assert!(self.0 != 0, "cannot encode zero");
        self.0.encode(out);
    }
}

impl multiproc::codec::Decode for Picky {
    fn decode(
        input: &mut multiproc::codec::Decoder<'_>,
    ) -> Result<Self, multiproc::codec::DecodeError> {
        Ok(Picky(input.decode()?))
    }
}

#[test]
fn an_encoding_failure_is_returned_by_put_with_the_item() {
    let _w = common::watchdog(common::TEST_LIMIT);
    let q: Queue<Picky> = Queue::new().unwrap();
    q.put(Picky(1)).unwrap();
    match q.put(Picky(0)) {
        Err(PutError::Encode(item, msg)) => {
            assert_eq!(item, Picky(0));
            assert!(msg.contains("cannot encode zero"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    q.put(Picky(2)).unwrap();
    assert_eq!(q.qsize(), 2);
    assert_eq!(q.get().unwrap(), Picky(1));
    assert_eq!(q.get().unwrap(), Picky(2));
}

#[test]
fn timeouts_are_never_early_and_zero_is_immediate() {
    let _w = common::watchdog(common::TEST_LIMIT);
    let q: Queue<u8> = Queue::with_maxsize(1).unwrap();
    for ms in [1u64, 30, 80] {
        let t = Duration::from_millis(ms);
        let start = Instant::now();
        assert!(matches!(q.get_timeout(t), Err(GetError::Empty)));
        assert!(start.elapsed() >= t, "get returned after {:?} < {t:?}", start.elapsed());
    }
    q.put(1).unwrap();
    for ms in [1u64, 30, 80] {
        let t = Duration::from_millis(ms);
        let start = Instant::now();
        assert!(matches!(q.put_timeout(2, t), Err(PutError::Full(2))));
        assert!(start.elapsed() >= t, "put returned after {:?} < {t:?}", start.elapsed());
    }
    let start = Instant::now();
    for _ in 0..1000 {
        assert!(matches!(q.put_timeout(2, Duration::ZERO), Err(PutError::Full(2))));
        assert!(q.put_nowait(2).is_err());
    }
    assert_eq!(q.get_timeout(Duration::ZERO).unwrap(), 1);
    for _ in 0..1000 {
        assert!(matches!(q.get_timeout(Duration::ZERO), Err(GetError::Empty)));
        assert!(q.get_nowait().is_err());
    }
    // 4000 immediate attempts: far below what waiting even 1 ms each would take.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "zero timeouts waited: {:?}",
        start.elapsed()
    );
}

#[test]
fn a_busy_producer_lock_makes_put_time_out_not_hang() {
    let _w = common::watchdog(common::TEST_LIMIT);
    // A child streams an item larger than the ring with nobody reading: it holds the producer
    // lock while it waits for space.
    let q: Queue<Vec<u8>> = Queue::builder().capacity_bytes(4096).build().unwrap();
    let cq = q.clone();
    let p = child(move || {
        let _ = cq.put_timeout(vec![1; 100_000], Duration::from_secs(20));
    });
    p.start().unwrap();
    assert!(common::eventually(SECS, || test_hooks::positions(&q).1 > 0));
    let start = Instant::now();
    let t = Duration::from_millis(50);
    assert!(matches!(q.put_timeout(vec![2; 10], t), Err(PutError::Full(_))));
    assert!(start.elapsed() >= t);
    assert!(q.put_nowait(vec![2; 10]).unwrap_err().is_full());
    p.kill().unwrap();
    let _ = p.join();
}

// ---------------------------------------------------------------------------------------------
// close

#[test]
fn close_fails_later_puts_and_drains_then_reports_closed() {
    let _w = common::watchdog(common::TEST_LIMIT);
    let q: Queue<u32> = Queue::new().unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    assert!(!q.is_closed());
    q.close();
    q.close(); // idempotent
    assert!(q.is_closed());
    match q.put(3) {
        Err(PutError::Closed(3)) => {}
        other => panic!("{other:?}"),
    }
    assert!(q.put_nowait(3).unwrap_err().is_closed());
    assert_eq!(q.get().unwrap(), 1);
    assert_eq!(q.get_nowait().unwrap(), 2);
    assert!(matches!(q.get(), Err(GetError::Closed)));
    assert!(matches!(q.get_nowait(), Err(GetError::Closed)));
    let e: QueueError = q.get().unwrap_err().into();
    assert!(matches!(e, QueueError::Closed));

    let s: SimpleQueue<u8> = SimpleQueue::new().unwrap();
    s.put(7).unwrap();
    s.close();
    s.close();
    assert!(s.put(8).is_err());
    assert_eq!(s.get().unwrap(), 7);
    assert!(s.empty());
    assert!(matches!(s.get(), Err(GetError::Closed)));
}

#[test]
fn close_wakes_a_sleeping_consumer_and_a_sleeping_producer_in_other_processes() {
    let _w = common::watchdog(common::TEST_LIMIT);
    for _ in 0..3 {
        let q: Queue<u64> = Queue::with_maxsize(1).unwrap();
        let cq = q.clone();
        let consumer = child(move || matches!(cq.get(), Err(GetError::Closed)));
        consumer.start().unwrap();
        assert!(common::eventually(SECS, || sleepers(&q, DATA) == 1));
        q.close();
        assert!(consumer.join().unwrap(), "the consumer did not see Closed");

        let q: Queue<u64> = Queue::with_maxsize(1).unwrap();
        q.put(1).unwrap();
        let pq = q.clone();
        let producer = child(move || matches!(pq.put(2), Err(PutError::Closed(2))));
        producer.start().unwrap();
        assert!(common::eventually(SECS, || sleepers(&q, SPACE) == 1));
        q.close();
        assert!(producer.join().unwrap(), "the producer did not see Closed");
        assert_eq!(q.get().unwrap(), 1);
        assert!(matches!(q.get(), Err(GetError::Closed)));
    }
}

// ---------------------------------------------------------------------------------------------
// Many processes

#[test]
fn four_producers_four_consumers_deliver_every_item_once_in_producer_order() {
    let _w = common::watchdog(Duration::from_secs(120));
    let per_producer: u32 = 100_000;
    let q: Queue<Option<(u32, u32)>> = Queue::builder().capacity_bytes(64 << 10).build().unwrap();
    let consumers: Vec<Process<Vec<(u32, u32)>>> = (0..4)
        .map(|_| {
            let q = q.clone();
            child(move || {
                let mut got = Vec::new();
                while let Some(item) = q.get().unwrap() {
                    got.push(item);
                }
                got
            })
        })
        .collect();
    let producers: Vec<Process<()>> = (0..4u32)
        .map(|p| {
            let q = q.clone();
            child(move || {
                for i in 0..per_producer {
                    q.put(Some((p, i))).unwrap();
                }
            })
        })
        .collect();
    for c in &consumers {
        c.start().unwrap();
    }
    for p in &producers {
        p.start().unwrap();
    }
    for p in &producers {
        p.join().unwrap();
    }
    for _ in 0..4 {
        q.put(None).unwrap();
    }
    let mut seen = HashSet::new();
    for c in &consumers {
        let got = c.join().unwrap();
        let mut last = [None::<u32>; 4];
        for (p, i) in got {
            assert!(seen.insert((p, i)), "({p}, {i}) delivered twice");
            let slot = &mut last[p as usize];
            assert!(slot.is_none_or(|l| l < i), "producer {p}: {i} after {slot:?}");
            *slot = Some(i);
        }
    }
    assert_eq!(seen.len(), 4 * per_producer as usize);
    assert!(q.empty());
    assert_eq!(q.lost(), 0);
}

#[test]
fn items_larger_than_the_ring_from_several_producers_arrive_intact_and_whole() {
    let _w = common::watchdog(Duration::from_secs(60));
    let q: Queue<Vec<u8>> = Queue::builder().capacity_bytes(64 << 10).build().unwrap();
    let sizes = [8usize, 100, 70_000, 200_000, 16_000, 30_000, 700_000, 65_536, 1000];
    let producers: Vec<Process<()>> = (0..3u64)
        .map(|p| {
            let q = q.clone();
            child(move || {
                for (i, &len) in sizes.iter().enumerate() {
                    q.put(pattern(p << 32 | i as u64, len)).unwrap();
                }
            })
        })
        .collect();
    let consumers: Vec<Process<Vec<u64>>> = (0..2)
        .map(|_| {
            let q = q.clone();
            child(move || {
                let mut ids = Vec::new();
                loop {
                    let v = q.get().unwrap();
                    if v.is_empty() {
                        return ids;
                    }
                    ids.push(check_pattern(&v).expect("a torn or interleaved item"));
                }
            })
        })
        .collect();
    for p in producers.iter() {
        p.start().unwrap();
    }
    for c in consumers.iter() {
        c.start().unwrap();
    }
    for p in &producers {
        p.join().unwrap();
    }
    q.put(Vec::new()).unwrap();
    q.put(Vec::new()).unwrap();
    let mut all = HashSet::new();
    for c in &consumers {
        let ids = c.join().unwrap();
        let mut last = [None::<u64>; 3];
        for id in ids {
            assert!(all.insert(id));
            let slot = &mut last[(id >> 32) as usize];
            assert!(slot.is_none_or(|l| l < (id & 0xffff_ffff)));
            *slot = Some(id & 0xffff_ffff);
        }
    }
    assert_eq!(all.len(), 3 * sizes.len());
    assert_eq!(q.lost(), 0);
}

#[test]
fn a_child_puts_ten_mib_and_is_joined_before_anyone_reads() {
    let _w = common::watchdog(common::TEST_LIMIT);
    let q: Queue<Vec<u8>> = Queue::builder().capacity_bytes(16 << 20).build().unwrap();
    let cq = q.clone();
    let p = child(move || {
        cq.put(pattern(10, 10 << 20)).unwrap();
        cq.put(pattern(11, 100)).unwrap();
    });
    p.start().unwrap();
    p.join_timeout(Duration::from_secs(20)).expect("the producer exits without a reader");
    assert_eq!(q.qsize(), 2);
    let big = q.get().unwrap();
    assert_eq!(big.len(), 10 << 20);
    assert_eq!(check_pattern(&big), Some(10));
    assert_eq!(check_pattern(&q.get().unwrap()), Some(11));
}

#[test]
fn put_bytes_and_get_bytes_into_interoperate_with_put_and_get() {
    let _w = common::watchdog(common::TEST_LIMIT);
    let q: Queue<Vec<u8>> = Queue::builder().capacity_bytes(64 << 10).build().unwrap();
    let pq = q.clone();
    let sizes = [0usize, 1, 8, 1000, 16_000, 64 << 10, 300_000, 1 << 20];
    let p = child(move || {
        for (i, &len) in sizes.iter().enumerate() {
            let item = if len >= 8 { pattern(i as u64, len) } else { vec![i as u8; len] };
            if i % 2 == 0 {
                pq.put_bytes(&item).unwrap();
            } else {
                pq.put(item).unwrap();
            }
        }
    });
    p.start().unwrap();
    let mut buf = Vec::new();
    for (i, &len) in sizes.iter().enumerate() {
        let want = if len >= 8 { pattern(i as u64, len) } else { vec![i as u8; len] };
        if i % 3 == 0 {
            assert_eq!(q.get().unwrap(), want);
        } else {
            assert_eq!(q.get_bytes_into(&mut buf).unwrap(), len);
            assert_eq!(buf, want);
        }
    }
    p.join().unwrap();
    assert!(matches!(q.get_bytes_into_timeout(&mut buf, Duration::ZERO), Err(GetError::Empty)));
    let small: Queue<Vec<u8>> = Queue::with_maxsize(1).unwrap();
    small.put_bytes(b"x").unwrap();
    assert!(matches!(small.put_bytes_timeout(b"y", Duration::ZERO), Err(PutError::Full(()))));
    small.close();
    assert!(matches!(small.put_bytes(b"y"), Err(PutError::Closed(()))));
    assert_eq!(small.get_bytes_into(&mut buf).unwrap(), 1);
    assert!(matches!(small.get_bytes_into(&mut buf), Err(GetError::Closed)));
}

/// The tutorial: `f1` puts a string, `f2` (another process) gets it.
#[test]
fn tutorial_one_child_puts_and_another_gets() {
    let _w = common::watchdog(common::TEST_LIMIT);
    let queue: Queue<String> = Queue::new().unwrap();
    let q1 = queue.clone();
    let f1 = child(move || q1.put("Hello shiyanlou".to_string()).unwrap());
    let q2 = queue.clone();
    let f2 = child(move || q2.get().unwrap());
    f1.start().unwrap();
    f2.start().unwrap();
    assert_eq!(f2.join().unwrap(), "Hello shiyanlou");
    f1.join().unwrap();
    assert!(queue.empty());
}

/// The tutorial: `task_handler` sums its slice of 1..=100 000 000 and puts the partial sum;
/// `main` starts 8 processes, joins them all, then sums the queue while `not q.empty()`.
#[test]
fn tutorial_parallel_sum_over_eight_processes() {
    let _w = common::watchdog(Duration::from_secs(120));
    const N: u64 = 100_000_000;
    let result_queue: Queue<u64> = Queue::new().unwrap();
    let start = Instant::now();
    let processes: Vec<Process<()>> = (0..8u64)
        .map(|k| {
            let q = result_queue.clone();
            let (lo, hi) = (k * N / 8 + 1, (k + 1) * N / 8);
            child(move || {
                let mut total = 0u64;
                for number in lo..=hi {
                    total += std::hint::black_box(number);
                }
                q.put(total).unwrap();
            })
        })
        .collect();
    for p in &processes {
        p.start().unwrap();
    }
    for p in &processes {
        p.join().unwrap();
    }
    let mut total = 0;
    while !result_queue.empty() {
        total += result_queue.get().unwrap();
    }
    assert_eq!(total, 5_000_000_050_000_000);
    eprintln!("parallel sum over 8 processes: {:?}", start.elapsed());
}

/// The tutorial's JoinableQueue pair: a daemon consumer calls `task_done` after each item; the
/// producer puts its items and then `join`s.
#[test]
fn tutorial_joinable_queue_producer_waits_for_consumer() {
    let _w = common::watchdog(common::TEST_LIMIT);
    let q: JoinableQueue<String> = JoinableQueue::new().unwrap();
    let done: &'static common::SharedPage = Box::leak(Box::new(common::SharedPage::new(4096)));
    let processed: &AtomicU64 = unsafe { done.get(0) };
    let cq = q.clone();
    let consumer = ProcessBuilder::new()
        .daemon(true)
        .death_signal(Some(multiproc::Signal::KILL))
        .spawn(move || {
            while let Ok(res) = cq.get() {
                assert!(res.starts_with("product"));
                processed.fetch_add(1, Ordering::SeqCst);
                cq.task_done().unwrap();
            }
        });
    let consumer = consumer.unwrap();
    for i in 0..50 {
        q.put(format!("product {i}")).unwrap();
    }
    q.join().unwrap();
    // join returned: every put item was processed (and task_done'd).
    assert_eq!(processed.load(Ordering::SeqCst), 50);
    assert_eq!(q.unfinished_tasks(), 0);
    assert!(q.empty());
    q.close();
    consumer.join().unwrap();
}

#[test]
fn joinable_queue_counts_tasks_like_python() {
    let _w = common::watchdog(common::TEST_LIMIT);
    let q: JoinableQueue<u8> = JoinableQueue::with_maxsize(10).unwrap();
    assert_eq!(q.task_done(), Err(TaskDoneError::TooManyCalls));
    q.join_timeout(Duration::ZERO).unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    assert_eq!(q.unfinished_tasks(), 2);
    let start = Instant::now();
    assert_eq!(q.join_timeout(Duration::from_millis(30)), Err(QueueJoinError::Timeout));
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert_eq!(q.get().unwrap(), 1);
    q.task_done().unwrap();
    assert_eq!(q.unfinished_tasks(), 1);
    q.task_done().unwrap(); // Python allows task_done before the get, too
    assert_eq!(q.task_done(), Err(TaskDoneError::TooManyCalls));
    q.join_timeout(Duration::ZERO).unwrap();
    assert_eq!(q.get().unwrap(), 2);
    // A rejected put is not a task.
    q.close();
    assert!(q.put(3).is_err());
    assert_eq!(q.unfinished_tasks(), 0);
}

#[test]
fn join_wakes_when_another_process_finishes_the_last_task() {
    let _w = common::watchdog(common::TEST_LIMIT);
    let q: JoinableQueue<u32> = JoinableQueue::new().unwrap();
    for i in 0..1000 {
        q.put(i).unwrap();
    }
    let workers: Vec<Process<u32>> = (0..3)
        .map(|_| {
            let q = q.clone();
            child(move || {
                let mut n = 0;
                while let Ok(_item) = q.get_timeout(Duration::ZERO) {
                    q.task_done().unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    for w in &workers {
        w.start().unwrap();
    }
    q.join_timeout(Duration::from_secs(20)).unwrap();
    let n: u32 = workers.iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(n, 1000);
}

// ---------------------------------------------------------------------------------------------
// Processes killed mid-item

#[test]
fn a_big_item_that_fits_is_put_at_once_while_an_abandoned_one_waits_to_be_skipped() {
    let _w = common::watchdog(common::TEST_LIMIT);
    // A 4 MiB ring: items over 1 MiB (a quarter) may stream.
    let q: Queue<Vec<u8>> = Queue::builder().capacity_bytes(4 << 20).build().unwrap();
    let x = pattern(1, 1536 << 10);
    q.put(x.clone()).unwrap();
    // A 3 MiB item with no consumer: it fills the ring, runs out of time mid-stream and is
    // abandoned; consumers will skip its bytes when they reach them.
    let y = pattern(2, 3 << 20);
    match q.put_timeout(y, Duration::from_millis(50)) {
        Err(PutError::Full(back)) => assert_eq!(check_pattern(&back), Some(2)),
        other => panic!("the 3 MiB put should have timed out: {other:?}"),
    }
    // Reading the first item frees 1.5 MiB in front of the abandoned bytes.
    assert_eq!(q.get_timeout(SECS).unwrap(), x);
    // An item that fits in that room goes in now (Python: `put_nowait` fails only when the
    // queue is full), although consumers have not passed the abandoned item yet.
    let z = pattern(3, 1200 << 10);
    match q.put_nowait(z.clone()) {
        Ok(()) => {}
        Err(e) => panic!("a fitting item was refused: {e:?}"),
    }
    assert_eq!(q.get_timeout(SECS).unwrap(), z);
    assert!(matches!(q.get_nowait(), Err(GetError::Empty)));
    assert_eq!(q.lost(), 0, "an item its producer got back is not lost");
}

#[test]
fn a_producer_killed_mid_stream_is_detected_by_a_waiting_consumer() {
    let _w = common::watchdog(common::TEST_LIMIT);
    for _ in 0..3 {
        let q: Queue<Vec<u8>> = Queue::builder().capacity_bytes(64 << 10).build().unwrap();
        let cq = q.clone();
        let p = child(move || {
            cq.put(pattern(1, 1 << 20)).unwrap();
        });
        p.start().unwrap();
        // The ring fills with the first 64 KiB and the producer waits for a reader.
        assert!(common::eventually(SECS, || test_hooks::positions(&q).1 == 64 << 10));
        p.kill().unwrap();
        assert!(p.join().is_err());
        assert_eq!(q.lost(), 0);
        // The consumer starts reading the stream, finds its producer dead, discards it.
        let start = Instant::now();
        assert!(matches!(q.get_timeout(Duration::from_secs(2)), Err(GetError::Empty)));
        assert!(start.elapsed() < Duration::from_secs(10));
        assert_eq!(q.lost(), 1);
        assert_eq!(q.qsize(), 0);
        // The queue works as before.
        q.put(pattern(2, 100)).unwrap();
        assert_eq!(check_pattern(&q.get().unwrap()), Some(2));
        assert_eq!(q.lost(), 1);
    }
}

#[test]
fn a_lost_item_is_not_an_unfinished_task() {
    let _w = common::watchdog(common::TEST_LIMIT);
    let q: JoinableQueue<Vec<u8>> =
        JoinableQueue::builder().capacity_bytes(64 << 10).build().unwrap();
    q.put(pattern(0, 100)).unwrap();
    let cq = q.clone();
    let p = child(move || cq.put(pattern(1, 1 << 20)).unwrap());
    p.start().unwrap();
    assert!(common::eventually(SECS, || test_hooks::positions(&q).1 == 64 << 10));
    p.kill().unwrap();
    assert!(p.join().is_err());
    assert_eq!(check_pattern(&q.get().unwrap()), Some(0));
    q.task_done().unwrap();
    assert!(matches!(q.get_timeout(Duration::from_millis(100)), Err(GetError::Empty)));
    assert_eq!(q.lost(), 1);
    assert_eq!(q.unfinished_tasks(), 0);
    q.join_timeout(Duration::ZERO).unwrap();
    assert_eq!(q.task_done(), Err(TaskDoneError::TooManyCalls));
}

#[test]
fn a_producer_killed_mid_stream_is_repaired_by_the_next_producer() {
    let _w = common::watchdog(common::TEST_LIMIT);
    let q: Queue<Vec<u8>> = Queue::builder().capacity_bytes(64 << 10).build().unwrap();
    q.put(pattern(0, 1000)).unwrap();
    let cq = q.clone();
    let dead = child(move || {
        cq.put(pattern(1, 1 << 20)).unwrap();
    });
    dead.start().unwrap();
    assert!(common::eventually(SECS, || test_hooks::positions(&q).1 == 64 << 10));
    dead.kill().unwrap();
    assert!(dead.join().is_err());
    // The next producer repairs (marks the stream aborted), then waits for room.
    let cq = q.clone();
    let next = child(move || cq.put_timeout(pattern(2, 5000), Duration::from_secs(20)).is_ok());
    next.start().unwrap();
    assert!(common::eventually(SECS, || q.lost() == 1));
    assert_eq!(q.qsize(), 1);
    assert_eq!(check_pattern(&q.get().unwrap()), Some(0));
    // The aborted item is skipped; the next producer's item follows.
    assert_eq!(check_pattern(&q.get_timeout(Duration::from_secs(20)).unwrap()), Some(2));
    assert!(next.join().unwrap());
    assert_eq!(q.lost(), 1);
    assert!(q.empty());
}

#[test]
fn a_consumer_killed_mid_stream_leaves_the_rest_discarded_and_counted() {
    let _w = common::watchdog(common::TEST_LIMIT);
    for round in 0..3u64 {
        let q: Queue<Vec<u8>> = Queue::builder().capacity_bytes(64 << 10).build().unwrap();
        let pq = q.clone();
        let producer = child(move || {
            pq.put(pattern(round * 10 + 1, 1 << 20)).unwrap();
            pq.put(pattern(round * 10 + 2, 3000)).unwrap();
        });
        producer.start().unwrap();
        assert!(common::eventually(SECS, || test_hooks::positions(&q).1 == 64 << 10));
        // Freeze the producer: the consumer can read what is there, not finish the item.
        signal(&producer, libc::SIGSTOP);
        let cq = q.clone();
        let consumer = child(move || {
            let _ = cq.get();
        });
        consumer.start().unwrap();
        assert!(common::eventually(SECS, || {
            let (head, tail) = test_hooks::positions(&q);
            head == tail
        }));
        consumer.kill().unwrap();
        assert!(consumer.join().is_err());
        signal(&producer, libc::SIGCONT);
        // The next consumer discards the rest of the item, then gets the next one.
        let v = q.get_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(check_pattern(&v), Some(round * 10 + 2));
        assert_eq!(q.lost(), 1);
        producer.join().unwrap();
        assert!(q.empty());
    }
}

#[test]
fn random_kills_never_deliver_a_torn_item_and_never_lose_one_silently() {
    let _w = common::watchdog(Duration::from_secs(120));
    let q: Queue<Vec<u8>> = Queue::builder().capacity_bytes(16 << 10).build().unwrap();
    // Counters the children update after each completed put / get: [puts, gets].
    let page: &'static common::SharedPage = Box::leak(Box::new(common::SharedPage::new(4096)));
    let puts: &'static AtomicU64 = unsafe { page.get(0) };
    let gets: &'static AtomicU64 = unsafe { page.get(8) };
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let rounds = if is_debug() { 20 } else { 60 };
    for k in 0..rounds {
        puts.store(0, Ordering::SeqCst);
        gets.store(0, Ordering::SeqCst);
        let lost_before = q.lost();
        let (pq, first) = (q.clone(), k << 32);
        let lens: Vec<usize> = (0..200).map(|_| 8 + (rnd() % 40_000) as usize).collect();
        let producer = child(move || {
            for (i, &len) in lens.iter().enumerate() {
                pq.put(pattern(first + i as u64, len)).unwrap();
                puts.fetch_add(1, Ordering::SeqCst);
            }
        });
        let cq = q.clone();
        let consumer = child(move || {
            loop {
                match cq.get_timeout(Duration::from_millis(300)) {
                    Ok(v) => {
                        assert!(check_pattern(&v).is_some(), "torn item delivered");
                        gets.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(GetError::Empty) => return,
                    Err(e) => panic!("{e}"),
                }
            }
        });
        let target = rnd() % 50;
        let victim_is_producer = rnd() % 2 == 0;
        // Read before the children start: they may well finish before this process runs again.
        let base = test_hooks::positions(&q).0;
        producer.start().unwrap();
        consumer.start().unwrap();
        let moved = common::eventually(SECS, || {
            test_hooks::positions(&q).0 > base + target * 4000 || puts.load(Ordering::SeqCst) == 200
        });
        assert!(
            moved,
            "round {k}: no progress: positions {:?}, qsize {}, puts {}, gets {}",
            test_hooks::positions(&q),
            q.qsize(),
            puts.load(Ordering::SeqCst),
            gets.load(Ordering::SeqCst)
        );
        if victim_is_producer {
            let _ = producer.kill();
        } else {
            let _ = consumer.kill();
        }
        // Drain alongside whatever is still running, checking every item.
        let mut mine = 0;
        let (mut producer_done, mut consumer_done) = (false, false);
        loop {
            match q.get_timeout(Duration::from_millis(20)) {
                Ok(v) => {
                    assert!(check_pattern(&v).is_some(), "torn item delivered");
                    mine += 1;
                }
                Err(GetError::Empty) => {}
                Err(e) => panic!("{e}"),
            }
            if !producer_done {
                producer_done =
                    !matches!(producer.join_timeout(Duration::ZERO), Err(JoinError::Timeout));
            }
            if !consumer_done {
                match consumer.join_timeout(Duration::ZERO) {
                    Err(JoinError::Timeout) => {}
                    Ok(()) => consumer_done = true,
                    Err(JoinError::Panicked(msg)) => panic!("consumer: {msg}"),
                    Err(_) => consumer_done = true,
                }
            }
            if producer_done && consumer_done && q.empty() {
                break;
            }
        }
        // Every item put is delivered or counted lost. A victim killed between finishing an
        // operation and counting it accounts for one item of slack.
        let put = puts.load(Ordering::SeqCst);
        let accounted = gets.load(Ordering::SeqCst) + mine + (q.lost() - lost_before);
        if victim_is_producer {
            assert!(
                accounted == put || accounted == put + 1,
                "round {k}: put {put}, accounted {accounted}"
            );
        } else {
            assert_eq!(put, 200);
            assert!(accounted == 200 || accounted == 199, "round {k}: accounted {accounted}");
        }
        assert!(q.lost() - lost_before <= 1);
    }
    // Still fully usable, for small items and items larger than the ring.
    q.put(pattern(7, 5000)).unwrap();
    assert_eq!(check_pattern(&q.get().unwrap()), Some(7));
    let pq = q.clone();
    let p = child(move || pq.put(pattern(8, 50_000)).unwrap());
    p.start().unwrap();
    assert_eq!(check_pattern(&q.get().unwrap()), Some(8));
    p.join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Garbled segment

#[test]
fn a_garbled_header_gives_corrupt_not_a_crash() {
    let _w = common::watchdog(common::TEST_LIMIT);
    let q: Queue<u64> = Queue::builder().capacity_bytes(4096).build().unwrap();
    q.put(1).unwrap();
    let (hdr, _, _, _) = test_hooks::raw_parts(&q);
    // Magic number.
    unsafe { (*hdr.cast::<std::sync::atomic::AtomicU64>()).fetch_xor(1, Ordering::SeqCst) };
    assert!(matches!(q.put(2), Err(PutError::Corrupt(2, _))));
    assert!(matches!(q.get(), Err(GetError::Corrupt(_))));
    let e: QueueError = q.get().unwrap_err().into();
    assert!(e.to_string().contains("corrupt queue"), "{e}");

    // `tail` far past `head`.
    let q: Queue<u64> = Queue::builder().capacity_bytes(4096).build().unwrap();
    q.put(1).unwrap();
    let (hdr, _, _, _) = test_hooks::raw_parts(&q);
    unsafe {
        (*hdr.add(128).cast::<std::sync::atomic::AtomicU64>()).store(1 << 40, Ordering::SeqCst)
    };
    assert!(matches!(q.get(), Err(GetError::Corrupt(_))));
    assert!(matches!(q.put(2), Err(PutError::Corrupt(2, _))));

    // A record whose sequence number is wrong (the first of two).
    let q: Queue<u64> = Queue::builder().capacity_bytes(4096).build().unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    let (_, _, ring, _) = test_hooks::raw_parts(&q);
    unsafe { *ring.add(8) = 9 };
    assert!(matches!(q.get(), Err(GetError::Corrupt(_))));
}

#[test]
fn random_garbage_over_header_and_ring_never_panics_or_hangs() {
    let _w = common::watchdog(Duration::from_secs(60));
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut corrupt = 0;
    for round in 0..300 {
        let q: JoinableQueue<Vec<u8>> =
            JoinableQueue::builder().capacity_bytes(256).maxsize(5).build().unwrap();
        for i in 0..(rnd() % 4) {
            let _ = q.put_nowait(vec![i as u8; (rnd() % 100) as usize]);
        }
        let _ = q.get_nowait();
        let (hdr, hlen, ring, rlen) = test_hooks::raw_parts(&q);
        let writes = 1 + rnd() % 6;
        for _ in 0..writes {
            let (base, len) = if rnd() % 4 == 0 { (ring, rlen) } else { (hdr, hlen) };
            let off = (rnd() as usize) % len;
            let word = match rnd() % 5 {
                0 => 0,
                1 => u64::MAX,
                2 => rnd() % 1024,
                3 => 1 << (rnd() % 64),
                _ => rnd(),
            };
            let bytes = word.to_le_bytes();
            for (i, b) in bytes.iter().enumerate() {
                if off + i < len && (round % 2 == 0 || i < 4) {
                    unsafe { *base.add(off + i) = *b };
                }
            }
        }
        for _ in 0..10 {
            let r = match rnd() % 9 {
                0 | 1 => q.put_nowait(vec![1; (rnd() % 300) as usize]).err().map(QueueError::from),
                2 | 3 => q.get_nowait().err().map(QueueError::from),
                4 => {
                    q.put_timeout(vec![2; 20], Duration::from_millis(1)).err().map(QueueError::from)
                }
                5 => q.get_timeout(Duration::from_millis(1)).err().map(QueueError::from),
                6 => q.task_done().err().map(QueueError::from),
                7 => q.join_timeout(Duration::ZERO).err().map(QueueError::from),
                _ => {
                    let _ = (q.qsize(), q.empty(), q.full(), q.lost(), q.unfinished_tasks());
                    None
                }
            };
            if matches!(r, Some(QueueError::Corrupt(_))) {
                corrupt += 1;
            }
        }
    }
    assert!(corrupt > 0, "garbage was never detected");
}

// ---------------------------------------------------------------------------------------------
// Model check

/// What the queue must do, in one process, with zero timeouts: see `fuzz/fuzz_targets/queue_model.rs`
/// for the same model driven by the fuzzer.
#[derive(Default)]
struct Model {
    cap: u64,
    maxsize: usize,
    entries: VecDeque<Entry>,
    used: u64,
    closed: bool,
}

enum Entry {
    Item(Vec<u8>),
    /// The published part of a record whose put timed out mid-stream.
    Aborted(u64),
}

fn record_size(item: &[u8]) -> u64 {
    16 + (8 + item.len() as u64).div_ceil(8) * 8
}

impl Model {
    fn items(&self) -> usize {
        self.entries.iter().filter(|e| matches!(e, Entry::Item(_))).count()
    }

    /// Whether a zero-timeout put succeeds.
    fn put(&mut self, item: &[u8]) -> Result<(), &'static str> {
        if self.closed {
            return Err("closed");
        }
        if self.maxsize != 0 && self.items() >= self.maxsize {
            return Err("full");
        }
        let need = record_size(item);
        let free = self.cap - self.used;
        if need <= free {
            self.entries.push_back(Entry::Item(item.to_vec()));
            self.used += need;
            return Ok(());
        }
        let chunk = self.cap / 4;
        if need <= chunk
            || self.entries.iter().any(|e| matches!(e, Entry::Aborted(_)))
            || free < need.min(chunk)
        {
            return Err("full");
        }
        // Streams `free` bytes, times out, aborts.
        self.entries.push_back(Entry::Aborted(free));
        self.used += free;
        Err("full")
    }

    fn get(&mut self) -> Result<Vec<u8>, &'static str> {
        loop {
            match self.entries.pop_front() {
                None => return Err(if self.closed { "closed" } else { "empty" }),
                Some(Entry::Aborted(n)) => self.used -= n,
                Some(Entry::Item(v)) => {
                    self.used -= record_size(&v);
                    return Ok(v);
                }
            }
        }
    }
}

#[test]
fn queue_matches_a_vecdeque_model() {
    let _w = common::watchdog(Duration::from_secs(60));
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..60 {
        let cap = 64u64 << (rnd() % 6);
        let maxsize = [0usize, 1, 3, 10][(rnd() % 4) as usize];
        let q: Queue<Vec<u8>> =
            Queue::builder().capacity_bytes(cap as usize).maxsize(maxsize).build().unwrap();
        let mut m = Model { cap, maxsize, ..Model::default() };
        let mut next = 0u8;
        for _ in 0..400 {
            match rnd() % 16 {
                0..=6 => {
                    let len = match rnd() % 4 {
                        0 => (rnd() % 8) as usize,
                        1 => (rnd() % cap) as usize,
                        2 => (rnd() % (cap * 3)) as usize,
                        _ => (rnd() % 32) as usize,
                    };
                    let item = vec![next; len];
                    next = next.wrapping_add(1);
                    let want = m.put(&item);
                    let got = if rnd() % 2 == 0 {
                        q.put_nowait(item.clone())
                    } else {
                        q.put_timeout(item.clone(), Duration::ZERO)
                    };
                    match (want, got) {
                        (Ok(()), Ok(())) => {}
                        (Err("full"), Err(PutError::Full(back)))
                        | (Err("closed"), Err(PutError::Closed(back))) => {
                            assert_eq!(back, item)
                        }
                        (w, g) => {
                            panic!("put of {len} bytes (cap {cap}): model {w:?}, queue {g:?}")
                        }
                    }
                }
                7..=12 => {
                    let want = m.get();
                    let got = q.get_nowait();
                    match (want, got) {
                        (Ok(a), Ok(b)) => assert_eq!(a, b),
                        (Err("empty"), Err(GetError::Empty))
                        | (Err("closed"), Err(GetError::Closed)) => {}
                        (w, g) => panic!("get: model {w:?}, queue {g:?}"),
                    }
                }
                13 if rnd() % 8 == 0 => {
                    m.closed = true;
                    q.close();
                }
                _ => {}
            }
            assert_eq!(q.qsize(), m.items());
            assert_eq!(q.empty(), m.items() == 0);
            assert_eq!(q.full(), maxsize != 0 && m.items() >= maxsize);
            assert_eq!(q.lost(), 0);
        }
    }
}

#[test]
fn byte_strings_go_straight_through_and_bad_utf8_is_a_decode_error() {
    let _w = common::watchdog(common::TEST_LIMIT);
    let q: Queue<String> = Queue::builder().capacity_bytes(4096).build().unwrap();
    q.put("abc".to_string()).unwrap();
    q.put("d\u{e9}f".to_string()).unwrap();
    // Garble the first record's payload (16-byte record header, 8-byte length, then "abc").
    let (_, _, ring, _) = test_hooks::raw_parts(&q);
    unsafe { *ring.add(16 + 8 + 1) = 0xff };
    assert!(matches!(
        q.get(),
        Err(GetError::Decode(multiproc::codec::DecodeError::InvalidUtf8 { valid_up_to: 1 }))
    ));
    assert_eq!(q.get().unwrap(), "d\u{e9}f");
    assert!(q.empty());

    // Big items of every kind of ring: larger than the ring, larger than a quarter of it but
    // fitting (streamed anyway from 1 MiB on), and small enough to go whole.
    for (ring, len) in
        [(1 << 20, 5 << 20), (16 << 20, 6 << 20), (16 << 20, 3 << 20), (64 << 20, 2 << 20)]
    {
        let q: Queue<std::sync::Arc<Vec<u8>>> =
            Queue::builder().capacity_bytes(ring).build().unwrap();
        let cq = q.clone();
        let p = child(move || {
            for id in 0..3 {
                cq.put(std::sync::Arc::new(pattern(id, len + id as usize))).unwrap();
            }
        });
        p.start().unwrap();
        for id in 0..3 {
            let v = q.get().unwrap();
            assert_eq!(v.len(), len + id as usize, "ring {ring}");
            assert_eq!(check_pattern(&v), Some(id), "ring {ring}, item {id}");
        }
        p.join().unwrap();
        assert_eq!(q.lost(), 0);
    }
}

// ---------------------------------------------------------------------------------------------
// Issue 19

#[test]
fn issue_19_an_overwritten_length_word_is_corrupt_at_once_not_a_sink_for_later_items() {
    // Bug 5: one record's length word says 1 TiB while a live producer streams a big item
    // behind it. The get must honour its timeout and take none of the producer's bytes.
    let _w = common::watchdog(common::TEST_LIMIT);
    let q: Queue<Vec<u8>> = Queue::builder().capacity_bytes(64 << 10).build().unwrap();
    q.put(pattern(1, 100)).unwrap();
    let (_, _, ring, _) = test_hooks::raw_parts(&q);
    let (head, _) = test_hooks::positions(&q);
    let off = (head & (q.capacity_bytes() as u64 - 1)) as usize;
    unsafe { std::ptr::write_unaligned(ring.add(off).cast::<u64>(), (1u64 << 40).to_le()) };
    let pq = q.clone();
    let producer =
        std::thread::spawn(move || pq.put_timeout(pattern(2, 8 << 20), Duration::from_secs(2)));
    // The producer is streaming (the ring is full of its first bytes).
    assert!(common::eventually(SECS, || test_hooks::positions(&q).1 >= (64 << 10)));
    let start = Instant::now();
    let r = q.get_timeout(Duration::from_millis(10));
    assert!(start.elapsed() < Duration::from_secs(1), "get took {:?}", start.elapsed());
    assert!(matches!(r, Err(GetError::Corrupt(_))), "{r:?}");
    // Nobody read the producer's item: its put times out and hands it back.
    match producer.join().unwrap() {
        Err(PutError::Full(back)) => assert_eq!(check_pattern(&back), Some(2)),
        other => panic!("the producer's item went somewhere: {other:?}"),
    }
    assert_eq!(test_hooks::positions(&q).0, head, "nothing was consumed");
}
