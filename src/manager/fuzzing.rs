//! Entry points for the `manager_request` fuzz target (`fuzz/`), built only by `cargo fuzz`
//! (`cfg(fuzzing)`): a stream of Python-framed requests read with the server's own frame
//! parser and request decoder, and run against the server's own data objects.

use std::collections::HashMap;

use super::error::{ErrorKind, RemoteError};
use super::protocol::{self as p, args, decode_request, parse_frame_header};
use super::registry::{Object, Registry};
use super::sync_objects::Caller;

/// What the server made of one frame of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The request's answer.
    Answer(Result<Vec<u8>, RemoteError>),
    /// The header was refused: the server answers it and closes the connection.
    Refused,
    /// The stream ended in the middle of a frame: the server closes the connection.
    Truncated,
}

/// Reads `stream` as the server does (frames of at most `max` bytes) and runs each request
/// against objects of the non-blocking types (`dict`, `list`, `Namespace`, `Value`, `Array`;
/// other typeids are refused, since their calls may block). Returns one event per frame.
pub fn run(stream: &[u8], max: u64) -> Vec<Event> {
    let registry = Registry::default();
    let mut objects: HashMap<u64, Object> = HashMap::new();
    let mut next = 1u64;
    let dead = || false;
    let caller = Caller { conn: 1, alive: &dead };
    let mut events = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let (len, header) = match parse_frame_header(rest, max) {
            Ok(Some(h)) => h,
            Ok(None) => {
                events.push(Event::Truncated);
                break;
            }
            Err(_) => {
                events.push(Event::Refused);
                break;
            }
        };
        let body = &rest[header..];
        if (body.len() as u64) < len {
            events.push(Event::Truncated);
            break;
        }
        let (msg, after) = body.split_at(len as usize);
        rest = after;
        let answer = match decode_request(msg) {
            Err(e) => Err(RemoteError::new(ErrorKind::Protocol, e.to_string())),
            Ok(req) if req.object == p::MANAGER && req.method == p::CREATE => {
                args::<(String, Vec<u8>, Option<String>)>(req.args).and_then(|(typeid, init, _)| {
                    if !matches!(typeid.as_str(), "dict" | "list" | "Namespace" | "Value" | "Array")
                    {
                        return Err(RemoteError::new(ErrorKind::NoSuchObject, "not fuzzed"));
                    }
                    let obj = registry.make(&typeid, &init)?;
                    objects.insert(next, obj);
                    next += 1;
                    Ok(crate::codec::to_bytes(&(next - 1)))
                })
            }
            Ok(req) => match objects.get(&req.object) {
                Some(obj) => obj.call(req.method, req.args, &caller),
                None => Err(RemoteError::new(ErrorKind::NoSuchObject, "no such object")),
            },
        };
        events.push(Event::Answer(answer));
    }
    events
}
