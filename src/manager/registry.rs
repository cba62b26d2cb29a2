//! What the server can make: the built-in typeids and the custom ones registered with
//! [`ManagerBuilder::register`](super::ManagerBuilder::register) (Python's
//! `BaseManager.register(typeid, callable)`), and the objects themselves.
#![allow(unsafe_code)] // relocated constructor addresses (`Registry::decode`).

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

use super::data::{Dict, List, Namespace, Value, lock};
use super::error::{ErrorKind, RemoteError};
use super::protocol::{self as p, args};
use super::sync_objects::{
    BarrierObj, Caller, ConditionObj, EventObj, LockObj, QueueObj, SemaphoreObj,
};
use crate::codec::{Decode, Decoder, Encode};
use crate::start::launch::Relocation;

/// An object a [`Manager`](super::Manager) serves that is not one of the built-in types: a
/// user type and the methods clients may call on it (Python's `BaseManager.register(typeid,
/// callable)` with `exposed` methods).
///
/// The server calls [`call`](Self::call) with the method's name and its encoded argument, and
/// sends back the encoded result or the error; a client calls it through
/// [`Proxy::call`](super::Proxy::call). Calls on one object never overlap (the server holds
/// the object's lock during a call), so a method may block only briefly. A panic in a method is
/// caught and reported to its caller as an [`ErrorKind::Other`] error; the object stays usable.
///
/// ```
/// use multiproc::manager::{ErrorKind, RemoteError, SharedObject, reply};
///
/// /// A counter with `add(i64) -> i64` and `get(()) -> i64`.
/// struct Counter(i64);
///
/// impl SharedObject for Counter {
///     fn call(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>, RemoteError> {
///         match method {
///             "add" => reply(args, |n: i64| {
///                 self.0 += n;
///                 Ok(self.0)
///             }),
///             "get" => reply(args, |()| Ok(self.0)),
///             _ => Err(RemoteError::new(ErrorKind::NoSuchMethod, method)),
///         }
///     }
/// }
///
/// /// The constructor the manager registers: it gets the encoded arguments of `create`.
/// fn new_counter(args: &[u8]) -> Result<Box<dyn SharedObject>, RemoteError> {
///     let start: i64 = multiproc::codec::from_bytes(args)?;
///     Ok(Box::new(Counter(start)))
/// }
/// # let _ = new_counter;
/// ```
pub trait SharedObject: Send + 'static {
    /// Runs `method` with its encoded argument and returns the encoded result.
    ///
    /// # Errors
    /// Whatever the method reports; it reaches the caller as
    /// [`ManagerError::Remote`](super::ManagerError::Remote).
    fn call(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>, RemoteError>;
}

/// Decodes `args` as an `A`, runs `f` and encodes its result: the usual body of a
/// [`SharedObject::call`] arm. Arguments that do not decode are an [`ErrorKind::Type`] error.
///
/// # Errors
/// The decoding error, or `f`'s.
pub fn reply<A: Decode, R: Encode>(
    args: &[u8],
    f: impl FnOnce(A) -> Result<R, RemoteError>,
) -> Result<Vec<u8>, RemoteError> {
    let a: A = crate::codec::from_bytes(args).map_err(RemoteError::bad_args)?;
    Ok(crate::codec::to_bytes(&f(a)?))
}

/// A custom typeid's constructor: gets the encoded argument given to
/// [`Manager::create`](super::Manager::create). A plain `fn`, so that a server started by the
/// fork server (or `spawn`) can find it by address, as pool tasks are.
pub type Constructor = fn(&[u8]) -> Result<Box<dyn SharedObject>, RemoteError>;

/// The typeids of the built-in objects (Python's `SyncManager` names).
pub(crate) const BUILTIN: &[&str] = &[
    "dict",
    "list",
    "Namespace",
    "Value",
    "Array",
    "Lock",
    "RLock",
    "Semaphore",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "Barrier",
    "Queue",
    "JoinableQueue",
];

/// The custom typeids a manager was built with.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    pub(crate) custom: Vec<(String, Constructor)>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.custom.iter().map(|(t, _)| t)).finish()
    }
}

impl Registry {
    /// Encodes the typeids and their constructors' addresses, for a launched server.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        (self.custom.len() as u64).encode(out);
        for (typeid, ctor) in &self.custom {
            typeid.encode(out);
            (*ctor as usize as u64).encode(out);
        }
    }

    /// Decodes what [`encode`](Self::encode) wrote in a process of the same executable,
    /// relocating the constructors' addresses.
    pub(crate) fn decode(d: &mut Decoder<'_>, reloc: Relocation) -> Option<Registry> {
        let n = u64::decode(d).ok()?;
        let mut custom = Vec::new();
        for _ in 0..n {
            let typeid = String::decode(d).ok()?;
            let addr = reloc.code(u64::decode(d).ok()?);
            if addr == 0 {
                return None;
            }
            // SAFETY: the launch message comes from a process of this same executable (the
            // launcher checked it), which took `addr` from a `Constructor`; the relocation maps
            // it to the same function here.
            let ctor = unsafe { std::mem::transmute::<usize, Constructor>(addr as usize) };
            custom.push((typeid, ctor));
        }
        Some(Registry { custom })
    }

    /// Makes an object of `typeid` from its encoded initial argument.
    pub(crate) fn make(&self, typeid: &str, init: &[u8]) -> Result<Object, RemoteError> {
        Ok(match typeid {
            "dict" => Object::Dict(Dict::default()),
            "list" => Object::List(List::new(args(init)?, false)),
            "Namespace" => Object::Namespace(Namespace::default()),
            "Value" => Object::Value(Value::new(init.to_vec())),
            "Array" => Object::Array(List::new(args(init)?, true)),
            "Lock" => Object::Lock(LockObj::new(false)),
            "RLock" => Object::Lock(LockObj::new(true)),
            "Semaphore" => Object::Semaphore(SemaphoreObj::new(args(init)?, false)),
            "BoundedSemaphore" => Object::Semaphore(SemaphoreObj::new(args(init)?, true)),
            "Condition" => Object::Condition(ConditionObj::default()),
            "Event" => Object::Event(EventObj::default()),
            "Barrier" => {
                let parties: u64 = args(init)?;
                if parties == 0 {
                    return Err(RemoteError::new(ErrorKind::Value, "parties must be > 0"));
                }
                Object::Barrier(BarrierObj::new(parties))
            }
            "Queue" => Object::Queue(QueueObj::new(queue_size(init)?, false)),
            "JoinableQueue" => Object::Queue(QueueObj::new(queue_size(init)?, true)),
            other => match self.custom.iter().find(|(t, _)| t == other) {
                Some((_, ctor)) => {
                    let made = catch_unwind(AssertUnwindSafe(|| ctor(init)))
                        .unwrap_or_else(|_| Err(panicked(other)))?;
                    Object::Custom(Mutex::new(made))
                }
                None => {
                    return Err(RemoteError::new(
                        ErrorKind::NoSuchObject,
                        format!("unknown typeid {other:?}"),
                    ));
                }
            },
        })
    }
}

fn queue_size(init: &[u8]) -> Result<usize, RemoteError> {
    let n: u64 = args(init)?;
    usize::try_from(n).map_err(|_| RemoteError::new(ErrorKind::Value, "maxsize too large"))
}

fn panicked(what: &str) -> RemoteError {
    RemoteError::new(ErrorKind::Other, format!("{what} panicked in the manager's server"))
}

/// An object in the server.
#[derive(Debug)]
pub(crate) enum Object {
    Dict(Dict),
    List(List),
    Namespace(Namespace),
    Value(Value),
    Array(List),
    Lock(LockObj),
    Semaphore(SemaphoreObj),
    Condition(ConditionObj),
    Event(EventObj),
    Barrier(BarrierObj),
    Queue(QueueObj),
    Custom(Mutex<Box<dyn SharedObject>>),
}

impl fmt::Debug for dyn SharedObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<custom object>")
    }
}

impl Object {
    /// Runs a method.
    pub(crate) fn call(
        &self,
        method: u16,
        a: &[u8],
        caller: &Caller<'_>,
    ) -> Result<Vec<u8>, RemoteError> {
        match self {
            Object::Dict(o) => o.call(method, a),
            Object::List(o) | Object::Array(o) => o.call(method, a),
            Object::Namespace(o) => o.call(method, a),
            Object::Value(o) => o.call(method, a),
            Object::Lock(o) => o.call(method, a, caller),
            Object::Semaphore(o) => o.call(method, a, caller),
            Object::Condition(o) => o.call(method, a, caller),
            Object::Event(o) => o.call(method, a, caller),
            Object::Barrier(o) => o.call(method, a, caller),
            Object::Queue(o) => o.call(method, a, caller),
            Object::Custom(o) => {
                if method != p::CALL {
                    return Err(RemoteError::new(
                        ErrorKind::NoSuchMethod,
                        format!("a custom object has no method {method}"),
                    ));
                }
                let mut d = Decoder::new(a);
                let name = String::decode(&mut d).map_err(RemoteError::bad_args)?;
                let rest = d.rest();
                let mut obj = lock(o);
                catch_unwind(AssertUnwindSafe(|| obj.call(&name, rest)))
                    .unwrap_or_else(|_| Err(panicked(&format!("method {name:?}"))))
            }
        }
    }

    /// Releases what connection `conn` holds (its client disconnected).
    pub(crate) fn release_owned_by(&self, conn: u64) {
        match self {
            Object::Lock(o) => o.release_owned_by(conn),
            Object::Condition(o) => o.release_owned_by(conn),
            _ => {}
        }
    }
}
