//! Writes arbitrary bytes over a queue's shared header and ring, then runs operations on it:
//! every one must return `Ok` or a clean error (never panic, hang or read out of bounds), and
//! no operation may leave one of the queue's locks held once it has returned.
//!
//! Input layout: byte 0 picks the ring size (64 B .. 2 KiB) and byte 1 the `maxsize`; byte 2
//! says how many setup operations run before the garbling. Then a list of patches, each
//! `[target, offset_lo, offset_hi, len, bytes...]` (target bit 0: header or ring; byte 0xff
//! ends the list), and the rest are operation opcodes (with zero or 10 µs timeouts). The
//! robust mutexes in front of the header are never touched: libc trusts their bytes, and the
//! queue documents that a peer must not write over them.
//!
//! Speed: one queue per (ring size, `maxsize`) is made once and reused. Before each input its
//! header is restored from a copy taken right after creation and its ring zeroed, which is
//! byte for byte the state of a fresh queue (the handle keeps no state of its own, and the
//! mutexes, checked free after every input, are left alone). The timed operations wait 10 µs
//! (with a 1 ns timer slack) instead of 1 ms: they still take the timed path (spin, register
//! as a waiter on the possibly garbled wait line, sleep in the kernel for whatever is left of
//! the 10 µs, deregister). 60 s from an empty corpus on a loaded 2-CPU machine: 855 exec/s
//! before, 4 426 after.

#![no_main]

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use multiproc::JoinableQueue;
use multiproc::queue::test_hooks;

/// A reusable queue and its pristine header.
struct Slot {
    q: JoinableQueue<Vec<u8>>,
    pristine: Vec<u8>,
}

thread_local! {
    static QUEUES: RefCell<HashMap<(usize, usize), Slot>> = RefCell::new(HashMap::new());
}

/// The queue for `(cap, maxsize)`, reset to the state of a fresh one.
fn fresh(cap: usize, maxsize: usize) -> JoinableQueue<Vec<u8>> {
    QUEUES.with(|m| {
        let mut m = m.borrow_mut();
        let slot = m.entry((cap, maxsize)).or_insert_with(|| {
            // Timed waits end at their deadline, not up to 50 µs later.
            // SAFETY: prctl(PR_SET_TIMERSLACK) takes an integer and changes only this thread.
            unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
            let q = JoinableQueue::builder()
                .capacity_bytes(cap)
                .maxsize(maxsize)
                .build()
                .expect("queue");
            let (hdr, hdr_len, _, _) = test_hooks::raw_parts(&q);
            // SAFETY: the header is `hdr_len` readable bytes; nobody else uses this queue.
            let pristine = unsafe { std::slice::from_raw_parts(hdr, hdr_len) }.to_vec();
            Slot { q, pristine }
        });
        let (hdr, hdr_len, ring, ring_len) = test_hooks::raw_parts(&slot.q);
        assert_eq!(hdr_len, slot.pristine.len());
        // SAFETY: inside the header and the ring (their own lengths); no other thread or
        // process uses this queue, and no operation on it is in progress.
        unsafe {
            std::ptr::copy_nonoverlapping(slot.pristine.as_ptr(), hdr, hdr_len);
            std::ptr::write_bytes(ring, 0, ring_len);
        }
        slot.q.clone()
    })
}

/// Whether both of the queue's mutexes are free. They sit in the two 128-byte lines in front
/// of the header (put lock, then get lock), and glibc's `pthread_mutex_t` starts with its
/// lock word, 0 when free.
fn locks_free(q: &JoinableQueue<Vec<u8>>) -> bool {
    let (hdr, _, _, _) = test_hooks::raw_parts(q);
    // SAFETY: the segment starts with those two lines (`RingSegment` is `repr(C)`), so both
    // words are inside the mapping; read atomically, as libc writes them.
    [256usize, 128].iter().all(|&back| unsafe {
        (*hdr.sub(back).cast::<std::sync::atomic::AtomicI32>())
            .load(std::sync::atomic::Ordering::SeqCst)
            == 0
    })
}

fuzz_target!(|data: &[u8]| {
    let &[cap_sel, max_sel, setup, ref rest @ ..] = data else { return };
    let cap = 64usize << (cap_sel % 6);
    let q = fresh(cap, usize::from(max_sel % 4));
    for i in 0..(setup % 8) {
        match i % 3 {
            0 | 1 => {
                let _ = q.put_nowait(vec![i; usize::from(setup) * 7 % (cap * 2)]);
            }
            _ => {
                let _ = q.get_nowait();
            }
        }
    }

    // Patches.
    let (hdr, hdr_len, ring, ring_len) = test_hooks::raw_parts(&q);
    let mut input = rest.iter().copied();
    while let Some(target) = input.next() {
        if target == 0xff {
            break;
        }
        let off =
            usize::from(input.next().unwrap_or(0)) | usize::from(input.next().unwrap_or(0)) << 8;
        let len = usize::from(input.next().unwrap_or(0) % 17);
        let (base, limit) = if target & 1 == 0 { (hdr, hdr_len) } else { (ring, ring_len) };
        let off = off % limit;
        for k in 0..len {
            let Some(b) = input.next() else { break };
            if off + k < limit {
                // SAFETY: inside the header or the ring (checked against their lengths); no
                // other thread or process uses this queue.
                unsafe { *base.add(off + k) = b };
            }
        }
    }

    // Operations.
    let short = Duration::from_micros(10);
    for op in input {
        match op % 12 {
            0 => {
                let _ = q.put_nowait(vec![op; usize::from(op) * 5]);
            }
            1 => {
                let _ = q.put_timeout(vec![op; usize::from(op) * 13 % (cap * 3)], short);
            }
            2 | 3 => {
                let _ = q.get_nowait();
            }
            4 => {
                let _ = q.get_timeout(short);
            }
            5 => {
                let _ = q.task_done();
            }
            6 => {
                let _ = q.join_timeout(Duration::ZERO);
            }
            7 => {
                let _ = (q.qsize(), q.empty(), q.full(), q.lost(), q.unfinished_tasks());
            }
            8 if op > 0xf0 => q.close(),
            9 => {
                let _ = format!("{q:?}");
            }
            10 => {
                let _ = q.put_timeout(Vec::new(), Duration::ZERO);
            }
            _ => {
                let _ = q.get_timeout(Duration::ZERO);
            }
        }
    }
    assert!(locks_free(&q), "an operation returned with one of the queue's locks held");
});
