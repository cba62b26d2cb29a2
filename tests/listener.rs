//! Tests of `connection::Listener`, `Client` and `SocketConnection`: `AF_UNIX` paths (mode
//! 0600, removed on close), abstract names and loopback TCP; Python's framing; hostile clients
//! (garbage, truncated frames, giant lengths, silence) that get an error while the listener
//! goes on serving; and, with the `auth` feature, the HMAC handshake with the right and a wrong
//! key. Interoperability with `python3` is in `listener_python.rs`.
//!
//! Every test has a watchdog; peers run in threads.

mod common;

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Duration;

use multiproc::ConnectionError;
use multiproc::connection::{Address, Client, Listener, ListenerError, SocketConnection};

use common::net::{abstract_address, loopback, pattern, temp_path};

const LIMIT: Duration = Duration::from_secs(30);

/// A raw stream to the listener, for sending bytes that are not (valid) frames.
enum Raw {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Raw {
    fn connect(address: &Address) -> Raw {
        match address {
            Address::Unix(p) => Raw::Unix(UnixStream::connect(p).unwrap()),
            Address::Tcp(a) => Raw::Tcp(TcpStream::connect(a).unwrap()),
            Address::Abstract(_) => unreachable!("not used by these tests"),
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        // The listener may have dropped the connection already: that is fine.
        let _ = match self {
            Raw::Unix(s) => s.write_all(bytes),
            Raw::Tcp(s) => s.write_all(bytes),
        };
    }
}

/// Sends a greeting from a client thread and checks the echo; returns after the round trip.
fn echo_once(listener: &Listener) {
    let address = listener.address().clone();
    let client = thread::spawn(move || {
        let conn = Client::new(address).connect().unwrap();
        conn.send_bytes(b"ping").unwrap();
        assert_eq!(conn.recv_bytes().unwrap(), b"PING");
    });
    let conn = listener.accept().unwrap();
    let m = conn.recv_bytes().unwrap();
    conn.send_bytes(&m.to_ascii_uppercase()).unwrap();
    client.join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Addresses: path, abstract, TCP
// ---------------------------------------------------------------------------------------------

#[test]
fn unix_path_listener_is_0600_and_removed_on_close_and_drop() {
    let _w = common::watchdog(LIMIT);
    let path = temp_path("mode");
    let listener = Listener::bind(path.as_path()).unwrap();
    assert_eq!(listener.address(), &Address::Unix(path.clone()));
    let meta = fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    echo_once(&listener);
    // No temporary directory is left next to it.
    let leftovers = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".mp-"))
        .count();
    assert_eq!(leftovers, 0, "a temporary bind directory was left behind");
    listener.close().unwrap();
    assert!(!path.exists(), "close must remove the socket file");
    assert!(matches!(
        Client::new(path.as_path()).connect(),
        Err(ListenerError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound
    ));

    let listener = Listener::bind(path.as_path()).unwrap();
    drop(listener);
    assert!(!path.exists(), "drop must remove the socket file");
}

#[test]
fn unix_path_mode_is_0600_even_with_umask_0() {
    let _w = common::watchdog(LIMIT);
    let path = temp_path("umask");
    let p = path.clone();
    // In a child: the umask is per process.
    let child = multiproc::Process::new(move || {
        // SAFETY: `umask` only sets this (single-purpose child) process's file mode mask.
        unsafe { libc::umask(0) };
        let listener = Listener::bind(p.as_path()).unwrap();
        let mode = fs::symlink_metadata(&p).unwrap().permissions().mode() & 0o7777;
        drop(listener);
        mode
    });
    child.start().unwrap();
    assert_eq!(child.join().unwrap(), 0o600);
    assert!(!path.exists());
}

#[test]
fn unix_path_in_use_is_addr_in_use_and_is_not_removed_by_the_failed_bind() {
    let _w = common::watchdog(LIMIT);
    let path = temp_path("inuse");
    let first = Listener::bind(path.as_path()).unwrap();
    match Listener::bind(path.as_path()) {
        Err(ListenerError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse),
        other => panic!("expected AddrInUse, got {other:?}"),
    }
    echo_once(&first); // still there and serving
    // A regular file in the way: also "in use", and left alone.
    drop(first);
    fs::write(&path, b"not a socket").unwrap();
    assert!(matches!(Listener::bind(path.as_path()), Err(ListenerError::Io(_))));
    assert_eq!(fs::read(&path).unwrap(), b"not a socket");
    fs::remove_file(&path).unwrap();
}

#[test]
fn a_replaced_socket_file_is_not_removed_by_the_old_listener() {
    let _w = common::watchdog(LIMIT);
    let path = temp_path("replaced");
    let old = Listener::bind(path.as_path()).unwrap();
    fs::remove_file(&path).unwrap();
    let new = Listener::bind(path.as_path()).unwrap();
    drop(old);
    assert!(path.exists(), "the old listener removed the new one's socket");
    echo_once(&new);
}

#[test]
fn long_paths_bind_up_to_the_sun_path_limit() {
    let _w = common::watchdog(LIMIT);
    let top = temp_path("long");
    fs::create_dir(&top).unwrap();
    // Deep enough that the temporary name next to the socket (22 bytes longer) does not fit.
    let dir = top.join("d".repeat(95 - top.as_os_str().len()));
    fs::create_dir(&dir).unwrap();
    let base = dir.as_os_str().len() + 1;
    // Exactly 107 bytes: fits, though the temporary name next to it would not.
    let name = "x".repeat(107 - base);
    let path = dir.join(&name);
    let listener = Listener::bind(path.as_path()).unwrap();
    assert_eq!(fs::symlink_metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    echo_once(&listener);
    drop(listener);
    // 108 bytes: too long, as in Python.
    let too_long = dir.join("x".repeat(108 - base));
    match Listener::bind(too_long.as_path()) {
        Err(ListenerError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput),
        other => panic!("expected a too-long error, got {other:?}"),
    }
    fs::remove_dir(&dir).unwrap();
    fs::remove_dir(&top).unwrap();
}

#[test]
fn abstract_name_listener() {
    let _w = common::watchdog(LIMIT);
    let address = abstract_address("abs");
    let listener = Listener::bind(&address).unwrap();
    assert_eq!(listener.address(), &address);
    echo_once(&listener);
    assert!(matches!(
        Listener::bind(&address),
        Err(ListenerError::Io(e)) if e.kind() == std::io::ErrorKind::AddrInUse
    ));
    drop(listener);
    assert!(matches!(Client::new(&address).connect(), Err(ListenerError::Io(_))));
}

#[test]
fn tcp_loopback_listener_reports_its_port() {
    let _w = common::watchdog(LIMIT);
    let listener = Listener::bind(loopback()).unwrap();
    let Address::Tcp(addr) = listener.address() else { panic!("not TCP") };
    assert_ne!(addr.port(), 0);
    echo_once(&listener);
    echo_once(&listener);
    let address = listener.address().clone();
    listener.close().unwrap();
    assert!(matches!(
        Client::new(address).connect(),
        Err(ListenerError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused
    ));
}

#[test]
fn listener_works_with_wait() {
    let _w = common::watchdog(LIMIT);
    let listener = Listener::bind(loopback()).unwrap();
    let fds: [&dyn std::os::fd::AsFd; 1] = [&listener];
    assert!(multiproc::wait(&fds, Some(Duration::ZERO)).unwrap().is_empty());
    let client = Client::new(listener.address()).connect().unwrap();
    assert_eq!(multiproc::wait(&fds, Some(LIMIT)).unwrap(), vec![0]);
    let conn = listener.accept().unwrap();
    assert!(!conn.poll().unwrap());
    client.send_bytes(b"").unwrap();
    assert!(conn.poll_timeout(LIMIT).unwrap());
    assert_eq!(conn.recv_bytes().unwrap(), b"");
}

// ---------------------------------------------------------------------------------------------
// SocketConnection: framing, large messages, limits
// ---------------------------------------------------------------------------------------------

fn pair() -> (SocketConnection, SocketConnection) {
    let (a, b) = UnixStream::pair().unwrap();
    (a.into(), b.into())
}

#[test]
fn python_framing_on_the_wire() {
    let _w = common::watchdog(LIMIT);
    let (a, b) = UnixStream::pair().unwrap();
    let conn = SocketConnection::from(a);
    conn.send_bytes(b"hello").unwrap();
    let mut wire = [0u8; 9];
    std::io::Read::read_exact(&mut &b, &mut wire).unwrap();
    assert_eq!(&wire, b"\0\0\0\x05hello");
    // The long form (-1, then an 8-byte length) is accepted for any length, as in Python.
    (&b).write_all(b"\xff\xff\xff\xff\0\0\0\0\0\0\0\x03abc").unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"abc");
    (&b).write_all(b"\0\0\0\0").unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"");
}

#[test]
fn large_messages_both_ways_over_unix_and_tcp() {
    let _w = common::watchdog(LIMIT);
    for address in [Address::Unix(temp_path("large")), loopback()] {
        let listener = Listener::bind(&address).unwrap();
        let address = listener.address().clone();
        let client = thread::spawn(move || {
            let conn = Client::new(address).connect().unwrap();
            let big = pattern(5 << 20, 1);
            conn.send_bytes(&big).unwrap();
            let back = conn.recv_bytes().unwrap();
            assert_eq!(back.len(), big.len());
            assert!(back.iter().zip(&big).all(|(x, y)| *x == y ^ 0xff));
            conn.send(&vec![7u64; 100_000]).unwrap();
        });
        let conn = listener.accept().unwrap();
        let got = conn.recv_bytes().unwrap();
        assert_eq!(got, pattern(5 << 20, 1));
        let flipped: Vec<u8> = got.iter().map(|b| b ^ 0xff).collect();
        conn.send_bytes(&flipped).unwrap();
        assert_eq!(conn.recv::<Vec<u64>>().unwrap(), vec![7u64; 100_000]);
        client.join().unwrap();
    }
}

#[test]
fn recv_limits_and_errors() {
    let _w = common::watchdog(LIMIT);
    let (a, b) = pair();
    a.send_bytes(b"a long message").unwrap();
    a.send_bytes(b"next").unwrap();
    match b.recv_bytes_max(4) {
        Err(ConnectionError::TooLong { len: 14, max: 4 }) => {}
        other => panic!("expected TooLong, got {other:?}"),
    }
    assert_eq!(b.recv_bytes_max(4).unwrap(), b"next"); // still in sync
    a.send_bytes_range(b"0123456789", 2, Some(3)).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(b.recv_bytes_into(&mut buf, 1).unwrap(), 3);
    assert_eq!(&buf[1..4], b"234");
    assert!(matches!(
        a.send_bytes_range(b"abc", 4, None),
        Err(ConnectionError::InvalidArgument(_))
    ));
    a.send_bytes(b"too big for it").unwrap();
    match b.recv_bytes_into(&mut buf, 0) {
        Err(ConnectionError::BufferTooShort(m)) => assert_eq!(m, b"too big for it"),
        other => panic!("expected BufferTooShort, got {other:?}"),
    }
    a.send(&"not a number").unwrap();
    assert!(matches!(b.recv::<u64>(), Err(ConnectionError::Decode(_))));
    a.close().unwrap();
    assert!(b.poll().unwrap(), "end of file is ready");
    assert!(matches!(b.recv_bytes(), Err(ConnectionError::Eof)));
    assert!(matches!(b.send_bytes(b"x"), Err(ConnectionError::BrokenPipe)));
}

#[test]
fn hostile_frames_give_errors_not_allocations() {
    let _w = common::watchdog(LIMIT);
    let cases: &[(&[u8], &str)] = &[
        (b"\0\0", "truncated header"),
        (b"\0\0\0\x10abc", "truncated payload"),
        (b"\x7f\xff\xff\xffabc", "giant length, then close"),
        (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "u64::MAX length"),
        (b"\xff\xff\xff\xff\0\0", "truncated long header"),
        (b"\xff\xff\xff\xfb", "negative length"),
    ];
    for &(bytes, what) in cases {
        let (a, b) = UnixStream::pair().unwrap();
        (&a).write_all(bytes).unwrap();
        drop(a);
        let conn = SocketConnection::from(b);
        match conn.recv_bytes() {
            Err(ConnectionError::Truncated { .. }) => {}
            Err(ConnectionError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidData => {}
            other => panic!("{what}: expected an error, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile clients: the listener keeps serving
// ---------------------------------------------------------------------------------------------

/// Connects raw clients that misbehave, then a good one, to a listener: without an authkey
/// each misbehaving connection's `recv_bytes` fails; the next `accept` serves the good client.
#[test]
fn unauthenticated_listener_serves_on_after_garbage() {
    let _w = common::watchdog(LIMIT);
    for address in [Address::Unix(temp_path("garbage")), loopback()] {
        let listener = Listener::bind(&address).unwrap();
        let address = listener.address().clone();
        for bytes in [&b"GET / HTTP/1.0\r\n\r\n"[..], b"\0\0\0\x09abc", b"\x80\0\0\0"] {
            let mut raw = Raw::connect(&address);
            raw.write(bytes);
            drop(raw);
            let conn = listener.accept().unwrap();
            assert!(conn.recv_bytes().is_err(), "{bytes:?} must give an error");
        }
        echo_once(&listener);
    }
}

#[cfg(feature = "auth")]
mod auth {
    use std::time::Instant;

    use multiproc::connection::{AuthenticationError, ListenerBuilder};

    use super::*;

    const KEY: &[u8] = b"the right key";

    fn authed(address: Address) -> ListenerBuilder {
        Listener::builder(address).authkey(KEY)
    }

    /// Runs `client` in a thread against one `accept` of `listener`; returns both results.
    fn handshake_with(
        listener: &Listener,
        client: Client,
    ) -> (Result<SocketConnection, ListenerError>, Result<SocketConnection, ListenerError>) {
        let t = thread::spawn(move || client.connect());
        let server = listener.accept();
        (server, t.join().unwrap())
    }

    #[test]
    fn right_key_authenticates_both_sides_on_every_family() {
        let _w = common::watchdog(LIMIT);
        for address in [Address::Unix(temp_path("auth")), abstract_address("auth"), loopback()] {
            let listener = authed(address).bind().unwrap();
            let client = Client::new(listener.address()).authkey(KEY);
            let (server, client) = handshake_with(&listener, client);
            let (server, client) = (server.unwrap(), client.unwrap());
            client.send_bytes(b"after the handshake").unwrap();
            assert_eq!(server.recv_bytes().unwrap(), b"after the handshake");
            server.send(&42u32).unwrap();
            assert_eq!(client.recv::<u32>().unwrap(), 42);
        }
    }

    #[test]
    fn empty_key_still_authenticates() {
        let _w = common::watchdog(LIMIT);
        let listener = Listener::builder(loopback()).authkey(b"").bind().unwrap();
        let (s, c) = handshake_with(&listener, Client::new(listener.address()).authkey(b""));
        s.unwrap();
        c.unwrap();
        let (s, c) = handshake_with(&listener, Client::new(listener.address()).authkey(b"x"));
        assert!(matches!(s, Err(ListenerError::Authentication(_))));
        assert!(matches!(c, Err(ListenerError::Authentication(_))));
    }

    #[test]
    fn wrong_key_fails_on_both_sides_quickly_and_the_listener_serves_on() {
        let _w = common::watchdog(LIMIT);
        for address in [Address::Unix(temp_path("wrong")), loopback()] {
            let listener = authed(address).bind().unwrap();
            let start = Instant::now();
            let (server, client) =
                handshake_with(&listener, Client::new(listener.address()).authkey(b"wrong key"));
            assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
            match server {
                Err(ListenerError::Authentication(AuthenticationError::DigestWrong)) => {}
                other => panic!("server: expected DigestWrong, got {other:?}"),
            }
            match client {
                Err(ListenerError::Authentication(AuthenticationError::DigestRejected)) => {}
                other => panic!("client: expected DigestRejected, got {other:?}"),
            }
            // The next client, with the right key, is served.
            let (s, c) = handshake_with(&listener, Client::new(listener.address()).authkey(KEY));
            s.unwrap();
            c.unwrap();
        }
    }

    #[test]
    fn a_client_with_a_key_against_a_listener_without_one_times_out() {
        let _w = common::watchdog(LIMIT);
        let listener = Listener::bind(loopback()).unwrap();
        let client = Client::new(listener.address())
            .authkey(KEY)
            .handshake_timeout(Some(Duration::from_millis(300)));
        let start = Instant::now();
        let (server, client) = handshake_with(&listener, client);
        let server = server.unwrap(); // no handshake on this side
        match client {
            Err(ListenerError::Authentication(AuthenticationError::TimedOut(t))) => {
                assert_eq!(t, Duration::from_millis(300));
            }
            other => panic!("expected TimedOut, got {other:?}"),
        }
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert!(matches!(server.recv_bytes(), Err(ConnectionError::Eof)));
    }

    #[test]
    fn a_client_without_a_key_is_rejected_when_it_speaks() {
        let _w = common::watchdog(LIMIT);
        let listener = authed(loopback()).bind().unwrap();
        let address = listener.address().clone();
        let t = thread::spawn(move || {
            let c = Client::new(address).connect().unwrap(); // no handshake on this side
            let challenge = c.recv_bytes().unwrap();
            assert!(challenge.starts_with(b"#CHALLENGE#{sha256}"));
            assert_eq!(challenge.len(), 11 + 8 + 40);
            c.send_bytes(b"hello").unwrap(); // not a digest
            c.recv_bytes().unwrap()
        });
        match listener.accept() {
            // Python: AuthenticationError('unsupported message length, missing digest prefix…')
            Err(ListenerError::Authentication(AuthenticationError::Protocol(_))) => {}
            other => panic!("expected a protocol error, got {other:?}"),
        }
        assert_eq!(t.join().unwrap(), b"#FAILURE#");
    }

    /// Misbehaving raw clients against an authenticating listener: each `accept` fails with a
    /// clear error within the handshake timeout, and the next good client is served.
    #[test]
    fn hostile_clients_fail_the_handshake_and_the_listener_serves_on() {
        let _w = common::watchdog(LIMIT);
        let timeout = Duration::from_millis(500);
        for address in [Address::Unix(temp_path("hostile")), loopback()] {
            let listener = authed(address).handshake_timeout(Some(timeout)).bind().unwrap();
            let address = listener.address().clone();
            let cases: &[(&[u8], bool, &str)] = &[
                (b"GET / HTTP/1.0\r\n\r\n", true, "HTTP: a giant length"),
                (b"\x7f\xff\xff\xff", false, "giant length, then silence"),
                (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", false, "u64::MAX length"),
                (b"\0\0\0\x20{sha256}abc", true, "truncated reply"),
                (b"\0\0\0\x20{sha256}abc", false, "partial reply, then silence"),
                (b"\0\0", false, "half a header, then silence"),
                (b"", false, "silence"),
                (b"", true, "connect and close"),
                (b"\xff\xff\xff\xf0", false, "negative length"),
                (b"\0\0\0\x15{md4}0123456789abcdef", false, "unknown digest"),
                (b"\0\0\0\x11{sha256}012345678", false, "short sha256 reply"),
                (b"\0\0\0\x100123456789abcdef", false, "a wrong legacy MD5 reply"),
            ];
            for &(bytes, close, what) in cases {
                let mut raw = Raw::connect(&address);
                raw.write(bytes);
                // Either the client closes, or it stays silent until the handshake times out.
                let raw = if close {
                    drop(raw);
                    None
                } else {
                    Some(raw)
                };
                let start = Instant::now();
                let r = listener.accept();
                let took = start.elapsed();
                match r {
                    Err(ListenerError::Authentication(_) | ListenerError::Connection(_)) => {}
                    other => panic!("{what}: expected a handshake error, got {other:?}"),
                }
                assert!(took < timeout + Duration::from_secs(2), "{what}: took {took:?}");
                drop(raw);
            }
            let (s, c) = handshake_with(&listener, Client::new(&address).authkey(KEY));
            s.unwrap();
            c.unwrap();
        }
    }

    /// A listener that sends garbage instead of a challenge: the client fails cleanly.
    #[test]
    fn hostile_servers_fail_the_client_handshake() {
        let _w = common::watchdog(LIMIT);
        let cases: &[&[u8]] = &[
            b"\0\0\0\x05hello",
            b"\0\0\0\x0d#CHALLENGE#ab",
            b"\0\0\0\x20#CHALLENGE#{sha3_256}0123456789a",
            b"\x7f\xff\xff\xff",
            b"\0\0",
            b"",
        ];
        for &bytes in cases {
            let raw = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = raw.local_addr().unwrap().port();
            let t = thread::spawn(move || {
                let (mut s, _) = raw.accept().unwrap();
                s.write_all(bytes).unwrap();
                s.shutdown(std::net::Shutdown::Write).unwrap();
                // Hold the socket until the client is done.
                let _ = std::io::Read::read_to_end(&mut s, &mut Vec::new());
            });
            let r = Client::new(Address::tcp(("127.0.0.1", port)).unwrap())
                .authkey(KEY)
                .handshake_timeout(Some(Duration::from_secs(5)))
                .connect();
            match r {
                Err(ListenerError::Authentication(_) | ListenerError::Connection(_)) => {}
                other => panic!("{bytes:?}: expected a handshake error, got {other:?}"),
            }
            t.join().unwrap();
        }
    }
}
