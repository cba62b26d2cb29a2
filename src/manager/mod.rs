//! [`Manager`] — Python's `multiprocessing.Manager()` (a `SyncManager`): a server process that
//! owns shared objects, and typed proxies through which any process calls their methods.
//!
//! ```
//! use multiproc::Process;
//! use multiproc::manager::Manager;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Python:
//! //     with Manager() as manager:
//! //         d = manager.dict(); l = manager.list(range(10))
//! //         p = Process(target=f, args=(d, l)); p.start(); p.join()
//! let manager = Manager::start()?;
//! let d = manager.dict::<String, f64>()?;
//! let l = manager.list::<i32>(&(0..10).collect::<Vec<_>>())?;
//! let (d2, l2) = (d.clone(), l.clone());
//! let mut p = Process::new(move || {
//!     d2.set(&"1".to_string(), &1.0).unwrap();
//!     d2.set(&"2".to_string(), &2.0).unwrap();
//!     let mut items = l2.to_vec().unwrap();
//!     items.reverse();
//!     l2.clear().unwrap();
//!     l2.extend(&items).unwrap();
//! });
//! p.start()?;
//! p.join()?;
//! assert_eq!(d.get(&"2".to_string())?, Some(2.0));
//! assert_eq!(l.to_vec()?, (0..10).rev().collect::<Vec<_>>());
//! // An error in the server comes back as the method's own error (Python's IndexError):
//! let err = l.get(20).unwrap_err();
//! assert_eq!(err.remote_kind(), Some(multiproc::manager::ErrorKind::Index));
//! manager.shutdown()?;
//! assert!(l.len().unwrap_err().is_gone()); // one clear error after shutdown
//! # Ok(())
//! # }
//! ```
//!
//! # How it works
//!
//! The server is a process of its own, started from the clean fork server when the program
//! has one ([`init`](crate::init)), else forked from the caller. It listens on a Unix socket of
//! mode `0600` in a fresh private directory (mode `0700`), so only the same user can connect;
//! `Manager::start` needs no authkey (nor the `auth` feature): any process that could connect
//! could also `ptrace` the manager. Each request is one message (see [`protocol`]): an object
//! id, a method id and the codec's encoding of the arguments. Values cross as bytes, so the
//! server never needs the user's types.
//!
//! Every thread of every process that uses a proxy opens its own connection on its first call
//! (after a `fork`, the child opens its own: pitfall P12); children the crate forks close
//! the copies of their parent's connections they inherit, so a connection ends when its thread
//! does. The server runs one thread per connection (in the manager's process, not the
//! user's).
//!
//! # Differences from Python
//!
//! - Objects live until the manager shuts down: dropping proxies does not delete them (Python
//!   counts references across processes).
//! - Any use after [`shutdown`](Manager::shutdown), or after the server died, is
//!   [`ManagerError::Gone`] (Python raises `BrokenPipeError`, `EOFError` or
//!   `ConnectionRefusedError` depending on the moment), never a hang.
//! - A `Lock`, `RLock` or `Condition` held by a client whose connection ends (its thread or
//!   process exited or was killed) is released by the server, and a blocked call of a client
//!   that hung up gives up (so a killed consumer's `get` never swallows an item).
//! - The server dies with its creator, even on `SIGKILL` (Python's stays up until the parent
//!   exits normally).
//! - `dict` keys are equal when their encodings are; iteration order is unspecified.
//! - [`DictProxy::incr`] and [`ValueProxy::incr`] update an `i64` atomically in the server
//!   (Python needs a manager `Lock` around the read and the write).
//! - `Pool()` proxies and nested proxies (a proxy stored inside a managed `dict`) are not
//!   provided.
//! - A server on a TCP address without an `authkey` serves whoever
//!   can reach the port, `shutdown` included (Python falls back to the process's authkey).
//!   Give one (the `auth` feature) unless the network is private.
//! - Object ids start at a random number in each server, so a proxy of a server that was
//!   replaced at the same address gets [`ErrorKind::NoSuchObject`], never another object.
//!
//! As in Python, the server process ignores `SIGINT` (a Ctrl-C at the terminal reaches the
//! whole process group; the manager stays up for the program's own cleanup, and still dies
//! with its creator).

mod client;
mod data;
mod error;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
pub mod protocol;
mod proxy;
mod registry;
mod server;
mod sync_objects;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use multiproc_sys::Pid;
use multiproc_sys::process::pid::current_pid;
use multiproc_sys::time::Deadline;

pub use error::{ErrorKind, ManagerError, RemoteError};
pub use proxy::{
    ArrayProxy, BarrierProxy, ConditionProxy, DictProxy, EventProxy, JoinableQueueProxy, ListProxy,
    LockProxy, Managed, NamespaceProxy, Proxy, ProxyGuard, QueueProxy, SemaphoreProxy, ValueProxy,
};
pub use registry::{Constructor, SharedObject, reply};

use crate::codec::{self, Encode};
use crate::connection::Address;
use client::Target;
use server::ServerConfig;

/// How long [`ManagerBuilder::start`] waits for the server to listen, by default.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long [`Manager::shutdown`] waits for the server to exit before killing it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A manager: a server process owning shared objects, or a connection to one — Python's
/// `multiprocessing.Manager()` / `SyncManager` / `BaseManager`. See the
/// [module docs](self) for an example and the differences from Python.
///
/// Made by [`Manager::start`] (a private server for this program), [`Manager::builder`]
/// (custom types, an address, an authkey) or [`Manager::connect`] (a server started
/// elsewhere). The factory methods ([`dict`](Self::dict), [`list`](Self::list),
/// [`queue`](Self::queue), ...) create objects in the server and return their proxies, which
/// may be cloned and used from any process (children inherit them).
///
/// Dropping the manager in the process that started its server shuts the server down.
pub struct Manager {
    target: Arc<Target>,
    server: Mutex<Option<Running>>,
    creator: Pid,
}

/// A server this manager started.
struct Running {
    proc: crate::start::launch::Launched,
    cfg: ServerConfig,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("address", &self.target.address)
            .field("owns_server", &self.server.lock().map(|s| s.is_some()).unwrap_or(false))
            .finish()
    }
}

/// Options for a [`Manager`]: custom types, an address and an authkey. Made by
/// [`Manager::builder`]; ended by [`start`](Self::start), [`connect`](Self::connect) or
/// [`serve_forever`](Self::serve_forever).
#[derive(Clone)]
pub struct ManagerBuilder {
    address: Option<Address>,
    authkey: Option<Vec<u8>>,
    registry: registry::Registry,
    start_timeout: Duration,
}

impl fmt::Debug for ManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field("address", &self.address)
            .field("authenticated", &self.authkey.is_some())
            .field("registered", &self.registry)
            .finish()
    }
}

impl ManagerBuilder {
    /// Registers a custom type under `typeid` (Python's `BaseManager.register(typeid,
    /// callable)`): [`Manager::create_custom`] then makes objects with `constructor`, and
    /// clients call their methods through [`Proxy::call`]. Registered before the server
    /// starts; a server's registrations cannot change.
    ///
    /// # Panics
    /// Never; a `typeid` that is a built-in name or registered twice is reported by
    /// [`start`](Self::start) as [`ManagerError::InvalidArgument`].
    pub fn register(mut self, typeid: &str, constructor: Constructor) -> Self {
        self.registry.custom.push((typeid.to_owned(), constructor));
        self
    }

    /// Serves (or connects) at `address` instead of a private socket (Python's
    /// `BaseManager(address=...)`): a TCP address lets other machines' processes connect (give
    /// it an authkey), a Unix path or abstract name other processes of this machine.
    pub fn address(mut self, address: impl Into<Address>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// Authenticates every connection with `authkey` (Python's `BaseManager(authkey=...)`),
    /// with Python's HMAC handshake. Needs the `auth` feature.
    #[cfg(feature = "auth")]
    pub fn authkey(mut self, authkey: impl AsRef<[u8]>) -> Self {
        self.authkey = Some(authkey.as_ref().to_vec());
        self
    }

    /// How long [`start`](Self::start) waits for the server to listen
    /// ([`DEFAULT_START_TIMEOUT`]).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    fn check(&self) -> Result<(), ManagerError> {
        for (i, (typeid, _)) in self.registry.custom.iter().enumerate() {
            if registry::BUILTIN.contains(&typeid.as_str()) {
                return Err(ManagerError::InvalidArgument(format!(
                    "typeid {typeid:?} is a built-in type's"
                )));
            }
            if self.registry.custom[..i].iter().any(|(t, _)| t == typeid) {
                return Err(ManagerError::InvalidArgument(format!(
                    "typeid {typeid:?} is registered twice"
                )));
            }
        }
        Ok(())
    }

    fn target(&self, address: Address) -> Arc<Target> {
        Arc::new(Target {
            address,
            #[cfg(feature = "auth")]
            authkey: self.authkey.clone(),
            token: client::new_token(),
        })
    }

    /// Starts the server process and returns its manager (Python's `manager.start()`). The
    /// server comes from the fork server when the program has one (see
    /// [`init`](crate::init)), else it is forked from this process; it dies with this process.
    ///
    /// # Errors
    /// [`ManagerError::Start`] if the server cannot be started or cannot listen at the
    /// address; [`ManagerError::InvalidArgument`] for a bad registration.
    pub fn start(self) -> Result<Manager, ManagerError> {
        self.check()?;
        let (address, private_dir) = match &self.address {
            Some(a) => (a.clone(), None),
            None => {
                let dir = private_dir().map_err(ManagerError::Start)?;
                (Address::Unix(dir.join("s")), Some(dir))
            }
        };
        let cfg = ServerConfig {
            address,
            authkey: self.authkey.clone(),
            registry: self.registry.clone(),
            parent: Some(multiproc_sys::process::pid::getpid()),
            private_dir,
        };
        let (proc, address) = match server::start_server(&cfg, self.start_timeout) {
            Ok(started) => started,
            Err(e) => {
                // Only the private directory: a socket at a path the caller gave may belong to
                // another server (the likely reason binding it failed).
                cfg.remove_private_dir();
                return Err(ManagerError::Start(e));
            }
        };
        Ok(Manager {
            target: self.target(address),
            server: Mutex::new(Some(Running { proc, cfg })),
            creator: current_pid(),
        })
    }

    /// Connects to a manager's server started elsewhere, at the builder's address (Python's
    /// `BaseManager(address, authkey).connect()`).
    ///
    /// # Errors
    /// [`ManagerError::InvalidArgument`] without an address; [`ManagerError::Gone`] if nothing
    /// listens there; [`ManagerError::Connect`] if the handshake fails (a wrong authkey) or the
    /// peer is not a manager.
    pub fn connect(self) -> Result<Manager, ManagerError> {
        let Some(address) = self.address.clone() else {
            return Err(ManagerError::InvalidArgument("connect needs an address".into()));
        };
        let target = self.target(address);
        // One round trip proves it is a manager (and authenticates).
        target.call::<_, u32>(protocol::MANAGER, protocol::PING, &())?;
        Ok(Manager { target, server: Mutex::new(None), creator: current_pid() })
    }

    /// Serves the builder's address from this thread until a client calls
    /// [`Manager::shutdown`] (Python's `manager.get_server().serve_forever()`). One thread per
    /// client connection runs in this process while it serves.
    ///
    /// # Errors
    /// [`ManagerError::InvalidArgument`] without an address or for a bad registration;
    /// [`ManagerError::Connect`] if the address cannot be bound.
    pub fn serve_forever(self) -> Result<(), ManagerError> {
        self.check()?;
        let Some(address) = self.address.clone() else {
            return Err(ManagerError::InvalidArgument("serve_forever needs an address".into()));
        };
        let cfg = ServerConfig {
            address,
            authkey: self.authkey,
            registry: self.registry,
            parent: None,
            private_dir: None,
        };
        server::serve_in_process(cfg).map_err(ManagerError::Connect)
    }
}

/// A fresh directory of mode `0700` for a private socket: under `$XDG_RUNTIME_DIR` if it is
/// set, else the temporary directory.
fn private_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let mut random = [0u8; 8];
    multiproc_sys::random::getrandom(&mut random).map_err(std::io::Error::from)?;
    let dir =
        base.join(format!("mp-manager-{}-{:016x}", std::process::id(), u64::from_ne_bytes(random)));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

impl Manager {
    /// Starts a manager with a private server (Python's `multiprocessing.Manager()`).
    ///
    /// # Errors
    /// As [`ManagerBuilder::start`].
    pub fn start() -> Result<Manager, ManagerError> {
        Manager::builder().start()
    }

    /// Options: custom types, an address, an authkey.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder {
            address: None,
            authkey: None,
            registry: registry::Registry::default(),
            start_timeout: DEFAULT_START_TIMEOUT,
        }
    }

    /// Connects to the manager serving at `address` without an authkey (with one: the
    /// builder's [`connect`](ManagerBuilder::connect)).
    ///
    /// # Errors
    /// As [`ManagerBuilder::connect`].
    pub fn connect(address: impl Into<Address>) -> Result<Manager, ManagerError> {
        Manager::builder().address(address).connect()
    }

    /// The server's address (Python's `manager.address`).
    pub fn address(&self) -> &Address {
        &self.target.address
    }

    /// Stops the server (Python's `shutdown()`): asks it to exit, waits for it (killing it
    /// after 5 s), reaps it and removes its socket. Proxies then fail with
    /// [`ManagerError::Gone`]. May be called many times; only the first call does anything,
    /// and only in the process that started the server. On a manager made by
    /// [`connect`](Self::connect) it only closes this thread's connection (see
    /// [`shutdown_server`](Self::shutdown_server)).
    ///
    /// # Errors
    /// None so far: a server that is already gone is not an error.
    pub fn shutdown(&self) -> Result<(), ManagerError> {
        if current_pid() != self.creator {
            return Ok(());
        }
        let running = self.server.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(Running { proc, cfg }) = running {
            if let Ok(conn) = self.target.connect() {
                let mut req = Vec::new();
                protocol::encode_request(protocol::MANAGER, protocol::SHUTDOWN, &[], &mut req);
                // The reply is only a courtesy: waiting for it is bounded, since a server that
                // is alive but not answering (stopped, out of descriptors) must not hang a
                // shutdown or a drop. `proc.wait` below bounds the rest.
                if conn.send_bytes(&req).is_ok()
                    && matches!(conn.poll_timeout(SHUTDOWN_GRACE), Ok(true))
                {
                    let _ = conn.recv_bytes();
                }
            }
            if !matches!(proc.wait(Deadline::after(Some(SHUTDOWN_GRACE))), Ok(Some(_))) {
                let _ = proc.signal(multiproc_sys::Signal::KILL);
                let _ = proc.wait(Deadline::FOREVER);
            }
            cfg.cleanup();
        }
        self.target.forget();
        Ok(())
    }

    /// Asks the server to stop, whoever started it (a manager made by
    /// [`connect`](Self::connect) stops the remote server this way; Python's
    /// `manager.shutdown()` on a connected manager has no such power).
    ///
    /// # Errors
    /// [`ManagerError::Gone`] if it is already gone.
    pub fn shutdown_server(&self) -> Result<(), ManagerError> {
        if self.server.lock().map(|s| s.is_some()).unwrap_or(false) {
            return self.shutdown();
        }
        let conn = self.target.connect()?;
        let mut req = Vec::new();
        protocol::encode_request(protocol::MANAGER, protocol::SHUTDOWN, &[], &mut req);
        conn.send_bytes(&req).map_err(|_| ManagerError::Gone)?;
        conn.recv_bytes().map_err(|_| ManagerError::Gone)?;
        self.target.forget();
        Ok(())
    }

    /// The pid of the server process, if this manager started it.
    pub fn server_pid(&self) -> Option<Pid> {
        self.server.lock().ok()?.as_ref().map(|r| r.proc.pid)
    }

    fn make(&self, typeid: &str, init: Vec<u8>, name: Option<&str>) -> Result<Proxy, ManagerError> {
        let id: u64 =
            self.target.call(protocol::MANAGER, protocol::CREATE, &(typeid, init, name))?;
        Ok(Proxy { target: Arc::clone(&self.target), id })
    }

    /// Creates an object of type `P` from `init` (the factory methods below are shorthands).
    ///
    /// # Errors
    /// [`ManagerError::Gone`] if the server is gone; the server's error if `init` is bad.
    pub fn create<P: Managed>(&self, init: &P::Init) -> Result<P, ManagerError> {
        self.make(P::TYPEID, P::init_bytes(init), None).map(P::from_proxy)
    }

    /// The object named `name`, created from `init` if there is none yet: how processes that
    /// only [`connect`](Self::connect) share objects (Python registers a callable returning a
    /// shared object: `register('get_queue', callable=lambda: queue)`).
    ///
    /// ```
    /// use multiproc::manager::{Manager, QueueProxy};
    ///
    /// # fn main() -> Result<(), multiproc::manager::ManagerError> {
    /// let manager = Manager::start()?;
    /// let q: QueueProxy<u32> = manager.get_or_create("jobs", &0)?;
    /// q.put(&7)?;
    /// let again: QueueProxy<u32> = manager.get_or_create("jobs", &0)?; // the same queue
    /// assert_eq!(again.get()?, 7);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Type`] if the name holds an object of another type; as
    /// [`create`](Self::create).
    pub fn get_or_create<P: Managed>(&self, name: &str, init: &P::Init) -> Result<P, ManagerError> {
        self.make(P::TYPEID, P::init_bytes(init), Some(name)).map(P::from_proxy)
    }

    /// Creates an object of a custom type registered with [`ManagerBuilder::register`]; its
    /// constructor gets `init`'s encoding.
    ///
    /// # Errors
    /// [`ErrorKind::NoSuchObject`] for an unknown typeid; the constructor's error.
    pub fn create_custom<A: Encode + ?Sized>(
        &self,
        typeid: &str,
        init: &A,
    ) -> Result<Proxy, ManagerError> {
        self.make(typeid, codec::to_bytes(init), None)
    }

    /// As [`create_custom`](Self::create_custom), shared under `name` (see
    /// [`get_or_create`](Self::get_or_create)).
    ///
    /// # Errors
    /// As [`create_custom`](Self::create_custom).
    pub fn get_or_create_custom<A: Encode + ?Sized>(
        &self,
        name: &str,
        typeid: &str,
        init: &A,
    ) -> Result<Proxy, ManagerError> {
        self.make(typeid, codec::to_bytes(init), Some(name))
    }

    /// A new `dict` (Python's `manager.dict()`).
    ///
    /// # Errors
    /// [`ManagerError::Gone`] if the server is gone (as every factory method).
    pub fn dict<K: Encode, V: Encode>(&self) -> Result<DictProxy<K, V>, ManagerError> {
        self.create(&())
    }

    /// A new `list` holding `items` (Python's `manager.list(items)`).
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn list<T: Encode>(&self, items: &[T]) -> Result<ListProxy<T>, ManagerError> {
        self.create(items)
    }

    /// A new `Namespace` (Python's `manager.Namespace()`).
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn namespace(&self) -> Result<NamespaceProxy, ManagerError> {
        self.create(&())
    }

    /// A new `Value` holding `value` (Python's `manager.Value(typecode, value)`).
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn value<T: Encode>(&self, value: &T) -> Result<ValueProxy<T>, ManagerError> {
        self.create(value)
    }

    /// A new `Array` holding `items` (Python's `manager.Array(typecode, items)`).
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn array<T: Encode>(&self, items: &[T]) -> Result<ArrayProxy<T>, ManagerError> {
        self.create(items)
    }

    /// A new `Lock` (Python's `manager.Lock()`).
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn lock(&self) -> Result<LockProxy, ManagerError> {
        self.create(&())
    }

    /// A new `RLock` (Python's `manager.RLock()`).
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn rlock(&self) -> Result<LockProxy, ManagerError> {
        self.make("RLock", Vec::new(), None).map(LockProxy::from_proxy)
    }

    /// A new `Semaphore(value)`.
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn semaphore(&self, value: u64) -> Result<SemaphoreProxy, ManagerError> {
        self.create(&value)
    }

    /// A new `BoundedSemaphore(value)`.
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn bounded_semaphore(&self, value: u64) -> Result<SemaphoreProxy, ManagerError> {
        self.make("BoundedSemaphore", codec::to_bytes(&value), None).map(SemaphoreProxy::from_proxy)
    }

    /// A new `Condition` (over its own `RLock`).
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn condition(&self) -> Result<ConditionProxy, ManagerError> {
        self.create(&())
    }

    /// A new `Event`.
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn event(&self) -> Result<EventProxy, ManagerError> {
        self.create(&())
    }

    /// A new `Barrier(parties)`.
    ///
    /// # Errors
    /// [`ErrorKind::Value`] if `parties` is 0; as [`dict`](Self::dict).
    pub fn barrier(&self, parties: usize) -> Result<BarrierProxy, ManagerError> {
        self.create(&(parties as u64))
    }

    /// A new `Queue(maxsize)` (0: unbounded).
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn queue<T>(&self, maxsize: usize) -> Result<QueueProxy<T>, ManagerError> {
        self.create(&maxsize)
    }

    /// A new `JoinableQueue(maxsize)` (0: unbounded).
    ///
    /// # Errors
    /// As [`dict`](Self::dict).
    pub fn joinable_queue<T>(&self, maxsize: usize) -> Result<JoinableQueueProxy<T>, ManagerError> {
        self.create(&maxsize)
    }
}

impl Drop for Manager {
    /// Shuts the server down, if this process started it.
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
