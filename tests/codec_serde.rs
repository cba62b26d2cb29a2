//! Tests of `codec::Serde<T>` (the `serde` feature): round trips of derived structs and enums
//! of every shape, byte-for-byte agreement with the native codec, every truncation and random
//! mutations of valid encodings, hostile lengths (with an allocation-counting allocator to show
//! they cost nothing), bad tags, the depth limit, the parts of serde a non-self-describing
//! format cannot support, and a serde struct sent to a child process and back.
//!
//! Run with `cargo test --features serde --test codec_serde`.
#![cfg(feature = "serde")]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::{self, Debug};
use std::marker::PhantomData;
use std::time::Duration;

use multiproc::codec::{
    self, Decode, DecodeError, Decoder, EMPTY_ELEMENT_BUDGET, Encode, MAX_DEPTH, Serde,
    SerializeError, from_bytes, to_bytes,
};
use multiproc::{ProcessBuilder, pipe};
use serde::de::{self, DeserializeOwned, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

// ---------------------------------------------------------------------------------------------
// Allocation accounting (per thread, so parallel tests do not disturb each other)
// ---------------------------------------------------------------------------------------------

struct CountingAlloc;

thread_local! {
    /// Largest single allocation (or reallocation target) since the last reset.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the slot may be gone while a thread is being torn down.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the only
// extra work is a thread-local `Cell` update, which neither allocates nor unwinds.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's layout, which satisfies `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: `ptr`/`layout` come from a previous allocation by `System` (through us) and
        // the caller guarantees `new_size` is valid for `layout.align()`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Runs `f` and returns its result with the largest allocation it made on this thread.
fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|l| l.set(0));
    let r = f();
    (r, LARGEST.with(Cell::get))
}

// ---------------------------------------------------------------------------------------------
// Types under test
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Unit;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Meters(f64);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pair(i16, String);

/// Every kind of variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Empty,
    Circle(f64),
    Rect(f64, f64),
    Poly { points: Vec<(i32, i32)>, closed: bool },
}

/// Bytes through `serialize_bytes`/`deserialize_byte_buf` (what `serde_bytes` does), rather
/// than a sequence of `u8`s.
#[derive(Debug, Clone, PartialEq)]
struct Bytes(Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Job {
    id: u64,
    name: String,
    tags: BTreeSet<String>,
    shapes: Vec<Shape>,
    limits: HashMap<String, Option<Vec<u32>>>,
    blob: Bytes,
    nested: Option<Option<Box<Job>>>,
    deadline: Option<Duration>,
    unit: Unit,
    length: Meters,
    pair: Pair,
    tuple: (u8, char, bool, i128, u128),
    array: [u16; 3],
    #[serde(skip)]
    local_only: u32,
    phantom: PhantomData<u8>,
}

fn job(id: u64, nested: Option<Option<Box<Job>>>) -> Job {
    Job {
        id,
        name: format!("job #{id}, ünïcode 吃了吗 🦀"),
        tags: ["b", "a", ""].into_iter().map(String::from).collect(),
        shapes: vec![
            Shape::Empty,
            Shape::Circle(1.5),
            Shape::Rect(-2.0, f64::INFINITY),
            Shape::Poly { points: vec![(0, 0), (i32::MIN, i32::MAX)], closed: true },
            Shape::Poly { points: vec![], closed: false },
        ],
        limits: [("none".to_string(), None), ("some".to_string(), Some(vec![1, 2, u32::MAX]))]
            .into(),
        blob: Bytes((0..=255).collect()),
        nested,
        deadline: Some(Duration::new(5, 999_999_999)),
        unit: Unit,
        length: Meters(-0.0),
        pair: Pair(-7, String::new()),
        tuple: (255, '\u{10ffff}', true, i128::MIN, u128::MAX),
        array: [1, 2, 3],
        local_only: 0,
        phantom: PhantomData,
    }
}

/// Encodes `v` through `Serde`, decodes it back, compares, and checks that every strict prefix
/// fails to decode. Returns the encoding.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(v: &T) -> Vec<u8> {
    let bytes = to_bytes(&Serde(v));
    assert_eq!(Serde(v).try_to_bytes().unwrap(), bytes);
    let Serde(back) = from_bytes::<Serde<T>>(&bytes).unwrap_or_else(|e| panic!("{v:?}: {e}"));
    assert_eq!(&back, v);
    for cut in 0..bytes.len() {
        assert!(from_bytes::<Serde<T>>(&bytes[..cut]).is_err(), "{v:?} decoded from {cut} bytes");
    }
    bytes
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

#[test]
fn derived_structs_and_enums_round_trip() {
    round_trip(&Unit);
    assert!(round_trip(&Unit).is_empty());
    assert_eq!(round_trip(&Meters(2.5)), 2.5f64.to_bits().to_le_bytes());
    round_trip(&Pair(i16::MIN, "pair".into()));
    round_trip(&job(1, None));
    round_trip(&job(2, Some(None)));
    let deep = job(3, Some(Some(Box::new(job(4, Some(Some(Box::new(job(5, None)))))))));
    round_trip(&deep);
    round_trip(&vec![job(6, None), job(7, Some(None))]);
}

#[test]
fn every_kind_of_variant_round_trips_with_a_one_byte_tag() {
    assert_eq!(round_trip(&Shape::Empty), [0]);
    assert_eq!(
        round_trip(&Shape::Circle(1.0)),
        [&[1u8][..], &1f64.to_bits().to_le_bytes()].concat()
    );
    let rect = round_trip(&Shape::Rect(1.0, 2.0));
    assert_eq!(rect[0], 2);
    assert_eq!(rect.len(), 1 + 16);
    let poly = round_trip(&Shape::Poly { points: vec![(1, 2)], closed: true });
    assert_eq!(poly, [&[3u8][..], &to_bytes(&vec![(1i32, 2i32)]), &[1]].concat());
    round_trip(&vec![Shape::Empty, Shape::Circle(f64::MIN_POSITIVE), Shape::Empty]);
    round_trip(&Some(Shape::Rect(0.0, -0.0)));
}

#[test]
fn nested_options_vecs_maps_strings_and_bytes_round_trip() {
    round_trip(&Some(Some(Some(3u8))));
    round_trip(&Some(None::<Option<u8>>));
    round_trip(&vec![vec![Some("a".to_string()), None], vec![], vec![None]]);
    let map: BTreeMap<String, Vec<Option<BTreeMap<u8, String>>>> = [
        ("x".to_string(), vec![None, Some(BTreeMap::from([(1, "one".to_string())]))]),
        (String::new(), vec![]),
    ]
    .into();
    round_trip(&map);
    let hm: HashMap<(u8, bool), HashSet<char>> =
        [((1, true), HashSet::from(['a', '🦀'])), ((0, false), HashSet::new())].into();
    round_trip(&hm);
    round_trip(&VecDeque::from(vec![String::from("x"); 3]));
    round_trip(&"x".repeat(100_000));
    round_trip(&Bytes(vec![]));
    round_trip(&Bytes(vec![0xff; 70_000]));
    round_trip(&(Bytes(vec![1]), Some(Bytes(vec![2, 3]))));
    round_trip(&Ok::<Vec<u8>, String>(vec![1, 2]));
    round_trip(&Err::<Vec<u8>, String>("failed".into()));
    round_trip(&[Some(1u64), None, Some(u64::MAX)]);
    round_trip(&Vec::<()>::new());
    round_trip(&vec![(); 1000]);
    round_trip(&vec![Unit; 10]);
    round_trip(&Box::<str>::from("boxed"));
}

#[test]
fn floats_keep_their_exact_bit_patterns() {
    for bits in [0u64, 1 << 63, 0x7ff8_0000_0000_0001, 0xfff0_0000_0000_0abc] {
        let v = f64::from_bits(bits);
        let Serde(back): Serde<f64> = from_bytes(&to_bytes(&Serde(v))).unwrap();
        assert_eq!(back.to_bits(), bits);
    }
    let v = f32::from_bits(0x7fc0_0001);
    let Serde(back): Serde<f32> = from_bytes(&to_bytes(&Serde(v))).unwrap();
    assert_eq!(back.to_bits(), 0x7fc0_0001);
}

#[test]
fn borrowed_fields_point_into_the_input() {
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct View<'a> {
        key: &'a str,
        blob: &'a [u8],
        #[serde(borrow)]
        text: Cow<'a, str>,
    }
    let bytes = Serde(View { key: "key", blob: &[1, 2, 3], text: Cow::Borrowed("cow") })
        .try_to_bytes()
        .unwrap();
    let Serde(view) = Serde::<View<'_>>::from_slice(&bytes).unwrap();
    assert_eq!(view.key, "key");
    assert_eq!(view.blob, [1, 2, 3]);
    assert!(matches!(view.text, Cow::Borrowed("cow")));
    let range = bytes.as_ptr_range();
    assert!(range.contains(&view.key.as_ptr()) && range.contains(&view.blob.as_ptr()));
    // Trailing bytes are an error, as in `codec::from_bytes`.
    let long = [&bytes[..], &[0]].concat();
    assert_eq!(
        Serde::<View<'_>>::from_slice(&long).unwrap_err(),
        DecodeError::TrailingBytes { count: 1 }
    );
}

#[test]
fn sequences_of_unknown_or_wrong_length_are_counted() {
    /// Serializes the even numbers of its vector through an iterator of unknown length.
    struct Evens(Vec<u32>);
    impl Serialize for Evens {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0.iter().filter(|v| *v % 2 == 0))
        }
    }
    /// Announces a length of 100 and writes 2 elements.
    struct Liar;
    impl Serialize for Liar {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(100))?;
            seq.serialize_element(&1u8)?;
            seq.serialize_element(&2u8)?;
            seq.end()
        }
    }
    let bytes = to_bytes(&Serde(Evens((0..10).collect())));
    assert_eq!(from_bytes::<Vec<u32>>(&bytes).unwrap(), [0, 2, 4, 6, 8]);
    assert_eq!(from_bytes::<Vec<u8>>(&to_bytes(&Serde(Liar))).unwrap(), [1, 2]);
}

#[test]
fn enums_past_255_variants_use_the_long_tag() {
    /// An enum with 300 unit variants, by hand (a derive would need 300 names).
    #[derive(Debug, PartialEq)]
    struct Big(u32);
    impl Serialize for Big {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_unit_variant("Big", self.0, "V")
        }
    }
    impl<'de> Deserialize<'de> for Big {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Big;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("enum Big")
                }
                fn visit_enum<A: de::EnumAccess<'de>>(self, a: A) -> Result<Big, A::Error> {
                    let (i, variant): (u32, _) = a.variant()?;
                    de::VariantAccess::unit_variant(variant)?;
                    Ok(Big(i))
                }
            }
            d.deserialize_enum("Big", &[], V)
        }
    }
    assert_eq!(round_trip(&Big(0)), [0]);
    assert_eq!(round_trip(&Big(254)), [254]);
    assert_eq!(round_trip(&Big(255)), [255, 255, 0, 0, 0]);
    assert_eq!(round_trip(&Big(299)), [255, 0x2b, 1, 0, 0]);
    // The long form of a small index is not canonical: rejected.
    assert!(matches!(
        from_bytes::<Serde<Big>>(&[255, 7, 0, 0, 0]),
        Err(DecodeError::Invalid(msg)) if msg.contains("variant index 7 of enum Big")
    ));
}

// ---------------------------------------------------------------------------------------------
// Agreement with the native codec
// ---------------------------------------------------------------------------------------------

/// `Serde(v)` and `v` encode to the same bytes, and each decodes the other's.
fn same_as_native<T>(v: T)
where
    T: Serialize + DeserializeOwned + Encode + Decode + PartialEq + Debug,
{
    let native = to_bytes(&v);
    let serde = to_bytes(&Serde(&v));
    assert_eq!(serde, native, "{v:?}");
    assert_eq!(from_bytes::<Serde<T>>(&native).unwrap().0, v);
    assert_eq!(from_bytes::<T>(&serde).unwrap(), v);
}

#[test]
fn std_types_encode_exactly_as_in_the_native_codec() {
    same_as_native(0x0102_0304u32);
    same_as_native(-5i8);
    same_as_native(u128::MAX);
    same_as_native(i128::MIN);
    same_as_native(usize::MAX);
    same_as_native(isize::MIN);
    same_as_native(1.5f32);
    same_as_native(true);
    same_as_native('🦀');
    same_as_native(());
    same_as_native(String::from("héllo"));
    same_as_native(vec![1u8, 2, 3]);
    same_as_native(vec![-1i64, 0, i64::MAX]);
    same_as_native(vec![String::from("a"), String::new()]);
    same_as_native(VecDeque::from(vec![1u16, 2]));
    same_as_native(Some(Some(7u8)));
    same_as_native(None::<String>);
    same_as_native(Ok::<u8, String>(1));
    same_as_native(Err::<u8, String>("e".into()));
    same_as_native((1u8, -2i32, String::from("t"), [3u64; 4]));
    same_as_native([[1u8, 2], [3, 4]]);
    same_as_native(<[u32; 0]>::default());
    same_as_native(BTreeMap::from([(1u8, vec!['x']), (2, vec![])]));
    same_as_native(HashMap::from([(String::from("k"), Some(1.0f64))]));
    same_as_native(BTreeSet::from([3i32, -3]));
    same_as_native(HashSet::from([String::from("s")]));
    same_as_native(Duration::new(u64::MAX, 999_999_999));
    same_as_native(Box::new(5u32));
    same_as_native(Box::<str>::from("b"));
    same_as_native(PhantomData::<String>);
    // A struct is the tuple of its fields; a serde enum's tag is the byte a native enum uses.
    let native = to_bytes(&(7u64, String::from("n"), Some(vec![1u8])));
    #[derive(Serialize)]
    struct S {
        a: u64,
        b: String,
        c: Option<Vec<u8>>,
    }
    assert_eq!(to_bytes(&Serde(S { a: 7, b: "n".into(), c: Some(vec![1]) })), native);
    assert_eq!(to_bytes(&Serde(Shape::Circle(2.0))), to_bytes(&(1u8, 2.0f64)));
}

#[test]
fn serde_values_nest_inside_native_containers_and_impls() {
    let v = vec![Serde(Shape::Empty), Serde(Shape::Circle(1.0))];
    let bytes = to_bytes(&v);
    assert_eq!(from_bytes::<Vec<Serde<Shape>>>(&bytes).unwrap(), v);
    // From a hand-written `Decode`.
    #[derive(Debug, PartialEq)]
    struct Envelope {
        seq: u32,
        body: Shape,
    }
    impl Encode for Envelope {
        fn encode(&self, out: &mut Vec<u8>) {
            self.seq.encode(out);
            Serde(&self.body).encode(out);
        }
    }
    impl Decode for Envelope {
        fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
            Ok(Envelope { seq: input.decode()?, body: input.decode::<Serde<Shape>>()?.0 })
        }
    }
    let e = Envelope { seq: 9, body: Shape::Rect(1.0, 2.0) };
    assert_eq!(from_bytes::<Envelope>(&to_bytes(&e)).unwrap(), e);
}

// ---------------------------------------------------------------------------------------------
// Invalid and hostile input
// ---------------------------------------------------------------------------------------------

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    from_bytes::<Serde<T>>(bytes).map(Serde::into_inner)
}

#[test]
fn invalid_tags_and_primitives_are_rejected() {
    assert_eq!(decode::<Shape>(&[4]).unwrap_err(), DecodeError::InvalidTag { tag: 4, ty: "Shape" });
    assert_eq!(
        decode::<Shape>(&[254]).unwrap_err(),
        DecodeError::InvalidTag { tag: 254, ty: "Shape" }
    );
    assert!(matches!(
        decode::<Shape>(&[255, 0, 1, 0, 0]).unwrap_err(),
        DecodeError::Invalid(msg) if msg.contains("variant index 256 for enum Shape")
    ));
    assert_eq!(
        decode::<Option<u8>>(&[2, 0]).unwrap_err(),
        DecodeError::InvalidTag { tag: 2, ty: "Option" }
    );
    assert_eq!(
        decode::<Result<u8, u8>>(&[9, 0]).unwrap_err(),
        DecodeError::InvalidTag { tag: 9, ty: "Result" }
    );
    assert_eq!(decode::<bool>(&[2]).unwrap_err(), DecodeError::InvalidBool(2));
    assert_eq!(
        decode::<char>(&0xd800u32.to_le_bytes()).unwrap_err(),
        DecodeError::InvalidChar(0xd800)
    );
    let bad = [to_bytes(&3u64), vec![b'a', 0xff, b'b']].concat();
    assert_eq!(decode::<String>(&bad).unwrap_err(), DecodeError::InvalidUtf8 { valid_up_to: 1 });
    assert_eq!(
        decode::<u32>(&[1, 2]).unwrap_err(),
        DecodeError::Truncated { needed: 4, available: 2 }
    );
    assert_eq!(decode::<Unit>(&[0]).unwrap_err(), DecodeError::TrailingBytes { count: 1 });
    // serde's own checks become `Invalid` with serde's message.
    let nanos = [to_bytes(&u64::MAX), to_bytes(&1_000_000_000u32)].concat();
    assert!(matches!(decode::<Duration>(&nanos).unwrap_err(), DecodeError::Invalid(_)));
    #[derive(Debug, Deserialize)]
    #[serde(try_from = "u8")]
    struct Even(#[allow(dead_code)] u8);
    impl TryFrom<u8> for Even {
        type Error = String;
        fn try_from(v: u8) -> Result<Self, String> {
            if v.is_multiple_of(2) { Ok(Even(v)) } else { Err(format!("{v} is odd")) }
        }
    }
    assert_eq!(decode::<Even>(&[3]).unwrap_err(), DecodeError::Invalid("3 is odd".into()));
    assert!(decode::<Even>(&[4]).is_ok());
}

/// A length prefix, then `tail`.
fn claims(len: u64, tail: &[u8]) -> Vec<u8> {
    [&len.to_le_bytes()[..], tail].concat()
}

fn assert_cheap_failure<T: DeserializeOwned + Debug>(bytes: &[u8]) {
    let (r, largest) = largest_allocation(|| decode::<T>(bytes));
    assert!(r.is_err(), "{} decoded from a hostile length: {r:?}", std::any::type_name::<T>());
    assert!(
        largest <= 64 * 1024,
        "{} allocated {largest} bytes for a hostile length",
        std::any::type_name::<T>()
    );
}

/// In memory 4 KiB, on the wire one byte.
#[derive(Debug, Serialize, Deserialize)]
struct Fat {
    tag: u8,
    #[serde(skip)]
    _pad: Option<[u8; 4096]>,
}

#[test]
fn hostile_lengths_fail_without_allocating() {
    for len in [u64::MAX, u64::MAX / 2, 1 << 40, 1 << 32, u32::MAX as u64, 1 << 20, 100] {
        let bytes = claims(len, &[7; 64]);
        assert_cheap_failure::<Vec<u8>>(&bytes);
        assert_cheap_failure::<Bytes>(&bytes);
        assert_cheap_failure::<String>(&bytes);
        assert_cheap_failure::<Vec<u64>>(&bytes);
        assert_cheap_failure::<Vec<String>>(&bytes);
        assert_cheap_failure::<Vec<Shape>>(&bytes);
        assert_cheap_failure::<VecDeque<i32>>(&bytes);
        assert_cheap_failure::<HashMap<u8, u8>>(&bytes);
        assert_cheap_failure::<BTreeMap<u8, Vec<u8>>>(&bytes);
        assert_cheap_failure::<HashSet<u32>>(&bytes);
        assert_cheap_failure::<Vec<(u8, u64)>>(&bytes);
        // A hostile length one level down.
        assert_cheap_failure::<Vec<Vec<u8>>>(&claims(1, &bytes));
        assert_cheap_failure::<Option<String>>(&[&[1u8][..], &bytes].concat());
        assert_cheap_failure::<Shape>(&[&[3u8][..], &bytes].concat());
    }
    // Elements much larger in memory than on the wire: reserved capacity follows the input
    // (64 bytes left: at most 64 elements), not the announced count.
    let (r, largest) = largest_allocation(|| decode::<Vec<Fat>>(&claims(u64::MAX, &[1; 64])));
    assert!(matches!(r, Err(DecodeError::Truncated { .. })), "{r:?}");
    assert!(largest <= 64 * size_of::<Fat>(), "{largest}");
}

#[test]
fn zero_sized_elements_are_bounded_by_the_budget() {
    for len in [u64::MAX, 1 << 40, EMPTY_ELEMENT_BUDGET as u64 + 1] {
        assert_cheap_failure::<Vec<()>>(&claims(len, &[]));
        assert_cheap_failure::<Vec<Unit>>(&claims(len, &[]));
        assert_cheap_failure::<Vec<[u8; 0]>>(&claims(len, &[]));
        assert_cheap_failure::<BTreeSet<()>>(&claims(len, &[]));
        assert_cheap_failure::<HashMap<(), ()>>(&claims(len, &[]));
        assert_cheap_failure::<Vec<PhantomData<u64>>>(&claims(len, &[]));
    }
    assert!(matches!(
        decode::<Vec<()>>(&claims(u64::MAX, &[])),
        Err(DecodeError::LengthTooLarge { len: u64::MAX, available: 0 })
    ));
    // One budget per decode, shared by every sequence in it.
    let half = EMPTY_ELEMENT_BUDGET as u64 / 2 + 1;
    assert!(decode::<Vec<()>>(&claims(half, &[])).is_ok());
    let two = [claims(half, &[]), claims(half, &[])].concat();
    assert!(matches!(decode::<(Vec<()>, Vec<()>)>(&two), Err(DecodeError::LengthTooLarge { .. })));
    assert_eq!(decode::<Vec<()>>(&claims(1000, &[])).unwrap().len(), 1000);
}

#[test]
fn lengths_that_fit_exactly_allocate_only_what_they_hold() {
    let payload = vec![0xabu8; 100_000];
    let bytes = to_bytes(&Serde(Bytes(payload.clone())));
    let (v, largest) = largest_allocation(|| decode::<Bytes>(&bytes).unwrap());
    assert_eq!(v.0, payload);
    assert_eq!(largest, payload.len());
}

/// A recursive type with two ways down: a boxed option and a vector.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Tree {
    Leaf(i16),
    Link(Option<Box<Tree>>),
    Node(Vec<Tree>),
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    // Each `Link(Some(..))` is two levels (the enum and the `Some`), encoded as [1, 1].
    let chain = |links: usize| {
        let mut bytes = [1u8, 1].repeat(links);
        bytes.extend([0, 5, 0]); // Leaf(5)
        bytes
    };
    let limit = MAX_DEPTH as usize;
    let ok = chain(limit / 2 - 1);
    let tree = decode::<Tree>(&ok).unwrap();
    assert_eq!(to_bytes(&Serde(&tree)), ok);
    assert_eq!(decode::<Tree>(&chain(limit / 2)).unwrap_err(), DecodeError::DepthLimitExceeded);
    assert_eq!(decode::<Tree>(&chain(1_000_000)).unwrap_err(), DecodeError::DepthLimitExceeded);
    // Through vectors: [2] then a count of 1, repeated.
    let mut nodes = [&[2u8][..], &1u64.to_le_bytes()].concat().repeat(1_000_000);
    nodes.extend([0, 0, 0]);
    assert_eq!(decode::<Tree>(&nodes).unwrap_err(), DecodeError::DepthLimitExceeded);
    // The depth is given back after each value: a wide tree is fine.
    let wide = Tree::Node((0..300).map(|i| Tree::Node(vec![Tree::Leaf(i)])).collect());
    round_trip(&wide);
}

#[test]
fn deep_nesting_within_the_limit_fits_a_small_stack() {
    // The test threads' stacks are 2 MiB; run the deepest legal decode on 256 KiB to show
    // there is room to spare even in a debug build.
    let mut bytes = [1u8, 1].repeat(MAX_DEPTH as usize / 2 - 1);
    bytes.extend([0, 5, 0]);
    let t = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || decode::<Tree>(&bytes).map(drop))
        .unwrap();
    assert_eq!(t.join().unwrap(), Ok(()));
}

#[test]
fn every_truncation_and_random_mutations_never_panic() {
    let valid = to_bytes(&Serde(job(1, Some(Some(Box::new(job(2, None)))))));
    for cut in 0..valid.len() {
        assert!(decode::<Job>(&valid[..cut]).is_err(), "decoded from {cut} bytes");
    }
    // Flip, replace or delete bytes at seeded positions; whatever decodes must re-encode to
    // a value that decodes the same.
    let mut x = 0x1234_5678_9abc_def1u64;
    let mut next = move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let shapes = to_bytes(&Serde(vec![
        Tree::Node(vec![Tree::Leaf(1), Tree::Link(None)]),
        Tree::Link(Some(Box::new(Tree::Leaf(-1)))),
    ]));
    for round in 0..20_000 {
        let base = if round % 2 == 0 { &valid } else { &shapes };
        let mut bytes = base.clone();
        for _ in 0..=next() % 4 {
            let at = (next() as usize) % bytes.len().max(1);
            match next() % 3 {
                0 if !bytes.is_empty() => bytes[at] ^= 1 << (next() % 8),
                1 if !bytes.is_empty() => bytes[at] = next() as u8,
                _ if !bytes.is_empty() => drop(bytes.remove(at)),
                _ => {}
            }
        }
        let (r, largest) = largest_allocation(|| {
            if round % 2 == 0 {
                decode::<Job>(&bytes).map(|j| to_bytes(&Serde(j)))
            } else {
                decode::<Vec<Tree>>(&bytes).map(|t| to_bytes(&Serde(t)))
            }
        });
        assert!(largest <= (1 << 20), "round {round}: {largest} bytes allocated");
        if let Ok(again) = r {
            // A Job holds a HashMap (any entry order): compare lengths; Trees are canonical.
            if round % 2 == 0 {
                assert_eq!(again.len(), bytes.len(), "round {round}");
            } else {
                assert_eq!(again, bytes, "round {round}");
            }
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut x = 42u64;
    let mut next = || {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        x
    };
    for _ in 0..20_000 {
        // Mostly small bytes, so that counts and tags are often plausible.
        let len = (next() >> 58) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| (next() >> 61) as u8).collect();
        let _ = decode::<Job>(&bytes);
        let _ = decode::<Vec<Tree>>(&bytes);
        let _ = decode::<(Shape, Option<String>, BTreeMap<char, Bytes>)>(&bytes);
        // Sequences of zero-byte elements are left to the budget test: each random count
        // would run the full budget (a million elements, slow in a debug build).
        let _ = decode::<BTreeMap<Unit, Option<Meters>>>(&bytes);
    }
}

// ---------------------------------------------------------------------------------------------
// What a non-self-describing format cannot do
// ---------------------------------------------------------------------------------------------

#[test]
fn deserialize_any_is_a_clear_error() {
    #[derive(Debug, Serialize, Deserialize)]
    #[serde(untagged)]
    enum Loose {
        Int(u32),
        Text(String),
    }
    let bytes = to_bytes(&Serde(Loose::Int(3)));
    assert_eq!(bytes, 3u32.to_le_bytes());
    match decode::<Loose>(&bytes) {
        Err(DecodeError::Custom(msg)) => {
            assert!(msg.contains("deserialize_any is not supported"), "{msg}");
            assert!(msg.contains("not self-describing"), "{msg}");
        }
        other => panic!("expected a Custom error, got {other:?}"),
    }
    #[derive(Debug, Serialize, Deserialize)]
    #[serde(tag = "type")]
    enum Internal {
        A { x: u8 },
    }
    let bytes = to_bytes(&Serde(Internal::A { x: 1 }));
    assert!(matches!(decode::<Internal>(&bytes), Err(DecodeError::Custom(_))));
}

#[test]
fn a_skipped_field_fails_to_serialize_instead_of_misaligning() {
    #[derive(Debug, Serialize)]
    struct Sparse {
        a: u8,
        #[serde(skip_serializing_if = "Option::is_none")]
        b: Option<u8>,
        c: u8,
    }
    // Not skipped: fine.
    assert_eq!(Serde(Sparse { a: 1, b: Some(2), c: 3 }).try_to_bytes().unwrap(), [1, 1, 2, 3]);
    // Skipped: an error, and `try_encode` leaves the buffer as it was.
    let mut out = vec![9];
    let err: SerializeError =
        Serde(Sparse { a: 1, b: None, c: 3 }).try_encode(&mut out).unwrap_err();
    assert!(err.message().contains("skip_serializing_if"), "{err}");
    assert_eq!(out, [9]);
    // `Encode::encode` cannot return it: it panics, naming the type.
    let panic =
        std::panic::catch_unwind(|| to_bytes(&Serde(Sparse { a: 1, b: None, c: 3 }))).unwrap_err();
    let msg = panic.downcast_ref::<String>().unwrap();
    assert!(msg.contains("Sparse") && msg.contains("skip_serializing_if"), "{msg}");
}

#[test]
fn a_serialize_error_is_returned_by_try_encode() {
    struct Fails;
    impl Serialize for Fails {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refused"))
        }
    }
    let mut out = vec![1, 2];
    let err = Serde((5u8, vec![Fails])).try_encode(&mut out).unwrap_err();
    assert_eq!(err.to_string(), "refused");
    assert_eq!(out, [1, 2]);
}

#[test]
fn a_visitor_that_stops_early_is_an_error() {
    /// Reads only the first element of a sequence.
    #[derive(Debug)]
    struct First(#[allow(dead_code)] u8);
    impl<'de> Deserialize<'de> for First {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = First;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a sequence")
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<First, A::Error> {
                    Ok(First(a.next_element()?.unwrap_or(0)))
                }
            }
            d.deserialize_seq(V)
        }
    }
    let bytes = to_bytes(&vec![1u8, 2, 3]);
    assert!(matches!(
        decode::<First>(&bytes),
        Err(DecodeError::Invalid(msg)) if msg.contains("only 1 of 3")
    ));
    assert!(decode::<First>(&to_bytes(&vec![1u8])).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Across processes
// ---------------------------------------------------------------------------------------------

#[test]
fn a_serde_struct_crosses_a_pipe_to_a_child_and_back() {
    let _w = common::watchdog(common::TEST_LIMIT);
    let (parent_end, child_end) = pipe(true).unwrap();
    let child =
        ProcessBuilder::new().death_signal(Some(multiproc::Signal::KILL)).target(move || {
            // Echo every job with its id doubled and a shape added, until `None`.
            let mut seen = 0u32;
            while let Serde(Some(mut j)) = child_end.recv::<Serde<Option<Job>>>().unwrap() {
                j.id *= 2;
                j.shapes.push(Shape::Circle(f64::from(seen)));
                child_end.send(&Serde(&j)).unwrap();
                seen += 1;
            }
            Serde(Shape::Poly { points: vec![(seen as i32, 0)], closed: true })
        });
    child.start().unwrap();
    for i in 0..50u64 {
        let sent = job(i, (i % 3 == 0).then(|| Some(Box::new(job(i + 1000, None)))));
        parent_end.send(&Serde(Some(&sent))).unwrap();
        let Serde(mut got): Serde<Job> = parent_end.recv().unwrap();
        assert_eq!(got.id, i * 2);
        assert_eq!(got.shapes.pop(), Some(Shape::Circle(i as f64)));
        got.id = i;
        assert_eq!(got, sent);
    }
    parent_end.send(&Serde(None::<Job>)).unwrap();
    let Serde(last) = child.join().unwrap();
    assert_eq!(last, Shape::Poly { points: vec![(50, 0)], closed: true });
    // A message that is not a `Job` is a decode error on the receiving side.
    let (a, b) = pipe(true).unwrap();
    a.send(&Serde(Shape::Empty)).unwrap();
    assert!(matches!(b.recv::<Serde<Job>>(), Err(multiproc::ConnectionError::Decode(_))));
}

#[test]
fn the_codec_module_reexports_are_usable() {
    // `codec::Serde` and `codec::SerializeError` are reachable, and `Serde` derefs.
    let mut s: Serde<Vec<u8>> = vec![1].into();
    s.push(2);
    assert_eq!(s.len(), 2);
    assert_eq!(s.clone().into_inner(), [1, 2]);
    let _ = codec::to_bytes(&s);
}
