//! `Queue`, `SimpleQueue` and `JoinableQueue` — Python's `multiprocessing` queues, on a ring of
//! bytes in shared memory. The user-facing documentation is on [`Queue`]; the algorithm and its
//! invariants are documented in the `ring` module (`src/queue/ring/mod.rs`).

// Layout (for maintainers; not in the public docs)
//
// | file | holds |
// |---|---|
// | `handle` | `Queue<T>`: encoding items into the ring and decoding them out, the byte-string fast path |
// | `simple`, `joinable` | `SimpleQueue` and `JoinableQueue`, over a `Queue` |
// | `builder` | `QueueBuilder`, the sealed `BuildQueue`, `DEFAULT_CAPACITY_BYTES` |
// | `error` | `PutError`, `GetError`, `TaskDoneError`, `QueueJoinError`, `QueueError`, `Corruption` |
// | `ring/` | the shared ring itself: layout, put, get, repairs (see its module docs) |
// | `test_hooks` | not API: raw access for the crate's own tests (the `__test-hooks` feature) |

mod builder;
mod error;
mod handle;
mod joinable;
mod ring;
mod simple;
#[cfg(feature = "__test-hooks")]
#[doc(hidden)]
pub mod test_hooks;

pub use builder::{BuildQueue, DEFAULT_CAPACITY_BYTES, QueueBuilder};
pub use error::{Corruption, GetError, PutError, QueueError, QueueJoinError, TaskDoneError};
pub use handle::Queue;
pub use joinable::JoinableQueue;
pub use simple::SimpleQueue;
