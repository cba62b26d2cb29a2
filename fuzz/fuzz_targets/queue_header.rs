//! Writes arbitrary bytes over a queue's shared header and ring, then runs operations on it:
//! every one must return `Ok` or a clean error (never panic, hang or read out of bounds).
//!
//! Input layout: byte 0 picks the ring size (64 B .. 2 KiB) and byte 1 the `maxsize`; byte 2
//! says how many setup operations run before the garbling. Then a list of patches, each
//! `[target, offset_lo, offset_hi, len, bytes...]` (target bit 0: header or ring; byte 0xff
//! ends the list), and the rest are operation opcodes (with zero or 1 ms timeouts). The robust
//! mutexes in front of the header are never touched: libc trusts their bytes, and the queue
//! documents that a peer must not write over them.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use multiproc::JoinableQueue;

fuzz_target!(|data: &[u8]| {
    let &[cap_sel, max_sel, setup, ref rest @ ..] = data else { return };
    let cap = 64usize << (cap_sel % 6);
    let q: JoinableQueue<Vec<u8>> = JoinableQueue::builder()
        .capacity_bytes(cap)
        .maxsize(usize::from(max_sel % 4))
        .build()
        .expect("queue");
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
    let (hdr, hdr_len, ring, ring_len) = q.raw_parts_for_tests();
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
    let short = Some(Duration::from_millis(1));
    for op in input {
        match op % 12 {
            0 => {
                let _ = q.put_nowait(vec![op; usize::from(op) * 5]);
            }
            1 => {
                let _ = q.put(vec![op; usize::from(op) * 13 % (cap * 3)], short);
            }
            2 | 3 => {
                let _ = q.get_nowait();
            }
            4 => {
                let _ = q.get(short);
            }
            5 => {
                let _ = q.task_done();
            }
            6 => {
                let _ = q.join(Some(Duration::ZERO));
            }
            7 => {
                let _ = (q.qsize(), q.empty(), q.full(), q.lost(), q.unfinished_tasks());
            }
            8 if op > 0xf0 => q.close(),
            9 => {
                let _ = format!("{q:?}");
            }
            10 => {
                let _ = q.put(Vec::new(), Some(Duration::ZERO));
            }
            _ => {
                let _ = q.get(Some(Duration::ZERO));
            }
        }
    }
});
