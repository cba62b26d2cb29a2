//! Python's HMAC challenge handshake (`multiprocessing.connection.deliver_challenge` and
//! `answer_challenge`); the protocol is described on [`deliver_challenge`].

use std::time::Duration;

use hmac::{Hmac, Mac};
use md5::Md5;
use multiproc_sys::time::Deadline;
use sha2::{Sha256, Sha384};

use super::socket::is_timeout;
use super::{AuthenticationError, ListenerError, SocketConnection};

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";

/// Random bytes in a challenge (Python 3.12+'s `MESSAGE_LENGTH`).
const MESSAGE_LENGTH: usize = 40;
/// A legacy (Python 3.11 and older) challenge's length, with no `{digest}` prefix.
const LEGACY_MESSAGE_LENGTH: usize = 20;
/// A legacy reply: a bare HMAC-MD5.
const MD5_DIGEST_LEN: usize = 16;
/// Python's `_MAX_DIGEST_LEN`: the longest digest name it allows (`sha3_256`).
const MAX_DIGEST_NAME: usize = 8;
/// The longest handshake message read (Python's `recv_bytes(256)`).
const MAX_MESSAGE: usize = 256;

/// A MAC that this build computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Digest {
    Md5,
    Sha256,
    Sha384,
}

impl Digest {
    fn name(self) -> &'static str {
        match self {
            Digest::Md5 => "md5",
            Digest::Sha256 => "sha256",
            Digest::Sha384 => "sha384",
        }
    }

    fn mac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
            // HMAC takes a key of any length: `new_from_slice` cannot fail.
            let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Digest::Md5 => run::<Hmac<Md5>>(key, message),
            Digest::Sha256 => run::<Hmac<Sha256>>(key, message),
            Digest::Sha384 => run::<Hmac<Sha384>>(key, message),
        }
    }

    /// Whether `tag` is this digest's MAC of `message` under `key`, compared in constant time.
    fn verify(self, key: &[u8], message: &[u8], tag: &[u8]) -> bool {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8], tag: &[u8]) -> bool {
            let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
            mac.update(message);
            mac.verify_slice(tag).is_ok()
        }
        match self {
            Digest::Md5 => run::<Hmac<Md5>>(key, message, tag),
            Digest::Sha256 => run::<Hmac<Sha256>>(key, message, tag),
            Digest::Sha384 => run::<Hmac<Sha384>>(key, message, tag),
        }
    }
}

/// Splits a challenge or a reply into its digest and payload (Python's
/// `_get_digest_name_and_payload`): 16 or 20 bytes is the legacy form (HMAC-MD5, no prefix);
/// anything else must start with `{name}`.
fn digest_and_payload(message: &[u8]) -> Result<(Option<Digest>, &[u8]), AuthenticationError> {
    if message.len() == LEGACY_MESSAGE_LENGTH || message.len() == MD5_DIGEST_LEN {
        return Ok((None, message));
    }
    let end = message.len().min(MAX_DIGEST_NAME + 2);
    let close = message
        .first()
        .filter(|&&b| b == b'{')
        .and_then(|_| message[1..end].iter().position(|&b| b == b'}').map(|i| i + 1));
    let Some(close) = close else {
        return Err(AuthenticationError::Protocol(format!(
            "unsupported message length ({} bytes) or missing {{digest}} prefix",
            message.len()
        )));
    };
    let name = &message[1..close];
    let digest = match name {
        b"md5" => Digest::Md5,
        b"sha256" => Digest::Sha256,
        b"sha384" => Digest::Sha384,
        _ => {
            return Err(AuthenticationError::UnsupportedDigest(
                String::from_utf8_lossy(name).into_owned(),
            ));
        }
    };
    Ok((Some(digest), &message[close + 1..]))
}

/// Maps a failed handshake read: a missed deadline is [`AuthenticationError::TimedOut`].
fn read_error(e: super::ConnectionError, timeout: Option<Duration>) -> ListenerError {
    match timeout {
        Some(t) if is_timeout(&e) => {
            ListenerError::Authentication(AuthenticationError::TimedOut(t))
        }
        _ => ListenerError::Connection(e),
    }
}

/// Challenges the peer to prove it knows `authkey` (Python's `deliver_challenge`), waiting for
/// its reply as long as it takes.
///
/// [`Listener::accept`](super::Listener::accept) and [`Client::connect`](super::Client::connect)
/// run the whole handshake; these functions are for a protocol built on a
/// [`SocketConnection`] made otherwise.
///
/// # The protocol
///
/// Each side proves it knows the authkey; a [`Listener`](super::Listener) delivers a challenge
/// and then answers one, a [`Client`](super::Client) answers first and then delivers. All
/// messages are framed as on a [`SocketConnection`].
///
/// 1. The challenger sends `#CHALLENGE#` + `{sha256}` + 40 random bytes (Python 3.11 and older
///    send 20 random bytes and no `{digest}` prefix).
/// 2. The answerer replies with `{sha256}` + HMAC-SHA256(authkey, everything after
///    `#CHALLENGE#`) — or, to a 20-byte legacy challenge, with the bare 16-byte
///    HMAC-MD5(authkey, challenge), which is what Python 3.11 understands.
/// 3. The challenger checks the reply in constant time and sends `#WELCOME#` or `#FAILURE#`.
///    A bare 16-byte reply is an HMAC-MD5 (of the whole message, `{sha256}` prefix included)
///    from a legacy (Python 3.11) answerer, accepted as Python 3.12+ accepts it, so that older
///    clients can connect; an up-to-date answerer always replies with the digest it was asked
///    for.
///
/// Digests understood in a peer's message: `sha256`, `sha384` and (legacy) `md5`. Python also
/// lists `sha3_256` and `sha3_384`, which no Python `Listener`/`Client` picks by itself; a peer
/// that asks for them gets [`AuthenticationError::UnsupportedDigest`].
///
/// The random bytes come from the kernel (`getrandom(2)`); the MACs are the RustCrypto `hmac`,
/// `sha2` and `md-5` crates.
///
/// # Errors
/// [`ListenerError::Authentication`] if the reply is wrong (the peer is sent `#FAILURE#`);
/// [`ListenerError::Connection`] if the connection fails or the reply is longer than 256
/// bytes.
pub fn deliver_challenge(conn: &SocketConnection, authkey: &[u8]) -> Result<(), ListenerError> {
    deliver_challenge_before(conn, authkey, Deadline::FOREVER, None)
}

/// As [`deliver_challenge`], failing with [`AuthenticationError::TimedOut`] if the reply has
/// not arrived within `timeout`.
pub fn deliver_challenge_timeout(
    conn: &SocketConnection,
    authkey: &[u8],
    timeout: Duration,
) -> Result<(), ListenerError> {
    deliver_challenge_before(conn, authkey, Deadline::after(Some(timeout)), Some(timeout))
}

/// Answers the peer's challenge with `authkey` (Python's `answer_challenge`), waiting as long
/// as it takes.
///
/// # Errors
/// [`ListenerError::Authentication`] if the peer's first message is not a challenge, names a
/// digest this build does not compute, or the peer rejects the answer;
/// [`ListenerError::Connection`] if the connection fails.
pub fn answer_challenge(conn: &SocketConnection, authkey: &[u8]) -> Result<(), ListenerError> {
    answer_challenge_before(conn, authkey, Deadline::FOREVER, None)
}

/// As [`answer_challenge`], failing with [`AuthenticationError::TimedOut`] if the peer has not
/// finished its part within `timeout`.
pub fn answer_challenge_timeout(
    conn: &SocketConnection,
    authkey: &[u8],
    timeout: Duration,
) -> Result<(), ListenerError> {
    answer_challenge_before(conn, authkey, Deadline::after(Some(timeout)), Some(timeout))
}

/// The server's half: challenge, then answer (Python's `Listener.accept`).
pub(super) fn server_handshake(
    conn: &SocketConnection,
    authkey: &[u8],
    timeout: Option<Duration>,
) -> Result<(), ListenerError> {
    let deadline = Deadline::after(timeout);
    deliver_challenge_before(conn, authkey, deadline, timeout)?;
    answer_challenge_before(conn, authkey, deadline, timeout)
}

/// The client's half: answer, then challenge (Python's `Client`).
pub(super) fn client_handshake(
    conn: &SocketConnection,
    authkey: &[u8],
    timeout: Option<Duration>,
) -> Result<(), ListenerError> {
    let deadline = Deadline::after(timeout);
    answer_challenge_before(conn, authkey, deadline, timeout)?;
    deliver_challenge_before(conn, authkey, deadline, timeout)
}

fn deliver_challenge_before(
    conn: &SocketConnection,
    authkey: &[u8],
    deadline: Deadline,
    timeout: Option<Duration>,
) -> Result<(), ListenerError> {
    let mut random = [0u8; MESSAGE_LENGTH];
    multiproc_sys::random::getrandom(&mut random).map_err(|e| ListenerError::Io(e.into()))?;
    let mut message = b"{sha256}".to_vec();
    message.extend_from_slice(&random);
    let mut challenge = CHALLENGE.to_vec();
    challenge.extend_from_slice(&message);
    conn.send_bytes(&challenge).map_err(ListenerError::Connection)?;
    let response =
        conn.recv_bytes_before(MAX_MESSAGE, deadline).map_err(|e| read_error(e, timeout))?;
    match verify(authkey, &message, &response) {
        Ok(()) => conn.send_bytes(WELCOME).map_err(ListenerError::Connection),
        Err(e) => {
            // Tell the peer, as Python does; it may already be gone, and our error is the one
            // that matters.
            let _ = conn.send_bytes(FAILURE);
            Err(ListenerError::Authentication(e))
        }
    }
}

/// Checks the peer's `response` to our challenge `message` (Python's `_verify_challenge`).
fn verify(authkey: &[u8], message: &[u8], response: &[u8]) -> Result<(), AuthenticationError> {
    let (digest, mac) = digest_and_payload(response)?;
    let digest = digest.unwrap_or(Digest::Md5);
    if digest.verify(authkey, message, mac) {
        Ok(())
    } else {
        Err(AuthenticationError::DigestWrong)
    }
}

fn answer_challenge_before(
    conn: &SocketConnection,
    authkey: &[u8],
    deadline: Deadline,
    timeout: Option<Duration>,
) -> Result<(), ListenerError> {
    let message =
        conn.recv_bytes_before(MAX_MESSAGE, deadline).map_err(|e| read_error(e, timeout))?;
    let Some(message) = message.strip_prefix(CHALLENGE) else {
        return Err(ListenerError::Authentication(AuthenticationError::Protocol(
            "expected a challenge (#CHALLENGE#)".to_string(),
        )));
    };
    if message.len() < LEGACY_MESSAGE_LENGTH {
        return Err(ListenerError::Authentication(AuthenticationError::Protocol(format!(
            "challenge too short: {} bytes",
            message.len()
        ))));
    }
    let response = match digest_and_payload(message).map_err(ListenerError::Authentication)? {
        // A legacy challenger: a bare HMAC-MD5, as Python 3.12's `answer_challenge` replies.
        (None, _) => Digest::Md5.mac(authkey, message),
        // The MAC covers the whole message, `{digest}` prefix included.
        (Some(digest), _) => {
            let mut r = format!("{{{}}}", digest.name()).into_bytes();
            r.extend_from_slice(&digest.mac(authkey, message));
            r
        }
    };
    conn.send_bytes(&response).map_err(ListenerError::Connection)?;
    let verdict =
        conn.recv_bytes_before(MAX_MESSAGE, deadline).map_err(|e| read_error(e, timeout))?;
    if verdict == WELCOME {
        Ok(())
    } else {
        Err(ListenerError::Authentication(AuthenticationError::DigestRejected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_digest_prefixes_as_python_does() {
        assert_eq!(digest_and_payload(&[7; 20]).unwrap(), (None, &[7u8; 20][..]));
        assert_eq!(digest_and_payload(&[7; 16]).unwrap(), (None, &[7u8; 16][..]));
        assert_eq!(
            digest_and_payload(b"{sha256}abcdefghijklmnopq").unwrap().0,
            Some(Digest::Sha256)
        );
        assert_eq!(digest_and_payload(b"{md5}abcdefghijklmnopqrstu").unwrap().0, Some(Digest::Md5));
        assert!(matches!(
            digest_and_payload(b"{sha3_256}abcdefghijklmnopqrstu"),
            Err(AuthenticationError::UnsupportedDigest(d)) if d == "sha3_256"
        ));
        assert!(matches!(
            digest_and_payload(b"{whirlpool99}abcdefghijklmnopqrstu"),
            Err(AuthenticationError::Protocol(_))
        ));
        assert!(matches!(
            digest_and_payload(b"no prefix here at all"),
            Err(AuthenticationError::Protocol(_))
        ));
        assert!(matches!(digest_and_payload(b""), Err(AuthenticationError::Protocol(_))));
        assert!(matches!(digest_and_payload(b"{"), Err(AuthenticationError::Protocol(_))));
    }

    /// Known answers from Python: `hmac.new(b'key', b'message', 'md5'/'sha256').hexdigest()`.
    #[test]
    fn macs_match_python() {
        let hex = |v: Vec<u8>| v.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(hex(Digest::Md5.mac(b"key", b"message")), "4e4748e62b463521f6775fbf921234b5");
        assert_eq!(
            hex(Digest::Sha256.mac(b"key", b"message")),
            "6e9ef29b75fffc5b7abae527d58fdadb2fe42e7219011976917343065f58ed4a"
        );
        assert!(Digest::Sha256.verify(b"key", b"message", &Digest::Sha256.mac(b"key", b"message")));
        assert!(!Digest::Sha256.verify(
            b"key",
            b"message",
            &Digest::Sha256.mac(b"kez", b"message")
        ));
        assert!(!Digest::Sha256.verify(b"key", b"message", b"short"));
    }
}
