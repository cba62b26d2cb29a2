//! `Manager` beyond `Manager::start()` (issue 17): custom shared objects registered before
//! the start (Python's `BaseManager.register`), remote managers (`serve_forever`, a server on
//! a TCP address, `connect` from another process, with the right and a wrong authkey under the
//! `auth` feature), named objects shared with connected processes, and hostile clients
//! (garbage, truncated frames, giant lengths, unknown objects and methods) that get an error
//! while the server goes on serving the others.
//!
//! `init_before_main!` makes the fork server first, so the registered constructors cross to a
//! launched server by address. Every test has a watchdog.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;

use common::{TEST_LIMIT, watchdog};
use multiproc::Process;
use multiproc::connection::Address;
use multiproc::manager::{
    ErrorKind, Managed, Manager, ManagerError, QueueProxy, RemoteError, SharedObject, protocol,
    reply,
};

multiproc::init_before_main!();

/// A counter: `add(i64) -> i64`, `get(()) -> i64`, `boom(())` panics.
struct Counter(i64);

impl SharedObject for Counter {
    fn call(&mut self, method: &str, args: &[u8]) -> Result<Vec<u8>, RemoteError> {
        match method {
            "add" => reply(args, |n: i64| {
                self.0 += n;
                Ok(self.0)
            }),
            "get" => reply(args, |()| Ok(self.0)),
            "boom" => reply(args, |()| -> Result<(), RemoteError> { panic!("boom") }),
            _ => Err(RemoteError::new(ErrorKind::NoSuchMethod, method)),
        }
    }
}

fn new_counter(args: &[u8]) -> Result<Box<dyn SharedObject>, RemoteError> {
    let start: i64 = multiproc::codec::from_bytes(args)?;
    Ok(Box::new(Counter(start)))
}

fn temp_path(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("mp-mgr-test-{}-{tag}-{n}", std::process::id()))
}

#[test]
fn custom_objects() {
    let _w = watchdog(TEST_LIMIT);
    let m = Manager::builder().register("Counter", new_counter).start().unwrap();
    let c = m.create_custom("Counter", &10i64).unwrap();
    assert_eq!(c.call::<_, i64>("add", &5i64).unwrap(), 15);
    let c2 = c.clone();
    let p = Process::new(move || c2.call::<_, i64>("add", &-20i64).unwrap());
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), -5);
    assert_eq!(c.call::<_, i64>("get", &()).unwrap(), -5);
    let e = c.call::<_, i64>("nope", &()).unwrap_err();
    assert_eq!(e.remote_kind(), Some(ErrorKind::NoSuchMethod));
    let e = c.call::<_, i64>("add", "not an i64").unwrap_err();
    assert_eq!(e.remote_kind(), Some(ErrorKind::Type));
    let e = c.call::<_, ()>("boom", &()).unwrap_err();
    assert_eq!(e.remote_kind(), Some(ErrorKind::Other));
    assert_eq!(c.call::<_, i64>("get", &()).unwrap(), -5, "usable after a panic");
    let e = m.create_custom("Unknown", &()).unwrap_err();
    assert_eq!(e.remote_kind(), Some(ErrorKind::NoSuchObject));
    let e = m.create_custom("Counter", "bad").unwrap_err();
    assert_eq!(e.remote_kind(), Some(ErrorKind::Type));
    // Shared by name.
    let a = m.get_or_create_custom("total", "Counter", &0i64).unwrap();
    let b = m.get_or_create_custom("total", "Counter", &100i64).unwrap();
    a.call::<_, i64>("add", &1i64).unwrap();
    assert_eq!(b.call::<_, i64>("get", &()).unwrap(), 1);
}

#[test]
fn bad_registrations() {
    let e = Manager::builder().register("dict", new_counter).start().unwrap_err();
    assert!(matches!(e, ManagerError::InvalidArgument(_)));
    let e = Manager::builder()
        .register("C", new_counter)
        .register("C", new_counter)
        .start()
        .unwrap_err();
    assert!(matches!(e, ManagerError::InvalidArgument(_)));
}

#[test]
fn serve_forever_and_connect_over_a_unix_path() {
    let _w = watchdog(TEST_LIMIT);
    let path = temp_path("serve");
    let server_path = path.clone();
    let server = thread::spawn(move || {
        Manager::builder().address(server_path).register("Counter", new_counter).serve_forever()
    });
    let address = Address::Unix(path.clone());
    let m = loop {
        match Manager::connect(&address) {
            Ok(m) => break m,
            Err(ManagerError::Gone) => thread::yield_now(), // not listening yet
            Err(e) => panic!("{e}"),
        }
    };
    let q: QueueProxy<String> = m.get_or_create("jobs", &0).unwrap();
    // Another process connects on its own and finds the queue by name.
    let a2 = address.clone();
    let p = Process::new(move || {
        let m = Manager::connect(&a2).unwrap();
        let q: QueueProxy<String> = m.get_or_create("jobs", &0).unwrap();
        q.put(&"from another process".into()).unwrap();
        let c = m.get_or_create_custom("c", "Counter", &1i64).unwrap();
        c.call::<_, i64>("add", &1i64).unwrap()
    });
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 2);
    assert_eq!(q.get().unwrap(), "from another process");
    m.shutdown().unwrap(); // a connected manager: only its connection
    assert_eq!(q.qsize().unwrap(), 0, "still served");
    m.shutdown_server().unwrap();
    server.join().unwrap().unwrap();
    assert!(!path.exists(), "the socket file is removed");
    assert!(matches!(q.qsize(), Err(ManagerError::Gone)));
    assert!(matches!(Manager::connect(&address), Err(ManagerError::Gone)));
}

#[test]
fn a_start_on_a_busy_path_fails_and_leaves_the_other_server_alone() {
    let _w = watchdog(TEST_LIMIT);
    let path = temp_path("busy");
    let first = Manager::builder().address(path.clone()).start().unwrap();
    let d = first.dict::<u8, u8>().unwrap();
    d.set(&1, &2).unwrap();
    let e = Manager::builder().address(path.clone()).start().unwrap_err();
    assert!(matches!(e, ManagerError::Start(_)), "{e:?}");
    assert!(path.exists(), "the first server's socket is still there");
    // Reached through its path by a new connection too, not only through an open one.
    let m = Manager::connect(Address::Unix(path.clone())).unwrap();
    let again = m.get_or_create::<QueueProxy<u8>>("q", &0).unwrap();
    again.put(&3).unwrap();
    assert_eq!(again.get().unwrap(), 3);
    assert_eq!(d.get(&1).unwrap(), Some(2));
    first.shutdown().unwrap();
    assert!(!path.exists());
}

#[test]
fn a_proxy_of_a_server_that_was_replaced_never_reaches_the_new_ones_objects() {
    let _w = watchdog(TEST_LIMIT);
    let path = temp_path("restart");
    let old = Manager::builder().address(path.clone()).start().unwrap();
    let stale = old.dict::<u8, u8>().unwrap();
    stale.set(&1, &1).unwrap();
    old.shutdown().unwrap();
    // A new server at the same address, holding an object of its own.
    let new = Manager::builder().address(path.clone()).start().unwrap();
    let fresh = new.dict::<u8, u8>().unwrap();
    // The stale proxy reconnects to the new server but names none of its objects.
    let e = stale.set(&9, &9).unwrap_err();
    assert_eq!(e.remote_kind(), Some(ErrorKind::NoSuchObject), "{e:?}");
    assert!(stale.get(&1).is_err());
    assert_eq!(fresh.len().unwrap(), 0, "the new server's dict was not touched");
    new.shutdown().unwrap();
}

#[test]
fn connect_needs_an_address_and_a_server() {
    assert!(matches!(Manager::builder().connect(), Err(ManagerError::InvalidArgument(_))));
    assert!(matches!(Manager::connect(temp_path("none")), Err(ManagerError::Gone)));
}

#[cfg(feature = "auth")]
#[test]
fn tcp_with_the_right_and_a_wrong_authkey() {
    use multiproc::connection::{AuthenticationError, ListenerError};
    let _w = watchdog(TEST_LIMIT);
    let m = Manager::builder()
        .address(Address::tcp("127.0.0.1:0").unwrap())
        .authkey(b"secret")
        .start()
        .unwrap();
    let address = m.address().clone();
    assert!(matches!(address, Address::Tcp(a) if a.port() != 0));
    let d = m.get_or_create::<multiproc::manager::DictProxy<String, u32>>("d", &()).unwrap();
    d.set(&"x".into(), &1).unwrap();
    let a2 = address.clone();
    let p = Process::new(move || {
        let m = Manager::builder().address(a2).authkey(b"secret").connect().unwrap();
        let d = m.get_or_create::<multiproc::manager::DictProxy<String, u32>>("d", &()).unwrap();
        d.get(&"x".into()).unwrap().unwrap()
    });
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 1);
    let e = Manager::builder().address(address.clone()).authkey(b"wrong").connect().unwrap_err();
    assert!(
        matches!(
            e,
            ManagerError::Connect(ListenerError::Authentication(
                AuthenticationError::DigestRejected
            ))
        ),
        "{e:?}"
    );
    // Still serving after the failed handshake.
    assert_eq!(d.get(&"x".into()).unwrap(), Some(1));
}

/// A raw client: sends `bytes`, closes its write side, returns everything the server sent.
fn raw_exchange(path: &std::path::Path, bytes: &[u8]) -> Vec<u8> {
    let mut s = UnixStream::connect(path).unwrap();
    s.write_all(bytes).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// The responses in a stream of Python-framed messages.
fn responses(mut bytes: &[u8]) -> Vec<Result<Vec<u8>, RemoteError>> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let n = i32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        let msg = &bytes[4..4 + n];
        out.push(protocol::decode_response(msg).unwrap().map(<[u8]>::to_vec));
        bytes = &bytes[4 + n..];
    }
    out
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

fn request(object: u64, method: u16, args: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    protocol::encode_request(object, method, args, &mut r);
    frame(&r)
}

#[test]
fn hostile_clients_get_errors_and_others_are_served() {
    let _w = watchdog(TEST_LIMIT);
    let m = Manager::start().unwrap();
    let d = m.dict::<u32, u32>().unwrap();
    d.set(&1, &1).unwrap();
    let id = d.proxy().id(); // object ids start at a random base
    let unknown = id.wrapping_add(1 << 40);
    let Address::Unix(path) = m.address().clone() else { panic!("a path") };
    let kinds = |out: Vec<u8>| -> Vec<ErrorKind> {
        responses(&out).into_iter().map(|r| r.unwrap_err().kind()).collect()
    };
    // Garbage: "hello world" reads as a giant length: one error, then the connection closes.
    assert_eq!(kinds(raw_exchange(&path, b"hello world")), vec![ErrorKind::Protocol]);
    // A negative length.
    assert_eq!(kinds(raw_exchange(&path, &(-7i32).to_be_bytes())), vec![ErrorKind::Protocol]);
    // A giant 64-bit length.
    let mut giant = (-1i32).to_be_bytes().to_vec();
    giant.extend_from_slice(&(1u64 << 62).to_be_bytes());
    assert_eq!(kinds(raw_exchange(&path, &giant)), vec![ErrorKind::Protocol]);
    // A truncated frame: the server closes without an answer.
    let mut cut = frame(&[0; 50]);
    cut.truncate(20);
    assert!(raw_exchange(&path, &cut).is_empty());
    // Short requests, unknown objects and methods, bad arguments: an error each, in sync.
    let mut many = frame(&[1, 2, 3]);
    many.extend(request(unknown, protocol::GET, &[]));
    many.extend(request(0, 999, &[]));
    many.extend(request(0, protocol::CREATE, b"\xff\xff"));
    many.extend(request(id, 999, &[]));
    many.extend(request(id, protocol::SET, &[1]));
    assert_eq!(
        kinds(raw_exchange(&path, &many)),
        vec![
            ErrorKind::Protocol,
            ErrorKind::NoSuchObject,
            ErrorKind::NoSuchMethod,
            ErrorKind::Type,
            ErrorKind::NoSuchMethod,
            ErrorKind::Type,
        ]
    );
    // A well-formed raw request still works on such a connection.
    let mut ok = frame(&[1, 2, 3]);
    ok.extend(request(id, protocol::LEN, &[]));
    let r = responses(&raw_exchange(&path, &ok));
    assert_eq!(r[1].as_ref().unwrap(), &1u64.to_le_bytes().to_vec());
    // A client that says nothing and holds its connection does not hold up the others.
    let _silent = UnixStream::connect(&path).unwrap();
    assert_eq!(d.get(&1).unwrap(), Some(1));
}
