//! [`Listener`] and [`Client`] — Python's `multiprocessing.connection.Listener` and `Client`
//! — with the errors they share. The user-facing documentation is on [`Listener`].

use std::fmt;
use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{SocketAddr as UnixSocketAddr, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Address, ConnectionError, SocketConnection};

#[cfg(feature = "auth")]
/// How long a handshake may take by default (Python's `CONNECTION_TIMEOUT`, 20 s).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Why the authentication handshake failed — Python's `multiprocessing.AuthenticationError`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthenticationError {
    /// The peer's answer to our challenge is wrong: it does not know the authkey (Python:
    /// "digest received was wrong"). The peer was sent `#FAILURE#`.
    DigestWrong,
    /// The peer rejected our answer: we do not share its authkey (Python: "digest sent was
    /// rejected").
    DigestRejected,
    /// The peer's message does not follow the protocol: not a challenge where one was due, too
    /// short, no `{digest}` prefix.
    Protocol(String),
    /// The peer asked for a digest this build does not compute (`sha3_256`, `sha3_384`).
    UnsupportedDigest(String),
    /// The peer did not finish its part of the handshake within this time (it may not be
    /// using an authkey at all, or not be a `multiprocessing` peer).
    TimedOut(Duration),
}

impl fmt::Display for AuthenticationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthenticationError::DigestWrong => {
                f.write_str("digest received was wrong: the peer does not know the authkey")
            }
            AuthenticationError::DigestRejected => {
                f.write_str("digest sent was rejected: the peer has another authkey")
            }
            AuthenticationError::Protocol(what) => write!(f, "handshake protocol error: {what}"),
            AuthenticationError::UnsupportedDigest(d) => {
                write!(f, "the peer asked for an unsupported digest: {d}")
            }
            AuthenticationError::TimedOut(t) => {
                write!(f, "the peer did not complete the handshake within {t:?}")
            }
        }
    }
}

impl std::error::Error for AuthenticationError {}

/// What can go wrong making a connection with a [`Listener`] or a [`Client`].
#[derive(Debug)]
#[non_exhaustive]
pub enum ListenerError {
    /// Binding, accepting or connecting failed (Python's `OSError`: `ConnectionRefusedError`,
    /// `FileNotFoundError`, "Address already in use", ...).
    Io(io::Error),
    /// The authentication handshake failed (Python's `AuthenticationError`). The connection
    /// was closed; a [`Listener`] can go on accepting.
    Authentication(AuthenticationError),
    /// The connection failed during the handshake: the peer closed it (Python's `EOFError`),
    /// sent a malformed or oversized frame (Python's `OSError('bad message length')`), ...
    /// The connection was closed; a [`Listener`] can go on accepting.
    Connection(ConnectionError),
}

impl fmt::Display for ListenerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenerError::Io(e) => write!(f, "{e}"),
            ListenerError::Authentication(e) => write!(f, "authentication failed: {e}"),
            ListenerError::Connection(e) => {
                write!(f, "connection failed during the handshake: {e}")
            }
        }
    }
}

impl std::error::Error for ListenerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ListenerError::Io(e) => Some(e),
            ListenerError::Authentication(e) => Some(e),
            ListenerError::Connection(e) => Some(e),
        }
    }
}

impl From<io::Error> for ListenerError {
    fn from(e: io::Error) -> Self {
        ListenerError::Io(e)
    }
}

impl From<ConnectionError> for ListenerError {
    fn from(e: ConnectionError) -> Self {
        ListenerError::Connection(e)
    }
}

impl From<ListenerError> for io::Error {
    fn from(e: ListenerError) -> Self {
        match e {
            ListenerError::Io(e) => e,
            ListenerError::Connection(e) => e.into(),
            e @ ListenerError::Authentication(_) => {
                io::Error::new(io::ErrorKind::PermissionDenied, e)
            }
        }
    }
}

/// The handshake settings a listener and a client share: the authkey and how long the peer
/// has to complete the handshake (both with the `auth` feature; without it, no handshake).
#[derive(Clone)]
struct Handshake {
    #[cfg(feature = "auth")]
    authkey: Option<Vec<u8>>,
    #[cfg(feature = "auth")]
    timeout: Option<Duration>,
}

impl Default for Handshake {
    /// No authkey; [`DEFAULT_HANDSHAKE_TIMEOUT`] should one be set.
    fn default() -> Self {
        Handshake {
            #[cfg(feature = "auth")]
            authkey: None,
            #[cfg(feature = "auth")]
            timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
        }
    }
}

/// Which side of the handshake this end runs.
#[derive(Clone, Copy)]
enum Side {
    /// The listener: challenges first.
    Server,
    /// The client: answers first.
    Client,
}

impl Handshake {
    /// A builder's `Debug`: `name { address, authenticated, handshake_timeout }` (the last two
    /// with the `auth` feature).
    fn debug(&self, f: &mut fmt::Formatter<'_>, name: &str, address: &Address) -> fmt::Result {
        let mut d = f.debug_struct(name);
        d.field("address", address);
        #[cfg(feature = "auth")]
        d.field("authenticated", &self.authkey.is_some()).field("handshake_timeout", &self.timeout);
        d.finish()
    }

    /// Runs the handshake on a new connection as `side`, if there is an authkey.
    fn run(&self, conn: &SocketConnection, side: Side) -> Result<(), ListenerError> {
        #[cfg(feature = "auth")]
        if let Some(key) = &self.authkey {
            match side {
                Side::Server => super::auth::server_handshake(conn, key, self.timeout)?,
                Side::Client => super::auth::client_handshake(conn, key, self.timeout)?,
            }
        }
        #[cfg(not(feature = "auth"))]
        let _ = (conn, side);
        Ok(())
    }
}

/// A listening socket.
enum Socket {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// A filesystem socket to remove when its listener goes: its path, its identity, and the
/// process that created it.
#[derive(Debug)]
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
    pid: u32,
}

impl Drop for SocketFile {
    /// Removes the socket file, if this is the process that made it and the path still names
    /// it (Python's finalizer also runs only in its creator).
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            return;
        }
        if let Ok(m) = fs::symlink_metadata(&self.path)
            && m.dev() == self.dev
            && m.ino() == self.ino
        {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A socket that accepts connections — Python's `multiprocessing.connection.Listener`.
///
/// Connections between processes that were not forked from one another, over an `AF_UNIX`
/// socket (a filesystem path or a Linux abstract name, see [`Address`]) or TCP, optionally
/// authenticated with Python's HMAC handshake (the `auth` feature). Made by
/// [`Listener::bind`] (no authentication) or [`Listener::builder`]. Each
/// [`accept`](Self::accept) returns a [`SocketConnection`], which speaks Python's framing: the
/// peer may be a Python `Client`, and a [`Client`] may connect to a Python `Listener`.
///
/// ```
/// use std::thread;
/// use multiproc::connection::{Address, Client, Listener};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = Listener::bind(Address::tcp("127.0.0.1:0")?)?; // a free port
/// let address = listener.address().clone();
/// let client = thread::spawn(move || -> Result<Vec<u8>, multiproc::connection::ListenerError> {
///     let conn = Client::new(address).connect()?;
///     conn.send_bytes(b"hello")?;
///     Ok(conn.recv_bytes()?)
/// });
/// let conn = listener.accept()?;
/// let hello = conn.recv_bytes()?;
/// conn.send_bytes(&hello.to_ascii_uppercase())?;
/// assert_eq!(client.join().unwrap()?, b"HELLO");
/// # Ok(())
/// # }
/// ```
///
/// # Authentication
///
/// With the `auth` cargo feature, `ListenerBuilder::authkey` and `Client::authkey` turn on
/// Python's challenge handshake (see `connection::deliver_challenge`): each side
/// proves it knows the key, with HMAC-SHA256 as Python 3.12+ does, and HMAC-MD5 with a Python
/// 3.11 (or older) peer. A wrong key fails on both sides with
/// [`ListenerError::Authentication`]. Without the feature there are no authkey methods, and
/// connections are not authenticated (as Python's without an authkey).
///
/// # Differences from Python
///
/// - The handshake has a time limit, 20 s by default (`ListenerBuilder::handshake_timeout`,
///   `Client::handshake_timeout`; Python waits forever). [`Listener::accept`] runs the
///   handshake before returning, as Python's does, so a client that connects and says nothing
///   holds up the next `accept` until then; [`AuthenticationError::TimedOut`] reports it.
/// - An empty authkey still authenticates (Python's `Listener` skips the handshake for `b""`
///   while its `Client` runs it, so the two cannot talk).
/// - A filesystem socket is created with mode `0600` whatever the umask (Python's gets the
///   umask's mode); it is removed when the listener is closed or dropped, by the process that
///   created it and only if the path still names that socket.
/// - The listen backlog is the system's maximum (Python's default `backlog` is 1), and there
///   is no default address: pass one (`Address::tcp("127.0.0.1:0")` picks a free port).
/// - `last_accepted`, `family=`, Windows named pipes and the xmlrpc wrappers are not provided.
///
///
/// With an authkey (the `auth` feature):
///
/// ```
/// # #[cfg(feature = "auth")] {
/// use std::thread;
/// use multiproc::connection::{Address, AuthenticationError, Client, Listener, ListenerError};
///
/// let listener = Listener::builder(Address::tcp("127.0.0.1:0").unwrap())
///     .authkey(b"secret") // Python: Listener(('127.0.0.1', 0), authkey=b'secret')
///     .bind()
///     .unwrap();
/// let address = listener.address().clone();
/// let client = thread::spawn(move || Client::new(address).authkey(b"guess").connect());
/// // The wrong key fails on both sides (Python: AuthenticationError).
/// assert!(matches!(
///     listener.accept(),
///     Err(ListenerError::Authentication(AuthenticationError::DigestWrong))
/// ));
/// assert!(matches!(
///     client.join().unwrap(),
///     Err(ListenerError::Authentication(AuthenticationError::DigestRejected))
/// ));
/// # }
/// ```
pub struct Listener {
    socket: Socket,
    address: Address,
    file: Option<SocketFile>,
    handshake: Handshake,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Listener");
        d.field("fd", &self.as_raw_fd()).field("address", &self.address);
        #[cfg(feature = "auth")]
        d.field("authenticated", &self.handshake.authkey.is_some());
        d.finish()
    }
}

/// Options for a [`Listener`]: made by [`Listener::builder`], consumed by
/// [`bind`](Self::bind).
#[derive(Clone)]
pub struct ListenerBuilder {
    address: Address,
    handshake: Handshake,
}

impl fmt::Debug for ListenerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.handshake.debug(f, "ListenerBuilder", &self.address)
    }
}

impl ListenerBuilder {
    /// Authenticates every connection with `authkey` (Python's `Listener(authkey=...)`):
    /// [`accept`](Listener::accept) challenges the client, then answers its challenge. Needs the
    /// `auth` feature.
    #[cfg(feature = "auth")]
    pub fn authkey(mut self, authkey: impl AsRef<[u8]>) -> Self {
        self.handshake.authkey = Some(authkey.as_ref().to_vec());
        self
    }

    #[cfg(feature = "auth")]
    /// How long a client has to complete the handshake ([`DEFAULT_HANDSHAKE_TIMEOUT`], 20 s, by
    /// default; `None` waits forever, as Python does). Only used with an authkey; needs the `auth`
    /// feature.
    pub fn handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.handshake.timeout = timeout;
        self
    }

    /// Creates the socket and listens.
    ///
    /// # Errors
    /// [`ListenerError::Io`]: the path exists ([`io::ErrorKind::AddrInUse`]), the port is
    /// taken, the name is too long, the directory is not writable, ...
    pub fn bind(self) -> Result<Listener, ListenerError> {
        self.address.check()?;
        let (socket, address, file) = match &self.address {
            Address::Unix(path) => {
                let (socket, file) = bind_private(path)?;
                (Socket::Unix(socket), self.address.clone(), Some(file))
            }
            Address::Abstract(name) => {
                let addr = UnixSocketAddr::from_abstract_name(name)?;
                (Socket::Unix(UnixListener::bind_addr(&addr)?), self.address.clone(), None)
            }
            Address::Tcp(addr) => {
                let socket = TcpListener::bind(addr)?;
                let bound = socket.local_addr()?;
                (Socket::Tcp(socket), Address::Tcp(bound), None)
            }
        };
        Ok(Listener { socket, address, file, handshake: self.handshake })
    }
}

impl Listener {
    /// Listens at `address`, without authentication (Python's `Listener(address)`).
    ///
    /// # Errors
    /// As [`ListenerBuilder::bind`].
    pub fn bind(address: impl Into<Address>) -> Result<Listener, ListenerError> {
        Listener::builder(address).bind()
    }

    /// Options for a listener at `address`: an authkey, the handshake's time limit.
    pub fn builder(address: impl Into<Address>) -> ListenerBuilder {
        ListenerBuilder { address: address.into(), handshake: Handshake::default() }
    }

    /// Waits for a client and returns the connection to it, after the handshake if there is an
    /// authkey (Python's `accept`).
    ///
    /// # Errors
    /// [`ListenerError::Authentication`] or [`ListenerError::Connection`] if this client failed
    /// the handshake (its connection is closed; call `accept` again for the next client);
    /// [`ListenerError::Io`] if `accept(2)` failed.
    pub fn accept(&self) -> Result<SocketConnection, ListenerError> {
        let conn = loop {
            let r = match &self.socket {
                Socket::Unix(s) => s.accept().map(|(s, _)| SocketConnection::from(s)),
                Socket::Tcp(s) => s.accept().map(|(s, _)| SocketConnection::from(s)),
            };
            match r {
                Ok(conn) => break conn,
                // A client that gave up while queued, or a signal: wait for the next one.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => return Err(ListenerError::Io(e)),
            }
        };
        self.handshake.run(&conn, Side::Server)?;
        Ok(conn)
    }

    /// The address it listens at (Python's `address`); for TCP, the port actually bound.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Closes the socket and removes its file, if it has one (Python's `close`). Dropping the
    /// listener does the same; `close` reports an error from `close(2)` instead of ignoring it.
    pub fn close(self) -> io::Result<()> {
        let Listener { socket, file, .. } = self;
        let fd: OwnedFd = match socket {
            Socket::Unix(s) => s.into(),
            Socket::Tcp(s) => s.into(),
        };
        let closed = multiproc_sys::io::fd::close(fd).map_err(io::Error::from);
        drop(file); // removes the socket file
        closed
    }
}

impl AsFd for Listener {
    /// The listening socket: readable when a client is waiting to be accepted (so a listener
    /// works with [`wait`](super::wait) and event loops).
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.socket {
            Socket::Unix(s) => s.as_fd(),
            Socket::Tcp(s) => s.as_fd(),
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// Binds a listening `AF_UNIX` socket at `path` whose file has mode `0600`, with no moment at
/// which anyone else could connect, whatever the umask.
///
/// `bind(2)` creates the file with `0777 & !umask`, and a `chmod` afterwards leaves a window.
/// So the socket is bound inside a fresh directory of mode `0700` next to `path` (nobody else
/// can reach into it), `chmod`ed to `0600` there, then hard-linked to `path` — `link(2)` fails
/// if `path` exists, as `bind(2)` would — and the temporary name and directory are removed. If
/// the temporary name would be too long for `sun_path` while `path` fits, it is reached through
/// `/proc/self/fd/` and a descriptor of the parent directory.
fn bind_private(path: &Path) -> io::Result<(UnixListener, SocketFile)> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut random = [0u8; 8];
    multiproc_sys::random::getrandom(&mut random).map_err(io::Error::from)?;
    let name = format!(".mp-{:016x}", u64::from_ne_bytes(random));
    let dir = parent.join(&name);
    fs::DirBuilder::new().mode(0o700).create(&dir)?;
    let tmp = dir.join("s");
    let result = (|| {
        let socket = if tmp.as_os_str().len() <= super::address::UNIX_NAME_MAX {
            UnixListener::bind(&tmp)?
        } else {
            let parent_fd = fs::File::open(parent)?;
            let short = format!("/proc/self/fd/{}/{name}/s", parent_fd.as_raw_fd());
            UnixListener::bind(short)?
        };
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
        let meta = fs::symlink_metadata(&tmp)?;
        fs::hard_link(&tmp, path).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{}: address already in use", path.display()),
                )
            } else {
                e
            }
        })?;
        Ok((
            socket,
            SocketFile {
                path: path.to_path_buf(),
                dev: meta.dev(),
                ino: meta.ino(),
                pid: std::process::id(),
            },
        ))
    })();
    let _ = fs::remove_file(&tmp);
    let _ = fs::remove_dir(&dir);
    result
}

/// Connects to a [`Listener`] — Python's `multiprocessing.connection.Client`.
///
/// A builder: [`new`](Self::new) with the address, optionally an `authkey` and a
/// `handshake_timeout` (both with the `auth` feature), then
/// [`connect`](Self::connect), which may be called again for more connections.
///
/// ```no_run
/// use multiproc::connection::Client;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let conn = Client::new("/tmp/app.sock").connect()?; // Python: Client('/tmp/app.sock')
/// conn.send_bytes(b"hello")?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    address: Address,
    handshake: Handshake,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.handshake.debug(f, "Client", &self.address)
    }
}

impl Client {
    /// A client for the listener at `address`, with no authkey.
    pub fn new(address: impl Into<Address>) -> Client {
        Client { address: address.into(), handshake: Handshake::default() }
    }

    // `authkey` and `handshake_timeout` mirror `ListenerBuilder`'s (Python gives both classes
    // these two arguments); the handshake itself is `Handshake::run`.

    /// Authenticates with `authkey` (Python's `Client(address, authkey=...)`):
    /// [`connect`](Self::connect) answers the listener's challenge, then challenges it. Needs
    /// the `auth` feature.
    #[cfg(feature = "auth")]
    pub fn authkey(mut self, authkey: impl AsRef<[u8]>) -> Self {
        self.handshake.authkey = Some(authkey.as_ref().to_vec());
        self
    }

    #[cfg(feature = "auth")]
    /// How long the listener has to complete the handshake ([`DEFAULT_HANDSHAKE_TIMEOUT`],
    /// 20 s, by default; `None` waits forever, as Python does). Only used with an authkey; needs the `auth`
    /// feature.
    pub fn handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.handshake.timeout = timeout;
        self
    }

    /// The address it connects to.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Connects, and runs the handshake if there is an authkey.
    ///
    /// # Errors
    /// [`ListenerError::Io`] if the connection cannot be made (no listener:
    /// [`io::ErrorKind::ConnectionRefused`] or [`io::ErrorKind::NotFound`]);
    /// [`ListenerError::Authentication`] or [`ListenerError::Connection`] if the handshake
    /// fails.
    pub fn connect(&self) -> Result<SocketConnection, ListenerError> {
        self.address.check()?;
        let conn = match &self.address {
            Address::Unix(path) => SocketConnection::from(UnixStream::connect(path)?),
            Address::Abstract(name) => {
                let addr = UnixSocketAddr::from_abstract_name(name)?;
                SocketConnection::from(UnixStream::connect_addr(&addr)?)
            }
            Address::Tcp(addr) => SocketConnection::from(std::net::TcpStream::connect(addr)?),
        };
        self.handshake.run(&conn, Side::Client)?;
        Ok(conn)
    }
}
