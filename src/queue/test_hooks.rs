//! **Not API.** Hooks into a queue's shared segment for this crate's own integration tests and
//! fuzz targets, which garble the segment on purpose or watch a producer's progress. Compiled
//! only with the `__test-hooks` feature, which the crate's dev-dependency on itself turns on
//! for its tests and benches (and the fuzz crate for its targets); no semver promise.

use super::handle::Queue;

/// The queue's validated shared header and its ring, as `(header, header_len, ring,
/// ring_len)`. Writing through these pointers is `unsafe` and only meant for tests that garble
/// the segment on purpose.
pub fn raw_parts<T>(q: &Queue<T>) -> (*mut u8, usize, *mut u8, usize) {
    q.raw.raw_parts()
}

/// The ring's `(head, tail)` byte positions.
pub fn positions<T>(q: &Queue<T>) -> (u64, u64) {
    q.raw.positions()
}
