//! The client side: where a manager's server is, and this thread's connection to it.
//!
//! Each thread of each process opens its **own** connection, lazily, on its first call (Python
//! keeps one per thread too, in a `ForkAwareLocal`; pitfall P12). A connection remembers the
//! process that opened it: after a `fork` the child sees another pid and opens its own, so
//! parent and child never interleave frames on one socket. One connection per thread also means
//! a thread blocked in a call (a `Lock` acquire, a queue `get`) never holds up another thread's
//! call, and an `RLock` is owned by the thread that acquired it. A connection is closed when its
//! thread exits; the server then releases any `Lock`, `RLock` or `Condition` it held.
//!
//! A cached connection's descriptor is registered in the crate's
//! `fd_registry`, so that children the crate forks (processes, pool and
//! manager servers) close their copy at once: the server sees the connection end when the
//! thread that owns it ends, whatever children it left behind.
#![allow(unsafe_code)] // a cached connection and its registration share one descriptor (`Slot`).

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Weak};

use multiproc_sys::Pid;
use multiproc_sys::process::pid::current_pid;

use super::error::ManagerError;
use super::protocol::{decode_response, encode_request};
use crate::ConnectionError;
use crate::codec::{Decode, Encode};
use crate::connection::{Address, Client, ListenerError, SocketConnection};
use crate::fd_registry::RegisteredFd;

/// Where a manager's server is, and how to authenticate with it.
pub(crate) struct Target {
    pub(crate) address: Address,
    #[cfg(feature = "auth")]
    pub(crate) authkey: Option<Vec<u8>>,
    /// Tells this target's connections from those of other managers in the thread's cache.
    pub(crate) token: u64,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target").field("address", &self.address).finish_non_exhaustive()
    }
}

/// One cached connection.
struct Slot {
    token: u64,
    /// The target: once no manager or proxy holds it, the slot is pruned (the connection is
    /// closed) on this thread's next call.
    target: Weak<Target>,
    pid: Pid,
    /// Never dropped: `reg` owns (and closes) its descriptor.
    conn: ManuallyDrop<SocketConnection>,
    /// The same descriptor, registered: closed in children the crate forks, and closed here
    /// when the slot goes (unless this is such a child, which closed it already).
    _reg: RegisteredFd,
    /// Reused request buffer.
    buf: Vec<u8>,
}

impl Slot {
    fn new(target: &Arc<Target>, pid: Pid, conn: SocketConnection) -> Slot {
        // SAFETY: `conn` owns this open descriptor; from here on `_reg` is the only owner that
        // closes it (`conn` is in a `ManuallyDrop` that is never dropped), and both live and
        // die together in this slot, so the descriptor stays open while `conn` is used.
        let fd = unsafe { OwnedFd::from_raw_fd(conn.as_raw_fd()) };
        Slot {
            token: target.token,
            target: Arc::downgrade(target),
            pid,
            conn: ManuallyDrop::new(conn),
            _reg: RegisteredFd::new(fd),
            buf: Vec::new(),
        }
    }
}

thread_local! {
    static CONNECTIONS: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
}

/// A fresh token for a new target.
pub(crate) fn new_token() -> u64 {
    let mut b = [0u8; 8];
    if multiproc_sys::random::getrandom(&mut b).is_err() {
        // Only needs to be distinct within this process: a counter does.
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(1);
        return N.fetch_add(1, Ordering::Relaxed);
    }
    u64::from_ne_bytes(b)
}

/// Maps a failure of an established connection: the server is gone.
fn conn_gone(_: ConnectionError) -> ManagerError {
    ManagerError::Gone
}

/// Maps a failure to connect: no server (refused, no socket file) is [`ManagerError::Gone`].
pub(crate) fn connect_error(e: ListenerError) -> ManagerError {
    match e {
        ListenerError::Io(ref io)
            if matches!(
                io.kind(),
                io::ErrorKind::NotFound
                    | io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionReset
            ) =>
        {
            ManagerError::Gone
        }
        ListenerError::Connection(
            ConnectionError::Eof | ConnectionError::BrokenPipe | ConnectionError::Truncated { .. },
        ) => ManagerError::Gone,
        e => ManagerError::Connect(e),
    }
}

impl Target {
    /// A new connection to the server.
    pub(crate) fn connect(&self) -> Result<SocketConnection, ManagerError> {
        #[allow(unused_mut)]
        let mut client = Client::new(self.address.clone());
        #[cfg(feature = "auth")]
        if let Some(key) = &self.authkey {
            client = client.authkey(key);
        }
        client.connect().map_err(connect_error)
    }

    /// Calls `method` of `object` with the encoded `args`, on this thread's connection, and
    /// returns the encoded result.
    pub(crate) fn call_raw(
        self: &Arc<Self>,
        object: u64,
        method: u16,
        args: &[u8],
    ) -> Result<Vec<u8>, ManagerError> {
        let me = current_pid();
        let outcome = CONNECTIONS.try_with(|cell| {
            let mut slots = cell.borrow_mut();
            // Connections inherited from a parent process are not ours: forget them (closing
            // our copy of the descriptor leaves the parent's intact). So are those of targets
            // nobody holds any more (a dropped `Manager::connect`, its proxies gone).
            slots.retain(|s| s.pid == me && s.target.strong_count() > 0);
            let i = match slots.iter().position(|s| s.token == self.token) {
                Some(i) => i,
                None => {
                    let conn = self.connect()?;
                    slots.push(Slot::new(self, me, conn));
                    slots.len() - 1
                }
            };
            let slot = &mut slots[i];
            let r = exchange(&slot.conn, &mut slot.buf, object, method, args);
            if matches!(r, Err(ManagerError::Gone)) {
                slots.swap_remove(i);
            }
            r
        });
        match outcome {
            Ok(r) => r,
            // The thread is exiting and its cache is gone: a one-off connection.
            Err(_) => {
                let conn = self.connect()?;
                exchange(&conn, &mut Vec::new(), object, method, args)
            }
        }
    }

    /// Calls a method with an encodable argument and decodes its result.
    pub(crate) fn call<A: Encode + ?Sized, R: Decode>(
        self: &Arc<Self>,
        object: u64,
        method: u16,
        args: &A,
    ) -> Result<R, ManagerError> {
        let bytes = crate::codec::to_bytes(args);
        let out = self.call_raw(object, method, &bytes)?;
        Ok(crate::codec::from_bytes(&out)?)
    }

    /// Drops this thread's connection to this target, if any.
    pub(crate) fn forget(&self) {
        let _ = CONNECTIONS.try_with(|cell| {
            if let Ok(mut slots) = cell.try_borrow_mut() {
                slots.retain(|s| s.token != self.token);
            }
        });
    }
}

/// One request and its response on `conn`.
fn exchange(
    conn: &SocketConnection,
    buf: &mut Vec<u8>,
    object: u64,
    method: u16,
    args: &[u8],
) -> Result<Vec<u8>, ManagerError> {
    encode_request(object, method, args, buf);
    conn.send_bytes(buf).map_err(conn_gone)?;
    let mut reply = conn.recv_bytes().map_err(conn_gone)?;
    match decode_response(&reply) {
        Ok(Ok(_)) => {
            reply.remove(0);
            Ok(reply)
        }
        Ok(Err(e)) => Err(ManagerError::Remote(e)),
        // A server that answers garbage is not a manager's: treat the link as broken.
        Err(_) => Err(ManagerError::Gone),
    }
}
