//! Interoperability of `connection::Listener`/`Client` with `python3`'s
//! `multiprocessing.connection`, in both directions, with the right and a wrong authkey (the
//! `auth` feature): Python 3.11's legacy HMAC-MD5 handshake, and Python 3.12's `{sha256}` one,
//! run by a script on the same interpreter. Each test prints a SKIPPED line and passes where
//! `python3` is absent.
//!
//! Every test has a watchdog; the Python peers are subprocesses, killed at a time limit.

mod common;

use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

#[cfg(feature = "auth")]
mod python {
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};
    use std::thread;
    use std::time::{Duration, Instant};

    use multiproc::connection::{Address, AuthenticationError, Client, Listener, ListenerError};

    use super::{LIMIT, common};
    use common::net::{abstract_address, loopback, pattern, temp_path};

    /// Python 3.12's handshake (`deliver_challenge`/`answer_challenge` with `{digest}`
    /// prefixes), for a Python 3.11 interpreter: installed into `multiprocessing.connection`
    /// when the script's mode is `modern`, so its `Listener`/`Client` speak it.
    const MODERN: &str = r#"
import hmac, os
import multiprocessing.connection as mpc
from multiprocessing import AuthenticationError

_ALLOWED = frozenset({b'md5', b'sha256', b'sha384', b'sha3_256', b'sha3_384'})
_MAXLEN = max(len(d) for d in _ALLOWED)

def _split(message):
    if len(message) in (20, 16):
        return '', message
    if message.startswith(b'{'):
        curly = message.find(b'}', 1, _MAXLEN + 2)
        if curly > 0 and message[1:curly] in _ALLOWED:
            return message[1:curly].decode('ascii'), message[curly + 1:]
    raise AuthenticationError('unsupported message length or missing digest prefix')

def _create_response(authkey, message):
    name = _split(message)[0]
    if not name:
        return hmac.new(authkey, message, 'md5').digest()
    return b'{%s}%s' % (name.encode('ascii'), hmac.new(authkey, message, name).digest())

def _verify(authkey, message, response):
    name, mac = _split(response)
    name = name or 'md5'
    expected = hmac.new(authkey, message, name).digest()
    if len(expected) != len(mac) or not hmac.compare_digest(expected, mac):
        raise AuthenticationError('digest received was wrong')

def deliver_challenge(connection, authkey, digest_name='sha256'):
    message = b'{%s}%s' % (digest_name.encode('ascii'), os.urandom(40))
    connection.send_bytes(mpc.CHALLENGE + message)
    response = connection.recv_bytes(256)
    try:
        _verify(authkey, message, response)
    except AuthenticationError:
        connection.send_bytes(mpc.FAILURE)
        raise
    connection.send_bytes(mpc.WELCOME)

def answer_challenge(connection, authkey):
    message = connection.recv_bytes(256)
    if not message.startswith(mpc.CHALLENGE):
        raise AuthenticationError('expected challenge')
    message = message[len(mpc.CHALLENGE):]
    if len(message) < 20:
        raise AuthenticationError('challenge too short')
    connection.send_bytes(_create_response(authkey, message))
    if connection.recv_bytes(256) != mpc.WELCOME:
        raise AuthenticationError('digest sent was rejected')

mpc.deliver_challenge = deliver_challenge
mpc.answer_challenge = answer_challenge
"#;

    /// Parses the address argument: `tcp:HOST:PORT`, `abstract:NAME` or `unix:PATH`.
    const PARSE: &str = r#"
import sys
def parse(a):
    kind, _, rest = a.partition(':')
    if kind == 'tcp':
        host, _, port = rest.rpartition(':')
        return (host, int(port))
    if kind == 'abstract':
        return '\0' + rest
    return rest
mode, address, key = sys.argv[1], parse(sys.argv[2]), sys.argv[3].encode()
if mode == 'modern':
    exec(MODERN)
"#;

    /// Python's side as a client: connect, then echo protocol.
    const PY_CLIENT: &str = r#"
from multiprocessing.connection import Client
from multiprocessing import AuthenticationError
try:
    c = Client(address, authkey=key)
except AuthenticationError as e:
    print('AuthenticationError', e, flush=True)
    sys.exit(3)
c.send_bytes(b'ping from python')
m = c.recv_bytes()
c.send_bytes(m[::-1])
big = c.recv_bytes()
c.send_bytes(big[::-1])
c.send_bytes(b'')
print('ok', flush=True)
"#;

    /// Python's side as a listener: print the address, accept one client, echo protocol.
    const PY_LISTENER: &str = r#"
from multiprocessing.connection import Listener
from multiprocessing import AuthenticationError
l = Listener(address, authkey=key)
a = l.address
print(f'{a[0]}:{a[1]}' if isinstance(a, tuple) else 'ready', flush=True)
try:
    c = l.accept()
except AuthenticationError as e:
    print('AuthenticationError', e, flush=True)
    sys.exit(3)
m = c.recv_bytes()
c.send_bytes(m.upper())
big = c.recv_bytes()
c.send_bytes(big[::-1])
print('ok', flush=True)
"#;

    /// Starts `python3` with `body` (after the helpers), or `None` with a SKIPPED line when
    /// there is no `python3`.
    fn python(body: &str, mode: &str, address: &str, key: &[u8]) -> Option<Child> {
        let script = format!("MODERN = {MODERN:?}\n{PARSE}\n{body}");
        let spawned = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(mode)
            .arg(address)
            .arg(std::str::from_utf8(key).unwrap())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        match spawned {
            Ok(child) => Some(child),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("SKIPPED: python3 is not installed; the Python interop test did not run");
                None
            }
            Err(e) => panic!("cannot start python3: {e}"),
        }
    }

    /// Waits for the child at most `limit` (killing it then), and returns its exit code and
    /// output.
    fn finish(mut child: Child, limit: Duration) -> (i32, String, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "python3 did not finish within {limit:?}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            thread::sleep(Duration::from_millis(5));
        };
        let out = child.wait_with_output().unwrap();
        (
            status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn arg(address: &Address) -> String {
        match address {
            Address::Unix(p) => format!("unix:{}", p.display()),
            Address::Abstract(n) => format!("abstract:{}", String::from_utf8_lossy(n)),
            Address::Tcp(a) => format!("tcp:{}:{}", a.ip(), a.port()),
        }
    }

    /// Rust listener, Python client: the right key, then a wrong one.
    fn rust_listener_python_client(address: Address, mode: &str) {
        let listener = Listener::builder(address).authkey(b"secret").bind().unwrap();
        let Some(child) = python(PY_CLIENT, mode, &arg(listener.address()), b"secret") else {
            return;
        };
        let conn = listener.accept().unwrap();
        assert_eq!(conn.recv_bytes().unwrap(), b"ping from python");
        conn.send_bytes(b"hello").unwrap();
        assert_eq!(conn.recv_bytes().unwrap(), b"olleh");
        let big = pattern(3 << 20, 9);
        conn.send_bytes(&big).unwrap();
        let back = conn.recv_bytes().unwrap();
        assert!(back.iter().rev().eq(big.iter()), "the echo differs");
        assert_eq!(conn.recv_bytes().unwrap(), b"");
        let (code, out, err) = finish(child, LIMIT);
        assert_eq!((code, out.trim()), (0, "ok"), "python3 stderr: {err}");

        let Some(child) = python(PY_CLIENT, mode, &arg(listener.address()), b"wrong") else {
            return;
        };
        match listener.accept() {
            Err(ListenerError::Authentication(AuthenticationError::DigestWrong)) => {}
            other => panic!("expected DigestWrong, got {other:?}"),
        }
        let (code, out, err) = finish(child, LIMIT);
        assert_eq!(code, 3, "python3: {out} {err}");
        assert!(out.starts_with("AuthenticationError"), "{out}");
    }

    /// Python listener, Rust client: the right key, then a wrong one.
    fn python_listener_rust_client(address: Option<Address>, mode: &str) {
        for key in [&b"secret"[..], b"wrong"] {
            let arg_address = address.as_ref().map_or("tcp:127.0.0.1:0".to_string(), arg);
            let Some(mut child) = python(PY_LISTENER, mode, &arg_address, b"secret") else {
                return;
            };
            let mut line = String::new();
            BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
            let target = match &address {
                Some(a) => a.clone(),
                None => Address::tcp(line.trim()).unwrap(),
            };
            let r = Client::new(target).authkey(key).connect();
            if key == b"wrong" {
                match r {
                    Err(ListenerError::Authentication(AuthenticationError::DigestRejected)) => {}
                    other => panic!("expected DigestRejected, got {other:?}"),
                }
                let (code, out, err) = finish(child, LIMIT);
                assert_eq!(code, 3, "python3: {out} {err}");
                assert!(out.contains("AuthenticationError"), "{out}");
                continue;
            }
            let conn = r.unwrap();
            conn.send_bytes(b"from rust").unwrap();
            assert_eq!(conn.recv_bytes().unwrap(), b"FROM RUST");
            let big = pattern(3 << 20, 4);
            conn.send_bytes(&big).unwrap();
            let back = conn.recv_bytes().unwrap();
            assert!(back.iter().rev().eq(big.iter()));
            let (code, out, err) = finish(child, LIMIT);
            assert_eq!((code, out.trim()), (0, "ok"), "python3 stderr: {err}");
        }
    }

    #[test]
    fn python_client_to_rust_listener_legacy_md5() {
        let _w = common::watchdog(LIMIT * 2);
        rust_listener_python_client(loopback(), "legacy");
        rust_listener_python_client(Address::Unix(temp_path("py")), "legacy");
        rust_listener_python_client(abstract_address("py"), "legacy");
    }

    #[test]
    fn python_client_to_rust_listener_modern_sha256() {
        let _w = common::watchdog(LIMIT * 2);
        rust_listener_python_client(loopback(), "modern");
        rust_listener_python_client(Address::Unix(temp_path("py")), "modern");
    }

    #[test]
    fn rust_client_to_python_listener_legacy_md5() {
        let _w = common::watchdog(LIMIT * 2);
        python_listener_rust_client(None, "legacy");
        python_listener_rust_client(Some(Address::Unix(temp_path("pyl"))), "legacy");
    }

    #[test]
    fn rust_client_to_python_listener_modern_sha256() {
        let _w = common::watchdog(LIMIT * 2);
        python_listener_rust_client(None, "modern");
        python_listener_rust_client(Some(abstract_address("pyl")), "modern");
    }
}

#[cfg(not(feature = "auth"))]
#[test]
fn python_interop_needs_the_auth_feature() {
    let _w = common::watchdog(LIMIT);
    eprintln!("SKIPPED: the python3 interop tests run with --features auth");
}
