//! multiproc: Python's `multiprocessing` for Rust (being written).
#![warn(missing_docs)]

pub use multiproc_sys as sys;
