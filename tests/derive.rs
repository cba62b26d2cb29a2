//! Tests of `#[derive(Encode, Decode)]` (the `derive` feature): round trips of every shape of
//! struct and enum, generic, nested and recursive types; the exact bytes (a struct is the tuple
//! of its fields, an enum a variant tag then the fields, the same tag as `Option` and as
//! `Serde<T>`); `MIN_ENCODED_LEN`; every truncation, bad tags, the 5-byte tag of enums past
//! 255 variants, the depth limit; and a derived type sent to a child process and back.
//!
//! Run with `cargo test --features derive --test derive` (add `serde` for the comparison with
//! `Serde<T>`).
#![cfg(feature = "derive")]

#[path = "derive/big_enum.rs"]
mod big_enum;
mod common;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::time::Duration;

use multiproc::codec::{Decode, DecodeError, Decoder, MAX_DEPTH, from_bytes, to_bytes};
use multiproc::{Encode, Message, ProcessBuilder, pipe};

use big_enum::Big;

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

/// The example of the derive crate's docs.
#[derive(Debug, Clone, PartialEq, Encode, multiproc::Decode)]
struct Job {
    id: u64,
    name: String,
    args: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq, Encode, multiproc::Decode)]
enum Reply<T> {
    Done(T),
    Failed { job: u64, reason: String },
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Encode, multiproc::Decode)]
struct Point(i32, i32);

#[derive(Debug, PartialEq, Encode, multiproc::Decode)]
struct Unit;

#[derive(Debug, PartialEq, Encode, multiproc::Decode)]
struct EmptyBraces {}

#[derive(Debug, PartialEq, Encode, multiproc::Decode)]
struct EmptyParens();

#[derive(Debug, Clone, PartialEq, Encode, multiproc::Decode)]
enum Shape {
    Circle(f64),
    Rect { w: f64, h: f64 },
    Empty,
}

/// Encodes exactly like an `Option<T>`.
#[derive(Debug, PartialEq, Encode, multiproc::Decode)]
enum Maybe<T> {
    Nothing,
    Just(T),
}

/// Several type parameters, a `where` clause, a `PhantomData` (whose parameter still gets the
/// `Encode`/`Decode` bound, as every type parameter does).
#[derive(Debug, PartialEq, Encode, multiproc::Decode)]
struct Tagged<K, V, M>
where
    K: Ord,
{
    map: BTreeMap<K, V>,
    marker: PhantomData<M>,
}

#[derive(Debug, PartialEq, Encode, multiproc::Decode)]
struct Fixed<const N: usize> {
    header: u16,
    data: [u8; N],
}

/// A lifetime that decoding does not need, a defaulted type parameter with its own bound, and
/// an unsized one (behind a `Box`, encode-only since `Decode` needs `Sized`).
#[derive(Debug, PartialEq, Encode, multiproc::Decode)]
struct Odd<'a, T: Clone + Default = u16> {
    value: T,
    lifetime: PhantomData<&'a ()>,
}
#[derive(Encode)]
struct Unsized<T: ?Sized> {
    boxed: Box<T>,
}

/// Encode-only: a borrowed twin of [`Owned`].
#[derive(Encode)]
struct Borrowed<'a, T> {
    name: &'a str,
    items: &'a [T],
}

#[derive(Debug, PartialEq, Encode, multiproc::Decode)]
struct Owned<T> {
    name: String,
    items: Vec<T>,
}

/// Nested derived types, inside std containers.
#[derive(Debug, Clone, PartialEq, Encode, multiproc::Decode)]
struct Batch {
    jobs: Vec<Job>,
    shapes: BTreeMap<u8, Shape>,
    origin: Option<Point>,
    last: Result<Reply<Point>, String>,
    deadline: Option<Duration>,
}

/// Recursive through a `Box`: its `MIN_ENCODED_LEN` must not refer to itself.
#[derive(Debug, PartialEq, Encode, multiproc::Decode)]
enum List {
    Nil,
    Cons(u32, Box<List>),
}

/// Recursive through `Self` and a `Vec`.
#[derive(Debug, PartialEq, Encode, multiproc::Decode)]
struct Tree {
    value: i8,
    children: Vec<Self>,
}

/// Mutually recursive through `Box`es.
#[derive(Debug, PartialEq, Encode, multiproc::Decode)]
enum Expr {
    Lit(i64),
    Block(Box<Stmt>),
}
#[derive(Debug, PartialEq, Encode, multiproc::Decode)]
struct Stmt {
    expr: Box<Expr>,
    then: Option<Box<Stmt>>,
}

/// Field and variant names that the generated code must not confuse with its own locals, and
/// a raw identifier.
#[derive(Debug, PartialEq, Encode, multiproc::Decode)]
struct Awkward {
    out: u8,
    input: u16,
    tag: u8,
    r#type: bool,
}
#[derive(Debug, PartialEq, Encode, multiproc::Decode)]
#[allow(non_camel_case_types)]
enum r#Awkward2 {
    out { input: u8, tag: u8, index: u8 },
    r#in(u8),
}

/// Constants named like the generated code's locals, in scope where the derive expands: with
/// unhygienic locals, `tag => ...` would become a constant pattern.
#[allow(non_upper_case_globals, dead_code)]
mod hygiene {
    const tag: u8 = 1;
    const index: u32 = 1;
    const input: u8 = 1;
    const out: u8 = 1;
    const len: usize = 1;

    #[derive(Debug, PartialEq, multiproc::Encode, multiproc::Decode)]
    pub enum E {
        A(u8),
        B,
        C { x: u8 },
    }
}

/// The crate named through `#[multiproc(crate = "...")]`.
mod renamed {
    pub mod inner {
        pub use multiproc as mp;
    }

    #[derive(Debug, PartialEq, multiproc::Encode, multiproc::Decode)]
    #[multiproc(crate = "crate::renamed::inner::mp")]
    pub struct S<T> {
        pub a: T,
        pub b: (u8, bool),
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Round-trips `value`, checks that every strict prefix of its encoding is an error (never a
/// panic), and returns the bytes.
#[track_caller]
fn round_trip<T: Message + PartialEq + Debug>(value: &T) -> Vec<u8> {
    let bytes = to_bytes(value);
    assert_eq!(from_bytes::<T>(&bytes).as_ref(), Ok(value), "round trip of {value:?}");
    assert!(bytes.len() >= T::MIN_ENCODED_LEN, "{value:?} is shorter than MIN_ENCODED_LEN");
    for cut in 0..bytes.len() {
        assert!(from_bytes::<T>(&bytes[..cut]).is_err(), "{value:?} cut to {cut} bytes decoded");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(from_bytes::<T>(&longer), Err(DecodeError::TrailingBytes { count: 1 }));
    bytes
}

fn job() -> Job {
    Job { id: 7, name: "résumé".into(), args: vec![1, -2, 3] }
}

fn batch() -> Batch {
    Batch {
        jobs: vec![job(), Job { id: 8, name: String::new(), args: vec![] }],
        shapes: [(1, Shape::Circle(0.5)), (2, Shape::Rect { w: 2.0, h: -3.0 }), (3, Shape::Empty)]
            .into_iter()
            .collect(),
        origin: Some(Point(-1, 1)),
        last: Ok(Reply::Failed { job: 3, reason: "timeout".into() }),
        deadline: Some(Duration::from_millis(1500)),
    }
}

fn list(values: &[u32]) -> List {
    values.iter().rev().fold(List::Nil, |tail, &v| List::Cons(v, Box::new(tail)))
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

#[test]
fn structs_round_trip() {
    round_trip(&job());
    round_trip(&Point(i32::MIN, i32::MAX));
    round_trip(&Unit);
    round_trip(&EmptyBraces {});
    round_trip(&EmptyParens());
    round_trip(&Awkward { out: 1, input: 2, tag: 3, r#type: true });
    round_trip(&renamed::S { a: "x".to_string(), b: (9, false) });
}

#[test]
fn enums_round_trip() {
    for shape in [Shape::Circle(1.5), Shape::Rect { w: 1.0, h: f64::MAX }, Shape::Empty] {
        round_trip(&shape);
    }
    round_trip(&r#Awkward2::out { input: 1, tag: 2, index: 3 });
    round_trip(&r#Awkward2::r#in(4));
    for e in [hygiene::E::A(5), hygiene::E::B, hygiene::E::C { x: 6 }] {
        round_trip(&e);
    }
}

#[test]
fn generic_types_round_trip() {
    round_trip(&Reply::Done(job()));
    round_trip(&Reply::<Vec<Point>>::Failed { job: 1, reason: "no".into() });
    round_trip(&Reply::<()>::Cancelled);
    round_trip(&Maybe::Just(Maybe::Just(3u8)));
    round_trip(&Maybe::<String>::Nothing);
    round_trip(&Fixed::<3> { header: 0xabcd, data: [1, 2, 3] });
    round_trip(&Fixed::<0> { header: 1, data: [] });
    let odd: Odd<'_> = Odd { value: 0xbeef, lifetime: PhantomData };
    assert_eq!(round_trip(&odd), [0xef, 0xbe]);
    assert_eq!(to_bytes(&Unsized::<str> { boxed: "ab".into() }), to_bytes("ab"));
    assert_eq!(to_bytes(&Unsized::<[u8]> { boxed: Box::new([1, 2]) }), to_bytes(&vec![1u8, 2]));
    round_trip(&Tagged::<String, Point, ()> {
        map: [("a".to_string(), Point(1, 2)), ("b".to_string(), Point(3, 4))].into_iter().collect(),
        marker: PhantomData,
    });
}

#[test]
fn nested_and_recursive_types_round_trip() {
    round_trip(&batch());
    round_trip(&vec![batch(), batch()]);
    round_trip(&list(&[]));
    round_trip(&list(&[1, 2, 3]));
    round_trip(&Tree {
        value: 1,
        children: vec![
            Tree { value: 2, children: vec![] },
            Tree { value: 3, children: vec![Tree { value: 4, children: vec![] }] },
        ],
    });
    round_trip(&Stmt {
        expr: Box::new(Expr::Block(Box::new(Stmt { expr: Box::new(Expr::Lit(-1)), then: None }))),
        then: Some(Box::new(Stmt { expr: Box::new(Expr::Lit(2)), then: None })),
    });
}

#[test]
fn derived_types_are_messages_through_a_pipe() {
    let _w = common::watchdog(common::TEST_LIMIT);
    let (a, b) = pipe(true).unwrap();
    a.send(&batch()).unwrap();
    assert_eq!(b.recv::<Batch>().unwrap(), batch());
    a.send(&Unit).unwrap();
    assert_eq!(b.recv::<Unit>().unwrap(), Unit);
}

// ---------------------------------------------------------------------------------------------
// Bytes
// ---------------------------------------------------------------------------------------------

#[test]
fn a_struct_is_the_tuple_of_its_fields() {
    assert_eq!(to_bytes(&job()), to_bytes(&(7u64, "résumé", vec![1i32, -2, 3])));
    assert_eq!(to_bytes(&Point(1, -1)), [1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(to_bytes(&Point(1, -1)), to_bytes(&(1i32, -1i32)));
    assert_eq!(to_bytes(&Unit), to_bytes(&()));
    assert!(to_bytes(&EmptyBraces {}).is_empty());
    assert_eq!(
        to_bytes(&Awkward { out: 1, input: 2, tag: 3, r#type: true }),
        to_bytes(&(1u8, 2u16, 3u8, true))
    );
    let b = batch();
    assert_eq!(
        to_bytes(&b),
        to_bytes(&(&b.jobs, &b.shapes, &b.origin, &b.last, &b.deadline)),
        "nested derived types inside std containers"
    );
    // Decoding goes the other way too: the tuple's bytes decode as the struct.
    assert_eq!(from_bytes::<Job>(&to_bytes(&(7u64, "résumé", vec![1i32, -2, 3]))), Ok(job()));
}

#[test]
fn a_borrowed_struct_encodes_like_its_owned_twin() {
    let items = [1u32, 2, 3];
    let bytes = to_bytes(&Borrowed { name: "n", items: &items });
    assert_eq!(bytes, to_bytes(&("n", &items[..])));
    assert_eq!(
        from_bytes::<Owned<u32>>(&bytes),
        Ok(Owned { name: "n".into(), items: items.to_vec() })
    );
}

#[test]
fn an_enum_is_a_tag_byte_then_the_fields() {
    assert_eq!(to_bytes(&Shape::Circle(1.5)), to_bytes(&(0u8, 1.5f64)));
    assert_eq!(to_bytes(&Shape::Rect { w: 2.0, h: 3.0 }), to_bytes(&(1u8, 2.0f64, 3.0f64)));
    assert_eq!(to_bytes(&Shape::Empty), [2]);
    assert_eq!(
        to_bytes(&Reply::<u8>::Failed { job: 7, reason: "timeout".into() }),
        to_bytes(&(1u8, 7u64, "timeout"))
    );
    // The same tag as `Option`, both ways.
    assert_eq!(to_bytes(&Maybe::Just(5u16)), to_bytes(&Some(5u16)));
    assert_eq!(to_bytes(&Maybe::<u16>::Nothing), to_bytes(&None::<u16>));
    assert_eq!(from_bytes::<Maybe<String>>(&to_bytes(&Some("s"))), Ok(Maybe::Just("s".into())));
    assert_eq!(from_bytes::<Option<u8>>(&to_bytes(&Maybe::Just(1u8))), Ok(Some(1)));
}

#[test]
fn variant_indices_past_254_take_five_bytes() {
    assert_eq!(round_trip(&Big::V0), [0]);
    assert_eq!(round_trip(&Big::V253), [253]);
    assert_eq!(round_trip(&Big::V254(9)), [254, 9]);
    assert_eq!(round_trip(&Big::V255 { x: 0x0102 }), [255, 255, 0, 0, 0, 2, 1]);
    assert_eq!(round_trip(&Big::V256), [255, 0, 1, 0, 0]);
    assert_eq!(round_trip(&Big::V299("x".into())), to_bytes(&(255u8, 299u32, "x")));
    assert_eq!(<Big as Decode>::MIN_ENCODED_LEN, 1);

    // Index 300 does not exist; the 5-byte form of an index below 255 is not canonical.
    for bad in [&[255, 44, 1, 0, 0][..], &[255, 255, 255, 255, 255], &[255, 3, 0, 0, 0]] {
        match from_bytes::<Big>(bad) {
            Err(DecodeError::Invalid(msg)) => assert!(msg.contains("enum Big"), "{msg}"),
            other => panic!("{bad:?} decoded as {other:?}"),
        }
    }
    assert_eq!(
        from_bytes::<Big>(&[255, 1]),
        Err(DecodeError::Truncated { needed: 4, available: 1 })
    );
}

#[test]
#[cfg(feature = "serde")]
fn the_same_bytes_as_serde_derived_twins() {
    use multiproc::codec::Serde;

    #[derive(serde::Serialize)]
    enum SerdeShape {
        Circle(f64),
        Rect { w: f64, h: f64 },
        Empty,
    }
    #[derive(serde::Serialize)]
    struct SerdeJob<'a> {
        id: u64,
        name: &'a str,
        args: Vec<i32>,
    }

    assert_eq!(to_bytes(&Serde(SerdeShape::Circle(1.5))), to_bytes(&Shape::Circle(1.5)));
    assert_eq!(
        to_bytes(&Serde(SerdeShape::Rect { w: 1.0, h: 2.0 })),
        to_bytes(&Shape::Rect { w: 1.0, h: 2.0 })
    );
    assert_eq!(to_bytes(&Serde(SerdeShape::Empty)), to_bytes(&Shape::Empty));
    assert_eq!(
        to_bytes(&Serde(SerdeJob { id: 7, name: "résumé", args: vec![1, -2, 3] })),
        to_bytes(&job())
    );
}

// ---------------------------------------------------------------------------------------------
// MIN_ENCODED_LEN
// ---------------------------------------------------------------------------------------------

#[test]
fn min_encoded_len_is_the_sum_of_the_fields() {
    assert_eq!(<Job as Decode>::MIN_ENCODED_LEN, 8 + 8 + 8);
    assert_eq!(<Point as Decode>::MIN_ENCODED_LEN, 8);
    assert_eq!(<Unit as Decode>::MIN_ENCODED_LEN, 0);
    assert_eq!(<EmptyBraces as Decode>::MIN_ENCODED_LEN, 0);
    assert_eq!(<Fixed<5> as Decode>::MIN_ENCODED_LEN, 2 + 5);
    assert_eq!(<renamed::S<u32> as Decode>::MIN_ENCODED_LEN, 4 + 2);
    // Enums: one tag byte plus the smallest variant.
    assert_eq!(<Shape as Decode>::MIN_ENCODED_LEN, 1);
    assert_eq!(<Maybe<u64> as Decode>::MIN_ENCODED_LEN, 1);
    assert_eq!(<Reply<(u64, u64)> as Decode>::MIN_ENCODED_LEN, 1);
    #[derive(Encode, multiproc::Decode)]
    enum NoUnit {
        A(u32, u32),
        B { x: u16 },
        C(u64),
    }
    assert_eq!(<NoUnit as Decode>::MIN_ENCODED_LEN, 1 + 2);
    // Fields that may recurse (a `Box`, or naming the type itself) count 0.
    assert_eq!(<List as Decode>::MIN_ENCODED_LEN, 1);
    assert_eq!(<Tree as Decode>::MIN_ENCODED_LEN, 1);
    assert_eq!(<Stmt as Decode>::MIN_ENCODED_LEN, 0, "`Option<Box<Stmt>>` names `Stmt`");
    assert_eq!(<Expr as Decode>::MIN_ENCODED_LEN, 1);
    assert_eq!(<Batch as Decode>::MIN_ENCODED_LEN, 8 + 8 + 1 + 1 + 1);
}

#[test]
fn a_hostile_length_of_derived_elements_is_rejected_before_allocating() {
    // Three `Job`s need at least 72 bytes; 71 are there.
    let mut bytes = to_bytes(&3u64);
    bytes.extend_from_slice(&[0; 71]);
    assert_eq!(
        from_bytes::<Vec<Job>>(&bytes),
        Err(DecodeError::LengthTooLarge { len: 3, available: 71 })
    );
    let mut bytes = to_bytes(&u64::MAX);
    bytes.push(0);
    assert!(matches!(from_bytes::<Vec<List>>(&bytes), Err(DecodeError::LengthTooLarge { .. })));
    assert!(matches!(
        from_bytes::<Vec<Unit>>(&bytes[..8]),
        Err(DecodeError::LengthTooLarge { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

#[test]
fn an_unknown_variant_tag_is_an_error() {
    for tag in 3..=u8::MAX {
        assert_eq!(
            from_bytes::<Shape>(&[tag, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(DecodeError::InvalidTag { tag, ty: "Shape" })
        );
    }
    assert_eq!(
        from_bytes::<Maybe<u8>>(&[2, 0]),
        Err(DecodeError::InvalidTag { tag: 2, ty: "Maybe" })
    );
    assert_eq!(
        from_bytes::<r#Awkward2>(&[2, 0]),
        Err(DecodeError::InvalidTag { tag: 2, ty: "Awkward2" })
    );
    // Nested: the error comes out of the container.
    let mut bytes = to_bytes(&vec![Shape::Empty, Shape::Empty]);
    *bytes.last_mut().unwrap() = 9;
    assert_eq!(
        from_bytes::<Vec<Shape>>(&bytes),
        Err(DecodeError::InvalidTag { tag: 9, ty: "Shape" })
    );
    assert_eq!(from_bytes::<Shape>(&[]), Err(DecodeError::Truncated { needed: 1, available: 0 }));
}

#[test]
fn an_enum_without_variants_decodes_nothing() {
    #[derive(Debug, Encode, multiproc::Decode)]
    enum Never {}
    assert_eq!(<Never as Decode>::MIN_ENCODED_LEN, 1);
    assert!(matches!(
        from_bytes::<Never>(&[0]),
        Err(DecodeError::InvalidTag { tag: 0, ty: "Never" })
    ));
    assert!(from_bytes::<Option<Never>>(&[0]).unwrap().is_none());
}

#[test]
fn truncated_input_is_an_error_at_every_length() {
    // `round_trip` cuts every value; here a bigger one, and each error is `Truncated` (or a
    // sequence length found too large for what is left).
    let bytes = to_bytes(&batch());
    for cut in 0..bytes.len() {
        let mut input = Decoder::new(&bytes[..cut]);
        match Batch::decode(&mut input) {
            Err(DecodeError::Truncated { .. } | DecodeError::LengthTooLarge { .. }) => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn deep_recursion_hits_the_depth_limit_not_the_stack() {
    // `Cons(0, Box::new(...))` nested far past MAX_DEPTH: each level is tag 1 and a `u32`.
    let depth = MAX_DEPTH as usize * 4;
    let mut bytes = Vec::new();
    for _ in 0..depth {
        bytes.extend_from_slice(&[1, 0, 0, 0, 0]);
    }
    bytes.push(0);
    assert_eq!(from_bytes::<List>(&bytes), Err(DecodeError::DepthLimitExceeded));
    // Within the limit, it decodes.
    let ok = list(&vec![0; MAX_DEPTH as usize - 1]);
    assert_eq!(from_bytes::<List>(&to_bytes(&ok)), Ok(ok));
}

// ---------------------------------------------------------------------------------------------
// Across processes
// ---------------------------------------------------------------------------------------------

#[test]
fn a_derived_type_crosses_a_pipe_to_a_child_and_back() {
    let _w = common::watchdog(common::TEST_LIMIT);
    let (parent_end, child_end) = pipe(true).unwrap();
    // SIGKILL when this thread ends, so a failing test leaves no child behind.
    let child =
        ProcessBuilder::new().death_signal(Some(multiproc::Signal::KILL)).target(move || {
            let mut done = 0u32;
            loop {
                match child_end.recv::<Reply<Batch>>().unwrap() {
                    Reply::Done(batch) => {
                        let ids: Vec<u64> = batch.jobs.iter().map(|j| j.id).collect();
                        child_end.send(&Reply::Done((ids, batch.shapes))).unwrap();
                        done += 1;
                    }
                    Reply::Failed { job, reason } => {
                        child_end.send(&Reply::<()>::Failed { job: job + 1, reason }).unwrap();
                    }
                    Reply::Cancelled => return Maybe::Just(Point(done as i32, -1)),
                }
            }
        });
    child.start().unwrap();

    for _ in 0..3 {
        parent_end.send(&Reply::Done(batch())).unwrap();
        let Reply::Done((ids, shapes)) =
            parent_end.recv::<Reply<(Vec<u64>, BTreeMap<u8, Shape>)>>().unwrap()
        else {
            panic!("expected Done");
        };
        assert_eq!(ids, [7, 8]);
        assert_eq!(shapes, batch().shapes);
    }
    parent_end.send(&Reply::<Batch>::Failed { job: 41, reason: "late".into() }).unwrap();
    assert_eq!(
        parent_end.recv::<Reply<()>>().unwrap(),
        Reply::Failed { job: 42, reason: "late".into() }
    );
    parent_end.send(&Reply::<Batch>::Cancelled).unwrap();
    // The child's return value is a derived type too.
    assert_eq!(child.join().unwrap(), Maybe::Just(Point(3, -1)));
}
