//! Typed connections: [`typed_pipe`] gives [`TypedConnection`]s and [`typed_simplex_pipe`] a
//! [`Receiver`]/[`Sender`] pair, whose ends send and receive the types declared when the pipe
//! was made, so that sending the wrong type is a compile error instead of a decode error in
//! the peer.
//!
//! A typed end is a [`Connection`] with the message types in its type: the bytes on the wire
//! are exactly those of [`Connection::send`] (no type tag: [`TypedConnection`]'s docs say
//! why), so a typed end talks to an untyped one, and
//! [`as_untyped`](TypedConnection::as_untyped), [`into_untyped`](TypedConnection::into_untyped)
//! and [`from_untyped`](TypedConnection::from_untyped) move between the two forms.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use super::{Connection, ConnectionError, pipe};
use crate::codec::Message;

/// Creates a connected pair of typed duplex ends — Python's `multiprocessing.Pipe()`, with the
/// message types declared.
///
/// The first end sends `A`s and receives `B`s; the second sends `B`s and receives `A`s. Both
/// are one `AF_UNIX` socketpair, exactly as [`pipe`]`(true)` makes, and the same rules apply:
/// make the pair before starting the child, and let each process use one end.
///
/// # Examples
///
/// ```
/// use multiproc::{Process, typed_pipe};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Python: parent_conn, child_conn = Pipe()
/// // The parent sends lists of numbers and gets their sums back.
/// let (parent_end, child_end) = typed_pipe::<Vec<i64>, i64>()?;
/// let p = Process::new(move || {
///     let numbers = child_end.recv().unwrap(); // a Vec<i64>: no annotation needed
///     child_end.send(&numbers.iter().sum()).unwrap();
/// });
/// p.start()?;
/// parent_end.send(&vec![1, 2, 3])?; // inferred as Vec<i64>, the declared type
/// assert_eq!(parent_end.recv()?, 6);
/// p.join()?;
/// # Ok(())
/// # }
/// ```
///
/// A value of another type does not compile (with [`pipe`], this `Vec<i32>` would reach the
/// child, whose `recv::<Vec<i64>>()` would return a [`ConnectionError::Decode`]):
///
/// ```compile_fail,E0308
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (parent_end, child_end) = multiproc::typed_pipe::<Vec<i64>, i64>()?;
/// let numbers: Vec<i32> = vec![1, 2, 3];
/// parent_end.send(&numbers)?; // error[E0308]: mismatched types
/// # drop(child_end);
/// # Ok(())
/// # }
/// ```
///
/// Neither does receiving one:
///
/// ```compile_fail,E0308
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (parent_end, child_end) = multiproc::typed_pipe::<Vec<i64>, i64>()?;
/// parent_end.send(&vec![1, 2, 3])?;
/// let numbers: Vec<i32> = child_end.recv()?; // error[E0308]: mismatched types
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// The OS error from `socketpair(2)` (out of descriptors, for example).
#[doc(alias = "Pipe")]
pub fn typed_pipe<A: Message, B: Message>()
-> io::Result<(TypedConnection<A, B>, TypedConnection<B, A>)> {
    let (a, b) = pipe(true)?;
    Ok((TypedConnection::from_untyped(a), TypedConnection::from_untyped(b)))
}

/// Creates a typed one-way pipe: `(reader, writer)`, in the order of Python's
/// `multiprocessing.Pipe(duplex=False)`.
///
/// The [`Receiver`] only receives `T`s, the [`Sender`] only sends them; the pair is one pipe,
/// exactly as [`pipe`]`(false)` makes.
///
/// # Examples
///
/// ```
/// use multiproc::{Process, typed_simplex_pipe};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Python: reader, writer = Pipe(duplex=False)
/// let (reader, writer) = typed_simplex_pipe::<Option<String>>()?;
/// let p = Process::new(move || {
///     for word in ["one", "two"] {
///         writer.send(&Some(word.to_string())).unwrap();
///     }
///     writer.send(&None).unwrap(); // the end of the stream (see `pipe` on end-of-file)
/// });
/// p.start()?;
/// let mut words = Vec::new();
/// while let Some(word) = reader.recv()? {
///     words.push(word);
/// }
/// assert_eq!(words, ["one", "two"]);
/// p.join()?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// The OS error from `pipe2(2)`.
pub fn typed_simplex_pipe<T: Message>() -> io::Result<(Receiver<T>, Sender<T>)> {
    let (r, w) = pipe(false)?;
    Ok((Receiver::from_untyped(r), Sender::from_untyped(w)))
}

/// Writes the `Debug` form shared by the typed ends: the fd and the message types.
fn debug_end(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    conn: &Connection,
    sends: Option<&str>,
    receives: Option<&str>,
) -> fmt::Result {
    let mut d = f.debug_struct(name);
    d.field("fd", &conn.as_raw_fd());
    if let Some(sends) = sends {
        d.field("sends", &sends);
    }
    if let Some(receives) = receives {
        d.field("receives", &receives);
    }
    d.finish()
}

/// `poll` and `poll_timeout` of the ends that receive, in their inherent `impl` blocks: the
/// wrapped connection's.
macro_rules! receiving_end {
    () => {
        /// Whether a message (or end-of-file) is ready to be received right now; see
        /// [`Connection::poll`].
        pub fn poll(&self) -> Result<bool, ConnectionError> {
            self.conn.poll()
        }

        /// As [`poll`](Self::poll), waiting at most `timeout`; see
        /// [`Connection::poll_timeout`].
        pub fn poll_timeout(&self, timeout: Duration) -> Result<bool, ConnectionError> {
            self.conn.poll_timeout(timeout)
        }
    };
}
/// `AsFd`, `AsRawFd` and `From<_> for Connection` of the typed ends: the wrapped connection's.
macro_rules! wraps_connection {
    ($($name:ident<$($g:ident),+>;)*) => {$(
        impl<$($g),+> AsFd for $name<$($g),+> {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.conn.as_fd()
            }
        }

        impl<$($g),+> AsRawFd for $name<$($g),+> {
            fn as_raw_fd(&self) -> RawFd {
                self.conn.as_raw_fd()
            }
        }

        impl<$($g),+> From<$name<$($g),+>> for Connection {
            fn from(typed: $name<$($g),+>) -> Connection {
                typed.conn
            }
        }
    )*};
}

/// One end of a [`typed_pipe`]: sends `S`s and receives `R`s — Python's `Connection`, with the
/// message types declared.
///
/// [`send`](Self::send) takes only an `&S` and [`recv`](Self::recv) returns only an `R`, so a
/// message of the wrong type is a compile error on this side, and a literal such as
/// `vec![1, 2, 3]` takes the declared type by inference. Otherwise it behaves exactly like the
/// [`Connection`] it wraps (same frames, same errors, same blocking); implements [`AsFd`], so
/// it works with [`wait`](crate::wait), `poll` or epoll.
///
/// # No type tag on the wire
///
/// Both ends of a typed pipe come from one call, so their types agree by construction and a
/// per-message type tag would check nothing the compiler has not. A tag would only catch a
/// peer that left the typed form (through the untyped escape hatch, or a socket made
/// elsewhere), and there it would hurt more than help: a typed end could no longer talk to an
/// untyped one, and the natural tag, a hash of [`std::any::type_name`], is neither unique nor
/// stable across compilers, so it would be unreliable for exactly the peers it is meant for
/// (another program on a socket). A message of the wrong type is still found when it is
/// decoded: [`recv`](Self::recv) returns [`ConnectionError::Decode`], the message is consumed
/// and the connection stays in sync. Some mismatches decode without error (a `u64` read as an
/// `i64`): keeping both ends typed is what rules those out.
///
/// # Examples
///
/// The untyped form is one call away, for raw bytes or a message of another type:
///
/// ```
/// use multiproc::{TypedConnection, typed_pipe};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (a, b) = typed_pipe::<String, u32>()?;
/// a.send(&"hello".into())?;
/// a.as_untyped().send_bytes(b"raw")?; // the escape hatch: any message, any bytes
/// assert_eq!(b.recv()?, "hello");
/// assert_eq!(b.as_untyped().recv_bytes()?, b"raw");
///
/// let untyped = b.into_untyped(); // a plain `Connection` again
/// untyped.send(&7u32)?;
/// assert_eq!(a.recv()?, 7);
/// let b: TypedConnection<u32, String> = TypedConnection::from_untyped(untyped);
/// # drop(b);
/// # Ok(())
/// # }
/// ```
pub struct TypedConnection<S, R> {
    conn: Connection,
    /// The message types, without owning any: `fn(S) -> R` keeps `Send` (and every other auto
    /// trait) up to the [`Connection`] alone.
    _types: PhantomData<fn(S) -> R>,
}

impl<S, R> TypedConnection<S, R> {
    /// Declares the message types of an untyped connection (for example one end of [`pipe`],
    /// or a socket wrapped with [`Connection::from_socket`]).
    ///
    /// Nothing is checked: the peer may send anything, and a message that is not an `R` is
    /// [`ConnectionError::Decode`] from [`recv`](Self::recv) (consumed, the connection stays
    /// in sync). A one-way end keeps its direction: `send` on a reading end is still
    /// [`ConnectionError::ReadOnly`].
    pub fn from_untyped(conn: Connection) -> Self {
        TypedConnection { conn, _types: PhantomData }
    }

    /// The untyped connection, for [`send_bytes`](Connection::send_bytes),
    /// [`recv_bytes`](Connection::recv_bytes) or a message of another type.
    pub fn as_untyped(&self) -> &Connection {
        &self.conn
    }

    /// Gives up the types: the untyped connection.
    #[doc(alias = "into_inner")]
    pub fn into_untyped(self) -> Connection {
        self.conn
    }

    receiving_end!();

    /// Closes this end (Python's `close`); see [`Connection::close`].
    pub fn close(self) -> io::Result<()> {
        self.conn.close()
    }
}

impl<S: Message, R> TypedConnection<S, R> {
    /// Sends one `S`; see [`Connection::send`]. May block while the OS buffer is full.
    ///
    /// A literal takes the declared type (`vec![1, 2]` for `S = Vec<i64>`, `&"text".into()`
    /// for `S = String`). To send a borrowed form without building an `S` (a `&str` for a
    /// `String`, a slice for a `Vec`), use `as_untyped().send(..)`: it encodes the same bytes.
    pub fn send(&self, value: &S) -> Result<(), ConnectionError> {
        self.conn.send(value)
    }
}

impl<S, R: Message> TypedConnection<S, R> {
    /// Receives one `R`; see [`Connection::recv`]. Blocks until a whole message arrives.
    ///
    /// # Errors
    /// [`ConnectionError::Eof`] once the peer has closed and everything was read;
    /// [`ConnectionError::Decode`] if the message is not an `R` (only possible when the peer
    /// sends through the untyped form; the message is consumed).
    pub fn recv(&self) -> Result<R, ConnectionError> {
        self.conn.recv()
    }
}

impl<S, R> fmt::Debug for TypedConnection<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, r) = (std::any::type_name::<S>(), std::any::type_name::<R>());
        debug_end(f, "TypedConnection", &self.conn, Some(s), Some(r))
    }
}

/// The writing end of a [`typed_simplex_pipe`]: sends `T`s.
///
/// Behaves like the [`Connection`] it wraps, which [`as_untyped`](Self::as_untyped) and
/// [`into_untyped`](Self::into_untyped) give back.
pub struct Sender<T> {
    conn: Connection,
    /// See [`TypedConnection`]'s field of the same name.
    _types: PhantomData<fn(T)>,
}

impl<T> Sender<T> {
    /// Declares the message type of an untyped connection that sends (for example the second
    /// end of [`pipe`]`(false)`). Nothing is checked: [`send`](Self::send) on a reading end is
    /// [`ConnectionError::ReadOnly`].
    pub fn from_untyped(conn: Connection) -> Self {
        Sender { conn, _types: PhantomData }
    }

    /// The untyped connection, for [`send_bytes`](Connection::send_bytes) or a message of
    /// another type.
    pub fn as_untyped(&self) -> &Connection {
        &self.conn
    }

    /// Gives up the type: the untyped connection.
    #[doc(alias = "into_inner")]
    pub fn into_untyped(self) -> Connection {
        self.conn
    }

    /// Closes this end (Python's `close`): the reader sees end-of-file once every copy of
    /// this end is closed. See [`Connection::close`].
    pub fn close(self) -> io::Result<()> {
        self.conn.close()
    }
}

impl<T: Message> Sender<T> {
    /// Sends one `T`; see [`Connection::send`]. May block while the pipe is full (until the
    /// reader reads).
    pub fn send(&self, value: &T) -> Result<(), ConnectionError> {
        self.conn.send(value)
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_end(f, "Sender", &self.conn, Some(std::any::type_name::<T>()), None)
    }
}

/// The reading end of a [`typed_simplex_pipe`]: receives `T`s.
///
/// Behaves like the [`Connection`] it wraps, which [`as_untyped`](Self::as_untyped) and
/// [`into_untyped`](Self::into_untyped) give back; implements [`AsFd`], so it works with
/// [`wait`](crate::wait), `poll` or epoll.
pub struct Receiver<T> {
    conn: Connection,
    /// See [`TypedConnection`]'s field of the same name.
    _types: PhantomData<fn() -> T>,
}

impl<T> Receiver<T> {
    /// Declares the message type of an untyped connection that receives (for example the first
    /// end of [`pipe`]`(false)`). Nothing is checked: a message that is not a `T` is
    /// [`ConnectionError::Decode`] from [`recv`](Self::recv), and [`recv`](Self::recv) on a
    /// writing end is [`ConnectionError::WriteOnly`].
    pub fn from_untyped(conn: Connection) -> Self {
        Receiver { conn, _types: PhantomData }
    }

    // The untyped accessors and `close` mirror `TypedConnection`'s and `Sender`'s (one-line
    // delegations, each documented for what this end can do).

    /// The untyped connection, for [`recv_bytes`](Connection::recv_bytes) or a message of
    /// another type.
    pub fn as_untyped(&self) -> &Connection {
        &self.conn
    }

    /// Gives up the type: the untyped connection.
    #[doc(alias = "into_inner")]
    pub fn into_untyped(self) -> Connection {
        self.conn
    }

    receiving_end!();

    /// Closes this end (Python's `close`); see [`Connection::close`].
    pub fn close(self) -> io::Result<()> {
        self.conn.close()
    }
}

impl<T: Message> Receiver<T> {
    /// Receives one `T`; see [`Connection::recv`]. Blocks until a whole message arrives.
    ///
    /// # Errors
    /// [`ConnectionError::Eof`] once every writer has closed and everything was read;
    /// [`ConnectionError::Decode`] if the message is not a `T` (only possible when the writer
    /// sends through the untyped form; the message is consumed).
    pub fn recv(&self) -> Result<T, ConnectionError> {
        self.conn.recv()
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_end(f, "Receiver", &self.conn, None, Some(std::any::type_name::<T>()))
    }
}

wraps_connection! {
    TypedConnection<S, R>;
    Sender<T>;
    Receiver<T>;
}
