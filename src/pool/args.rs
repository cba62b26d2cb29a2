//! Encoding task arguments in the parent, where a user's `Encode` may panic.
//!
//! A panic while encoding never unwinds out of the pool's API: it becomes
//! [`PoolError::EncodeArgument`]. Encoding happens into a buffer of its own before anything is
//! handed to the engine, so nothing half-encoded is ever queued, let alone written to a worker;
//! and no lock is held meanwhile, so the pool is as it was.
//!
//! The calls that encode their input at once (`apply_async`, `map_async`, `submit`, ...) fail as
//! a whole ([`encode_one`], [`encode_batch`]): nothing of the call is submitted. A lazy stream
//! (`imap`) fails only the item whose `Encode` panicked ([`encode_pieces`]): its neighbours of
//! the same chunk are sent, as chunks of their own.

use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::codec::Encode;
use crate::fork_safety::panic_message;

use super::error::PoolError;
use super::work::Prepared;

/// Appends the chunk payload of `items` to `out`; on a panic in an item's `Encode`, truncates
/// `out` back and returns the item's index (in `items`) and the panic message.
fn encode_checked<A: Encode>(
    work: &Prepared,
    items: &[A],
    out: &mut Vec<u8>,
) -> Result<(), (usize, String)> {
    let start = out.len();
    let mut reached = 0usize;
    let counted = items.iter().inspect(|_| reached += 1);
    match catch_unwind(AssertUnwindSafe(|| work.encode_chunk(counted, out))) {
        Ok(()) => Ok(()),
        Err(payload) => {
            out.truncate(start);
            Err((reached.saturating_sub(1), panic_message(&*payload)))
        }
    }
}

/// The payload of a one-item chunk holding `arg`.
pub(crate) fn encode_one<A: Encode>(work: &Prepared, arg: &A) -> Result<Vec<u8>, PoolError> {
    let mut payload = Vec::new();
    encode_checked(work, std::slice::from_ref(arg), &mut payload)
        .map_err(|(_, msg)| PoolError::EncodeArgument(msg))?;
    Ok(payload)
}

/// Chunk payloads in one buffer, and each chunk's range in it and item count (what
/// `Shared::submit` takes).
pub(crate) type Batch = (Vec<u8>, Vec<(Range<usize>, usize)>);

/// The payloads of `items` cut into chunks of `chunksize`, in one buffer.
pub(crate) fn encode_batch<A: Encode>(
    work: &Prepared,
    items: &[A],
    chunksize: usize,
) -> Result<Batch, PoolError> {
    let mut buf = Vec::with_capacity(items.len() * 16 + 8 * items.len().div_ceil(chunksize));
    let mut chunks = Vec::with_capacity(items.len().div_ceil(chunksize));
    for c in items.chunks(chunksize) {
        let start = buf.len();
        encode_checked(work, c, &mut buf).map_err(|(_, msg)| PoolError::EncodeArgument(msg))?;
        chunks.push((start..buf.len(), c.len()));
    }
    Ok((buf, chunks))
}

/// A part of a stream's chunk, ready to go.
#[derive(Debug)]
pub(crate) enum Piece {
    /// A chunk payload and its item count.
    Payload(Vec<u8>, usize),
    /// One item whose `Encode` panicked: the message.
    Failed(String),
}

/// The chunk `items`, cut around the items whose `Encode` panics: runs of items that encode,
/// each a payload, and one `Failed` per item that does not, in input order.
///
/// An item is called failed only when its own `Encode` panicked; the items before it in the
/// same run are encoded again, as a run of their own (and should one of them now panic, the
/// run is cut there instead, and the later item tried again).
pub(crate) fn encode_pieces<A: Encode>(work: &Prepared, items: &[A]) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut start = 0;
    // An item known to fail, ahead of `start`.
    let mut failed: Option<(usize, String)> = None;
    while start < items.len() {
        if let Some((_, msg)) = failed.take_if(|(at, _)| *at == start) {
            pieces.push(Piece::Failed(msg));
            start += 1;
            continue;
        }
        let end = failed.as_ref().map_or(items.len(), |&(at, _)| at);
        let mut payload = Vec::new();
        match encode_checked(work, &items[start..end], &mut payload) {
            Ok(()) => {
                pieces.push(Piece::Payload(payload, end - start));
                start = end;
            }
            Err((i, msg)) => failed = Some((start + i, msg)),
        }
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Job;

    /// Work without extra data (what the payload shape checks below assume).
    fn plain() -> Prepared {
        Prepared::new(Job::Code { tramp: 0, ctx: 0 })
    }

    /// Encodes like a `u32`, but panics for the values in the list (or every other time for
    /// `flaky`).
    struct Touchy {
        v: u32,
        bad: bool,
        flaky: Option<std::cell::Cell<bool>>,
    }

    impl Encode for Touchy {
        fn encode(&self, out: &mut Vec<u8>) {
            if let Some(f) = &self.flaky {
                let panic_now = !f.get();
                f.set(panic_now);
                if panic_now {
                    out.extend_from_slice(b"garbage");
                    panic!("flaky {}", self.v);
                }
            }
            if self.bad {
                out.extend_from_slice(b"half");
                panic!("bad {}", self.v);
            }
            self.v.encode(out);
        }
    }

    fn items(bad: &[u32], n: u32) -> Vec<Touchy> {
        (0..n).map(|v| Touchy { v, bad: bad.contains(&v), flaky: None }).collect()
    }

    fn shape(pieces: &[Piece]) -> Vec<Result<usize, String>> {
        pieces
            .iter()
            .map(|p| match p {
                Piece::Payload(bytes, n) => {
                    let mut want = Vec::new();
                    (*n as u64).encode(&mut want);
                    assert_eq!(&bytes[..8], &want[..], "count");
                    assert_eq!(bytes.len(), 8 + 4 * n, "nothing half-written");
                    Ok(*n)
                }
                Piece::Failed(m) => Err(m.clone()),
            })
            .collect()
    }

    #[test]
    fn a_panicking_encode_fails_only_its_own_item() {
        assert_eq!(shape(&encode_pieces(&plain(), &items(&[], 4))), [Ok(4)]);
        assert_eq!(
            shape(&encode_pieces(&plain(), &items(&[0, 2, 3, 6], 7))),
            [
                Err("bad 0".into()),
                Ok(1),
                Err("bad 2".into()),
                Err("bad 3".into()),
                Ok(2),
                Err("bad 6".into())
            ]
        );
        assert!(encode_pieces(&plain(), &items(&[], 0)).is_empty());
        // An Encode that panics every other time: every item ends up sent or failed, once.
        let flaky: Vec<Touchy> = (0..5)
            .map(|v| Touchy { v, bad: false, flaky: Some(std::cell::Cell::new(v % 2 == 0)) })
            .collect();
        let total: usize = shape(&encode_pieces(&plain(), &flaky))
            .iter()
            .map(|p| match p {
                Ok(n) => *n,
                Err(_) => 1,
            })
            .sum();
        assert_eq!(total, 5);
    }

    #[test]
    fn whole_calls_fail_with_the_message_and_leave_nothing() {
        match encode_batch(&plain(), &items(&[5], 8), 3) {
            Err(PoolError::EncodeArgument(m)) => assert_eq!(m, "bad 5"),
            other => panic!("{other:?}"),
        }
        let (buf, chunks) = encode_batch(&plain(), &items(&[], 8), 3).unwrap();
        assert_eq!(chunks.iter().map(|c| c.1).collect::<Vec<_>>(), [3, 3, 2]);
        assert_eq!(buf.len(), 3 * 8 + 8 * 4);
        assert!(matches!(
            encode_one(&plain(), &items(&[0], 1)[0]),
            Err(PoolError::EncodeArgument(_))
        ));
        assert_eq!(encode_one(&plain(), &7u32).unwrap().len(), 12);
    }
}
