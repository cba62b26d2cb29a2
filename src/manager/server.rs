//! The manager's server: the process (or, for [`serve_forever`](super::ManagerBuilder::serve_forever),
//! the thread) that owns the shared objects and answers the proxies' calls.
//!
//! # Threads
//!
//! The server accepts connections on its [`Listener`] and runs one thread per connection, as
//! Python's manager does; a blocking call (a `Lock` acquire, a queue `get`) ties up only its own
//! client's thread. These threads live in the manager's own process, never in the user's (the
//! crate's "no helper threads in the user's process" rule), except with `serve_forever`, which
//! the user calls to serve from their own process.
//!
//! # Lifetime
//!
//! A server started by [`Manager::start`](super::Manager::start) exits when asked
//! ([`SHUTDOWN`](super::protocol::SHUTDOWN)) or when its creator dies, even by `SIGKILL`
//! (pitfall P10): a watcher thread polls a pidfd of the creator (or, without pidfds, checks
//! every 50 ms), then removes the socket file and exits. `PR_SET_PDEATHSIG` is not used: it
//! fires when the creating *thread* exits, and a server launched by the fork server is not the
//! creator's child at all. Exiting closes every client connection, so a client blocked in a
//! call gets end-of-file ([`ManagerError::Gone`](super::ManagerError::Gone)) at once.
#![allow(unsafe_code)] // the `fork` of a server (`fork_server`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread;
use std::time::Duration;

use multiproc_sys::Pid;
use multiproc_sys::io::poll::wait_readable;
use multiproc_sys::process::exit::exit_now;
use multiproc_sys::process::fork::{ForkOutcome, fork};
use multiproc_sys::process::parent::getppid;
use multiproc_sys::process::pidfd::pidfd_open;
use multiproc_sys::process::signal::probe;
use multiproc_sys::time::Deadline;

use super::data::lock;
use super::error::{ErrorKind, RemoteError};
use super::protocol::{self as p, args, decode_request, encode_response};
use super::registry::{Object, Registry};
use super::sync_objects::Caller;
use crate::codec::{Decode, Decoder, Encode};
use crate::connection::{Address, Listener, ListenerError, SocketConnection};
use crate::start::launch::{Launched, Relocation};

/// The largest request the server reads; a longer one is answered with an error, and the
/// connection closed.
pub(crate) const MAX_REQUEST: usize = 1 << 30;

/// How a server is configured.
#[derive(Debug, Clone)]
pub(crate) struct ServerConfig {
    pub(crate) address: Address,
    pub(crate) authkey: Option<Vec<u8>>,
    pub(crate) registry: Registry,
    /// The process whose death ends the server (its creator), if any.
    pub(crate) parent: Option<Pid>,
    /// A private directory holding the socket, removed when the server ends.
    pub(crate) private_dir: Option<PathBuf>,
}

impl ServerConfig {
    /// Binds the listener.
    pub(crate) fn bind(&self) -> Result<Listener, ListenerError> {
        #[allow(unused_mut)]
        let mut b = Listener::builder(self.address.clone());
        #[cfg(feature = "auth")]
        if let Some(key) = &self.authkey {
            b = b.authkey(key);
        }
        b.bind()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        encode_address(&self.address, out);
        self.authkey.encode(out);
        self.registry.encode(out);
        self.parent.map(|p| p.as_raw_nonzero().get()).encode(out);
        self.private_dir.as_ref().map(|d| d.as_os_str().as_bytes().to_vec()).encode(out);
    }

    fn decode(reloc: Relocation, payload: &[u8]) -> Option<ServerConfig> {
        let mut d = Decoder::new(payload);
        let address = decode_address(&mut d)?;
        let authkey = Option::<Vec<u8>>::decode(&mut d).ok()?;
        let registry = Registry::decode(&mut d, reloc)?;
        let parent = Option::<i32>::decode(&mut d).ok()?.and_then(Pid::from_raw);
        let dir = Option::<Vec<u8>>::decode(&mut d).ok()?;
        let private_dir = dir.map(|b| PathBuf::from(std::ffi::OsStr::from_bytes(&b)));
        Some(ServerConfig { address, authkey, registry, parent, private_dir })
    }

    /// Removes the socket file and the private directory (a server about to `_exit`, or a
    /// manager that reaped its server).
    pub(crate) fn cleanup(&self) {
        if let Address::Unix(path) = &self.address {
            let _ = std::fs::remove_file(path);
        }
        self.remove_private_dir();
    }

    /// Removes the private directory `Manager::start` made for the socket, if any.
    pub(crate) fn remove_private_dir(&self) {
        if let Some(dir) = &self.private_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn encode_address(a: &Address, out: &mut Vec<u8>) {
    match a {
        Address::Unix(p) => (0u8, p.as_os_str().as_bytes()).encode(out),
        Address::Abstract(n) => (1u8, n.as_slice()).encode(out),
        Address::Tcp(s) => (2u8, s.to_string().as_bytes()).encode(out),
    }
}

fn decode_address(d: &mut Decoder<'_>) -> Option<Address> {
    let (tag, bytes) = <(u8, Vec<u8>)>::decode(d).ok()?;
    match tag {
        0 => Some(Address::Unix(PathBuf::from(std::ffi::OsStr::from_bytes(&bytes)))),
        1 => Some(Address::Abstract(bytes)),
        2 => std::str::from_utf8(&bytes).ok()?.parse().ok().map(Address::Tcp),
        _ => None,
    }
}

/// What happens when a client asks the server to shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A server process: clean up and `_exit`.
    Process,
    /// `serve_forever` in the user's process: stop accepting, close the connections, return.
    InProcess,
}

/// The server's shared state.
struct State {
    objects: RwLock<HashMap<u64, Arc<Object>>>,
    /// Named objects: name → (typeid, id).
    named: Mutex<HashMap<String, (String, u64)>>,
    next_id: AtomicU64,
    next_conn: AtomicU64,
    registry: Registry,
    mode: Mode,
    cfg: ServerConfig,
    /// The bound address (a TCP port 0 resolved).
    address: Address,
    stopping: AtomicBool,
    /// Clones of the open connections' sockets, to shut them down in `InProcess` mode.
    conns: Mutex<HashMap<u64, OwnedFd>>,
}

/// Serves in this process until a client asks for a shutdown (`serve_forever`).
pub(crate) fn serve_in_process(cfg: ServerConfig) -> Result<(), ListenerError> {
    let listener = cfg.bind()?;
    serve(listener, cfg, Mode::InProcess);
    Ok(())
}

/// The accept loop.
fn serve(listener: Listener, cfg: ServerConfig, mode: Mode) {
    let state = Arc::new(State {
        objects: RwLock::new(HashMap::new()),
        named: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(first_object_id()),
        next_conn: AtomicU64::new(1),
        registry: cfg.registry.clone(),
        mode,
        address: listener.address().clone(),
        cfg,
        stopping: AtomicBool::new(false),
        conns: Mutex::new(HashMap::new()),
    });
    let mut threads = Vec::new();
    while !state.stopping.load(Ordering::Acquire) {
        let conn = match listener.accept() {
            Ok(conn) => conn,
            // A client that failed the handshake, or a transient error: serve the others.
            Err(ListenerError::Authentication(_) | ListenerError::Connection(_)) => continue,
            Err(ListenerError::Io(_)) => {
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if state.stopping.load(Ordering::Acquire) {
            break;
        }
        let id = state.next_conn.fetch_add(1, Ordering::Relaxed);
        if mode == Mode::InProcess
            && let Ok(fd) = conn.as_fd().try_clone_to_owned()
        {
            lock(&state.conns).insert(id, fd);
        }
        let st = Arc::clone(&state);
        let spawned = thread::Builder::new()
            .name(format!("manager-conn-{id}"))
            .spawn(move || serve_connection(&st, conn, id));
        if let Ok(h) = spawned
            && mode == Mode::InProcess
        {
            threads.retain(|h: &thread::JoinHandle<()>| !h.is_finished());
            threads.push(h);
        }
    }
    // InProcess: end every connection, then wait for their threads.
    for (_, fd) in lock(&state.conns).drain() {
        let _ = UnixStream::from(fd).shutdown(Shutdown::Both);
    }
    for h in threads {
        let _ = h.join();
    }
}

/// One client's connection: requests in, responses out, until it hangs up.
fn serve_connection(state: &State, conn: SocketConnection, id: u64) {
    let alive = || {
        !matches!(
            wait_readable(conn.as_fd(), Deadline::after(Some(Duration::ZERO))),
            Ok(true) | Err(_)
        )
    };
    let caller = Caller { conn: id, alive: &alive };
    // Whatever ends this loop, a panic included, what the client held is released.
    let _release = ReleaseOnExit { state, id };
    let Ok(reader) = conn.as_fd().try_clone_to_owned().map(File::from) else { return };
    let mut out = Vec::new();
    let mut bytes = Vec::new();
    loop {
        let result = match read_frame(&reader, &mut bytes) {
            Frame::Message => match decode_request(&bytes) {
                Ok(req) if req.object == p::MANAGER => {
                    if req.method == p::SHUTDOWN {
                        encode_response(&Ok(Vec::new()), &mut out);
                        let _ = conn.send_bytes(&out);
                        shutdown(state);
                        break;
                    }
                    manager_call(state, req.method, req.args)
                }
                Ok(req) => {
                    let obj = state
                        .objects
                        .read()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&req.object)
                        .cloned();
                    match obj {
                        // A built-in object's bug must not end the connection without a reply
                        // (custom objects' panics are caught in the registry already).
                        Some(obj) => catch_unwind(AssertUnwindSafe(|| {
                            obj.call(req.method, req.args, &caller)
                        }))
                        .unwrap_or_else(|panic| {
                            Err(RemoteError::new(
                                ErrorKind::Runtime,
                                crate::fork_safety::panic_message(panic.as_ref()),
                            ))
                        }),
                        None => Err(RemoteError::new(
                            ErrorKind::NoSuchObject,
                            format!("no object with id {}", req.object),
                        )),
                    }
                }
                Err(e) => Err(RemoteError::new(ErrorKind::Protocol, e.to_string())),
            },
            // A header that cannot be right: answer, then close (the stream cannot be
            // resynchronised).
            Frame::Bad(e) => {
                encode_response(
                    &Err(RemoteError::new(ErrorKind::Protocol, e.to_string())),
                    &mut out,
                );
                let _ = conn.send_bytes(&out);
                break;
            }
            // End of file, a truncated frame: this client is done.
            Frame::Closed => break,
        };
        encode_response(&result, &mut out);
        if conn.send_bytes(&out).is_err() {
            break;
        }
    }
}

/// Releases what connection `id` held (its locks, its place among waiters) when dropped.
struct ReleaseOnExit<'a> {
    state: &'a State,
    id: u64,
}

impl Drop for ReleaseOnExit<'_> {
    fn drop(&mut self) {
        let objects: Vec<Arc<Object>> = self
            .state
            .objects
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for o in objects {
            o.release_owned_by(self.id);
        }
        lock(&self.state.conns).remove(&self.id);
    }
}

/// The first object id of a server: random (below 2^62, so ids never wrap), so that a proxy
/// of an earlier server at the same address names no object of this one (it gets
/// `NoSuchObject`, never another object).
fn first_object_id() -> u64 {
    let mut b = [0u8; 8];
    match multiproc_sys::random::getrandom(&mut b) {
        Ok(()) => (u64::from_le_bytes(b) >> 2).max(1),
        Err(_) => 1,
    }
}

/// What [`read_frame`] read.
enum Frame {
    /// A whole message, in the buffer.
    Message,
    /// End of file, a read error, or a message cut short.
    Closed,
    /// A header no client may send.
    Bad(p::ProtocolError),
}

/// Reads one message in Python's framing into `buf`. The buffer grows with the bytes that
/// actually arrive, whatever length the header claims.
fn read_frame(mut r: &File, buf: &mut Vec<u8>) -> Frame {
    let mut header = [0u8; 12];
    let mut have = 0;
    let (len, _) = loop {
        match p::parse_frame_header(&header[..have], MAX_REQUEST as u64) {
            Ok(Some(parsed)) => break parsed,
            Ok(None) => {}
            Err(e) => return Frame::Bad(e),
        }
        let want = if have < 4 { 4 } else { 12 };
        match r.read(&mut header[have..want]) {
            Ok(0) => return Frame::Closed,
            Ok(n) => have += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Frame::Closed,
        }
    };
    buf.clear();
    match r.take(len).read_to_end(buf) {
        Ok(n) if n as u64 == len => Frame::Message,
        _ => Frame::Closed,
    }
}

/// Methods of the manager itself (object 0).
fn manager_call(state: &State, method: u16, a: &[u8]) -> Result<Vec<u8>, RemoteError> {
    match method {
        p::CREATE => {
            let (typeid, init, name): (String, Vec<u8>, Option<String>) = args(a)?;
            let mut named = name.as_ref().map(|_| lock(&state.named));
            if let (Some(named), Some(name)) = (&named, &name)
                && let Some((t, id)) = named.get(name)
            {
                if *t != typeid {
                    return Err(RemoteError::new(
                        ErrorKind::Type,
                        format!("the object named {name:?} is a {t}, not a {typeid}"),
                    ));
                }
                return Ok(crate::codec::to_bytes(id));
            }
            let obj = state.registry.make(&typeid, &init)?;
            let id = state.next_id.fetch_add(1, Ordering::Relaxed);
            state.objects.write().unwrap_or_else(|e| e.into_inner()).insert(id, Arc::new(obj));
            if let (Some(named), Some(name)) = (&mut named, name) {
                named.insert(name, (typeid, id));
            }
            Ok(crate::codec::to_bytes(&id))
        }
        p::PING => Ok(crate::codec::to_bytes(&std::process::id())),
        _ => Err(RemoteError::new(
            ErrorKind::NoSuchMethod,
            format!("the manager has no method {method}"),
        )),
    }
}

/// Stops the server.
fn shutdown(state: &State) {
    match state.mode {
        Mode::Process => {
            state.cfg.cleanup();
            exit_now(0);
        }
        Mode::InProcess => {
            state.stopping.store(true, Ordering::Release);
            // Wake the accept loop with a connection of our own.
            let _ = crate::connection::Client::new(state.address.clone()).connect();
        }
    }
}

/// Watches the creator: when it dies, cleans up and exits this server process.
fn watch_parent(cfg: ServerConfig, parent: Pid) {
    let _ = thread::Builder::new().name("manager-parent-watch".into()).spawn(move || {
        match pidfd_open(parent) {
            Ok(fd) => {
                let _ = wait_readable(fd.as_fd(), Deadline::FOREVER);
            }
            Err(_) => {
                let direct = getppid() == Some(parent);
                while probe(parent).is_ok() && (!direct || getppid() == Some(parent)) {
                    thread::sleep(Duration::from_millis(50));
                }
            }
        }
        cfg.cleanup();
        exit_now(0);
    });
}

/// A server process's life: bind, report, serve. Never returns.
fn run_child(cfg: ServerConfig, ready: OwnedFd) -> ! {
    crate::fd_registry::close_inherited();
    // As Python's manager server does: Ctrl-C at a terminal signals the whole foreground
    // group, and the manager must outlive the user's program long enough for its own cleanup
    // (which may still go through proxies). It dies with its creator anyway.
    let _ = multiproc_sys::process::signal::set_disposition(
        multiproc_sys::Signal::INT,
        multiproc_sys::process::signal::Disposition::Ignore,
    );
    let ready = SocketConnection::from(UnixStream::from(ready));
    if let Some(parent) = cfg.parent {
        watch_parent(cfg.clone(), parent);
    }
    let listener = match cfg.bind() {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(&Err::<String, String>(e.to_string()));
            exit_now(1);
        }
    };
    if ready.send(&Ok::<String, String>(listener.address().to_string())).is_err() {
        cfg.cleanup();
        exit_now(1);
    }
    drop(ready);
    serve(listener, cfg.clone(), Mode::Process);
    cfg.cleanup();
    exit_now(0)
}

/// A launched manager server (see `start::launch`): descriptor 0 is the readiness socket; the
/// payload is [`ServerConfig::encode`]'s. Never returns.
pub(crate) fn manager_entry(reloc: Relocation, payload: &[u8], mut fds: Vec<OwnedFd>) -> ! {
    let Some(cfg) = ServerConfig::decode(reloc, payload) else { exit_now(127) };
    if fds.len() != 1 {
        exit_now(127);
    }
    let ready = fds.remove(0);
    run_child(cfg, ready)
}

/// Starts a server process for `cfg`, from the fork server where there is one (else by
/// `fork`), and waits until it listens. Returns its handle and its bound address.
pub(crate) fn start_server(
    cfg: &ServerConfig,
    timeout: Duration,
) -> Result<(Launched, Address), std::io::Error> {
    let (ours, theirs) = UnixStream::pair()?;
    let method = crate::start::resolve(None, false)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let proc = if method == crate::StartMethod::Fork {
        fork_server(cfg, theirs.into())?
    } else {
        let mut payload = Vec::new();
        cfg.encode(&mut payload);
        crate::start::launch(method, manager_entry, &payload, vec![theirs.into()])?
    };
    let ready = SocketConnection::from(ours);
    let fail = |proc: &Launched, msg: String| {
        // Killed, then reaped however long that takes (no zombie is left behind).
        let _ = proc.signal(multiproc_sys::Signal::KILL);
        let _ = proc.wait(Deadline::FOREVER);
        std::io::Error::other(msg)
    };
    match ready.poll_timeout(timeout) {
        Ok(true) => {}
        _ => return Err(fail(&proc, format!("the server did not start within {timeout:?}"))),
    }
    match ready.recv::<Result<String, String>>() {
        Ok(Ok(addr)) => {
            let address = match &cfg.address {
                Address::Tcp(_) => addr.parse().map(Address::Tcp).map_err(|e| {
                    fail(&proc, format!("the server reported a bad address {addr:?}: {e}"))
                })?,
                a => a.clone(),
            };
            Ok((proc, address))
        }
        Ok(Err(msg)) => Err(fail(&proc, msg)),
        Err(e) => Err(fail(&proc, format!("the server failed to start: {e}"))),
    }
}

/// Forks a server process from this one (the `fork` start method).
fn fork_server(cfg: &ServerConfig, ready: OwnedFd) -> Result<Launched, std::io::Error> {
    // As the pool does: hold stdout's and stderr's locks across the fork (another thread
    // holding one would leave it locked forever in the child), flushed.
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let plan = crate::fork_safety::before_fork();
    let _ = out.flush();
    let _ = err.flush();
    // SAFETY: the child branch runs `run_child`, which never returns; it first releases the two
    // stdio locks this thread holds (their owner is this thread, the one that exists in the
    // child). With glibc, malloc is reset for the child by fork itself.
    match unsafe { fork() } {
        Err(e) => Err(e.into()),
        Ok(ForkOutcome::Child) => {
            crate::fork_safety::in_child(plan);
            drop(out);
            drop(err);
            run_child(cfg.clone(), ready)
        }
        Ok(ForkOutcome::Parent { child }) => Ok(Launched::direct(child)),
    }
}
