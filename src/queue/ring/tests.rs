//! The race windows of issue 19, forced with [`hook`]s: each test acts, as another process
//! would, exactly inside the window (or writes the state a process killed there leaves).

use std::cell::Cell;
use std::rc::Rc;
use std::sync::mpsc;

use std::sync::atomic::Ordering::{Relaxed, Release, SeqCst};
use std::time::Duration;

use multiproc_sys::sync::pthread::LockOutcome;
use multiproc_sys::time::Deadline;

use super::access::{ItemBytes, ItemSink};
use super::fail::{Fail, RingResult};
use super::hook::{self, Point};
use super::layout::{NONE, record_size};
use super::raw::RawQueue;
use crate::wait::Patience;

const SHORT: Option<Duration> = Some(Duration::from_millis(50));

fn bytes(id: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| id.wrapping_add((i % 251) as u8)).collect()
}

fn put(q: &RawQueue, b: &[u8]) {
    q.put(ItemBytes { prefix: &[], body: b }, Patience::FOREVER).unwrap();
}

fn get(q: &RawQueue, timeout: Option<Duration>) -> RingResult<Vec<u8>> {
    let mut out = Vec::new();
    let mut sink = ItemSink::new(&mut out, 0);
    q.get(&mut sink, Patience::from_timeout(timeout))?;
    Ok(out)
}

/// Marks a stream of record `seq` at `start`, as `put_stream` does.
fn mark_stream(q: &RawQueue, start: u64, len: usize) -> u64 {
    let p = &q.hdr().prod.v;
    let end = start + record_size(len as u64).unwrap();
    p.stream_end.store(end, Relaxed);
    p.stream_start.store(start, Release);
    end
}

/// Writes bytes `[from, to)` of record `seq` at `start` and publishes them.
fn publish(q: &RawQueue, start: u64, seq: u64, body: &[u8], from: u64, to: u64) {
    q.write_record_part(start, seq, ItemBytes { prefix: &[], body }, from, to - from);
    q.hdr().prod.v.tail.swap(start + to, SeqCst);
}

#[test]
fn read_big_reloads_tail_when_an_abort_lands_after_its_tail_load() {
    // Issue 19, bug 1: the streaming producer publishes one more piece and dies, and the
    // abort is recorded, between `read_big`'s load of `tail` and its abort check.
    let q = RawQueue::new(4096, 0).unwrap();
    let b = bytes(1, 3000);
    mark_stream(&q, 0, b.len());
    publish(&q, 0, 0, &b, 0, 1024);
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    let b2 = b.clone();
    hook::set(move |point, q| {
        if point == Point::ReadBigTail && !f.replace(true) {
            publish(q, 0, 0, &b2, 1024, 2048);
            q.abort_stream(true);
        }
    });
    let r = get(&q, SHORT);
    hook::clear();
    assert!(fired.get());
    assert!(matches!(r, Err(Fail::Timeout)), "{r:?}");
    assert_eq!(q.lost(), 1);
    assert_eq!(q.qsize(), 0);
    let c = bytes(3, 500);
    put(&q, &c);
    assert_eq!(get(&q, SHORT).unwrap(), c);
}

#[test]
fn a_get_failing_mid_record_leaves_a_state_the_next_get_repairs() {
    // Issue 19, bug 1: any error inside the read path, here a garbled abort position seen
    // after part of a big record was freed.
    let q = RawQueue::new(4096, 0).unwrap();
    let a = bytes(1, 100);
    put(&q, &a);
    assert_eq!(get(&q, SHORT).unwrap(), a); // held, not done: one unfinished item
    let start = q.positions().1;
    let b = bytes(2, 3000);
    let end = mark_stream(&q, start, b.len());
    publish(&q, start, 1, &b, 0, 1024);
    let calls = Rc::new(Cell::new(0));
    let n = calls.clone();
    hook::set(move |point, q| {
        if point == Point::ReadBigTail {
            n.set(n.get() + 1);
            if n.get() == 2 {
                // The first piece has been copied and freed.
                q.hdr().cfg.v.abort_at.store(1 << 50, Relaxed);
                q.hdr().cfg.v.abort_seq.store(1, Release);
            }
        }
    });
    let r = get(&q, SHORT);
    hook::clear();
    assert!(matches!(r, Err(Fail::Corrupt(_))), "{r:?}");
    assert_eq!(q.positions().0, start + 1024, "the first piece was freed");
    q.hdr().cfg.v.abort_seq.store(NONE, Release);
    q.hdr().cfg.v.abort_at.store(0, Relaxed);
    // Not counted as lost while its producer is still streaming it: `task_done` for the
    // item held must not see it as the last.
    assert_eq!(q.lost(), 0);
    assert_eq!(q.unfinished().unwrap(), 1);
    assert!(q.task_done().unwrap());
    // The producer finishes the record, and puts another.
    publish(&q, start, 1, &b, 1024, end - start);
    q.commit_put(end, 2);
    q.hdr().prod.v.stream_start.store(NONE, Release);
    assert_eq!(q.unfinished().unwrap(), 1);
    let c = bytes(3, 200);
    put(&q, &c);
    // The next get discards the rest of the record, counts it lost, and reads on.
    assert_eq!(get(&q, SHORT).unwrap(), c);
    assert_eq!(q.lost(), 1);
    assert_eq!(q.unfinished().unwrap(), 1);
    assert!(q.task_done().unwrap());
    assert!(!q.task_done().unwrap());
    assert!(matches!(get(&q, Some(Duration::ZERO)), Err(Fail::Timeout)));
}

#[test]
fn a_failed_get_that_freed_nothing_leaves_the_record_whole() {
    let q = RawQueue::new(4096, 0).unwrap();
    let b = bytes(4, 3000);
    let end = mark_stream(&q, 0, b.len());
    publish(&q, 0, 0, &b, 0, 1024);
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    hook::set(move |point, q| {
        if point == Point::ReadBigTail && !f.replace(true) {
            q.hdr().cfg.v.abort_at.store(1 << 50, Relaxed);
            q.hdr().cfg.v.abort_seq.store(0, Release);
        }
    });
    let r = get(&q, SHORT);
    hook::clear();
    assert!(matches!(r, Err(Fail::Corrupt(_))), "{r:?}");
    q.hdr().cfg.v.abort_seq.store(NONE, Release);
    publish(&q, 0, 0, &b, 1024, end);
    q.commit_put(end, 1);
    q.hdr().prod.v.stream_start.store(NONE, Release);
    assert_eq!(get(&q, SHORT).unwrap(), b);
    assert_eq!(q.lost(), 0);
}

enum Cmd {
    /// Lock the put lock and mark a stream at `tail`, as `put_stream` does.
    Start,
    /// Clear the mark and unlock.
    Finish,
}

#[test]
fn a_stream_started_right_after_the_liveness_check_is_not_called_orphaned() {
    // Issue 19, bug 4: the put lock is found free (the last stream just ended), released,
    // and a live producer starts a new stream before the consumer looks again.
    let q = RawQueue::new(4096, 0).unwrap();
    let (tx, rx) = mpsc::channel::<Cmd>();
    let (ack_tx, ack) = mpsc::channel::<()>();
    let pq = q.clone();
    let producer = std::thread::spawn(move || {
        let m = &pq.shm.get().put_lock.v;
        for cmd in rx {
            match cmd {
                Cmd::Start => {
                    assert!(matches!(m.lock(Deadline::FOREVER), Ok(LockOutcome::Acquired)));
                    mark_stream(&pq, pq.positions().1, 8000);
                }
                Cmd::Finish => {
                    pq.hdr().prod.v.stream_start.store(NONE, Release);
                    m.unlock().unwrap();
                }
            }
            ack_tx.send(()).unwrap();
        }
    });
    let step = move |cmd: Cmd| {
        tx.send(cmd).unwrap();
        ack.recv().unwrap();
    };
    step(Cmd::Start);
    let seen = Rc::new(Cell::new((0u32, 0u32)));
    let s = seen.clone();
    // The hook runs on this thread and has the producer thread act, one step at a time.
    let step = Rc::new(step);
    let hook_step = step.clone();
    hook::set(move |point, _| {
        let (before, after) = s.get();
        match point {
            // The stream in progress ends: the put lock will be found free.
            Point::CheckProducer if before == 0 => {
                s.set((1, after));
                hook_step(Cmd::Finish);
            }
            // A new stream starts once the lock is released again.
            Point::ProducerChecked if after == 0 => {
                s.set((before, 1));
                hook_step(Cmd::Start);
            }
            _ => {}
        }
    });
    let r = get(&q, Some(Duration::from_millis(200)));
    hook::clear();
    assert_eq!(seen.get(), (1, 1), "the liveness check ran");
    assert!(matches!(r, Err(Fail::Timeout)), "{r:?}");
    step(Cmd::Finish);
    drop(step);
    producer.join().unwrap();
    let c = bytes(5, 100);
    put(&q, &c);
    assert_eq!(get(&q, SHORT).unwrap(), c);
    assert_eq!(q.lost(), 0);
}

#[test]
fn task_done_succeeds_for_any_item_get_returned_while_its_put_commits() {
    // Issue 19, bug 2: a consumer runs between the two stores that publish a record.
    let q = RawQueue::new(4096, 0).unwrap();
    let got = Rc::new(Cell::new(0u32));
    let (g, cq) = (got.clone(), q.clone());
    hook::set(move |point, _| {
        if point == Point::CommitPut {
            match get(&cq, Some(Duration::ZERO)) {
                Ok(_) => {
                    assert!(cq.task_done().unwrap(), "task_done for an item get returned");
                    g.set(g.get() + 1);
                }
                Err(Fail::Timeout) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
    });
    for i in 0..5 {
        put(&q, &bytes(i, 40));
    }
    hook::clear();
    assert!(got.get() >= 4, "the hook's gets saw the earlier items ({})", got.get());
    while get(&q, Some(Duration::ZERO)).is_ok() {
        assert!(q.task_done().unwrap());
    }
    assert_eq!(q.unfinished().unwrap(), 0);
    assert!(!q.task_done().unwrap());
    assert!(q.join(Patience::from_timeout(Some(Duration::ZERO))).unwrap());
}

#[test]
fn task_done_reads_done_before_the_item_counts() {
    // Issue 19, bug 2: between `task_done`'s reads, another item is put, got and done.
    let q = RawQueue::new(4096, 0).unwrap();
    put(&q, &bytes(1, 10));
    get(&q, SHORT).unwrap(); // held
    let fired = Rc::new(Cell::new(false));
    let (f, cq) = (fired.clone(), q.clone());
    hook::set(move |point, _| {
        if point == Point::TaskDoneReads && !f.replace(true) {
            put(&cq, &bytes(2, 10));
            get(&cq, SHORT).unwrap();
            assert!(cq.task_done().unwrap());
        }
    });
    let r = q.task_done();
    hook::clear();
    assert!(fired.get());
    assert!(r.unwrap(), "task_done for the item held");
    assert_eq!(q.unfinished().unwrap(), 0);
}

#[test]
fn a_producer_killed_between_puts_and_tail_has_its_record_published_by_the_repair() {
    let q = RawQueue::new(4096, 0).unwrap();
    let a = bytes(1, 100);
    put(&q, &a);
    let p = &q.hdr().prod.v;
    // Killed after `puts`, before `tail`: the record is whole and counted.
    let tail = q.positions().1;
    let b = bytes(2, 200);
    let need = record_size(b.len() as u64).unwrap();
    q.write_record(tail, 1, ItemBytes { prefix: &[], body: &b }, need);
    p.intent_puts.store(2, Relaxed);
    p.intent_tail.store(tail + need, Relaxed);
    p.puts.store(2, Release);
    {
        let _g = q.lock_put(Patience::FOREVER).unwrap();
        q.repair_producer().unwrap();
    }
    assert_eq!(q.positions().1, tail + need);
    // Killed between `intent_puts` and `intent_tail`: nothing was published or counted.
    let c = bytes(3, 300);
    p.intent_puts.store(3, Relaxed);
    {
        let _g = q.lock_put(Patience::FOREVER).unwrap();
        q.repair_producer().unwrap();
    }
    assert_eq!(q.positions().1, tail + need);
    assert_eq!(q.qsize(), 2);
    put(&q, &c);
    for x in [a, b, c] {
        assert_eq!(get(&q, SHORT).unwrap(), x);
        assert!(q.task_done().unwrap());
    }
    assert!(!q.task_done().unwrap());
}
