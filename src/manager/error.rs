//! [`ManagerError`] and [`RemoteError`]: what a [`Manager`](super::Manager) or a proxy call can
//! report.

use std::fmt;
use std::io;

use crate::codec::{Decode, DecodeError, Decoder, Encode};
use crate::connection::ListenerError;

/// The kind of an error raised by a method in the manager's server — the Python exception it
/// stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A missing key (Python's `KeyError`): `d[k]`, `del d[k]`, `d.pop(k)`.
    Key,
    /// An index out of range (Python's `IndexError`): `l[20]`, `l.pop()` on an empty list.
    Index,
    /// A missing `Namespace` attribute (Python's `AttributeError`).
    Attribute,
    /// A bad value (Python's `ValueError`): a `BoundedSemaphore` released too many times,
    /// `task_done()` called too many times, a negative count.
    Value,
    /// Misuse of a synchronisation object (Python's `RuntimeError`): releasing an unlocked
    /// `Lock`, an `RLock` or `Condition` not held by the caller.
    Runtime,
    /// The arguments or the stored value are not of the type the method expects (Python's
    /// `TypeError`): the two sides disagree on a type, or a custom method rejected its input.
    Type,
    /// A queue `get` found nothing within its timeout (Python's `queue.Empty`).
    Empty,
    /// A queue `put` found no room within its timeout (Python's `queue.Full`).
    Full,
    /// A `Barrier` is broken (Python's `threading.BrokenBarrierError`).
    BrokenBarrier,
    /// The object does not exist in the server (or not with this type).
    NoSuchObject,
    /// The object has no such method (Python's `AttributeError` on an unexposed method).
    NoSuchMethod,
    /// The request could not be read: garbage, a truncated or oversized message.
    Protocol,
    /// Anything else a custom object reports.
    Other,
}

impl ErrorKind {
    /// Python's name for this kind of error.
    pub fn python_name(self) -> &'static str {
        match self {
            ErrorKind::Key => "KeyError",
            ErrorKind::Index => "IndexError",
            ErrorKind::Attribute => "AttributeError",
            ErrorKind::Value => "ValueError",
            ErrorKind::Runtime => "RuntimeError",
            ErrorKind::Type => "TypeError",
            ErrorKind::Empty => "queue.Empty",
            ErrorKind::Full => "queue.Full",
            ErrorKind::BrokenBarrier => "BrokenBarrierError",
            ErrorKind::NoSuchObject => "KeyError (no such object)",
            ErrorKind::NoSuchMethod => "AttributeError (no such method)",
            ErrorKind::Protocol => "RemoteError (protocol)",
            ErrorKind::Other => "RemoteError",
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            ErrorKind::Key => 1,
            ErrorKind::Index => 2,
            ErrorKind::Attribute => 3,
            ErrorKind::Value => 4,
            ErrorKind::Runtime => 5,
            ErrorKind::Type => 6,
            ErrorKind::Empty => 7,
            ErrorKind::Full => 8,
            ErrorKind::BrokenBarrier => 9,
            ErrorKind::NoSuchObject => 10,
            ErrorKind::NoSuchMethod => 11,
            ErrorKind::Protocol => 12,
            ErrorKind::Other => 13,
        }
    }

    fn from_u8(b: u8) -> ErrorKind {
        match b {
            1 => ErrorKind::Key,
            2 => ErrorKind::Index,
            3 => ErrorKind::Attribute,
            4 => ErrorKind::Value,
            5 => ErrorKind::Runtime,
            6 => ErrorKind::Type,
            7 => ErrorKind::Empty,
            8 => ErrorKind::Full,
            9 => ErrorKind::BrokenBarrier,
            10 => ErrorKind::NoSuchObject,
            11 => ErrorKind::NoSuchMethod,
            12 => ErrorKind::Protocol,
            _ => ErrorKind::Other,
        }
    }
}

/// An error raised by a method in the manager's server, returned to the caller as the method's
/// own error (Python re-raises the server's exception in the caller: `l[20]` is an
/// `IndexError`).
///
/// Custom shared objects (see [`SharedObject`](super::SharedObject)) return it too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    kind: ErrorKind,
    message: String,
}

impl RemoteError {
    /// An error of `kind` with a message (Python's exception argument).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> RemoteError {
        RemoteError { kind, message: message.into() }
    }

    /// Which error it is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The server's message, as Python's (`"list index out of range"`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// A [`ErrorKind::Type`] error for arguments that do not decode.
    pub(crate) fn bad_args(e: DecodeError) -> RemoteError {
        RemoteError::new(ErrorKind::Type, format!("the arguments do not decode: {e}"))
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.python_name(), self.message)
    }
}

impl std::error::Error for RemoteError {}

impl From<DecodeError> for RemoteError {
    fn from(e: DecodeError) -> Self {
        RemoteError::bad_args(e)
    }
}

impl Encode for RemoteError {
    fn encode(&self, out: &mut Vec<u8>) {
        self.kind.to_u8().encode(out);
        self.message.encode(out);
    }
}

impl Decode for RemoteError {
    const MIN_ENCODED_LEN: usize = 1 + String::MIN_ENCODED_LEN;

    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let kind = ErrorKind::from_u8(u8::decode(d)?);
        let message = String::decode(d)?;
        Ok(RemoteError { kind, message })
    }
}

/// What can go wrong using a [`Manager`](super::Manager) or one of its proxies.
#[derive(Debug)]
#[non_exhaustive]
pub enum ManagerError {
    /// The manager's server is gone: shut down, killed, or its connection broke in the middle
    /// of a call. Every later call reports it too, at once (Python raises `BrokenPipeError`,
    /// `EOFError` or `ConnectionRefusedError` depending on the moment).
    Gone,
    /// The method raised an error in the server (`l[20]` is [`ErrorKind::Index`]).
    Remote(RemoteError),
    /// Connecting to a server failed for another reason than its absence: a wrong authkey
    /// ([`ListenerError::Authentication`]), a peer that is not a manager, ...
    Connect(ListenerError),
    /// The server's answer is not a value of the type asked for (the proxy's type parameters
    /// do not match what the object holds, for instance a `dict` made as `DictProxy<u32, i64>`
    /// and used as `DictProxy<u32, String>`).
    Decode(DecodeError),
    /// The server process could not be started.
    Start(io::Error),
    /// An argument is out of range (Python's `ValueError`): the text says which.
    InvalidArgument(String),
}

impl fmt::Display for ManagerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManagerError::Gone => f.write_str(
                "the manager's server is gone (shut down, killed, or its connection broke)",
            ),
            ManagerError::Remote(e) => write!(f, "{e}"),
            ManagerError::Connect(e) => write!(f, "cannot connect to the manager: {e}"),
            ManagerError::Decode(e) => {
                write!(f, "the manager's answer is not of the type asked for: {e}")
            }
            ManagerError::Start(e) => write!(f, "cannot start the manager's server: {e}"),
            ManagerError::InvalidArgument(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for ManagerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ManagerError::Remote(e) => Some(e),
            ManagerError::Connect(e) => Some(e),
            ManagerError::Decode(e) => Some(e),
            ManagerError::Start(e) => Some(e),
            _ => None,
        }
    }
}

impl From<RemoteError> for ManagerError {
    fn from(e: RemoteError) -> Self {
        ManagerError::Remote(e)
    }
}

impl From<DecodeError> for ManagerError {
    fn from(e: DecodeError) -> Self {
        ManagerError::Decode(e)
    }
}

impl ManagerError {
    /// The remote error's kind, if this is a [`ManagerError::Remote`].
    pub fn remote_kind(&self) -> Option<ErrorKind> {
        match self {
            ManagerError::Remote(e) => Some(e.kind()),
            _ => None,
        }
    }

    /// Whether this is [`ManagerError::Gone`].
    pub fn is_gone(&self) -> bool {
        matches!(self, ManagerError::Gone)
    }
}
