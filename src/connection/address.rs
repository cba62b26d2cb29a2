//! [`Address`]: where a [`Listener`](super::Listener) listens and a [`Client`](super::Client)
//! connects — Python's `multiprocessing.connection` addresses.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The longest `AF_UNIX` name the kernel takes: `sun_path` is 108 bytes, one of which ends a
/// filesystem path (an abstract name has no terminator but begins with a NUL byte instead).
pub(super) const UNIX_NAME_MAX: usize = 107;

/// Where a [`Listener`](super::Listener) listens, and a [`Client`](super::Client) connects.
///
/// Python tells the families apart by the address's type: a `(host, port)` tuple is `AF_INET`,
/// a `str` path is `AF_UNIX`, and a name starting with a NUL byte is an `AF_UNIX` name in Linux's
/// abstract namespace. Here each is a variant.
///
/// ```
/// use std::net::SocketAddr;
/// use multiproc::connection::Address;
///
/// let tcp = Address::from(SocketAddr::from(([127, 0, 0, 1], 0))); // Python: ('127.0.0.1', 0)
/// let path = Address::from("/tmp/app.sock"); // Python: '/tmp/app.sock'
/// let name = Address::abstract_name("app"); // Python: '\0app'
/// assert_eq!(path.to_string(), "/tmp/app.sock");
/// assert_eq!(name.to_string(), "\\0app");
/// # let _ = tcp;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// An `AF_UNIX` socket at a filesystem path (Python's `'AF_UNIX'` with a `str` path). A
    /// [`Listener`](super::Listener) creates the socket file with mode `0600`, whatever the
    /// umask, and removes it when closed.
    Unix(PathBuf),
    /// An `AF_UNIX` socket in Linux's abstract namespace, named by these bytes (without the
    /// leading NUL byte that Python's address carries). It has no file: no permissions, nothing
    /// to remove, and any process in the same network namespace can connect, so give such a
    /// listener an authkey.
    Abstract(Vec<u8>),
    /// A TCP socket (Python's `'AF_INET'` `(host, port)`; IPv6 works too). A
    /// [`Listener`](super::Listener) bound to port 0 gets a free port, which
    /// [`address`](super::Listener::address) reports.
    Tcp(SocketAddr),
}

impl Address {
    /// An abstract-namespace `AF_UNIX` address (Python: a name starting with `'\0'`), from the
    /// name without its leading NUL byte.
    pub fn abstract_name(name: impl AsRef<[u8]>) -> Address {
        Address::Abstract(name.as_ref().to_vec())
    }

    /// The first TCP address that `host_port` resolves to (Python's `(host, port)` tuple, as
    /// `("localhost", 6000)` or `"localhost:6000"`).
    ///
    /// # Errors
    /// The resolver's error, or [`io::ErrorKind::InvalidInput`] if it found nothing.
    pub fn tcp(host_port: impl ToSocketAddrs) -> io::Result<Address> {
        host_port.to_socket_addrs()?.next().map(Address::Tcp).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the host name resolved to no address")
        })
    }

    /// The address family's name in Python: `"AF_UNIX"` or `"AF_INET"` (`"AF_INET6"` for an
    /// IPv6 address).
    pub fn family(&self) -> &'static str {
        match self {
            Address::Unix(_) | Address::Abstract(_) => "AF_UNIX",
            Address::Tcp(SocketAddr::V4(_)) => "AF_INET",
            Address::Tcp(SocketAddr::V6(_)) => "AF_INET6",
        }
    }

    /// Checks that an `AF_UNIX` name fits in `sun_path` (Python raises `OSError: AF_UNIX path
    /// too long`), and that a path is not empty.
    pub(super) fn check(&self) -> io::Result<()> {
        let (len, what) = match self {
            Address::Unix(path) => {
                if path.as_os_str().is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "an AF_UNIX path cannot be empty",
                    ));
                }
                (path.as_os_str().as_bytes().len(), "path")
            }
            Address::Abstract(name) => (name.len(), "abstract name"),
            Address::Tcp(_) => return Ok(()),
        };
        if len > UNIX_NAME_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("AF_UNIX {what} too long: {len} bytes, at most {UNIX_NAME_MAX}"),
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Address {
    /// A path as it is, an abstract name as `\0name` (bytes other than printable ASCII escaped
    /// as `\xNN`), a TCP address as `host:port`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "{}", path.display()),
            Address::Abstract(name) => {
                f.write_str("\\0")?;
                for &b in name {
                    if b.is_ascii_graphic() || b == b' ' {
                        write!(f, "{}", b as char)?;
                    } else {
                        write!(f, "\\x{b:02x}")?;
                    }
                }
                Ok(())
            }
            Address::Tcp(addr) => write!(f, "{addr}"),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Self {
        Address::Tcp(addr)
    }
}

impl From<PathBuf> for Address {
    fn from(path: PathBuf) -> Self {
        Address::Unix(path)
    }
}

impl From<&Path> for Address {
    fn from(path: &Path) -> Self {
        Address::Unix(path.to_path_buf())
    }
}

impl From<&str> for Address {
    /// A filesystem path (as Python's `str` address); a string starting with a NUL byte is an
    /// abstract name, as in Python.
    fn from(s: &str) -> Self {
        match s.strip_prefix('\0') {
            Some(name) => Address::abstract_name(name),
            None => Address::Unix(PathBuf::from(s)),
        }
    }
}

impl From<&Address> for Address {
    fn from(a: &Address) -> Self {
        a.clone()
    }
}
