//! The scheduler: what to do after every change of the engine's state, and the decisions it
//! makes without any I/O but queueing (the frames and control records it queues are written
//! by the driver, or at the end of [`Core::maintain`]): which worker gets which queued task and
//! how many ahead ([`depth`]: pipelining that adapts to the tasks' measured duration), stealing
//! back tasks a busy worker has not started ([`Core::rebalance`]), replacing and stopping
//! workers, and the per-task timeouts.
//!
//! It takes the configuration and the shared slot ring as arguments, not the whole engine, so
//! that its tests below run it on workers that are plain socketpairs, without forking.

use std::time::Duration;

use multiproc_sys::time::{Deadline, Timespec};
use multiproc_sys::{Pid, Signal};

use crate::pool::config::Config;
use crate::pool::proto::{self, Ctl};
use crate::pool::slots::{RING, Slots, now_ns};

use super::channel::flush_worker;
use super::state::{Core, Phase, SlotState, TaskId, TaskState};

/// Pipelining target: keep about this much work (in nanoseconds of measured task time) queued
/// in each worker's channel.
const PIPELINE_NS: u64 = 100_000;

/// How many tasks to keep in flight per worker, from the measured task duration (`ema_ns`, 0
/// before the first result): about [`PIPELINE_NS`] of work, at least 1, at most the ring.
pub(super) fn depth(ema_ns: u64) -> usize {
    match PIPELINE_NS.checked_div(ema_ns) {
        None => 1,
        Some(depth) => depth.clamp(1, RING as u64) as usize,
    }
}

impl Core {
    /// Housekeeping after every change: timeouts, replacement workers, dispatch, stopping idle
    /// workers of a closed pool, killing workers of a broken pool, flushing.
    pub(super) fn maintain(&mut self, cfg: &Config, slots: &Slots) {
        if matches!(self.phase, Phase::Terminated | Phase::Joined) {
            return;
        }
        if self.broken.is_some() {
            self.kill_all();
        } else {
            self.check_timeouts(cfg.task_timeout, slots);
            self.respawn(slots);
            self.rebalance(slots);
            self.dispatch(slots);
            self.stop_idle();
        }
        for (i, s) in self.slots.iter_mut().enumerate() {
            if let SlotState::Live(w) = s {
                flush_worker(w, self.secrets.get(i));
            }
        }
        self.flush_control();
    }

    pub(super) fn kill_all(&mut self) {
        let mut kills = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if let SlotState::Live(w) = s
                && !w.kill_sent
            {
                w.kill_sent = true;
                kills.push((i, w.pid));
            }
        }
        for (i, pid) in kills {
            self.send_kill(i, pid, Signal::KILL);
        }
    }

    pub(super) fn send_kill(&mut self, slot: usize, pid: Pid, sig: Signal) {
        let mut c = Ctl::new(proto::CTL_KILL, slot);
        c.pid = pid.as_raw_nonzero().get();
        c.value = sig.as_raw();
        self.send_ctl(c);
    }

    /// Whether workers are still needed.
    pub(super) fn want_workers(&self) -> bool {
        match self.phase {
            Phase::Running => true,
            Phase::Closed => self.queued > 0 || self.open_streams > 0,
            _ => false,
        }
    }

    pub(super) fn respawn(&mut self, slots: &Slots) {
        if self.control.is_none() || self.exit_sent || !self.want_workers() {
            return;
        }
        let mut spawn = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            if matches!(s, SlotState::Empty) {
                *s = SlotState::Spawning;
                spawn.push(i);
            }
        }
        for i in spawn {
            slots.get(i).reset();
            self.send_ctl(Ctl::new(proto::CTL_SPAWN, i));
        }
    }

    /// Sends queued tasks to workers with room, one task per worker in turn.
    ///
    /// A worker is refilled only once at most half its pipeline is left, and then up to the
    /// full depth, so that many tiny tasks travel in one write.
    pub(super) fn dispatch(&mut self, slots: &Slots) {
        if self.queued == 0 {
            // Drop stale ids (cancelled tasks) so the queue does not grow.
            self.queue.clear();
            return;
        }
        let depth = depth(self.ema_ns);
        let mut room: Vec<usize> = self
            .slots
            .iter()
            .map(|s| match s {
                SlotState::Live(w) if w.accepting() && w.inflight.len() <= depth / 2 => {
                    // Seqs in flight must span less than the ring: a new seq reuses the entry of
                    // the seq RING before it, which must be resolved by then (tasks stolen back
                    // by `rebalance` can leave a gap between the count and the span).
                    let span = match w.inflight.front() {
                        Some(&(oldest, _)) => {
                            (oldest + RING as u64).saturating_sub(w.next_seq) as usize
                        }
                        None => RING,
                    };
                    let r = (depth - w.inflight.len()).min(span);
                    w.budget.map_or(r, |b| r.min(usize::try_from(b).unwrap_or(usize::MAX)))
                }
                _ => 0,
            })
            .collect();
        let mut left: usize = room.iter().sum();
        // Least loaded first: a single task goes to an idle worker, never behind a long one.
        let mut order: Vec<usize> = (0..room.len()).filter(|&i| room[i] > 0).collect();
        order.sort_by_key(|&i| match &self.slots[i] {
            SlotState::Live(w) => w.inflight.len(),
            _ => usize::MAX,
        });
        while left > 0 && self.queued > 0 {
            for &i in &order {
                if room[i] == 0 {
                    continue;
                }
                let Some(id) = self.pop_queued() else { break };
                let SlotState::Live(w) = &mut self.slots[i] else {
                    unreachable!("room only for live workers")
                };
                let t = self.tasks.get_mut(id).expect("pop_queued returns live tasks");
                let seq = w.next_seq;
                w.next_seq += 1;
                slots.get(i).publish(seq);
                w.queue_task(seq, t.job, t.payload.bytes());
                t.state = TaskState::Sent { worker: i, seq };
                w.inflight.push_back((seq, id));
                if let Some(b) = &mut w.budget {
                    *b -= 1;
                }
                room[i] -= 1;
                left -= 1;
            }
        }
    }

    /// Moves tasks that a busy worker has not started to an idle one: when nothing is queued
    /// and some worker is idle, the not-yet-started tail of the most loaded worker's pipeline
    /// is cancelled in its ring (so that worker will skip those frames) and queued again.
    pub(super) fn rebalance(&mut self, slots: &Slots) {
        if self.queued > 0 {
            return;
        }
        let idle = self.slots.iter().any(|s| {
            matches!(s, SlotState::Live(w) if w.accepting() && w.inflight.is_empty()
                && w.budget.is_none_or(|b| b > 0))
        });
        if !idle {
            return;
        }
        let Some(busiest) = (0..self.slots.len())
            .filter(|&i| matches!(&self.slots[i], SlotState::Live(w) if w.inflight.len() >= 2))
            .max_by_key(|&i| match &self.slots[i] {
                SlotState::Live(w) => w.inflight.len(),
                _ => 0,
            })
        else {
            return;
        };
        let SlotState::Live(w) = &mut self.slots[busiest] else { return };
        let shm = slots.get(busiest);
        let mut stolen = Vec::new();
        let take = w.inflight.len() / 2;
        while stolen.len() < take && w.inflight.len() > 1 {
            let Some(&(seq, id)) = w.inflight.back() else { break };
            if !shm.cancel(seq) {
                break; // the worker got there first: the ones before are started too
            }
            w.inflight.pop_back();
            if let Some(b) = &mut w.budget {
                *b += 1;
            }
            stolen.push(id);
        }
        for id in stolen {
            // `stolen` is newest first: pushing each to the front restores the order.
            if let Some(t) = self.tasks.get_mut(id) {
                t.state = TaskState::Queued;
                self.queue.push_front(id);
                self.queued += 1;
            }
        }
    }

    /// Pops the next queued task whose batch still wants it.
    pub(super) fn pop_queued(&mut self) -> Option<TaskId> {
        while let Some(id) = self.queue.pop_front() {
            let Some(t) = self.tasks.get(id) else { continue };
            if t.state != TaskState::Queued {
                continue;
            }
            self.queued -= 1;
            if !self.batches.contains_key(&t.batch) {
                // Its stream was dropped: nobody wants the result.
                self.tasks.remove(id);
                continue;
            }
            return Some(id);
        }
        None
    }

    /// A closed pool with nothing left to do tells its idle workers to exit.
    pub(super) fn stop_idle(&mut self) {
        if self.phase != Phase::Closed || self.queued > 0 || self.open_streams > 0 {
            return;
        }
        for s in &mut self.slots {
            if let SlotState::Live(w) = s
                && w.inflight.is_empty()
                && !w.stop_sent
                && !w.eof
                && !w.write_dead
            {
                w.stop_sent = true;
                w.queue_stop();
            }
        }
    }

    /// Kills workers whose task ran past the per-task timeout.
    pub(super) fn check_timeouts(&mut self, task_timeout: Option<Duration>, slots: &Slots) {
        let Some(limit) = task_timeout else { return };
        let limit_ns = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
        let now = now_ns();
        let mut kills = Vec::new();
        for (i, s) in self.slots.iter_mut().enumerate() {
            let SlotState::Live(w) = s else { continue };
            if w.kill_sent || w.inflight.is_empty() {
                continue;
            }
            let shm = slots.get(i);
            let Some((seq, started)) = shm.running() else { continue };
            let Some(&(_, id)) = w.inflight.iter().find(|&&(s, _)| s == seq) else { continue };
            if shm.started(seq) && now.saturating_sub(started) >= limit_ns {
                if let Some(t) = self.tasks.get_mut(id) {
                    t.timed_out = true;
                }
                w.kill_sent = true;
                kills.push((i, w.pid));
            }
        }
        for (i, pid) in kills {
            self.send_kill(i, pid, Signal::KILL);
        }
    }

    /// When the driver must wake up at the latest (per-task timeouts).
    pub(super) fn next_wakeup(&self, task_timeout: Option<Duration>, slots: &Slots) -> Deadline {
        let Some(limit) = task_timeout else { return Deadline::FOREVER };
        let limit_ns = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
        let now = now_ns();
        let mut at = u64::MAX;
        for (i, s) in self.slots.iter().enumerate() {
            let SlotState::Live(w) = s else { continue };
            if w.kill_sent || w.inflight.is_empty() {
                continue;
            }
            let shm = slots.get(i);
            let due = match shm.running() {
                Some((seq, started))
                    if w.inflight.iter().any(|&(s, _)| s == seq) && shm.started(seq) =>
                {
                    started.saturating_add(limit_ns)
                }
                // Nothing started yet: nothing can be due before a full timeout from now.
                _ => now.saturating_add(limit_ns),
            };
            at = at.min(due);
        }
        if at == u64::MAX {
            return Deadline::FOREVER;
        }
        // A millisecond late rather than early: the check compares with the same clock.
        let at = at.saturating_add(1_000_000);
        Deadline::at(Timespec {
            tv_sec: (at / 1_000_000_000) as i64,
            tv_nsec: (at % 1_000_000_000) as i64,
        })
    }
}

#[cfg(test)]
mod tests {
    //! The scheduler on workers that are socketpairs (nobody reads them): no fork, no server.

    use std::os::fd::{AsFd, OwnedFd};
    use std::sync::Arc;

    use multiproc_sys::io::fd::set_nonblocking;
    use multiproc_sys::io::socket::socketpair;
    use multiproc_sys::process::pid::getpid;

    use crate::fd_registry::RegisteredFd;
    use crate::pool::work::Job;

    use super::super::channel::Worker;
    use super::super::state::{Batch, Mode, Payload, TaskEntry};
    use super::*;

    /// A core of `n` slots, the given ones holding a ready worker; the peers' ends are returned
    /// so the channels stay open.
    fn core(n: usize, live: &[usize], budget: Option<u64>) -> (Core, Slots, Vec<OwnedFd>) {
        let mut core = Core::new(n, None).unwrap();
        let mut peers = Vec::new();
        for &i in live {
            let (a, b) = socketpair().unwrap();
            set_nonblocking(a.as_fd(), true).unwrap();
            let mut w = Worker::new(getpid(), RegisteredFd::new(a), budget);
            w.ready = true;
            core.slots[i] = SlotState::Live(Box::new(w));
            peers.push(b);
        }
        (core, Slots::new(n).unwrap(), peers)
    }

    /// Queues a collect batch of `k` one-item tasks.
    fn queue(core: &mut Core, k: usize) {
        let id = core.next_id();
        core.batches.insert(id, Batch::new(Mode::Collect, k, true));
        let buf = Arc::new(vec![0u8; 8]);
        for chunk in 0..k {
            let tid = core.tasks.insert(TaskEntry {
                job: Job::Code { tramp: 1, ctx: 0 },
                payload: Payload { buf: buf.clone(), range: 0..8 },
                n: 1,
                batch: id,
                chunk,
                state: TaskState::Queued,
                timed_out: false,
            });
            core.queue.push_back(tid);
            core.queued += 1;
        }
    }

    fn inflight(core: &Core) -> Vec<usize> {
        core.slots
            .iter()
            .map(|s| match s {
                SlotState::Live(w) => w.inflight.len(),
                _ => 0,
            })
            .collect()
    }

    #[test]
    fn the_depth_follows_the_measured_task_time() {
        assert_eq!(depth(0), 1, "nothing measured yet: one task at a time");
        assert_eq!(depth(PIPELINE_NS * 3), 1, "long tasks: one at a time");
        assert_eq!(depth(PIPELINE_NS / 4), 4);
        assert_eq!(depth(1), RING, "tiny tasks: at most a ring's worth");
    }

    #[test]
    fn before_any_result_each_worker_gets_one_task() {
        let (mut core, slots, _peers) = core(3, &[0, 2], None);
        queue(&mut core, 3);
        core.dispatch(&slots);
        assert_eq!(inflight(&core), [1, 0, 1]);
        assert_eq!(core.queued, 1);
        for i in [0, 2] {
            let SlotState::Live(w) = &core.slots[i] else { unreachable!() };
            assert_eq!(w.next_seq, 2);
            assert!(w.wants_write(), "the task frame waits in the write buffer");
            assert!(slots.get(i).cancel(1), "seq 1 was published, not started");
        }
    }

    #[test]
    fn short_tasks_are_pipelined_and_refilled_at_half_depth() {
        let (mut core, slots, _peers) = core(2, &[0, 1], None);
        core.ema_ns = PIPELINE_NS / 8; // depth 8
        queue(&mut core, 20);
        core.dispatch(&slots);
        assert_eq!(inflight(&core), [8, 8]);
        assert_eq!(core.queued, 4);
        // Worker 0 finishes 3: 5 left is more than half the depth, so no refill yet.
        let SlotState::Live(w) = &mut core.slots[0] else { unreachable!() };
        w.inflight.drain(..3);
        core.dispatch(&slots);
        assert_eq!(inflight(&core), [5, 8]);
        // One more: at half depth, it is refilled with what is left.
        let SlotState::Live(w) = &mut core.slots[0] else { unreachable!() };
        w.inflight.pop_front();
        core.dispatch(&slots);
        assert_eq!(inflight(&core), [8, 8]);
        assert_eq!(core.queued, 0);
    }

    #[test]
    fn the_task_budget_caps_what_a_worker_is_sent() {
        let (mut core, slots, _peers) = core(2, &[0, 1], Some(1));
        core.ema_ns = 1; // as deep as the ring
        queue(&mut core, 5);
        core.dispatch(&slots);
        assert_eq!(inflight(&core), [1, 1]);
        assert_eq!(core.queued, 3);
    }

    #[test]
    fn an_idle_worker_takes_over_the_unstarted_tail_of_a_busy_one() {
        let (mut core, slots, _peers) = core(2, &[0], None);
        core.ema_ns = PIPELINE_NS / 8;
        queue(&mut core, 6);
        core.dispatch(&slots);
        assert_eq!(inflight(&core), [6, 0]);
        // Worker 0 starts its first task; worker 1 arrives, idle.
        assert!(slots.get(0).claim(1, now_ns()));
        let (a, _peer) = socketpair().unwrap();
        let w = Worker::new(getpid(), RegisteredFd::new(a), None);
        core.slots[1] = SlotState::Live(Box::new(w));
        core.rebalance(&slots);
        assert_eq!(inflight(&core), [3, 0]);
        assert_eq!(core.queued, 3);
        assert!(!slots.get(0).cancel(4), "the stolen seqs are cancelled in worker 0's ring");
        // Both have room (3 is at most half the depth): one task each in turn, the least
        // loaded first.
        core.dispatch(&slots);
        assert_eq!(inflight(&core), [4, 2]);
        // The busy worker keeps the task it started.
        let SlotState::Live(w) = &core.slots[0] else { unreachable!() };
        assert_eq!(w.inflight.front().map(|&(seq, _)| seq), Some(1));
    }

    #[test]
    fn a_closed_pool_stops_its_idle_workers_only() {
        let (mut core, slots, _peers) = core(2, &[0, 1], None);
        queue(&mut core, 1);
        core.dispatch(&slots);
        core.phase = Phase::Closed;
        core.stop_idle();
        let stop: Vec<bool> =
            core.slots.iter().map(|s| matches!(s, SlotState::Live(w) if w.stop_sent)).collect();
        assert_eq!(stop, [false, true]);
        assert!(!core.want_workers());
    }
}
