//! Runs a sequence of queue operations in one process and compares every outcome with a model:
//! a `VecDeque` of items plus the ring's byte accounting.
//!
//! Input layout: byte 0 picks the ring size (64 B .. 4 KiB), byte 1 the `maxsize`; then each
//! operation is one opcode byte, followed for puts by two length bytes. Puts and gets go
//! through `put`/`put_nowait`/`put_bytes` and `get`/`get_nowait`/`get_bytes_into`, which must
//! all agree. Item lengths go up to
//! three times the ring, so puts of items larger than the free space and larger than the ring
//! (which stream, time out and abort, since nobody reads concurrently) are common.
//!
//! The model (all timeouts are zero): a put succeeds iff the queue is open, under `maxsize`,
//! and the record (16-byte header + encoded item, padded to 8) fits in the free bytes. A put
//! that does not fit and is larger than a quarter of the ring starts streaming when there is
//! room for a first chunk (a quarter of the ring, or the whole record) and no aborted record
//! is still waiting for consumers: it publishes what fits, times out, and leaves an aborted
//! record occupying those bytes until a get passes it. Every failed put hands the item back.

#![no_main]

use std::collections::VecDeque;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use multiproc::{GetError, PutError, Queue};

enum Entry {
    Item(Vec<u8>),
    Aborted(u64),
}

struct Model {
    cap: u64,
    maxsize: usize,
    entries: VecDeque<Entry>,
    used: u64,
    closed: bool,
}

fn record_size(item: &[u8]) -> u64 {
    // A Vec<u8> encodes as an 8-byte length and the bytes.
    16 + (8 + item.len() as u64).div_ceil(8) * 8
}

impl Model {
    fn items(&self) -> usize {
        self.entries.iter().filter(|e| matches!(e, Entry::Item(_))).count()
    }

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

fuzz_target!(|data: &[u8]| {
    let &[cap_sel, max_sel, ref ops @ ..] = data else { return };
    let cap = 64u64 << (cap_sel % 7);
    let maxsize = usize::from(max_sel % 8);
    let q: Queue<Vec<u8>> =
        Queue::builder().capacity_bytes(cap as usize).maxsize(maxsize).build().expect("queue");
    let mut m = Model { cap, maxsize, entries: VecDeque::new(), used: 0, closed: false };
    let mut fill = 0u8;
    let mut ops = ops.iter().copied();
    while let Some(op) = ops.next() {
        match op % 8 {
            0..=2 => {
                let lo = u64::from(ops.next().unwrap_or(0));
                let hi = u64::from(ops.next().unwrap_or(0));
                let len = ((hi << 8 | lo) % (cap * 3)) as usize;
                fill = fill.wrapping_add(1);
                let item = vec![fill; len];
                let want = m.put(&item);
                let got = match op % 8 {
                    0 => q.put_timeout(item.clone(), Duration::ZERO),
                    1 => q.put_nowait(item.clone()),
                    // The bytes API frames the same record without encoding.
                    _ => q.put_bytes_timeout(&item, Duration::ZERO).map_err(|e| match e {
                        PutError::Full(()) => PutError::Full(item.clone()),
                        PutError::Closed(()) => PutError::Closed(item.clone()),
                        other => panic!("put_bytes: {other:?}"),
                    }),
                };
                match (want, got) {
                    (Ok(()), Ok(())) => {}
                    (Err("full"), Err(PutError::Full(back)))
                    | (Err("closed"), Err(PutError::Closed(back))) => assert!(back == item),
                    (w, g) => panic!("put of {len} bytes (ring {cap}): model {w:?}, queue {g:?}"),
                }
            }
            3..=5 => {
                let want = m.get();
                let got = match op % 8 {
                    3 => q.get_timeout(Duration::ZERO),
                    4 => q.get_nowait(),
                    _ => {
                        let mut buf = vec![0xee; usize::from(op)];
                        q.get_bytes_into_timeout(&mut buf, Duration::ZERO).map(|n| {
                            assert_eq!(n, buf.len());
                            buf
                        })
                    }
                };
                match (want, got) {
                    (Ok(a), Ok(b)) => assert!(a == b, "wrong item"),
                    (Err("empty"), Err(GetError::Empty))
                    | (Err("closed"), Err(GetError::Closed)) => {}
                    (w, g) => panic!("get: model {w:?}, queue {g:?}"),
                }
            }
            6 if op >= 0xf0 => {
                m.closed = true;
                q.close();
            }
            _ => {}
        }
        assert_eq!(q.qsize(), m.items());
        assert_eq!(q.empty(), m.items() == 0);
        assert_eq!(q.full(), maxsize != 0 && m.items() >= maxsize);
        assert_eq!(q.is_closed(), m.closed);
        assert_eq!(q.lost(), 0);
    }
});
