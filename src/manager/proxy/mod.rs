//! Proxies: handles to objects in a manager's server, usable from any process that has them
//! (see [`Manager`](super::Manager)). Each wraps a [`Proxy`]: the server's address and the
//! object's id. Cloning a proxy is cheap and gives another handle to the same object.

mod data;
mod sync;

use std::fmt;
use std::sync::Arc;

pub use data::{ArrayProxy, DictProxy, ListProxy, NamespaceProxy, ValueProxy};
pub use sync::{
    BarrierProxy, ConditionProxy, EventProxy, JoinableQueueProxy, LockProxy, ProxyGuard,
    QueueProxy, SemaphoreProxy,
};

use super::client::Target;
use super::error::ManagerError;
use super::protocol as p;
use crate::codec::{self, Decode, Encode};

/// A handle to any object of a manager (Python's `BaseProxy`): the typed proxies wrap one, and
/// custom objects (registered with
/// [`ManagerBuilder::register`](super::ManagerBuilder::register)) are called through it.
///
/// Objects live as long as the server: dropping a proxy does not delete its object.
#[derive(Clone)]
pub struct Proxy {
    pub(crate) target: Arc<Target>,
    pub(crate) id: u64,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("address", &self.target.address)
            .field("id", &self.id)
            .finish()
    }
}

impl Proxy {
    /// Calls a custom object's `method` with `args` and decodes its result as an `R` (Python's
    /// `proxy._callmethod(name, args)`).
    ///
    /// # Errors
    /// The method's own error ([`ManagerError::Remote`]), [`ManagerError::Gone`] if the server
    /// is gone, [`ManagerError::Decode`] if the result is not an `R`.
    pub fn call<A: Encode + ?Sized, R: Decode>(
        &self,
        method: &str,
        args: &A,
    ) -> Result<R, ManagerError> {
        let mut bytes = codec::to_bytes(method);
        args.encode(&mut bytes);
        let out = self.target.call_raw(self.id, p::CALL, &bytes)?;
        Ok(codec::from_bytes(&out)?)
    }

    /// The object's id in its server.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn raw(&self, method: u16, args: &[u8]) -> Result<Vec<u8>, ManagerError> {
        self.target.call_raw(self.id, method, args)
    }

    pub(crate) fn call_typed<A: Encode + ?Sized, R: Decode>(
        &self,
        method: u16,
        args: &A,
    ) -> Result<R, ManagerError> {
        self.target.call(self.id, method, args)
    }
}

/// A type of object a manager serves: what [`Manager::create`](super::Manager::create) and
/// [`Manager::get_or_create`](super::Manager::get_or_create) make. Implemented by the typed
/// proxies (and by [`Proxy`] for nothing: custom objects are made with
/// [`Manager::create_custom`](super::Manager::create_custom)).
pub trait Managed: Sized {
    /// The server's name for the type (Python's typeid: `"dict"`, `"Queue"`, ...).
    const TYPEID: &'static str;
    /// What the object is made from (`()` for most; the items of a list, the value of a
    /// `Value`, a semaphore's count, a queue's `maxsize` (0: unbounded), a barrier's parties).
    type Init: ?Sized;
    /// The encoded initial argument, as the server reads it.
    fn init_bytes(init: &Self::Init) -> Vec<u8>;
    /// Wraps a handle to an object of this type.
    fn from_proxy(proxy: Proxy) -> Self;
    /// The handle.
    fn proxy(&self) -> &Proxy;
}

/// Encodes each item on its own (the server keeps them as separate byte strings).
pub(crate) fn encode_items<'a, T: Encode + 'a>(
    items: impl IntoIterator<Item = &'a T>,
) -> Vec<Vec<u8>> {
    items.into_iter().map(codec::to_bytes).collect()
}

/// Decodes each item of a list of byte strings.
pub(crate) fn decode_items<T: Decode>(items: Vec<Vec<u8>>) -> Result<Vec<T>, ManagerError> {
    items.iter().map(|b| codec::from_bytes(b).map_err(ManagerError::Decode)).collect()
}
