//! Memory: shared segments that forked children and other processes see, private pages that
//! they do not, and the plain-data contract for what may live in shared memory.
//!
//! | module | what it holds |
//! |---|---|
//! | [`mmap`] | [`Segment`](mmap::Segment) (`MAP_SHARED`, anonymous or memfd), [`WipeOnFork`](mmap::WipeOnFork) pages, [`page_size`](mmap::page_size), huge-page advice |
//! | [`shm_safe`] | the [`ShmSafe`](shm_safe::ShmSafe) contract and atomic access to shared integers |
//!
//! The objects that synchronise processes through this memory (futexes, semaphores, pthread
//! mutexes and condvars) are in [`sync`](crate::sync).

pub mod mmap;
pub mod shm_safe;
