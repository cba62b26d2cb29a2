//! Decodes arbitrary bytes through `codec::Serde<T>` (the serde bridge) as one of several
//! derived types, picked by the first byte, and checks what a successful decode promises:
//!
//! - types with one encoding per value re-encode to exactly the input;
//! - types holding maps re-encode to bytes no longer than the input (entries may come in any
//!   order, and serde's maps keep the last of duplicate keys, which the native codec would
//!   reject) that decode to an equal value and re-encode to the same length again;
//! - a failed decode is an error, never a panic, a stack overflow, a hang or a huge allocation
//!   (run with `-malloc_limit_mb=64`).

#![no_main]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use multiproc::codec::{Serde, from_bytes, to_bytes};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A recursive enum with every kind of variant: depth is driven by the input.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Tree {
    Empty,
    Leaf(i16),
    Pair(Box<Tree>, Box<Tree>),
    Node { children: Vec<Tree>, label: Option<String> },
    Link(Option<Box<Tree>>),
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Unit;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Record {
    id: u64,
    name: String,
    flags: (bool, char, u8),
    values: Vec<Option<i32>>,
    ratio: f32,
    unit: Unit,
    big: (i128, u128),
    array: [u16; 3],
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Index {
    by_name: HashMap<String, Vec<u32>>,
    // No floats here: `stable` compares with `==`, and NaN != NaN.
    ordered: BTreeMap<u8, Option<(u64, String, Unit)>>,
}

/// A successful decode must re-encode to exactly `data`.
fn canonical<T: Serialize + DeserializeOwned + Debug>(data: &[u8]) {
    if let Ok(Serde(v)) = from_bytes::<Serde<T>>(data) {
        let again = to_bytes(&Serde(&v));
        assert!(again == data, "{v:?} re-encoded differently");
    }
}

/// A successful decode must re-encode to bytes no longer than `data` (hash maps may reorder
/// their entries, and serde's maps keep only the last of duplicate keys) that decode to an
/// equal value, whose encoding has the same length again.
fn stable<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) {
    if let Ok(Serde(v)) = from_bytes::<Serde<T>>(data) {
        let again = to_bytes(&Serde(&v));
        assert!(again.len() <= data.len(), "{v:?} re-encoded to more bytes");
        let Serde(back): Serde<T> = from_bytes(&again).expect("a re-encoded value decodes");
        assert_eq!(back, v);
        assert_eq!(to_bytes(&Serde(&back)).len(), again.len(), "{v:?} re-encoded unstably");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, data)) = data.split_first() else { return };
    match which % 6 {
        0 => canonical::<Tree>(data),
        1 => canonical::<Vec<Record>>(data),
        2 => stable::<Index>(data),
        3 => canonical::<(Option<Option<Unit>>, Vec<()>, Result<String, Vec<u8>>)>(data),
        4 => canonical::<Vec<Tree>>(data),
        _ => canonical::<(String, Vec<(char, bool)>, Option<Box<Tree>>)>(data),
    }
});
