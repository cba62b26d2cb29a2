//! What a pool runs: functions sent by address, and closures registered before the fork.
//!
//! # Why a function address is valid in a worker
//!
//! A worker is forked from the fork server, which is forked from the parent when the pool is
//! created. `fork` copies the address space as it is: the executable and the libraries loaded
//! at that moment are mapped at the same addresses in every one of these processes (ASLR picks
//! the addresses once, at `exec`, and there is no `exec` here). So the address of a function of
//! the program, taken in the parent, names the same machine code in every worker, and the
//! parent can send it as a plain integer.
//!
//! What the parent sends is the address of a *trampoline*: a function monomorphised for the
//! argument type, the result type and (for a function item or a closure that captures nothing)
//! the function itself, which decodes the arguments, calls the function, and encodes the
//! results. For a `fn` pointer, the pointer itself travels as a second word.
//!
//! # Why only the parent's addresses are called
//!
//! A worker calls whatever address a task frame names, so it must run only frames its pool's
//! parent wrote. The channel is a socketpair, but the parent's end is not the parent's alone:
//! every process forked from the parent after the worker started inherits a copy of it (Linux
//! has no close-on-fork), a `Process` child as much as a child of a raw `libc::fork`. So
//! (issue 19):
//!
//! - children the crate forks (a `Process` child, another pool's fork server, and so that
//!   server's workers) close the pool's channels before running anything else (see
//!   `fd_registry`); a child forked by other means still holds them;
//! - every frame carries the worker's secret, after the fields that say what to run. The parent
//!   keeps the secret in a page the kernel zero-fills in every forked child and sends it from
//!   there, so no child has it. A frame without it is not run: the worker reports it and exits,
//!   and the pool breaks with [`PoolError::BrokenPool`];
//! - a task's sequence number must be one the parent published in the claim ring (see
//!   `slots`): an entry nobody wrote matches no sequence number.
//!
//! What a process holding a copy of the channel can still do is disturb the pool (read the
//! worker's results, or make it stop by writing garbage): it can never make a worker call code.
//!
//! The one case this does not cover is code that was not mapped when the pool was created: a
//! function from a library `dlopen`ed later does not exist in the workers. Closures that
//! capture data are not sent at all: they are [registered](super::PoolBuilder::register) with
//! the builder, so that the server inherits them, and a [`Task`] handle names them by index.
//! Data that changes from call to call travels as bytes beside the function's address: see
//! [`partial`](super::partial).
//!
//! # Why a capturing closure is a compile error
//!
//! See [`Work`]'s documentation: the blanket implementations hide themselves from diagnostics,
//! so that a failed bound reports [`Work`]'s message, and [`Work::SENDABLE`] catches at
//! monomorphisation what no stable trait bound can tell apart.
#![allow(unsafe_code)]

use std::any::TypeId;
use std::fmt;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::codec::{Decode, Decoder, Encode, Message};

use super::error::PoolError;
use super::proto::{ITEM_BAD_ARG, ITEM_BAD_RESULT, ITEM_OK, ITEM_PANIC, PanicItem, encode_caught};

pub(crate) use crate::start::launch::Tramp;

/// A registered closure, wrapped to run a whole chunk.
pub(crate) type Runner = Box<dyn Fn(&[u8], &mut Vec<u8>) + Send + Sync>;

mod sealed {
    /// Implemented by everything the pool can run; not nameable outside the crate.
    pub trait Sealed {}

    /// What a task runs, as the worker will find it. Public only in name: it lives in a
    /// private module, so code outside the crate can neither name nor build one.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Job {
        /// A trampoline address and its context word.
        Code { tramp: usize, ctx: usize },
        /// The `index`-th closure registered with the builder of pool `pool`.
        Registered { pool: u64, index: usize },
    }

    /// What a call sends: how the workers find the work, and the bytes that go before the
    /// items of each of its chunks (a [`partial`](crate::pool::partial)'s data). Public only in
    /// name, as [`Job`].
    #[derive(Debug, Clone)]
    pub struct Prepared {
        pub job: Job,
        /// Written before every chunk, after its length (a `u64`); `None`: nothing, not even
        /// the length.
        pub extra: Option<std::sync::Arc<[u8]>>,
    }
}

pub(super) use sealed::Sealed;
pub(crate) use sealed::{Job, Prepared};

/// Work a pool can run on one argument of type `A`, producing an `R`: a function item, a
/// closure that captures nothing, a `fn(A) -> R` pointer, a [`Task`] registered with
/// [`PoolBuilder::register`](super::PoolBuilder::register), or a function with per-call data
/// made by [`partial`](super::partial).
///
/// Functions and non-capturing closures are sent to the workers by address: every worker is
/// forked (through the fork server) from the process that built the pool, without `exec`, so
/// the program's code sits at the same addresses in all of them. A closure that captures
/// something cannot be sent, and passing one is a compile error at the call (see
/// [below](#a-closure-that-captures-data)). Register such a closure with the builder instead,
/// to be inherited by every worker when the pool is created, or pass the data with each call
/// with [`partial`](super::partial).
///
/// Python pickles the function with every task, by reference to its module and name, so a
/// lambda or a closure cannot be sent at all; here a function is sent by address, a closure
/// that captures data is registered instead (see [`Task`]), and `functools.partial`'s bound
/// arguments become [`partial`](super::partial)'s data.
///
/// ```
/// use multiproc::Pool;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// # fn main() -> Result<(), multiproc::PoolError> {
/// let pool = Pool::new(2)?;
/// assert_eq!(pool.map(square, 1..=3)?, [1, 4, 9]); // a function item
/// assert_eq!(pool.map(|x: u64| x + 1, 1..=3)?, [2, 3, 4]); // a closure capturing nothing
/// let f: fn(u64) -> u64 = if true { square } else { |x| x };
/// assert_eq!(pool.map(f, 1..=3)?, [1, 4, 9]); // a fn pointer chosen at run time
/// # Ok(())
/// # }
/// ```
///
/// # A closure that captures data
///
/// A closure's captures are data in the parent's memory; only code exists in the workers. So
/// passing a closure that captures something is a compile error, reported at the call with a
/// message that names the fixes:
///
/// - a closure that captures anything that is not `Copy` (a `String`, a `Vec`, an `Arc`, an
///   `Rc`) fails type checking: `cargo check` and rust-analyzer report it;
/// - a closure whose captures are all `Copy` (numbers, `&'static str`) satisfies every trait
///   bound a closure that captures nothing does, so it fails a compile-time check of its size
///   instead, at monomorphisation: `cargo build` and `cargo test` report it (error E0080, with a
///   note at the call), `cargo check` does not;
/// - a closure capturing exactly one reference or one `fn` pointer has the layout of a `fn`
///   pointer and passes both checks: the call fails at run time with
///   [`PoolError::InvalidArgument`].
///
/// A closure capturing a `Vec`:
///
/// ```compile_fail,E0277
/// # fn main() -> Result<(), multiproc::PoolError> {
/// let pool = multiproc::Pool::new(2)?;
/// let names = vec!["a".to_string()];
/// pool.map(move |i: usize| names[i].clone(), [0])?; // error: cannot be sent to a pool worker
/// # Ok(())
/// # }
/// ```
///
/// A closure capturing a `u64` (reported by `cargo build`, not `cargo check`):
///
/// ```compile_fail,E0080
/// # fn main() -> Result<(), multiproc::PoolError> {
/// let pool = multiproc::Pool::new(2)?;
/// let k = 3u64;
/// pool.map(move |x: u64| x * k, [1, 2])?; // error: pool work cannot capture data
/// # Ok(())
/// # }
/// ```
///
/// Python's `pool.map(functools.partial(scale, 3), xs)` is [`partial`](super::partial):
///
/// ```
/// use multiproc::{Pool, pool::partial};
///
/// fn scale(k: &u64, x: u64) -> u64 {
///     k * x
/// }
///
/// # fn main() -> Result<(), multiproc::PoolError> {
/// let pool = Pool::new(2)?;
/// let k = 3u64; // known only now, after the pool started
/// assert_eq!(pool.map(partial(scale, k), [1, 2])?, [3, 6]);
/// # Ok(())
/// # }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be sent to a pool worker as work on `{A}` returning `{R}`",
    label = "not a function, a closure that captures nothing, a `fn` pointer, a `Task` or a \
             `partial` of `{A}` returning `{R}`",
    note = "a closure that captures data cannot be sent to a worker (only code addresses \
            travel): register it with `PoolBuilder::register` before the pool starts, or pass \
            the data with each call: `multiproc::pool::partial(f, data)`, with \
            `f: fn(&Data, {A}) -> {R}`",
    note = "the argument and the result must be messages (`multiproc::Message`)"
)]
pub trait Work<A, R>: Send + 'static + sealed::Sealed {
    /// Fails to evaluate, with a message naming the fixes, for a closure that captures data:
    /// every public method taking work names it, so that the error is a compile error noted at
    /// the caller's line (see [above](Work#a-closure-that-captures-data)).
    #[doc(hidden)]
    const SENDABLE: () = ();

    /// How the workers find this work, and what its chunks carry.
    #[doc(hidden)]
    fn job(self) -> Result<Prepared, PoolError>;
}

/// Work that takes its arguments spread out of a tuple, for
/// [`Pool::starmap`](super::Pool::starmap): a function of 1 to 6 arguments (a function item, a
/// closure that captures nothing, or a `fn` pointer) run on each `(a, b, ...)` item, a
/// [`Task`] registered for the whole tuple, or a [`partial`](super::partial) whose function
/// takes the whole tuple after the data. A closure that captures data does not compile, as for
/// [`Work`].
///
/// Python's `starmap` calls `func(*args)` on each item; here the tuple's fields become the
/// function's arguments, and the function's type fixes how many there are.
///
/// ```
/// # fn main() -> Result<(), multiproc::PoolError> {
/// let pool = multiproc::Pool::new(2)?;
/// let sums = pool.starmap(|a: u32, b: u32| a + b, [(1, 2), (3, 4)])?;
/// assert_eq!(sums, [3, 7]);
/// # Ok(())
/// # }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be sent to a pool worker as work on the tuple `{Args}` returning \
               `{R}`",
    label = "not a function of the tuple's fields, a closure of them that captures nothing, a \
             `fn` pointer, a `Task` or a `partial` returning `{R}`",
    note = "a closure that captures data cannot be sent to a worker (only code addresses \
            travel): register it with `PoolBuilder::register` before the pool starts, or pass \
            the data with each call: `multiproc::pool::partial(f, data)`, with \
            `f: fn(&Data, {Args}) -> {R}`",
    note = "the arguments and the result must be messages (`multiproc::Message`)"
)]
pub trait StarWork<Args, R>: Send + 'static + sealed::Sealed {
    /// As [`Work::SENDABLE`].
    #[doc(hidden)]
    const SENDABLE: () = ();

    /// How the workers find this work, and what its chunks carry.
    #[doc(hidden)]
    fn job(self) -> Result<Prepared, PoolError>;
}

/// A closure registered with [`PoolBuilder::register`](super::PoolBuilder::register): it was
/// captured before the pool's processes were forked, so every worker has it, with whatever it
/// captured (a big table, a configuration, an `Arc`), without sending it.
///
/// A `Task` is a small `Copy` handle that only the pool it was registered with accepts.
///
/// Python has no such handle: it pickles the function with every task and cannot send a
/// closure at all. Here a closure that captures data is registered with the builder, and the
/// `Task` names it.
///
/// # Examples
///
/// ```
/// use multiproc::{Pool, PoolError, Task};
///
/// # fn main() -> Result<(), PoolError> {
/// let offset = 1000u64; // captured in the parent, inherited by every worker
/// let mut builder = Pool::builder().processes(2);
/// let add: Task<u64, u64> = builder.register(move |x: u64| x + offset);
/// let pool = builder.build()?;
/// assert_eq!(pool.map(add, [1, 2])?, [1001, 1002]);
/// assert_eq!(pool.apply(add, 5)?, 1005); // `Copy`: use it as often as needed
///
/// let other = Pool::new(1)?;
/// assert!(matches!(other.apply(add, 1), Err(PoolError::InvalidArgument(_))));
/// # Ok(())
/// # }
/// ```
pub struct Task<A, R> {
    pub(crate) pool: u64,
    pub(crate) index: usize,
    _types: PhantomData<fn(A) -> R>,
}

impl<A, R> Task<A, R> {
    pub(crate) fn new(pool: u64, index: usize) -> Self {
        Task { pool, index, _types: PhantomData }
    }
}

impl<A, R> Clone for Task<A, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A, R> Copy for Task<A, R> {}

impl<A, R> fmt::Debug for Task<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task").field("pool", &self.pool).field("index", &self.index).finish()
    }
}

impl<A: Message + 'static, R: Message + 'static> Work<A, R> for Task<A, R> {
    fn job(self) -> Result<Prepared, PoolError> {
        Ok(Prepared::new(Job::Registered { pool: self.pool, index: self.index }))
    }
}

impl<A: Message + 'static, R: Message + 'static> StarWork<A, R> for Task<A, R> {
    fn job(self) -> Result<Prepared, PoolError> {
        Ok(Prepared::new(Job::Registered { pool: self.pool, index: self.index }))
    }
}

impl Prepared {
    /// Work with nothing before its chunks.
    pub(crate) fn new(job: Job) -> Self {
        Prepared { job, extra: None }
    }

    /// Parent side: appends a chunk payload for `items` to `out`, after the extra bytes.
    pub(crate) fn encode_chunk<'a, A: Encode + 'a>(
        &self,
        items: impl ExactSizeIterator<Item = &'a A>,
        out: &mut Vec<u8>,
    ) {
        if let Some(extra) = &self.extra {
            (extra.len() as u64).encode(out);
            out.extend_from_slice(extra);
        }
        encode_chunk(items, out);
    }
}

/// The compile-time error of [`Work::SENDABLE`] for a closure that captures data (a literal, as
/// `assert!` in a constant wants).
macro_rules! captures_message {
    () => {
        "pool work cannot capture data (only code addresses reach the workers): pass a function \
         or a closure that captures nothing; register a closure that captures data with \
         PoolBuilder::register before the pool starts, or pass the data with each call with \
         multiproc::pool::partial(f, data)"
    };
}

/// The run-time error for a closure that captures something and that [`Work::SENDABLE`] let
/// through (one reference or `fn` pointer: it is laid out like a `fn` pointer).
const CAPTURES: &str = captures_message!();

/// Whether a value of `F` may be work sent by address: zero-sized (a function item or a closure
/// that captures nothing) or laid out like a `fn` pointer (same size and alignment, and a niche:
/// `Option<F>` is no bigger). Among closures the second holds only for one capturing a single
/// reference or `fn` pointer, which `job` refuses at run time.
const fn sendable_layout<F>() -> bool {
    size_of::<F>() == 0
        || (size_of::<F>() == size_of::<fn()>()
            && align_of::<F>() == align_of::<fn()>()
            && size_of::<Option<F>>() == size_of::<F>())
}

/// Makes a value of the zero-sized type `F` out of nothing.
///
/// # Safety
/// - `F` must be zero-sized, `Copy`, and the caller must have had a value of it: then every
///   value of `F` is the same (there are no bits), and `Copy` allows duplicating it.
#[inline]
unsafe fn conjure<F: Copy>() -> F {
    debug_assert_eq!(std::mem::size_of::<F>(), 0);
    // SAFETY: reading a zero-sized type reads no memory; a dangling, aligned, non-null pointer
    // is valid for it. The value is valid per this function's contract.
    unsafe { std::ptr::NonNull::<F>::dangling().as_ptr().read() }
}

impl<F> sealed::Sealed for F where F: Copy + Send + 'static {}

#[diagnostic::do_not_recommend]
impl<F, A, R> Work<A, R> for F
where
    F: Fn(A) -> R + Copy + Send + 'static,
    A: Message + 'static,
    R: Message + 'static,
{
    const SENDABLE: () = assert!(sendable_layout::<F>(), captures_message!());

    fn job(self) -> Result<Prepared, PoolError> {
        if size_of::<F>() == 0 {
            Ok(Prepared::new(Job::Code { tramp: zst_tramp::<F, A, R> as Tramp as usize, ctx: 0 }))
        } else if TypeId::of::<F>() == TypeId::of::<fn(A) -> R>() {
            // SAFETY: `F` is `fn(A) -> R` (same TypeId), a pointer-sized function pointer.
            let addr = unsafe { std::mem::transmute_copy::<F, usize>(&self) };
            Ok(Prepared::new(Job::Code { tramp: ptr_tramp::<A, R> as Tramp as usize, ctx: addr }))
        } else {
            Err(PoolError::InvalidArgument(CAPTURES))
        }
    }
}

/// Trampoline for a zero-sized `F` (a function item or a closure that captures nothing).
///
/// # Safety
/// - Only called (in a worker) for a job built by `Work::job` for this very `F`, from a value of
///   `F` the parent had; `F` is then zero-sized and `Copy`.
unsafe fn zst_tramp<F, A, R>(_ctx: usize, payload: &[u8], out: &mut Vec<u8>)
where
    F: Fn(A) -> R + Copy,
    A: Decode,
    R: Encode,
{
    // SAFETY: per this function's contract, `F` is zero-sized and `Copy`, and a value existed.
    let f: F = unsafe { conjure::<F>() };
    run_chunk(f, payload, out);
}

/// Trampoline for a `fn(A) -> R` pointer passed as `ctx`.
///
/// # Safety
/// - `ctx` must be the address of a `fn(A) -> R` of this program, mapped in this process.
unsafe fn ptr_tramp<A: Decode, R: Encode>(ctx: usize, payload: &[u8], out: &mut Vec<u8>) {
    // SAFETY: per this function's contract `ctx` is a valid `fn(A) -> R` (non-null).
    let f = unsafe { std::mem::transmute::<*const (), fn(A) -> R>(ctx as *const ()) };
    run_chunk(f, payload, out);
}

macro_rules! star_work {
    ($tramp:ident, $ptramp:ident; $($t:ident $v:ident),+) => {
        #[diagnostic::do_not_recommend]
        impl<F, $($t,)+ R> StarWork<($($t,)+), R> for F
        where
            F: Fn($($t),+) -> R + Copy + Send + 'static,
            $($t: Message + 'static,)+
            R: Message + 'static,
        {
            const SENDABLE: () = assert!(sendable_layout::<F>(), captures_message!());

            fn job(self) -> Result<Prepared, PoolError> {
                let job = if size_of::<F>() == 0 {
                    Job::Code { tramp: $tramp::<F, $($t,)+ R> as Tramp as usize, ctx: 0 }
                } else if TypeId::of::<F>() == TypeId::of::<fn($($t),+) -> R>() {
                    // SAFETY: `F` is this exact fn pointer type (same TypeId).
                    let addr = unsafe { std::mem::transmute_copy::<F, usize>(&self) };
                    Job::Code { tramp: $ptramp::<$($t,)+ R> as Tramp as usize, ctx: addr }
                } else {
                    return Err(PoolError::InvalidArgument(CAPTURES));
                };
                Ok(Prepared::new(job))
            }
        }

        /// Star trampoline for a zero-sized `F`.
        ///
        /// # Safety
        /// - As for `zst_tramp`: only for a job built from a value of this zero-sized `F`.
        unsafe fn $tramp<F, $($t,)+ R>(_ctx: usize, payload: &[u8], out: &mut Vec<u8>)
        where
            F: Fn($($t),+) -> R + Copy,
            $($t: Decode,)+
            R: Encode,
        {
            // SAFETY: per this function's contract.
            let f: F = unsafe { conjure::<F>() };
            run_chunk(move |($($v,)+): ($($t,)+)| f($($v),+), payload, out);
        }

        /// Star trampoline for a fn pointer in `ctx`.
        ///
        /// # Safety
        /// - `ctx` must be the address of a function of this type, mapped in this process.
        unsafe fn $ptramp<$($t: Decode,)+ R: Encode>(ctx: usize, payload: &[u8], out: &mut Vec<u8>) {
            // SAFETY: per this function's contract.
            let f = unsafe { std::mem::transmute::<*const (), fn($($t),+) -> R>(ctx as *const ()) };
            run_chunk(move |($($v,)+): ($($t,)+)| f($($v),+), payload, out);
        }
    };
}

star_work!(star1, pstar1; A1 a1);
star_work!(star2, pstar2; A1 a1, A2 a2);
star_work!(star3, pstar3; A1 a1, A2 a2, A3 a3);
star_work!(star4, pstar4; A1 a1, A2 a2, A3 a3, A4 a4);
star_work!(star5, pstar5; A1 a1, A2 a2, A3 a3, A4 a4, A5 a5);
star_work!(star6, pstar6; A1 a1, A2 a2, A3 a3, A4 a4, A5 a5, A6 a6);

/// Wraps a registered closure so that it runs a whole chunk.
pub(crate) fn runner<A, R, F>(f: F) -> Runner
where
    A: Decode,
    R: Encode,
    F: Fn(A) -> R + Send + Sync + 'static,
{
    Box::new(move |payload, out| run_chunk(&f, payload, out))
}

/// Decodes one value that starts at `rest`, with a fresh [`Decoder`] (so the decoder's limits
/// apply per value, not per chunk), and advances `rest` past it.
#[inline]
pub(super) fn decode_one<T: Decode>(rest: &mut &[u8]) -> Result<T, String> {
    let mut d = Decoder::new(rest);
    let value = crate::codec::decode_caught::<T>(&mut d).map_err(|e| e.to_string())?;
    let used = rest.len() - d.remaining();
    *rest = &rest[used..];
    Ok(value)
}

/// Worker side: runs `f` on every argument of a chunk payload (a `u64` count, then the
/// arguments), appending one tagged result per item to `out`. Never panics and never unwinds:
/// a panic in `f` or in encoding its result becomes that item's error.
pub(crate) fn run_chunk<A: Decode, R: Encode>(
    f: impl Fn(A) -> R,
    payload: &[u8],
    out: &mut Vec<u8>,
) {
    let mut rest = payload;
    let count = match decode_one::<u64>(&mut rest) {
        Ok(n) => n,
        Err(e) => {
            // Without a count there is no way to say how many items failed: report one.
            out.push(ITEM_BAD_ARG);
            format!("corrupt chunk: {e}").encode(out);
            return;
        }
    };
    // One `catch_unwind` around the whole loop (not two per item, which would keep `f` and the
    // encoder from being inlined): a panic ends the protected run at item `i`, is recorded as
    // that item's error, and the loop resumes at the next item.
    let mut i = 0u64;
    // Where item `i`'s result starts in `out`, and whether `f` had returned (the panic came
    // from encoding its result).
    let mut mark = out.len();
    let mut encoding = false;
    while i < count {
        let run = catch_unwind(AssertUnwindSafe(|| -> Result<(), String> {
            while i < count {
                mark = out.len();
                encoding = false;
                let arg = decode_one::<A>(&mut rest)?;
                let value = f(arg);
                encoding = true;
                out.push(ITEM_OK);
                value.encode(out);
                i += 1;
            }
            Ok(())
        }));
        match run {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                // The items after a bad one cannot be located: they all fail with it.
                let msg = format!("cannot decode the argument: {e}");
                for _ in i..count {
                    out.push(ITEM_BAD_ARG);
                    msg.encode(out);
                }
                return;
            }
            Err(payload) => {
                out.truncate(mark);
                encode_caught(out, encoding, &*payload);
                i += 1;
            }
        }
    }
}

/// Worker side: fails every item of a chunk payload (a `u64` count, then the arguments) with
/// `why`, as arguments that cannot be decoded.
pub(super) fn fail_chunk(payload: &[u8], why: &str, out: &mut Vec<u8>) {
    let mut rest = payload;
    match decode_one::<u64>(&mut rest) {
        Ok(count) => {
            for _ in 0..count {
                out.push(ITEM_BAD_ARG);
                why.encode(out);
            }
        }
        Err(e) => {
            out.push(ITEM_BAD_ARG);
            format!("corrupt chunk: {e}").encode(out);
        }
    }
}

/// Parent side: appends a chunk payload for `items` to `out`.
pub(crate) fn encode_chunk<'a, A: Encode + 'a>(
    items: impl ExactSizeIterator<Item = &'a A>,
    out: &mut Vec<u8>,
) {
    (items.len() as u64).encode(out);
    for item in items {
        item.encode(out);
    }
}

/// Parent side: decodes the `n` item results of a chunk, appending them to `out`.
///
/// A result that does not decode fails, and so do the items after it (they cannot be
/// located).
pub(crate) fn decode_chunk<R: Decode>(bytes: &[u8], n: usize, out: &mut Vec<Result<R, PoolError>>) {
    let mut rest = bytes;
    for i in 0..n {
        match decode_item::<R>(&mut rest) {
            Ok(item) => out.push(item),
            Err(e) => {
                let err = PoolError::Decode(e);
                out.extend((i..n).map(|_| Err(err.clone())));
                return;
            }
        }
    }
}

/// Parent side: decodes the `n` item results of a chunk straight into `out`, stopping at the
/// first failed item (the fast path of `map`, which reports only the first error).
pub(crate) fn decode_chunk_into<R: Decode>(
    bytes: &[u8],
    n: usize,
    out: &mut Vec<R>,
) -> Result<(), PoolError> {
    let mut rest = bytes;
    out.reserve(n);
    for _ in 0..n {
        if let Some((&ITEM_OK, tail)) = rest.split_first() {
            rest = tail;
            out.push(decode_one::<R>(&mut rest).map_err(PoolError::Decode)?);
        } else {
            return match decode_item::<R>(&mut rest) {
                Ok(Ok(_)) => Err(PoolError::Decode("unexpected result tag".into())),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(PoolError::Decode(e)),
            };
        }
    }
    Ok(())
}

/// Decodes one tagged item result; `Err` when the bytes themselves are wrong (sync is lost).
fn decode_item<R: Decode>(rest: &mut &[u8]) -> Result<Result<R, PoolError>, String> {
    Ok(match decode_one::<u8>(rest)? {
        ITEM_OK => Ok(decode_one::<R>(rest)?),
        ITEM_PANIC => Err(PoolError::Panicked(decode_one::<PanicItem>(rest)?.0)),
        ITEM_BAD_ARG => Err(PoolError::Decode(decode_one::<String>(rest)?)),
        ITEM_BAD_RESULT => Err(PoolError::Encode(decode_one::<String>(rest)?)),
        tag => return Err(format!("invalid result tag {tag}")),
    })
}
