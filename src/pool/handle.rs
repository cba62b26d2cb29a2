//! [`BatchHandle`]: the handle to one collect batch that [`AsyncResult`](super::AsyncResult)
//! and [`Future`](super::Future) are both made of. It counts as one of the batch's live handles
//! (a clone adds one, a drop removes one), waits for its results while driving the engine,
//! and registers callbacks for when it completes.

use std::sync::Arc;

use multiproc_sys::time::Deadline;

use super::engine::{BatchId, Callback, Completed, Shared};
use super::error::PoolError;

/// One live handle to a collect batch of an engine.
pub(crate) struct BatchHandle {
    pub(crate) shared: Arc<Shared>,
    pub(crate) batch: BatchId,
}

impl BatchHandle {
    /// Takes over the handle that submitting `batch` counted.
    pub(crate) fn new(shared: Arc<Shared>, batch: BatchId) -> Self {
        BatchHandle { shared, batch }
    }

    /// A new handle to `batch`, counted now.
    pub(crate) fn retained(shared: &Arc<Shared>, batch: BatchId) -> Self {
        shared.retain(batch);
        BatchHandle { shared: shared.clone(), batch }
    }

    /// Drives the engine until the batch's results are in (`Ok(Some)`) or the deadline passes
    /// (`Ok(None)`; also `None` if the batch is gone).
    pub(crate) fn wait(&self, deadline: Deadline) -> Result<Option<Arc<Completed>>, PoolError> {
        let batch = self.batch;
        let mut done = None;
        self.shared.wait_until(deadline, |c| {
            done = c.done(batch);
            done.is_some() || !c.has_batch(batch)
        })?;
        Ok(done)
    }

    /// Registers `cb` for when the batch completes, or hands it back with the results if it
    /// already has (the caller runs it, outside the engine's lock).
    pub(crate) fn on_done(&self, cb: Callback) -> Option<(Arc<Completed>, Callback)> {
        self.shared.on_done(self.batch, cb)
    }

    /// Identifies the batch across engines.
    pub(crate) fn key(&self) -> (*const Shared, BatchId) {
        (Arc::as_ptr(&self.shared), self.batch)
    }
}

impl Clone for BatchHandle {
    fn clone(&self) -> Self {
        BatchHandle::retained(&self.shared, self.batch)
    }
}

impl Drop for BatchHandle {
    fn drop(&mut self) {
        self.shared.release(self.batch);
    }
}
