//! Test hooks: a per-thread callback run at named points of the protocol, so a unit test can
//! act (as another process would) exactly inside a race window. Compiled for unit tests only.

use std::cell::RefCell;

use super::raw::RawQueue;

/// Where a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Point {
    /// `commit_put`, between the `puts` and `tail` stores.
    CommitPut,
    /// `check_producer`, before its `trylock`.
    CheckProducer,
    /// `check_producer`, after the put lock it found free is released again.
    ProducerChecked,
    /// `read_big`, right after it loads `tail`.
    ReadBigTail,
    /// `unfinished_parts`, between its first read and the others.
    TaskDoneReads,
}

type Hook = Box<dyn FnMut(Point, &RawQueue)>;

thread_local! {
    static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) };
}

/// Runs `f` at every hook point this thread reaches (until [`clear`]).
pub(super) fn set(f: impl FnMut(Point, &RawQueue) + 'static) {
    HOOK.with(|h| *h.borrow_mut() = Some(Box::new(f)));
}

/// Removes this thread's hook.
pub(super) fn clear() {
    HOOK.with(|h| *h.borrow_mut() = None);
}

/// Runs this thread's hook, if any, at `point`.
pub(super) fn at(point: Point, q: &RawQueue) {
    // Taken out while it runs, so the hook may call into the queue without re-entering.
    let Some(mut f) = HOOK.with(|h| h.borrow_mut().take()) else {
        return;
    };
    f(point, q);
    HOOK.with(|h| {
        let mut slot = h.borrow_mut();
        if slot.is_none() {
            *slot = Some(f);
        }
    });
}
