//! multiproc: Python's `multiprocessing` for Rust (being written).
#![warn(missing_docs)]

pub use multiproc_sys as sys;

pub mod codec;
mod connection;
mod process;
mod shm;

pub use codec::Message;
pub use connection::{Connection, ConnectionError, pipe, wait};
pub use multiproc_sys::affinity::{CpuSet, cpu_count, process_cpu_count};
pub use multiproc_sys::{Pid, Signal};
pub use process::{
    JoinError, ParentProcess, Process, ProcessBuilder, ProcessInfo, ProcessStateError, StartError,
    active_children, current_process, parent_process, thread_count,
};
