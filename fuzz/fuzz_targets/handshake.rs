//! Runs one side of the authentication handshake (`deliver_challenge` or `answer_challenge`)
//! against a peer that sends arbitrary bytes, and checks the outcome against a model of the
//! protocol.
//!
//! Input layout: byte 0 bit 0 picks the side (0: we challenge, 1: we answer); byte 1 is the
//! authkey's length (mod 32), then the authkey; the rest is everything the peer sends, after
//! which the peer shuts down its sending side (so every read ends, and a 1 s handshake timeout
//! is never reached).
//!
//! Checks: no panic, hang or large allocation; when we challenge, the handshake never succeeds
//! (the challenge is random), our first frame is a 59-byte `#CHALLENGE#{sha256}...` and a
//! `#FAILURE#` follows exactly when the peer's reply was read and judged wrong; when we
//! answer, it succeeds exactly when the model says the peer sent a valid challenge and then
//! `#WELCOME#`, and our reply has the shape the challenge asks for.

#![no_main]

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use multiproc::connection::{
    AuthenticationError, ListenerError, SocketConnection, answer_challenge_timeout,
    deliver_challenge_timeout,
};

const TIMEOUT: Duration = Duration::from_secs(1);

/// Splits one Python frame off the front of `stream`: `None` if it is cut short, negative
/// (other than the `-1` marker) or longer than `max`.
fn frame(stream: &mut &[u8], max: usize) -> Option<Vec<u8>> {
    let s = *stream;
    let head = i32::from_be_bytes(s.get(..4)?.try_into().unwrap());
    let (len, rest) = match head {
        0.. => (head as u64, &s[4..]),
        -1 => (u64::from_be_bytes(s.get(4..12)?.try_into().unwrap()), &s[12..]),
        _ => return None,
    };
    if len > max as u64 || len > rest.len() as u64 {
        return None;
    }
    *stream = &rest[len as usize..];
    Some(rest[..len as usize].to_vec())
}

/// The reply length the model expects to a challenge `message` (after `#CHALLENGE#`), or
/// `None` if the challenge is invalid or names a digest we do not compute.
fn reply_len(message: &[u8]) -> Option<usize> {
    if message.len() < 20 {
        return None;
    }
    if message.len() == 20 || message.len() == 16 {
        return Some(16); // legacy: a bare HMAC-MD5
    }
    if message.first() != Some(&b'{') {
        return None;
    }
    let end = message.len().min(10);
    let close = message[1..end].iter().position(|&b| b == b'}')? + 1;
    let digest_len = match &message[1..close] {
        b"md5" => 16,
        b"sha256" => 32,
        b"sha384" => 48,
        _ => return None,
    };
    Some(close + 1 + digest_len)
}

/// Everything our side sent. Our side has closed, possibly with the peer's bytes unread, in
/// which case the kernel ends the stream with `ECONNRESET` instead of end of file.
fn drain(peer: &mut UnixStream) -> Vec<u8> {
    let mut sent = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match peer.read(&mut buf) {
            Ok(0) => return sent,
            Ok(n) => sent.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return sent,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("reading what we sent: {e}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&opts, rest)) = data.split_first() else { return };
    let Some((&key_len, rest)) = rest.split_first() else { return };
    let key_len = usize::from(key_len % 32).min(rest.len());
    let (key, peer_bytes) = rest.split_at(key_len);

    let (ours, mut peer) = UnixStream::pair().unwrap();
    peer.write_all(peer_bytes).unwrap();
    peer.shutdown(Shutdown::Write).unwrap();
    let conn = SocketConnection::from(ours);

    if opts & 1 == 0 {
        let r = deliver_challenge_timeout(&conn, key, TIMEOUT);
        drop(conn);
        let sent = drain(&mut peer);
        let mut wire = &sent[..];
        let challenge = frame(&mut wire, 256).expect("our challenge is a frame");
        assert_eq!(challenge.len(), 11 + 8 + 40);
        assert!(challenge.starts_with(b"#CHALLENGE#{sha256}"));
        let judged = matches!(
            r,
            Err(ListenerError::Authentication(
                AuthenticationError::DigestWrong
                    | AuthenticationError::Protocol(_)
                    | AuthenticationError::UnsupportedDigest(_)
            ))
        );
        match r {
            Ok(()) => panic!("a random challenge was answered from fuzz input"),
            Err(ListenerError::Authentication(AuthenticationError::TimedOut(_))) => {
                panic!("timed out although the peer had shut down")
            }
            Err(_) => {}
        }
        let mut model = peer_bytes;
        let reply_read = frame(&mut model, 256).is_some();
        assert_eq!(judged, reply_read, "judged {judged} but reply read {reply_read}");
        if judged {
            assert_eq!(frame(&mut wire, 256).as_deref(), Some(&b"#FAILURE#"[..]));
        }
        assert!(wire.is_empty(), "more was sent: {wire:?}");
    } else {
        let r = answer_challenge_timeout(&conn, key, TIMEOUT);
        drop(conn);
        let sent = drain(&mut peer);
        let mut model = peer_bytes;
        let expected_reply = frame(&mut model, 256)
            .and_then(|m| m.strip_prefix(b"#CHALLENGE#").map(<[u8]>::to_vec))
            .and_then(|m| reply_len(&m));
        let welcomed = expected_reply.is_some()
            && frame(&mut model, 256).as_deref() == Some(&b"#WELCOME#"[..]);
        assert_eq!(r.is_ok(), welcomed, "model says {welcomed}, handshake says {r:?}");
        let mut wire = &sent[..];
        match expected_reply {
            Some(len) => {
                let reply = frame(&mut wire, 256).expect("a reply was sent");
                assert_eq!(reply.len(), len);
            }
            None => assert!(sent.is_empty(), "replied to an invalid challenge"),
        }
        assert!(wire.is_empty());
    }
});
