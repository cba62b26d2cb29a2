//! [`partial`]: a function with data sent along with each call — Python's `functools.partial`.
//!
//! # On the wire
//!
//! The function travels by address, as any function does (see [`Work`]); the data travels as
//! bytes. [`partial`] encodes the data once; every chunk payload of a call then starts with
//! those bytes, after their length (a `u64`), and the worker's trampoline decodes them once per
//! chunk, before the chunk's items (a `u64` count, then the arguments):
//!
//! | field | type |
//! |---|---|
//! | data length | `u64` |
//! | data | the data's encoding |
//! | count | `u64` |
//! | arguments | `count` encodings |
//!
//! The length lets the worker find the items even when the data does not decode (an `Encode`
//! and a `Decode` that disagree): every item of the chunk then fails with
//! [`PoolError::Decode`], and the worker goes on.
#![allow(unsafe_code)] // the trampoline's `transmute` of a code address back to a `fn` pointer.

use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::codec::{self, Decode, Encode, Message};
use crate::fork_safety::panic_message;

use super::error::PoolError;
use super::proto::ITEM_BAD_ARG;
use super::work::{
    Job, Prepared, Sealed, StarWork, Tramp, Work, decode_one, fail_chunk, run_chunk,
};

/// A function with data for each call, made by [`partial`]: work on an `A` returning an `R`
/// that every pool and executor method accepts (it implements [`Work`]).
///
/// The data's type is not part of the `Partial`'s type: it was encoded by [`partial`], and the
/// function that decodes it in the worker was chosen there. Cloning a `Partial` is cheap (the
/// encoded data is shared), so one can be passed to several calls.
pub struct Partial<A, R> {
    /// The trampoline for the data's type, `f`'s type, `A` and `R`, taken by [`partial`]
    /// together with `f`: the trampoline's safety needs this very pair.
    tramp: usize,
    /// `f`'s address.
    f: usize,
    data: Arc<[u8]>,
    _types: PhantomData<fn(A) -> R>,
}

impl<A, R> Clone for Partial<A, R> {
    fn clone(&self) -> Self {
        Partial { tramp: self.tramp, f: self.f, data: self.data.clone(), _types: PhantomData }
    }
}

impl<A, R> fmt::Debug for Partial<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Partial")
            .field("f", &(self.f as *const ()))
            .field("data_len", &self.data.len())
            .finish()
    }
}

/// `f` with `data` bound to its first parameter — Python's `functools.partial(f, data)`: run
/// on an argument `a` in a worker, it calls `f(data.borrow(), a)`.
///
/// `f` takes the data by reference, as `&D` or as anything `D` [borrows as](Borrow): a
/// `String` is passed to a `fn(&str, A) -> R`, a `Vec<T>` to a `fn(&[T], A) -> R`.
///
/// A closure cannot carry data to a worker (see [`Work`]); a `Partial` sends `f` by address
/// and `data` as a message, so it works under every start method that accepts functions
/// (`fork`, `forkserver`, `spawn`), with [`Pool::map`](super::Pool::map),
/// [`Pool::apply_async`](super::Pool::apply_async), [`Pool::imap`](super::Pool::imap),
/// [`ProcessPoolExecutor::submit`](super::ProcessPoolExecutor::submit) and every other method
/// that takes work, and with [`ProcessBuilder::call`](crate::ProcessBuilder::call). With
/// [`Pool::starmap`](super::Pool::starmap), `f` takes the whole tuple as its second argument.
///
/// `f` is a function or a closure that captures nothing (a closure that captures data does
/// not coerce to a `fn` pointer: a compile error, also under `cargo check`).
///
/// # Cost
///
/// `data` is encoded once, here; its bytes travel with every task of a call: with each chunk of
/// a `map` (Python's default chunk size makes about four chunks per worker), with each item
/// of an `imap` of chunk size 1, once for an `apply`. A worker decodes it once per chunk, then
/// calls `f` on each of the chunk's items with a reference to it. For large data that every
/// task needs and that exists before the pool starts (a lookup table), a closure registered
/// with [`PoolBuilder::register`](super::PoolBuilder::register) costs nothing per call: the
/// workers inherit it.
///
/// If the data does not decode in the worker (its `Encode` and `Decode` disagree, or `Decode`
/// panics), every item of the chunk fails with [`PoolError::Decode`] and the worker goes on.
///
/// # Examples
///
/// ```
/// use multiproc::{Pool, ProcessPoolExecutor, pool::partial};
///
/// fn scale(k: &u64, x: u64) -> u64 {
///     k * x
/// }
///
/// fn greet(greeting: &str, name: String) -> String {
///     format!("{greeting}, {name}!")
/// }
///
/// # fn main() -> Result<(), multiproc::PoolError> {
/// let pool = Pool::new(2)?;
/// // Python: pool.map(functools.partial(scale, 3), [1, 2, 3])
/// assert_eq!(pool.map(partial(scale, 3), [1, 2, 3])?, [3, 6, 9]);
///
/// // Data made after the pool started; a `String` passed as a `&str`.
/// let greeting = format!("Hello from {}", std::process::id());
/// let hello = partial(greet, greeting.clone());
/// let r = pool.apply_async(hello.clone(), "Ada".to_string())?;
/// assert_eq!(r.get()?, format!("{greeting}, Ada!"));
/// // A closure that captures nothing, and a `Vec` passed as a slice.
/// let offsets = partial(|base: &[i32], i: usize| base[i] + 1, vec![10, 20, 30]);
/// assert_eq!(pool.map(offsets, [2, 0])?, [31, 11]);
///
/// let ex = ProcessPoolExecutor::new(1)?;
/// assert_eq!(ex.submit(hello, "Bob".to_string())?.result()?, format!("{greeting}, Bob!"));
/// # Ok(())
/// # }
/// ```
///
/// A closure that captures the data instead does not compile:
///
/// ```compile_fail,E0308
/// # fn main() -> Result<(), multiproc::PoolError> {
/// let pool = multiproc::Pool::new(2)?;
/// let k = 3u64;
/// pool.map(multiproc::pool::partial(move |_: &(), x: u64| k * x, ()), [1])?;
/// # Ok(())
/// # }
/// ```
pub fn partial<D, B, A, R>(f: fn(&B, A) -> R, data: D) -> Partial<A, R>
where
    D: Message + Borrow<B> + 'static,
    B: ?Sized + 'static,
    A: Message + 'static,
    R: Message + 'static,
{
    Partial {
        tramp: partial_tramp::<D, B, A, R> as Tramp as usize,
        f: f as usize,
        data: codec::to_bytes(&data).into(),
        _types: PhantomData,
    }
}

impl<A, R> Partial<A, R> {
    fn prepared(self) -> Prepared {
        Prepared { job: Job::Code { tramp: self.tramp, ctx: self.f }, extra: Some(self.data) }
    }
}

impl<A: Message + 'static, R: Message + 'static> Work<A, R> for Partial<A, R> {
    fn job(self) -> Result<Prepared, PoolError> {
        Ok(self.prepared())
    }
}

/// For [`Pool::starmap`](super::Pool::starmap): `f` takes the whole tuple as its second
/// argument.
impl<Args: Message + 'static, R: Message + 'static> StarWork<Args, R> for Partial<Args, R> {
    fn job(self) -> Result<Prepared, PoolError> {
        Ok(self.prepared())
    }
}

impl<A, R> Sealed for Partial<A, R> {}

/// Splits the data (after its `u64` length) off the front of a chunk payload.
fn split_data<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let len = decode_one::<u64>(rest)?;
    let len = usize::try_from(len)
        .ok()
        .filter(|&n| n <= rest.len())
        .ok_or_else(|| format!("data length {len} exceeds the {} bytes left", rest.len()))?;
    let (data, tail) = rest.split_at(len);
    *rest = tail;
    Ok(data)
}

/// Worker side: decodes the data, never unwinding (a panic in `D::decode` is an error).
fn decode_data<D: Decode>(bytes: &[u8]) -> Result<D, String> {
    match catch_unwind(AssertUnwindSafe(|| codec::from_bytes::<D>(bytes))) {
        Ok(Ok(data)) => Ok(data),
        Ok(Err(e)) => Err(format!("cannot decode the partial's data: {e}")),
        Err(panic) => Err(format!(
            "cannot decode the partial's data: decoding panicked: {}",
            panic_message(&*panic)
        )),
    }
}

/// Trampoline for a [`Partial`]: `ctx` is its `fn(&B, A) -> R`, and the payload starts with
/// the data, a `D` (see the [module docs](self)).
///
/// # Safety
/// - `ctx` must be the address of a `fn(&B, A) -> R` of this program, mapped in this process.
unsafe fn partial_tramp<D, B, A, R>(ctx: usize, payload: &[u8], out: &mut Vec<u8>)
where
    D: Decode + Borrow<B>,
    B: ?Sized,
    A: Decode,
    R: Encode,
{
    // SAFETY: per this function's contract `ctx` is a valid `fn(&B, A) -> R` (non-null).
    let f = unsafe { std::mem::transmute::<*const (), fn(&B, A) -> R>(ctx as *const ()) };
    let mut rest = payload;
    let bytes = match split_data(&mut rest) {
        Ok(bytes) => bytes,
        Err(e) => {
            // Without the data's length the items cannot be found: report one.
            out.push(ITEM_BAD_ARG);
            format!("corrupt chunk: {e}").encode(out);
            return;
        }
    };
    match decode_data::<D>(bytes) {
        Ok(data) => {
            run_chunk(|a| f(data.borrow(), a), rest, out);
            // A panicking `Drop` must not unwind out of the worker: the results are written.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(data)));
        }
        Err(why) => fail_chunk(rest, &why, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::DecodeError;
    use crate::pool::work::decode_chunk;

    fn add(k: &u32, x: u32) -> u32 {
        k + x
    }

    /// Runs a prepared job's trampoline on `payload` as a worker does; returns its output.
    ///
    /// # Safety
    /// `tramp` and `ctx` are a `Job::Code` that `Work::job` took in this process.
    unsafe fn run_code(tramp: usize, ctx: usize, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        // SAFETY: passed on to the caller.
        unsafe {
            crate::start::launch::run_code(
                Default::default(),
                tramp as u64,
                ctx as u64,
                payload,
                &mut out,
            )
        };
        out
    }

    /// Runs `p` on `items` the way a worker does, and decodes the results as the parent does.
    fn run(p: Partial<u32, u32>, items: &[u32]) -> Vec<Result<u32, PoolError>> {
        let prepared = Work::job(p).unwrap();
        let mut payload = Vec::new();
        prepared.encode_chunk(items.iter(), &mut payload);
        let Job::Code { tramp, ctx } = prepared.job else { panic!("not code") };
        // SAFETY: `tramp` and `ctx` were just taken by `Work::job` in this process.
        let out = unsafe { run_code(tramp, ctx, &payload) };
        let mut results = Vec::new();
        decode_chunk::<u32>(&out, items.len(), &mut results);
        results
    }

    #[test]
    fn data_reaches_every_item_of_a_chunk() {
        let got: Vec<u32> =
            run(partial(add, 100), &[1, 2, 3]).into_iter().map(Result::unwrap).collect();
        assert_eq!(got, [101, 102, 103]);
        assert!(run(partial(add, 5), &[]).is_empty());
    }

    /// Encodes as a `u32`, decodes as a `u64`: the data's bytes are too few.
    struct Lopsided;

    impl Encode for Lopsided {
        fn encode(&self, out: &mut Vec<u8>) {
            7u32.encode(out);
        }
    }

    impl Decode for Lopsided {
        fn decode(input: &mut codec::Decoder<'_>) -> Result<Self, DecodeError> {
            input.decode::<u64>().map(|_| Lopsided)
        }
    }

    /// Decoding panics.
    struct Explosive;

    impl Encode for Explosive {
        fn encode(&self, _: &mut Vec<u8>) {}
    }

    impl Decode for Explosive {
        fn decode(_: &mut codec::Decoder<'_>) -> Result<Self, DecodeError> {
            panic!("boom in decode")
        }
    }

    /// Encodes one byte more than it decodes.
    struct Trailing;

    impl Encode for Trailing {
        fn encode(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(&[1, 2]);
        }
    }

    impl Decode for Trailing {
        fn decode(input: &mut codec::Decoder<'_>) -> Result<Self, DecodeError> {
            input.decode::<u8>().map(|_| Trailing)
        }
    }

    fn ignore<D>(_: &D, x: u32) -> u32 {
        x
    }

    #[test]
    fn data_that_does_not_decode_fails_every_item_and_nothing_else() {
        for (results, what) in [
            (run(partial(ignore::<Lopsided>, Lopsided), &[1, 2]), "cannot decode"),
            (run(partial(ignore::<Explosive>, Explosive), &[1, 2]), "boom in decode"),
            (run(partial(ignore::<Trailing>, Trailing), &[1, 2]), "trailing"),
        ] {
            assert_eq!(results.len(), 2);
            for r in results {
                match r {
                    Err(PoolError::Decode(msg)) => {
                        assert!(msg.contains("partial's data") && msg.contains(what), "{msg}")
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    #[test]
    fn a_corrupt_length_is_one_error_not_a_panic() {
        let prepared = Work::job(partial(add, 1)).unwrap();
        let Job::Code { tramp, ctx } = prepared.job else { panic!("not code") };
        for payload in
            [vec![], vec![1, 2], u64::MAX.to_le_bytes().to_vec(), 9u64.to_le_bytes().to_vec()]
        {
            // SAFETY: `tramp` and `ctx` were just taken by `Work::job` in this process.
            let out = unsafe { run_code(tramp, ctx, &payload) };
            assert_eq!(out.first(), Some(&ITEM_BAD_ARG), "{payload:?}");
            let mut results = Vec::new();
            decode_chunk::<u32>(&out, 1, &mut results);
            assert!(
                matches!(&results[0], Err(PoolError::Decode(m)) if m.contains("corrupt chunk"))
            );
        }
    }
}
