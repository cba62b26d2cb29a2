//! Plain data for shared memory: the [`ShmSafe`] contract, and atomic access to shared
//! integers ([`AtomicInteger`]).
//!
//! A `MAP_SHARED` segment is read and written by several processes, each of which may crash
//! halfway through a write or simply be buggy. Only types for which that is harmless may live
//! there: their bytes mean the same thing in every process, and *any* bytes are a valid value.
//! [`ShmSafe`] is the marker for such types; the `multiproc` crate bounds `Value<T>`,
//! `Array<T>`, `RawValue<T>` and `RawArray<T>` by it. (Its queues store encoded bytes, not
//! values, and bound their items by its `Encode`/`Decode` instead.)
//!
//! `ShmSafe` says that the bytes are always a valid `T`; it does not make concurrent access
//! safe. Two processes touching the same bytes at once without synchronisation is a data race,
//! as between threads. Access goes through a lock (the top crate's `Value::lock`) or, for
//! integers, through the atomics that [`AtomicInteger`] hands out.
//!
//! # Which types, and why
//!
//! | type | `ShmSafe` | why |
//! |---|---|---|
//! | `u8`..`u128`, `i8`..`i128`, `usize`, `isize` | yes | every bit pattern is a number |
//! | `f32`, `f64` | yes | every bit pattern is a float (some are NaNs) |
//! | `[T; N]` with `T: ShmSafe` | yes | elements side by side, no padding of their own |
//! | [`CpuSet`](crate::affinity::CpuSet) | yes | `#[repr(C)]` bitmap |
//! | your `#[repr(C)]` struct of `ShmSafe` fields | `unsafe impl` it | see the Safety list |
//! | `bool`, `char` | **no** | `bool` must be 0 or 1, `char` a Unicode scalar value: a byte garbled by a crashed peer would be undefined behaviour |
//! | enums, `Option<_>`, `NonZero*`, `Duration` | **no** | invalid discriminants, zero, nanoseconds past 10⁹ |
//! | references, raw pointers, `Box`, `Vec`, `String`, `fn` pointers | **no** | addresses of one process mean nothing (or something else) in another, and heap memory is private after `fork` |
//! | `OwnedFd` | **no** | descriptor numbers are per process (a `RawFd` is an `i32` and compiles, but names nothing, or something else, in another process) |
//! | `AtomicU32`, `Cell<T>` | **no** (not `Copy`) | use the integer type and [`AtomicInteger::atomic_from_ptr`] |
//!
//! Everything here is compile-time only: no item of this module runs code except the
//! [`AtomicOps`] methods, which are single atomic instructions (async-signal-safe).

use core::sync::atomic::Ordering;

/// Plain data that may be placed in memory shared between processes.
///
/// The contract of every type a `multiproc` program stores in shared memory itself (`Value<T>`,
/// `Array<T>`, `RawValue<T>`, `RawArray<T>`). A value is copied in and copied out, never dropped in place, and may be read
/// after another process died halfway through writing it: so its bytes must mean the same in
/// every process, and every possible combination of bytes must be a valid value.
///
/// The bound says part of it: `Copy` (no `Drop`, no `UnsafeCell`, so no atomics or cells:
/// integers get atomic access through [`AtomicInteger`] instead), `Send + Sync` (other
/// processes' threads see it), `'static` (no borrowed data).
///
/// Implemented for the integer and float primitives and for arrays of `ShmSafe` types. **Not**
/// for `bool` or `char`: a `bool` must be `0` or `1` and a `char` a Unicode scalar value, so a
/// byte garbled by a crashed or buggy peer would be an invalid value, which is undefined
/// behaviour the moment it is read. Store a `u8` or a `u32` and convert with a check.
///
/// # Safety
///
/// Implementing `ShmSafe` for a type `T` promises all of the following:
///
/// - **Defined layout.** `T` is a primitive, an array, or a `#[repr(C)]` or
///   `#[repr(transparent)]` struct whose fields are all `ShmSafe`. Every process that maps the
///   segment then agrees on where each field is, even one built by another compiler or written
///   in C. (Two processes forked from one executable would agree on a `repr(Rust)` layout too,
///   but nothing promises that across builds, and the next obligations are checked field by
///   field, which needs the fields to be known.)
/// - **No addresses.** No references, raw pointers, function pointers, `Box`, `Vec`, `String`
///   or other heap handles: an address is only meaningful in one address space, and heap
///   memory is private to each process after `fork`. Link shared objects by offsets into the
///   segment instead.
/// - **No per-process handles.** No file descriptors (`RawFd`, `OwnedFd`), no thread-local or
///   process-local indices: the same number names a different thing, or nothing, elsewhere.
/// - **Every bit pattern is a valid `T`.** A peer may crash in the middle of a write, or be
///   buggy, and the segment is then read as it is: a torn or garbled `T` must still be a `T`.
///   This rules out `bool`, `char`, enums, `NonZero*`, `Option` of anything, `Duration`, and
///   any type with a validity invariant its fields do not express.
/// - **Padding is allowed** between and after fields. A padding byte is never interpreted when
///   a `T` is copied in or out, so whatever it holds is harmless. Two consequences: the
///   writer's padding bytes may carry stale bytes from its stack into the segment (do not
///   share such types with a less-trusted process), and `ShmSafe` does not allow viewing a `T`
///   as bytes (that would need a no-padding guarantee this trait does not make).
/// - **No `Drop`, no interior mutability**: guaranteed by the `Copy` bound.
///
/// # Examples
///
/// ```
/// use multiproc_sys::mem::shm_safe::ShmSafe;
///
/// #[repr(C)]
/// #[derive(Clone, Copy)]
/// struct Stats {
///     hits: u64,
///     misses: u64,
///     ratio: f64,
///     last_worker: [u8; 16],
/// }
///
/// // SAFETY: `repr(C)`; every field is an integer, float or integer array, so every bit
/// // pattern is a valid `Stats`; no pointers, no file descriptors.
/// unsafe impl ShmSafe for Stats {}
/// ```
pub unsafe trait ShmSafe: Copy + Send + Sync + 'static {}

macro_rules! shm_safe_primitives {
    ($($t:ty)*) => {$(
        // SAFETY: a primitive number: fixed layout, every bit pattern is a value (NaNs
        // included for floats), no pointers or handles.
        unsafe impl ShmSafe for $t {}
    )*};
}

shm_safe_primitives!(u8 u16 u32 u64 u128 usize i8 i16 i32 i64 i128 isize f32 f64);

// SAFETY: an array is its elements side by side with no padding of its own, so it satisfies
// each obligation exactly when its element type does; `[T; N]` is `Copy + Send + Sync +
// 'static` whenever `T` is.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}

mod sealed {
    /// Keeps [`AtomicInteger`](super::AtomicInteger) and [`AtomicOps`](super::AtomicOps)
    /// closed: their soundness rests on each integer being paired with the atomic type of the
    /// same size.
    pub trait Sealed {}
}

/// A [`ShmSafe`] integer that can be accessed atomically in place: `u8`..`u64`, `usize`,
/// `i8`..`i64`, `isize` (as far as the target has native atomics of that size).
///
/// Lets the top crate offer `fetch_add` and friends on a `Value<u64>` living in a shared
/// segment, where the value is stored as the plain integer. 128-bit integers are left out:
/// `AtomicU128` is unstable and not lock-free on every target.
///
/// Atomics of these sizes are lock-free instructions on every target that has them (Rust
/// never emulates `core` atomics with a lock), which is what makes them work across processes.
///
/// Sealed: implemented by this crate only.
///
/// # Examples
///
/// ```
/// use core::sync::atomic::Ordering::Relaxed;
/// use multiproc_sys::mem::shm_safe::{AtomicInteger, AtomicOps};
///
/// fn bump<T: AtomicInteger>(slot: *mut T, by: T) -> T {
///     // SAFETY: (in real code) `slot` points into a mapped segment, aligned for `T::Atomic`,
///     // and is only ever accessed atomically.
///     let a = unsafe { T::atomic_from_ptr(slot) };
///     a.fetch_add(by, Relaxed)
/// }
///
/// let mut n = 41u64;
/// assert_eq!(bump(&mut n, 1), 41);
/// assert_eq!(n, 42);
/// ```
pub trait AtomicInteger: ShmSafe + sealed::Sealed {
    /// The `core::sync::atomic` type of the same size (`AtomicU64` for `u64`).
    type Atomic: AtomicOps<Value = Self>;

    /// `Atomic::from_ptr(ptr)` — views the integer at `ptr` as its atomic type.
    ///
    /// Async-signal-safe (no code runs).
    ///
    /// # Safety
    ///
    /// - `ptr` is non-null and aligned to `align_of::<Self::Atomic>()`, which on some 32-bit
    ///   targets is larger than `align_of::<Self>()` (`u64` is 4-aligned on i686,
    ///   `AtomicU64` 8-aligned).
    /// - `ptr` is valid for reads and writes for the whole of `'a`: the mapping it points into
    ///   stays mapped and writable at least that long.
    /// - For the whole of `'a`, every access to these bytes, from any thread of any process,
    ///   is atomic and of this size, unless another synchronisation orders it with the
    ///   atomic accesses (the rule of `AtomicU64::from_ptr`: no racing mix of atomic and
    ///   non-atomic accesses, or of atomic accesses of different sizes).
    unsafe fn atomic_from_ptr<'a>(ptr: *mut Self) -> &'a Self::Atomic;
}

/// The operations of a `core::sync::atomic` integer type, so that code generic over
/// `T: AtomicInteger` can call them on `T::Atomic`.
///
/// Each method is the inherent method of the same name (see `AtomicU64`): one atomic
/// instruction or a compare-and-swap loop, lock-free and async-signal-safe. Arithmetic wraps
/// on overflow. Sealed: implemented for the atomic types paired with an [`AtomicInteger`].
pub trait AtomicOps: Send + Sync + sealed::Sealed {
    /// The plain integer type (`u64` for `AtomicU64`).
    type Value: AtomicInteger<Atomic = Self>;

    /// Loads the value.
    fn load(&self, order: Ordering) -> Self::Value;
    /// Stores `val`.
    fn store(&self, val: Self::Value, order: Ordering);
    /// Stores `val`, returning the previous value.
    fn swap(&self, val: Self::Value, order: Ordering) -> Self::Value;
    /// Stores `new` if the value is `current`; returns the previous value, `Ok` if it was
    /// `current`.
    fn compare_exchange(
        &self,
        current: Self::Value,
        new: Self::Value,
        success: Ordering,
        failure: Ordering,
    ) -> Result<Self::Value, Self::Value>;
    /// Like [`compare_exchange`](Self::compare_exchange), but may fail spuriously (for loops).
    fn compare_exchange_weak(
        &self,
        current: Self::Value,
        new: Self::Value,
        success: Ordering,
        failure: Ordering,
    ) -> Result<Self::Value, Self::Value>;
    /// Adds `val` (wrapping), returning the previous value.
    fn fetch_add(&self, val: Self::Value, order: Ordering) -> Self::Value;
    /// Subtracts `val` (wrapping), returning the previous value.
    fn fetch_sub(&self, val: Self::Value, order: Ordering) -> Self::Value;
    /// Bitwise and with `val`, returning the previous value.
    fn fetch_and(&self, val: Self::Value, order: Ordering) -> Self::Value;
    /// Bitwise or with `val`, returning the previous value.
    fn fetch_or(&self, val: Self::Value, order: Ordering) -> Self::Value;
    /// Bitwise xor with `val`, returning the previous value.
    fn fetch_xor(&self, val: Self::Value, order: Ordering) -> Self::Value;
    /// Stores the maximum of the value and `val`, returning the previous value.
    fn fetch_max(&self, val: Self::Value, order: Ordering) -> Self::Value;
    /// Stores the minimum of the value and `val`, returning the previous value.
    fn fetch_min(&self, val: Self::Value, order: Ordering) -> Self::Value;
}

/// The `AtomicOps` methods that take a value (`swap`, the `fetch_*` family) and the two
/// compare-exchanges, each forwarded to the std atomic's method of the same name.
macro_rules! forward_atomic_ops {
    ($t:ty, $atomic:ty; (val) $($rmw:ident)*; (cas) $($cas:ident)*;) => {
        $(
            #[inline]
            fn $rmw(&self, val: $t, order: Ordering) -> $t {
                <$atomic>::$rmw(self, val, order)
            }
        )*
        $(
            #[inline]
            fn $cas(
                &self,
                current: $t,
                new: $t,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$t, $t> {
                <$atomic>::$cas(self, current, new, success, failure)
            }
        )*
    };
}

macro_rules! atomic_integers {
    ($($cfg:literal: $t:ty => $atomic:ty;)*) => {$(
        #[cfg(target_has_atomic = $cfg)]
        impl sealed::Sealed for $t {}

        #[cfg(target_has_atomic = $cfg)]
        impl sealed::Sealed for $atomic {}

        #[cfg(target_has_atomic = $cfg)]
        static_assertions::assert_eq_size!($t, $atomic);

        #[cfg(target_has_atomic = $cfg)]
        impl AtomicInteger for $t {
            type Atomic = $atomic;

            #[inline]
            unsafe fn atomic_from_ptr<'a>(ptr: *mut $t) -> &'a $atomic {
                // SAFETY: the caller upholds `from_ptr`'s obligations, which are this
                // function's `# Safety` list word for word.
                unsafe { <$atomic>::from_ptr(ptr) }
            }
        }

        #[cfg(target_has_atomic = $cfg)]
        impl AtomicOps for $atomic {
            type Value = $t;

            #[inline]
            fn load(&self, order: Ordering) -> $t {
                <$atomic>::load(self, order)
            }
            #[inline]
            fn store(&self, val: $t, order: Ordering) {
                <$atomic>::store(self, val, order)
            }
            forward_atomic_ops! {
                $t, $atomic;
                (val) swap fetch_add fetch_sub fetch_and fetch_or fetch_xor fetch_max fetch_min;
                (cas) compare_exchange compare_exchange_weak;
            }
        }
    )*};
}

atomic_integers! {
    "8": u8 => core::sync::atomic::AtomicU8;
    "16": u16 => core::sync::atomic::AtomicU16;
    "32": u32 => core::sync::atomic::AtomicU32;
    "64": u64 => core::sync::atomic::AtomicU64;
    "ptr": usize => core::sync::atomic::AtomicUsize;
    "8": i8 => core::sync::atomic::AtomicI8;
    "16": i16 => core::sync::atomic::AtomicI16;
    "32": i32 => core::sync::atomic::AtomicI32;
    "64": i64 => core::sync::atomic::AtomicI64;
    "ptr": isize => core::sync::atomic::AtomicIsize;
}

// The contract, checked at compile time.
static_assertions::assert_impl_all!(u8: ShmSafe);
static_assertions::assert_impl_all!(i128: ShmSafe);
static_assertions::assert_impl_all!(f64: ShmSafe);
static_assertions::assert_impl_all!([[u32; 4]; 8]: ShmSafe);
static_assertions::assert_not_impl_any!(bool: ShmSafe);
static_assertions::assert_not_impl_any!(char: ShmSafe);
static_assertions::assert_not_impl_any!([bool; 4]: ShmSafe);
static_assertions::assert_not_impl_any!(core::num::NonZeroU32: ShmSafe);
static_assertions::assert_not_impl_any!(Option<u8>: ShmSafe);
static_assertions::assert_not_impl_any!(core::time::Duration: ShmSafe);
static_assertions::assert_not_impl_any!(&'static u8: ShmSafe);
static_assertions::assert_not_impl_any!(*mut u8: ShmSafe);
static_assertions::assert_not_impl_any!(fn() -> u8: ShmSafe);
static_assertions::assert_not_impl_any!(core::sync::atomic::AtomicU32: ShmSafe);
static_assertions::assert_not_impl_any!(u128: AtomicInteger);
static_assertions::assert_not_impl_any!(f64: AtomicInteger);
