//! The manager server's reading of client input: a stream of Python-framed requests, parsed by
//! the server's own frame-header parser (`protocol::parse_frame_header`) and request decoder
//! (`protocol::decode_request`), and run against the server's own data objects
//! (`multiproc::manager::fuzzing`, built only under `cargo fuzz`).
//!
//! Input layout: byte 0 picks the frame limit (`64 << (b % 16)` bytes); the rest is the stream.
//! Half the time (byte 0 bit 7) the stream is prefixed with requests that create one object of
//! each fuzzed type, so that later requests reach their methods.
//!
//! Checks: no panic, hang or large allocation; one event per frame up to the first bad or cut
//! frame, which is the last event; `decode_request` accepts exactly the messages of at least
//! its header, and its fields are the message's bytes; every error answer encodes and decodes
//! back unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use multiproc::manager::fuzzing::{self, Event};
use multiproc::manager::protocol::{self, HEADER_LEN};

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let max = 64u64 << (mode % 16);
    let mut stream = Vec::new();
    if mode & 0x80 != 0 {
        for (typeid, init) in [
            ("dict", Vec::new()),
            ("list", multiproc::codec::to_bytes(&Vec::<Vec<u8>>::new())),
            ("Namespace", Vec::new()),
            ("Value", vec![0; 8]),
            ("Array", multiproc::codec::to_bytes(&vec![vec![0u8; 8]; 4])),
        ] {
            let mut req = Vec::new();
            let args = multiproc::codec::to_bytes(&(typeid, init, None::<String>));
            protocol::encode_request(0, protocol::CREATE, &args, &mut req);
            stream.extend(frame(&req));
        }
    }
    stream.extend_from_slice(rest);

    // The request decoder on the raw input.
    match protocol::decode_request(rest) {
        Ok(r) => {
            assert!(rest.len() >= HEADER_LEN);
            assert_eq!(r.object.to_le_bytes(), rest[..8]);
            assert_eq!(r.method.to_le_bytes(), rest[8..10]);
            assert_eq!(r.args, &rest[HEADER_LEN..]);
        }
        Err(_) => assert!(rest.len() < HEADER_LEN),
    }

    let events = fuzzing::run(&stream, max);
    for (i, e) in events.iter().enumerate() {
        match e {
            Event::Answer(answer) => {
                let mut out = Vec::new();
                protocol::encode_response(answer, &mut out);
                let back = protocol::decode_response(&out).expect("an answer decodes");
                assert_eq!(back.map(<[u8]>::to_vec), answer.clone());
            }
            Event::Refused | Event::Truncated => assert_eq!(i, events.len() - 1),
        }
    }
});
