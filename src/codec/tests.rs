//! Round trips of every implemented type, and the decoder's limits.

use super::*;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::io;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Encodes, checks the expected length, decodes, compares.
fn round_trip<T: Encode + Decode + PartialEq + Debug>(v: T) -> Vec<u8> {
    let bytes = to_bytes(&v);
    let back: T = from_bytes(&bytes).unwrap_or_else(|e| panic!("{v:?}: {e}"));
    assert_eq!(back, v);
    // Every strict prefix fails to decode.
    for cut in 0..bytes.len() {
        assert!(from_bytes::<T>(&bytes[..cut]).is_err(), "{v:?} decoded from {cut} bytes");
    }
    assert!(bytes.len() >= T::MIN_ENCODED_LEN, "{v:?} shorter than MIN_ENCODED_LEN");
    bytes
}

#[test]
fn integers_round_trip_at_their_extremes() {
    macro_rules! ints {
        ($($t:ty),*) => {$(
            for v in [<$t>::MIN, <$t>::MAX, 0 as $t, 1 as $t, <$t>::MAX / 3] {
                assert_eq!(round_trip(v).len(), size_of::<$t>());
            }
        )*};
    }
    ints!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128);
    for v in [usize::MIN, usize::MAX, 12345] {
        assert_eq!(round_trip(v).len(), 8);
    }
    for v in [isize::MIN, isize::MAX, -1] {
        assert_eq!(round_trip(v).len(), 8);
    }
    assert_eq!(to_bytes(&i128::MIN), {
        let mut b = [0u8; 16];
        b[15] = 0x80;
        b
    });
    assert_eq!(to_bytes(&0x0102_0304u32), [4, 3, 2, 1]);
}

#[test]
fn floats_keep_their_exact_bit_patterns() {
    for bits in [0u64, 1 << 63, 0x7ff8_0000_0000_0001, 0xfff0_0000_0000_0abc, 0x7ff0_0000_0000_0000]
    {
        let v = f64::from_bits(bits);
        let back: f64 = from_bytes(&to_bytes(&v)).unwrap();
        assert_eq!(back.to_bits(), bits);
    }
    for bits in [0u32, 0x7fc0_0001, 0xffa0_0003, 0x0000_0001] {
        let v = f32::from_bits(bits);
        let back: f32 = from_bytes(&to_bytes(&v)).unwrap();
        assert_eq!(back.to_bits(), bits);
    }
    round_trip(f64::INFINITY);
    round_trip(f32::MIN_POSITIVE);
    round_trip(-0.0f64);
    let v = vec![f64::NAN, 1.5, f64::NEG_INFINITY];
    let back: Vec<f64> = from_bytes(&to_bytes(&v)).unwrap();
    assert!(back.iter().zip(&v).all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn bool_char_unit_and_duration_round_trip() {
    round_trip(true);
    round_trip(false);
    for c in ['\0', 'a', 'é', '€', '🦀', char::MAX, '\u{d7ff}', '\u{e000}'] {
        round_trip(c);
    }
    assert!(round_trip(()).is_empty());
    assert!(round_trip(PhantomData::<String>).is_empty());
    for d in [Duration::ZERO, Duration::new(u64::MAX, 999_999_999), Duration::from_nanos(1)] {
        assert_eq!(round_trip(d).len(), 12);
    }
}

#[test]
fn strings_round_trip_and_str_encodes_like_string() {
    for s in ["", "a", "héllo wörld", "日本語テキスト", "🦀🦀\u{10ffff}", "nul\0inside"]
    {
        let bytes = round_trip(s.to_string());
        assert_eq!(to_bytes(s), bytes);
        assert_eq!(from_bytes::<Box<str>>(&bytes).unwrap(), Box::from(s));
    }
    // A long one too (shorter under Miri, which interprets every byte's UTF-8 check).
    round_trip("x".repeat(if cfg!(miri) { 1_000 } else { 100_000 }));
}

#[test]
fn sequences_round_trip_and_slices_encode_like_vecs() {
    round_trip(Vec::<u8>::new());
    round_trip(Vec::<()>::new());
    round_trip(vec![(); 1000]);
    let bytes: Vec<u8> = (0..=255).collect();
    let enc = round_trip(bytes.clone());
    assert_eq!(enc.len(), 8 + 256);
    assert_eq!(&enc[8..], &bytes[..]);
    assert_eq!(to_bytes(&bytes[..]), enc);
    round_trip(vec![i16::MIN, -1, 0, i16::MAX]);
    round_trip(vec![u128::MAX, 0]);
    round_trip(vec![usize::MAX, 0]);
    round_trip(vec![true, false, true]);
    round_trip(vec!['a', '🦀']);
    round_trip(vec![String::new(), "two".into()]);
    round_trip(vec![vec![1u32, 2], vec![], vec![3]]);
    round_trip(VecDeque::from(vec![1u64, 2, 3]));
    let mut dq: VecDeque<i32> = (0..10).collect();
    dq.rotate_left(4); // make it wrap around, so as_slices() returns two parts
    dq.push_back(99);
    dq.pop_front();
    let enc = round_trip(dq.clone());
    assert_eq!(enc, to_bytes(&dq.iter().copied().collect::<Vec<_>>()));
    round_trip(Box::<[u16]>::from([1, 2, 3]));
    assert_eq!(to_bytes(&vec!["a", "bc"]), to_bytes(&vec!["a".to_string(), "bc".to_string()]));
}

#[test]
fn arrays_round_trip_without_a_count() {
    assert_eq!(round_trip([7u8; 32]), [7u8; 32]);
    assert_eq!(round_trip([1u32, 2, 3]).len(), 12);
    round_trip([String::from("a"), String::from("b")]);
    round_trip([[1i8, -1], [2, -2]]);
    round_trip::<[u64; 0]>([]);
    round_trip([Some(1u8), None, Some(3)]);
    assert_eq!(<[u32; 3]>::MIN_ENCODED_LEN, 12);
}

#[test]
fn pointers_options_and_results_round_trip() {
    round_trip(Box::new(5u8));
    round_trip(Box::new(Box::new(String::from("boxed"))));
    round_trip(Rc::new(3i64));
    round_trip(Arc::new(vec![1u8]));
    assert_eq!(to_bytes(&&&7u16), to_bytes(&7u16));
    round_trip(None::<u32>);
    assert_eq!(round_trip(Some(0x55u8)), [1, 0x55]);
    round_trip(Some(None::<u8>));
    round_trip(Some(Some(())));
    round_trip(Ok::<u8, String>(1));
    round_trip(Err::<u8, String>("failed".into()));
    round_trip(Ok::<(), ()>(()));
    round_trip(Some(Ok::<Vec<u8>, i32>(vec![])));
}

#[test]
fn tuples_round_trip_up_to_twelve() {
    round_trip((1u8,));
    round_trip((1u8, -2i64));
    round_trip((1u8, String::from("x"), 3.5f64));
    round_trip((1u8, 2u16, 3u32, 4u64, 5u128, 6i8, 7i16, 8i32, 9i64, 10i128, 'k', true));
    assert_eq!(<(u8, u64, ())>::MIN_ENCODED_LEN, 9);
    assert_eq!(
        <(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128, char, bool)>::MIN_ENCODED_LEN,
        67
    );
}

#[test]
fn maps_and_sets_round_trip() {
    round_trip(HashMap::<u32, String>::new());
    round_trip(BTreeMap::<String, Vec<u8>>::new());
    let hm: HashMap<String, Option<u32>> =
        [("a".into(), Some(1)), ("bb".into(), None), ("日本".into(), Some(3))].into();
    round_trip(hm);
    let bm: BTreeMap<i32, (bool, char)> = [(-1, (true, 'x')), (5, (false, '🦀'))].into();
    let enc = round_trip(bm.clone());
    // A BTreeMap decodes from a HashMap's encoding (and the reverse).
    let hm: HashMap<i32, (bool, char)> = from_bytes(&enc).unwrap();
    assert_eq!(hm.len(), 2);
    assert_eq!(from_bytes::<BTreeMap<i32, (bool, char)>>(&to_bytes(&hm)).unwrap(), bm);
    round_trip(HashSet::<u8>::from([1, 2, 3]));
    round_trip(BTreeSet::from([String::from("z"), String::from("a")]));
    round_trip(BTreeSet::<()>::from([()]));
    round_trip(vec![BTreeMap::from([(1u8, vec![HashSet::from([2u16])])])]);
}

#[test]
fn nested_values_round_trip() {
    type Deep = Vec<(u32, Option<Box<(String, Vec<Option<i64>>)>>, Result<char, Vec<u8>>)>;
    let v: Deep = vec![
        (0, None, Ok('a')),
        (u32::MAX, Some(Box::new(("s".into(), vec![Some(i64::MIN), None]))), Err(vec![0, 1])),
        (7, Some(Box::new((String::new(), vec![]))), Err(vec![])),
    ];
    round_trip(v);
}

#[test]
fn duplicate_keys_are_rejected() {
    let mut bytes = to_bytes(&2u64);
    bytes.extend(to_bytes(&(1u8, 10u8)));
    bytes.extend(to_bytes(&(1u8, 20u8)));
    assert_eq!(from_bytes::<BTreeMap<u8, u8>>(&bytes), Err(DecodeError::DuplicateKey));
    assert_eq!(from_bytes::<HashMap<u8, u8>>(&bytes), Err(DecodeError::DuplicateKey));
    let set = [to_bytes(&2u64), vec![4, 4]].concat();
    assert_eq!(from_bytes::<BTreeSet<u8>>(&set), Err(DecodeError::DuplicateKey));
    assert_eq!(from_bytes::<HashSet<u8>>(&set), Err(DecodeError::DuplicateKey));
}

#[test]
fn invalid_primitives_are_rejected() {
    assert_eq!(from_bytes::<bool>(&[2]), Err(DecodeError::InvalidBool(2)));
    assert_eq!(from_bytes::<char>(&0xd800u32.to_le_bytes()), Err(DecodeError::InvalidChar(0xd800)));
    assert_eq!(
        from_bytes::<char>(&0x11_0000u32.to_le_bytes()),
        Err(DecodeError::InvalidChar(0x11_0000))
    );
    assert_eq!(
        from_bytes::<Option<u8>>(&[2, 0]),
        Err(DecodeError::InvalidTag { tag: 2, ty: "Option" })
    );
    assert_eq!(
        from_bytes::<Result<u8, u8>>(&[9, 0]),
        Err(DecodeError::InvalidTag { tag: 9, ty: "Result" })
    );
    let bad = [to_bytes(&3u64), vec![b'a', 0xff, b'b']].concat();
    assert_eq!(from_bytes::<String>(&bad), Err(DecodeError::InvalidUtf8 { valid_up_to: 1 }));
    let bad_nanos = [to_bytes(&1u64), to_bytes(&1_000_000_000u32)].concat();
    assert_eq!(from_bytes::<Duration>(&bad_nanos), Err(DecodeError::OutOfRange { ty: "Duration" }));
    assert_eq!(from_bytes::<u32>(&[1, 2]), Err(DecodeError::Truncated { needed: 4, available: 2 }));
    assert_eq!(from_bytes::<()>(&[0]), Err(DecodeError::TrailingBytes { count: 1 }));
}

#[test]
#[cfg_attr(
    miri,
    ignore = "decodes 2^20 zero-sized elements (the budget): minutes when interpreted"
)]
fn hostile_lengths_fail_before_allocating() {
    let huge = to_bytes(&u64::MAX);
    let err = |r: Result<(), DecodeError>| r.unwrap_err();
    assert!(matches!(
        err(from_bytes::<Vec<u8>>(&huge).map(drop)),
        DecodeError::LengthTooLarge { len: u64::MAX, available: 0 }
    ));
    assert!(matches!(
        err(from_bytes::<String>(&huge).map(drop)),
        DecodeError::LengthTooLarge { .. }
    ));
    assert!(matches!(
        err(from_bytes::<Vec<u64>>(&huge).map(drop)),
        DecodeError::LengthTooLarge { .. }
    ));
    assert!(matches!(
        err(from_bytes::<HashMap<u8, u8>>(&huge).map(drop)),
        DecodeError::LengthTooLarge { .. }
    ));
    // Zero-sized elements have no input to be checked against: the budget stops them.
    assert!(matches!(
        err(from_bytes::<Vec<()>>(&huge).map(drop)),
        DecodeError::LengthTooLarge { .. }
    ));
    // A length that fits exactly is fine; one more element is not.
    let bytes = [to_bytes(&3u64), vec![1, 2, 3]].concat();
    assert_eq!(from_bytes::<Vec<u8>>(&bytes).unwrap(), [1, 2, 3]);
    let bytes = [to_bytes(&4u64), vec![1, 2, 3]].concat();
    assert_eq!(
        from_bytes::<Vec<u8>>(&bytes),
        Err(DecodeError::LengthTooLarge { len: 4, available: 3 })
    );
}

#[test]
fn preallocation_is_bounded_by_the_input() {
    let d = Decoder::new(&[0; 100]);
    assert_eq!(d.prealloc_len::<u8>(usize::MAX), 100);
    assert_eq!(d.prealloc_len::<u64>(usize::MAX), 12);
    // Elements of unknown minimum size: no more memory than 4 KiB.
    assert_eq!(d.prealloc_len::<[u8; 0]>(usize::MAX), 100);
    struct Big {
        _bytes: [u8; 1024],
    }
    impl Decode for Big {
        fn decode(_: &mut Decoder<'_>) -> Result<Self, DecodeError> {
            Ok(Big { _bytes: [0; 1024] })
        }
    }
    assert_eq!(d.prealloc_len::<Big>(usize::MAX), 4);
    assert_eq!(d.prealloc_len::<Big>(2), 2);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "128 levels of recursion, interpreted, take many minutes; no unsafe code"
)]
fn depth_is_limited() {
    fn nest(depth: usize) -> Vec<u8> {
        // `depth` nested Vec<Vec<...>> with one element each, innermost empty.
        let mut bytes = Vec::new();
        for _ in 0..depth {
            bytes.extend(to_bytes(&1u64));
        }
        bytes.extend(to_bytes(&0u64));
        bytes
    }
    #[derive(Debug, PartialEq)]
    struct Tree(Vec<Tree>);
    impl Encode for Tree {
        fn encode(&self, out: &mut Vec<u8>) {
            self.0.encode(out);
        }
    }
    impl Decode for Tree {
        const MIN_ENCODED_LEN: usize = 8;
        fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
            input.decode().map(Tree)
        }
    }
    let ok = nest(MAX_DEPTH as usize - 1);
    let tree: Tree = from_bytes(&ok).unwrap();
    assert_eq!(to_bytes(&tree), ok);
    assert_eq!(from_bytes::<Tree>(&nest(MAX_DEPTH as usize)), Err(DecodeError::DepthLimitExceeded));
    assert_eq!(from_bytes::<Tree>(&nest(1_000_000)), Err(DecodeError::DepthLimitExceeded));
    // The depth is given back after each container.
    let wide = Tree((0..200).map(|_| Tree(vec![Tree(vec![])])).collect());
    round_trip(wide);
}

#[test]
fn errors_display_and_convert() {
    let e = DecodeError::Truncated { needed: 4, available: 1 };
    assert_eq!(e.to_string(), "message truncated: needed 4 more bytes, 1 left");
    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::InvalidData);
}
