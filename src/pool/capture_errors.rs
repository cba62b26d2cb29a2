//! Compile-fail doctests that pin how a closure capturing data is refused, for every public
//! method that takes work (see [`Work`](super::Work)'s "A closure that captures data").
//! Compiled only for `cargo test --doc`.

/// Compile-fail doctests: a closure capturing one `u64` (a `Copy` capture, caught by
/// [`Work::SENDABLE`](super::Work::SENDABLE) at monomorphisation, error E0080) passed to each method that takes work,
/// and closures capturing a `String` (caught by the trait bound, E0277, also under `cargo
/// check`).
///
/// [`Pool::apply`](crate::Pool::apply):
///
/// ```compile_fail,E0080
/// # fn main() -> Result<(), multiproc::PoolError> {
/// # let pool = multiproc::Pool::new(1)?;
/// # let ex = multiproc::ProcessPoolExecutor::new(1)?;
/// let k = 7u64;
/// pool.apply(move |x: u64| x + k, 1)?;
/// # Ok(())
/// # }
/// ```
///
/// [`Pool::apply_async`](crate::Pool::apply_async):
///
/// ```compile_fail,E0080
/// # fn main() -> Result<(), multiproc::PoolError> {
/// # let pool = multiproc::Pool::new(1)?;
/// # let ex = multiproc::ProcessPoolExecutor::new(1)?;
/// let k = 7u64;
/// pool.apply_async(move |x: u64| x + k, 1)?;
/// # Ok(())
/// # }
/// ```
///
/// [`Pool::map`](crate::Pool::map):
///
/// ```compile_fail,E0080
/// # fn main() -> Result<(), multiproc::PoolError> {
/// # let pool = multiproc::Pool::new(1)?;
/// # let ex = multiproc::ProcessPoolExecutor::new(1)?;
/// let k = 7u64;
/// pool.map(move |x: u64| x + k, [1])?;
/// # Ok(())
/// # }
/// ```
///
/// [`Pool::map_chunksize`](crate::Pool::map_chunksize):
///
/// ```compile_fail,E0080
/// # fn main() -> Result<(), multiproc::PoolError> {
/// # let pool = multiproc::Pool::new(1)?;
/// # let ex = multiproc::ProcessPoolExecutor::new(1)?;
/// let k = 7u64;
/// pool.map_chunksize(move |x: u64| x + k, [1], 1)?;
/// # Ok(())
/// # }
/// ```
///
/// [`Pool::map_async`](crate::Pool::map_async):
///
/// ```compile_fail,E0080
/// # fn main() -> Result<(), multiproc::PoolError> {
/// # let pool = multiproc::Pool::new(1)?;
/// # let ex = multiproc::ProcessPoolExecutor::new(1)?;
/// let k = 7u64;
/// pool.map_async(move |x: u64| x + k, [1], None)?;
/// # Ok(())
/// # }
/// ```
///
/// [`Pool::imap`](crate::Pool::imap):
///
/// ```compile_fail,E0080
/// # fn main() -> Result<(), multiproc::PoolError> {
/// # let pool = multiproc::Pool::new(1)?;
/// # let ex = multiproc::ProcessPoolExecutor::new(1)?;
/// let k = 7u64;
/// pool.imap(move |x: u64| x + k, [1], 1)?;
/// # Ok(())
/// # }
/// ```
///
/// [`Pool::imap_unordered`](crate::Pool::imap_unordered):
///
/// ```compile_fail,E0080
/// # fn main() -> Result<(), multiproc::PoolError> {
/// # let pool = multiproc::Pool::new(1)?;
/// # let ex = multiproc::ProcessPoolExecutor::new(1)?;
/// let k = 7u64;
/// pool.imap_unordered(move |x: u64| x + k, [1], 1)?;
/// # Ok(())
/// # }
/// ```
///
/// [`Pool::starmap`](crate::Pool::starmap):
///
/// ```compile_fail,E0080
/// # fn main() -> Result<(), multiproc::PoolError> {
/// # let pool = multiproc::Pool::new(1)?;
/// # let ex = multiproc::ProcessPoolExecutor::new(1)?;
/// let k = 7u64;
/// pool.starmap(move |x: u64, y: u64| x + y + k, [(1, 2)])?;
/// # Ok(())
/// # }
/// ```
///
/// [`Pool::starmap_chunksize`](crate::Pool::starmap_chunksize):
///
/// ```compile_fail,E0080
/// # fn main() -> Result<(), multiproc::PoolError> {
/// # let pool = multiproc::Pool::new(1)?;
/// # let ex = multiproc::ProcessPoolExecutor::new(1)?;
/// let k = 7u64;
/// pool.starmap_chunksize(move |x: u64, y: u64| x + y + k, [(1, 2)], 1)?;
/// # Ok(())
/// # }
/// ```
///
/// [`Pool::starmap_async`](crate::Pool::starmap_async):
///
/// ```compile_fail,E0080
/// # fn main() -> Result<(), multiproc::PoolError> {
/// # let pool = multiproc::Pool::new(1)?;
/// # let ex = multiproc::ProcessPoolExecutor::new(1)?;
/// let k = 7u64;
/// pool.starmap_async(move |x: u64, y: u64| x + y + k, [(1, 2)], None)?;
/// # Ok(())
/// # }
/// ```
///
/// [`ProcessPoolExecutor::submit`](crate::ProcessPoolExecutor::submit):
///
/// ```compile_fail,E0080
/// # fn main() -> Result<(), multiproc::PoolError> {
/// # let pool = multiproc::Pool::new(1)?;
/// # let ex = multiproc::ProcessPoolExecutor::new(1)?;
/// let k = 7u64;
/// ex.submit(move |x: u64| x + k, 1)?;
/// # Ok(())
/// # }
/// ```
///
/// [`ProcessPoolExecutor::map`](crate::ProcessPoolExecutor::map):
///
/// ```compile_fail,E0080
/// # fn main() -> Result<(), multiproc::PoolError> {
/// # let pool = multiproc::Pool::new(1)?;
/// # let ex = multiproc::ProcessPoolExecutor::new(1)?;
/// let k = 7u64;
/// ex.map(move |x: u64| x + k, [1], 1, None)?;
/// # Ok(())
/// # }
/// ```
///
/// [`ProcessBuilder::call`](crate::ProcessBuilder::call):
///
/// ```compile_fail,E0080
/// # fn main() -> Result<(), multiproc::PoolError> {
/// # let pool = multiproc::Pool::new(1)?;
/// # let ex = multiproc::ProcessPoolExecutor::new(1)?;
/// let k = 7u64;
/// multiproc::ProcessBuilder::new().call(move |x: u64| x + k, 1);
/// # Ok(())
/// # }
/// ```
///
/// [`Context::process`](crate::Context::process):
///
/// ```compile_fail,E0080
/// # fn main() -> Result<(), multiproc::PoolError> {
/// # let pool = multiproc::Pool::new(1)?;
/// # let ex = multiproc::ProcessPoolExecutor::new(1)?;
/// let k = 7u64;
/// multiproc::Context::default().process(move |x: u64| x + k, 1);
/// # Ok(())
/// # }
/// ```
///
/// [`Pool::map`](crate::Pool::map), capturing a `String`:
///
/// ```compile_fail,E0277
/// # fn main() -> Result<(), multiproc::PoolError> {
/// # let pool = multiproc::Pool::new(1)?;
/// # let ex = multiproc::ProcessPoolExecutor::new(1)?;
/// let s = String::from("data");
/// pool.map(move |x: u64| x + s.len() as u64, [1])?;
/// # Ok(())
/// # }
/// ```
///
/// [`Pool::starmap`](crate::Pool::starmap), capturing a `String`:
///
/// ```compile_fail,E0277
/// # fn main() -> Result<(), multiproc::PoolError> {
/// # let pool = multiproc::Pool::new(1)?;
/// # let ex = multiproc::ProcessPoolExecutor::new(1)?;
/// let s = String::from("data");
/// pool.starmap(move |x: u64, y: u64| x + y + s.len() as u64, [(1, 2)])?;
/// # Ok(())
/// # }
/// ```
///
/// [`ProcessPoolExecutor::submit`](crate::ProcessPoolExecutor::submit), capturing a `String`:
///
/// ```compile_fail,E0277
/// # fn main() -> Result<(), multiproc::PoolError> {
/// # let pool = multiproc::Pool::new(1)?;
/// # let ex = multiproc::ProcessPoolExecutor::new(1)?;
/// let s = String::from("data");
/// ex.submit(move |x: u64| x + s.len() as u64, 1)?;
/// # Ok(())
/// # }
/// ```
///
/// The same calls with a function compile (so the failures above come from the captures):
///
/// ```no_run
/// # fn main() -> Result<(), multiproc::PoolError> {
/// # let pool = multiproc::Pool::new(1)?;
/// # let ex = multiproc::ProcessPoolExecutor::new(1)?;
/// pool.apply(|x: u64| x + 7, 1)?;
/// pool.apply_async(|x: u64| x + 7, 1)?;
/// pool.map(|x: u64| x + 7, [1])?;
/// pool.map_chunksize(|x: u64| x + 7, [1], 1)?;
/// pool.map_async(|x: u64| x + 7, [1], None)?;
/// pool.imap(|x: u64| x + 7, [1], 1)?;
/// pool.imap_unordered(|x: u64| x + 7, [1], 1)?;
/// pool.starmap(|x: u64, y: u64| x + y + 7, [(1, 2)])?;
/// pool.starmap_chunksize(|x: u64, y: u64| x + y + 7, [(1, 2)], 1)?;
/// pool.starmap_async(|x: u64, y: u64| x + y + 7, [(1, 2)], None)?;
/// ex.submit(|x: u64| x + 7, 1)?;
/// ex.map(|x: u64| x + 7, [1], 1, None)?;
/// multiproc::ProcessBuilder::new().call(|x: u64| x + 7, 1);
/// multiproc::Context::default().process(|x: u64| x + 7, 1);
/// pool.map(|x: u64| x + 4, [1])?;
/// pool.starmap(|x: u64, y: u64| x + y + 4, [(1, 2)])?;
/// ex.submit(|x: u64| x + 4, 1)?;
/// # Ok(())
/// # }
/// ```
pub struct CapturingClosuresDoNotCompile;
