//! A pool's configuration, and its encoding in the payload that starts a launched server.
//!
//! [`Config`] is built by the builders, inherited by the fork server and hence by every worker.
//! A server started by `spawn` or by the fork server gets the part of it without closures in
//! its launch payload ([`encode_launch`], [`decode_launch`]).

use std::time::Duration;

use multiproc_sys::Pid;

use crate::codec::{Decode, Decoder, Encode};
use crate::start::launch::Relocation;

use super::work::Runner;

/// Everything a pool is configured with. Built by the builders; inherited by the fork server
/// and hence by every worker.
pub(crate) struct Config {
    pub processes: usize,
    pub max_tasks_per_child: Option<u64>,
    pub task_timeout: Option<Duration>,
    pub cpus: Vec<usize>,
    pub initializer: Option<Box<dyn Fn() -> Result<(), String> + Send + Sync>>,
    pub registered: Vec<Runner>,
    pub terminate_grace: Duration,
    pub break_on_worker_death: bool,
    /// Executor flavour: `Shutdown` instead of `NotRunning`, `BrokenPool` wording.
    pub executor: bool,
    pub pool_id: u64,
    /// How code addresses sent by the parent map to this process's (non-zero only in a pool
    /// whose server was launched by `spawn`, or by a spawned fork server).
    pub reloc: Relocation,
}

/// The part of a [`Config`] a launched server needs (no closures: a launched pool has none),
/// and the pid of the process that uses the pool.
pub(crate) fn encode_launch(cfg: &Config, parent: Pid) -> Vec<u8> {
    let mut out = Vec::new();
    (cfg.processes as u64).encode(&mut out);
    cfg.max_tasks_per_child.encode(&mut out);
    cfg.task_timeout.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)).encode(&mut out);
    cfg.cpus.iter().map(|&c| c as u64).collect::<Vec<u64>>().encode(&mut out);
    u64::try_from(cfg.terminate_grace.as_nanos()).unwrap_or(u64::MAX).encode(&mut out);
    cfg.break_on_worker_death.encode(&mut out);
    cfg.executor.encode(&mut out);
    cfg.pool_id.encode(&mut out);
    parent.as_raw_nonzero().get().encode(&mut out);
    out
}

/// Decodes what [`encode_launch`] wrote, with the launched process's relocation; `None` if the
/// payload is malformed.
pub(crate) fn decode_launch(reloc: Relocation, payload: &[u8]) -> Option<(Config, Pid)> {
    let mut d = Decoder::new(payload);
    let processes = usize::try_from(u64::decode(&mut d).ok()?).ok()?;
    let max_tasks_per_child = Option::<u64>::decode(&mut d).ok()?;
    let task_timeout = Option::<u64>::decode(&mut d).ok()?.map(Duration::from_nanos);
    let cpus = Vec::<u64>::decode(&mut d).ok()?;
    let terminate_grace = Duration::from_nanos(u64::decode(&mut d).ok()?);
    let break_on_worker_death = bool::decode(&mut d).ok()?;
    let executor = bool::decode(&mut d).ok()?;
    let pool_id = u64::decode(&mut d).ok()?;
    let parent = Pid::from_raw(i32::decode(&mut d).ok()?)?;
    let cfg = Config {
        processes,
        max_tasks_per_child,
        task_timeout,
        cpus: cpus.into_iter().map(|c| c as usize).collect(),
        initializer: None,
        registered: Vec::new(),
        terminate_grace,
        break_on_worker_death,
        executor,
        pool_id,
        reloc,
    };
    Some((cfg, parent))
}
