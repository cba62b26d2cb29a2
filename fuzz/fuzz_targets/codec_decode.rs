//! Decodes arbitrary bytes as one of several message types (picked by the first byte) and
//! checks what a successful decode promises:
//!
//! - types with one encoding per value re-encode to exactly the input;
//! - the others (maps, whose entries may come in any order) re-encode to bytes of the same
//!   length that decode to an equal value;
//! - a failed decode is an error, never a panic, a hang or a huge allocation (run with
//!   `-malloc_limit_mb=64`: any input of a few KiB that allocates more is a bug);
//! - decoding a byte string from a buffer taken over (what a queue does for `Vec<u8>` and
//!   `String`) gives exactly what decoding the same bytes behind their length prefix gives.

#![no_main]

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Debug;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use multiproc::codec::{Decode, DecodeError, Decoder, Encode, from_bytes, to_bytes};

/// A recursive type: its depth is driven by the input, bounded by `MAX_DEPTH`.
#[derive(Debug, PartialEq)]
enum Tree {
    Leaf(i16),
    Node(Vec<Tree>),
    Link(Option<Box<Tree>>),
}

impl Encode for Tree {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Tree::Leaf(v) => {
                0u8.encode(out);
                v.encode(out);
            }
            Tree::Node(children) => {
                1u8.encode(out);
                children.encode(out);
            }
            Tree::Link(next) => {
                2u8.encode(out);
                next.encode(out);
            }
        }
    }
}

impl Decode for Tree {
    const MIN_ENCODED_LEN: usize = 2;

    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        match input.decode::<u8>()? {
            0 => Ok(Tree::Leaf(input.decode()?)),
            1 => Ok(Tree::Node(input.decode()?)),
            2 => Ok(Tree::Link(input.decode()?)),
            tag => Err(DecodeError::InvalidTag { tag, ty: "Tree" }),
        }
    }
}

/// A successful decode must re-encode to exactly `data`.
fn canonical<T: Encode + Decode + Debug>(data: &[u8]) {
    if let Ok(v) = from_bytes::<T>(data) {
        let again = to_bytes(&v);
        assert!(again == data, "{v:?} re-encoded differently");
    }
}

/// A successful decode must re-encode to bytes of the same length that decode to an equal
/// value (maps may reorder their entries).
fn stable<T: Encode + Decode + PartialEq + Debug>(data: &[u8]) {
    if let Ok(v) = from_bytes::<T>(data) {
        let again = to_bytes(&v);
        assert_eq!(again.len(), data.len(), "{v:?} re-encoded to a different length");
        let back: T = from_bytes(&again).expect("a re-encoded value decodes");
        assert_eq!(back, v);
    }
}

/// Reads a stream of primitives chosen by tag bytes straight from a `Decoder`, re-encodes
/// what was read, and compares it with the bytes consumed.
fn primitives(data: &[u8]) {
    let mut d = Decoder::new(data);
    let mut out = Vec::new();
    loop {
        let before = d.remaining();
        let Ok(tag) = d.decode::<u8>() else { break };
        tag.encode(&mut out);
        let r = match tag % 12 {
            0 => d.decode::<bool>().map(|v| v.encode(&mut out)),
            1 => d.decode::<char>().map(|v| v.encode(&mut out)),
            2 => d.decode::<u128>().map(|v| v.encode(&mut out)),
            3 => d.decode::<i16>().map(|v| v.encode(&mut out)),
            4 => d.decode::<f32>().map(|v| v.encode(&mut out)),
            5 => d.decode::<usize>().map(|v| v.encode(&mut out)),
            6 => d.decode::<Duration>().map(|v| v.encode(&mut out)),
            7 => d.decode::<String>().map(|v| v.encode(&mut out)),
            8 => d.decode::<[u16; 3]>().map(|v| v.encode(&mut out)),
            9 => d.decode::<Vec<u64>>().map(|v| v.encode(&mut out)),
            10 => d.take_array::<3>().map(|v| out.extend_from_slice(&v)),
            _ => d.decode_seq_len::<u32>().and_then(|n| {
                codec_len(n, &mut out);
                d.take(n.min(d.remaining())).map(|b| out.extend_from_slice(b))
            }),
        };
        if r.is_err() {
            // Nothing after a failed read is checked; what was read before it is.
            out.truncate(out.len() - 1);
            let consumed = data.len() - before;
            assert!(out == data[..consumed], "primitive stream re-encoded differently");
            return;
        }
    }
    assert!(out == data, "primitive stream re-encoded differently");
}

/// `T::from_byte_string(data)` must agree with decoding `data` behind its length prefix, and a
/// byte string must hand back exactly `data` as its bytes.
fn byte_string<T: Encode + Decode + PartialEq + Debug>(data: &[u8]) {
    let mut wire = Vec::with_capacity(8 + data.len());
    codec_len(data.len(), &mut wire);
    wire.extend_from_slice(data);
    let taken = T::from_byte_string(data.to_vec());
    assert_eq!(taken, from_bytes::<T>(&wire));
    if let (true, Ok(v)) = (T::BYTE_STRING, &taken) {
        assert_eq!(v.as_byte_string(), Some(data));
    }
}

fn codec_len(n: usize, out: &mut Vec<u8>) {
    multiproc::codec::encode_len(n, out);
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, data)) = data.split_first() else { return };
    match which % 12 {
        0 => canonical::<Vec<(u32, String, Option<Vec<u8>>)>>(data),
        1 => stable::<BTreeMap<String, Vec<i64>>>(data),
        2 => canonical::<(bool, char, f64)>(data),
        3 => canonical::<Vec<Option<Result<Box<str>, Vec<()>>>>>(data),
        4 => stable::<HashMap<u16, BTreeSet<char>>>(data),
        5 => canonical::<(Duration, [u8; 5], usize, isize, i128, VecDeque<f32>)>(data),
        6 => canonical::<Tree>(data),
        7 => byte_string::<String>(data),
        8 => byte_string::<std::sync::Arc<Vec<u8>>>(data),
        9 => byte_string::<Box<String>>(data),
        10 => byte_string::<(u32, Vec<u16>)>(data),
        _ => primitives(data),
    }
});
