//! Property-style tests of the codec and the frame reader: random values against naive models,
//! every truncation of valid encodings, mutated and random bytes, hostile length prefixes (with
//! an allocation-counting allocator to prove they cost nothing), and the frame reader fed
//! through a reader that returns short reads and `Interrupted`.
//!
//! No property-testing crate: a small seeded PRNG keeps every failure reproducible (the seed
//! is in the assertion message).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::io::{self, Read};
use std::time::Duration;

use multiproc::codec::{
    self, Decode, DecodeError, Decoder, Encode, FRAME_HEADER_LEN, FrameError,
    discard_frame_payload, encode_frame_header, encode_framed, from_bytes, read_frame,
    read_frame_into, to_bytes, write_frame,
};

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
// A seeded PRNG and random values
// ---------------------------------------------------------------------------------------------

/// splitmix64: tiny, fast, good enough for generating test values.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Small sizes most of the time, with the occasional larger one.
    fn len(&mut self) -> usize {
        match self.below(10) {
            0 => 0,
            1..=7 => self.below(8) as usize,
            _ => self.below(300) as usize,
        }
    }

    fn bool(&mut self) -> bool {
        self.next() & 1 == 1
    }

    fn char(&mut self) -> char {
        loop {
            let v = match self.below(4) {
                0 => self.below(0x80) as u32,
                1 => self.below(0x800) as u32,
                2 => self.below(0x1_0000) as u32,
                _ => self.below(0x11_0000) as u32,
            };
            if let Some(c) = char::from_u32(v) {
                return c;
            }
        }
    }

    fn string(&mut self) -> String {
        let n = self.len();
        (0..n).map(|_| self.char()).collect()
    }

    fn bytes(&mut self) -> Vec<u8> {
        let n = self.len();
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// Integers biased towards their edges.
    fn edgy(&mut self) -> u64 {
        match self.below(6) {
            0 => 0,
            1 => u64::MAX,
            2 => 1 << self.below(64),
            3 => self.below(256),
            _ => self.next(),
        }
    }

    fn f64(&mut self) -> f64 {
        match self.below(4) {
            0 => f64::from_bits(self.next()), // NaNs with payloads, subnormals, infinities
            1 => f64::NAN,
            2 => -0.0,
            _ => self.next() as f64 / 7.0,
        }
    }
}

type Record = Vec<(u32, String, Option<Vec<u8>>)>;

fn record(rng: &mut Rng) -> Record {
    let n = rng.len();
    (0..n).map(|_| (rng.edgy() as u32, rng.string(), rng.bool().then(|| rng.bytes()))).collect()
}

/// The encoded length of a `Record`, computed from the format's definition.
fn record_len(r: &Record) -> usize {
    8 + r
        .iter()
        .map(|(_, s, b)| 4 + 8 + s.len() + 1 + b.as_ref().map_or(0, |b| 8 + b.len()))
        .sum::<usize>()
}

type Index = BTreeMap<String, Vec<i64>>;

fn index(rng: &mut Rng) -> Index {
    let n = rng.len();
    (0..n).map(|_| (rng.string(), (0..rng.len()).map(|_| rng.edgy() as i64).collect())).collect()
}

type Mixed = (
    HashMap<u64, (i8, Vec<String>)>,
    VecDeque<Result<u16, Box<str>>>,
    BTreeSet<char>,
    [Option<i128>; 3],
    Duration,
    (bool, usize, isize, u128),
);

fn mixed(rng: &mut Rng) -> Mixed {
    let map = (0..rng.len())
        .map(|_| {
            (rng.edgy(), (rng.next() as i8, (0..rng.below(4)).map(|_| rng.string()).collect()))
        })
        .collect();
    let dq = (0..rng.len())
        .map(|_| if rng.bool() { Ok(rng.next() as u16) } else { Err(rng.string().into()) })
        .collect();
    let chars = (0..rng.len()).map(|_| rng.char()).collect();
    let arr = [
        rng.bool().then_some(i128::MIN),
        rng.bool().then_some(i128::MAX),
        rng.bool().then(|| (rng.next() as i128) << 64 | rng.next() as i128),
    ];
    let dur = Duration::new(rng.edgy(), rng.below(1_000_000_000) as u32);
    (
        map,
        dq,
        chars,
        arr,
        dur,
        (rng.bool(), rng.edgy() as usize, rng.edgy() as isize, rng.edgy() as u128),
    )
}

/// Decodes `bytes` as `T`, then checks re-encoding is stable: a successful decode re-encodes to
/// bytes that decode to an equal value. (Not byte-identical in general: a `HashMap` encodes in
/// its iteration order, which differs between two maps holding the same entries.)
fn check_stable<T: Encode + Decode + PartialEq + Debug>(bytes: &[u8]) -> Result<T, DecodeError> {
    let v = from_bytes::<T>(bytes)?;
    let again = to_bytes(&v);
    let v2: T = from_bytes(&again).expect("a re-encoded value decodes");
    assert_eq!(v2, v);
    Ok(v)
}

/// [`check_stable`], and for types with one encoding per value (no hash containers), the
/// second encoding is byte-identical to the first.
fn check_canonical<T: Encode + Decode + PartialEq + Debug>(bytes: &[u8]) -> Result<T, DecodeError> {
    let v = check_stable::<T>(bytes)?;
    let again = to_bytes(&v);
    assert!(to_bytes(&from_bytes::<T>(&again).unwrap()) == again, "re-encoding changed the bytes");
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// Round trips against models
// ---------------------------------------------------------------------------------------------

#[test]
fn random_records_round_trip_with_the_modelled_length() {
    for seed in 0..500 {
        let mut rng = Rng(seed);
        let r = record(&mut rng);
        let bytes = to_bytes(&r);
        assert_eq!(bytes.len(), record_len(&r), "seed {seed}");
        assert_eq!(from_bytes::<Record>(&bytes).unwrap(), r, "seed {seed}");
        // Slices and borrowed strings encode exactly like the owned types.
        let borrowed: Vec<(u32, &str, Option<&[u8]>)> =
            r.iter().map(|(a, s, b)| (*a, s.as_str(), b.as_deref())).collect();
        assert_eq!(to_bytes(&borrowed), bytes, "seed {seed}");
    }
}

#[test]
fn random_maps_round_trip() {
    for seed in 0..300 {
        let mut rng = Rng(seed);
        let ix = index(&mut rng);
        let bytes = to_bytes(&ix);
        assert_eq!(from_bytes::<Index>(&bytes).unwrap(), ix, "seed {seed}");
        // A HashMap decodes the same entries from a BTreeMap's encoding.
        let hm: HashMap<String, Vec<i64>> = from_bytes(&bytes).unwrap();
        assert_eq!(hm.into_iter().collect::<Index>(), ix, "seed {seed}");
        let m = mixed(&mut rng);
        assert_eq!(check_stable::<Mixed>(&to_bytes(&m)).unwrap(), m, "seed {seed}");
    }
}

#[test]
fn float_bit_patterns_survive_random_round_trips() {
    let mut rng = Rng(42);
    let v: Vec<(f64, f32)> =
        (0..10_000).map(|_| (rng.f64(), f32::from_bits(rng.next() as u32))).collect();
    let back: Vec<(f64, f32)> = from_bytes(&to_bytes(&v)).unwrap();
    for ((a, b), (c, d)) in v.iter().zip(&back) {
        assert_eq!(a.to_bits(), c.to_bits());
        assert_eq!(b.to_bits(), d.to_bits());
    }
}

#[test]
fn primitive_slices_encode_like_element_by_element() {
    // The bulk paths (encode_slice/decode_vec) against the per-element definition.
    let mut rng = Rng(7);
    let v: Vec<u32> = (0..1000).map(|_| rng.next() as u32).collect();
    let mut model = to_bytes(&(v.len() as u64));
    for x in &v {
        model.extend_from_slice(&x.to_le_bytes());
    }
    assert_eq!(to_bytes(&v), model);
    assert_eq!(from_bytes::<Vec<u32>>(&model).unwrap(), v);
    let b: Vec<u8> = (0..1024).map(|_| rng.next() as u8).collect();
    assert_eq!(to_bytes(&b), [&1024u64.to_le_bytes()[..], &b].concat());
    let a: [i64; 5] = [i64::MIN, -1, 0, 1, i64::MAX];
    assert_eq!(to_bytes(&a), a.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------------------------
// Truncated, mutated and random input
// ---------------------------------------------------------------------------------------------

#[test]
fn every_truncation_of_a_valid_encoding_is_an_error() {
    let mut tested = 0;
    for seed in 0.. {
        let mut rng = Rng(seed);
        let m = mixed(&mut rng);
        let bytes = to_bytes(&(record(&mut rng), index(&mut rng), m));
        if bytes.len() > 3000 {
            continue; // every cut of a big value takes quadratic time in a debug build
        }
        tested += 1;
        if tested > 25 {
            break;
        }
        for cut in 0..bytes.len() {
            let r = from_bytes::<(Record, Index, Mixed)>(&bytes[..cut]);
            assert!(
                matches!(
                    r,
                    Err(DecodeError::Truncated { .. } | DecodeError::LengthTooLarge { .. })
                ),
                "seed {seed}, cut {cut}: {r:?}"
            );
        }
        assert!(from_bytes::<(Record, Index, Mixed)>(&bytes).is_ok());
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            from_bytes::<(Record, Index, Mixed)>(&longer).unwrap_err(),
            DecodeError::TrailingBytes { count: 1 }
        );
    }
}

#[test]
fn mutated_encodings_never_panic_and_decode_stably() {
    for seed in 0..300 {
        let mut rng = Rng(seed);
        let mut bytes = to_bytes(&record(&mut rng));
        if bytes.is_empty() {
            continue;
        }
        for _ in 0..=rng.below(4) {
            let i = rng.below(bytes.len() as u64) as usize;
            bytes[i] = match rng.below(3) {
                0 => bytes[i] ^ (1 << rng.below(8)),
                1 => 0xff,
                _ => rng.next() as u8,
            };
        }
        if let Ok(r) = check_canonical::<Record>(&bytes) {
            // Records have one encoding per value: a successful decode is the input itself.
            assert!(to_bytes(&r) == bytes, "seed {seed}: decoded record re-encodes differently");
        }
        let _ = check_canonical::<Index>(&bytes);
        let _ = check_canonical::<Vec<(bool, char)>>(&bytes);
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(99);
    for _ in 0..3000 {
        let n = rng.below(64) as usize;
        let bytes: Vec<u8> = (0..n)
            .map(|_| if rng.below(4) == 0 { rng.below(3) as u8 } else { rng.next() as u8 })
            .collect();
        let _ = check_canonical::<Record>(&bytes);
        let _ = check_canonical::<Index>(&bytes);
        let _ = from_bytes::<Mixed>(&bytes);
        let _ = check_canonical::<(bool, char, u64)>(&bytes);
        let _ = check_canonical::<Vec<Option<Result<String, Vec<()>>>>>(&bytes);
        let _ = check_stable::<HashSet<Vec<u16>>>(&bytes);
        let _ = check_canonical::<Box<Option<Box<[u8; 3]>>>>(&bytes);
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile lengths
// ---------------------------------------------------------------------------------------------

/// A length prefix, then `tail`.
fn claims(len: u64, tail: &[u8]) -> Vec<u8> {
    [&len.to_le_bytes()[..], tail].concat()
}

fn assert_cheap_failure<T: Decode + Debug>(bytes: &[u8]) {
    let (r, largest) = largest_allocation(|| from_bytes::<T>(bytes));
    assert!(r.is_err(), "{} decoded from a hostile length: {r:?}", std::any::type_name::<T>());
    assert!(
        largest <= 64 * 1024,
        "{} allocated {largest} bytes for a hostile length",
        std::any::type_name::<T>()
    );
}

#[test]
fn hostile_length_prefixes_fail_without_allocating() {
    for len in [u64::MAX, u64::MAX / 2, 1 << 40, 1 << 32, u32::MAX as u64, 1 << 20, 100] {
        let bytes = claims(len, &[7; 64]);
        assert_cheap_failure::<Vec<u8>>(&bytes);
        assert_cheap_failure::<String>(&bytes);
        assert_cheap_failure::<Vec<u64>>(&bytes);
        assert_cheap_failure::<Vec<String>>(&bytes);
        assert_cheap_failure::<VecDeque<i32>>(&bytes);
        assert_cheap_failure::<HashMap<u8, u8>>(&bytes);
        assert_cheap_failure::<BTreeMap<u8, Vec<u8>>>(&bytes);
        assert_cheap_failure::<HashSet<u32>>(&bytes);
        assert_cheap_failure::<Box<[u16]>>(&bytes);
        // A hostile length one level down.
        assert_cheap_failure::<Vec<Vec<u8>>>(&claims(1, &bytes));
        assert_cheap_failure::<Option<String>>(&[&[1u8][..], &bytes].concat());
    }
}

#[test]
fn zero_sized_elements_are_bounded_by_the_budget() {
    // Elements that take no bytes cannot be checked against the input: the budget stops them
    // quickly (this would otherwise loop 2^64 times).
    for len in [u64::MAX, 1 << 40, codec::EMPTY_ELEMENT_BUDGET as u64 + 1] {
        assert_cheap_failure::<Vec<()>>(&claims(len, &[]));
        assert_cheap_failure::<Vec<[u8; 0]>>(&claims(len, &[]));
        assert_cheap_failure::<BTreeSet<()>>(&claims(len, &[]));
        assert_cheap_failure::<HashMap<(), ()>>(&claims(len, &[]));
    }
    // A budget is per decode, shared by all sequences in it.
    let half = codec::EMPTY_ELEMENT_BUDGET as u64 / 2 + 1;
    assert!(from_bytes::<Vec<()>>(&claims(half, &[])).is_ok());
    let two = [claims(half, &[]), claims(half, &[])].concat();
    assert!(matches!(
        from_bytes::<(Vec<()>, Vec<()>)>(&two),
        Err(DecodeError::LengthTooLarge { .. })
    ));
    // Legitimate zero-sized vectors well inside the budget decode.
    assert_eq!(from_bytes::<Vec<()>>(&claims(1000, &[])).unwrap().len(), 1000);
}

#[test]
fn lengths_that_fit_exactly_allocate_only_what_they_hold() {
    let payload = vec![0xabu8; 100_000];
    let bytes = to_bytes(&payload);
    let (v, largest) = largest_allocation(|| from_bytes::<Vec<u8>>(&bytes).unwrap());
    assert_eq!(v, payload);
    assert_eq!(largest, payload.len());
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    // Option<Box<Self>> is the classic linked list; a million links claimed by the input.
    #[derive(Debug, PartialEq)]
    struct List(Option<Box<List>>);
    impl Encode for List {
        fn encode(&self, out: &mut Vec<u8>) {
            self.0.encode(out);
        }
    }
    impl Decode for List {
        const MIN_ENCODED_LEN: usize = 1;
        fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
            input.decode().map(List)
        }
    }
    let mut bytes = vec![1u8; 1_000_000];
    bytes.push(0);
    assert_eq!(from_bytes::<List>(&bytes), Err(DecodeError::DepthLimitExceeded));
    let ok = [vec![1u8; 100], vec![0]].concat();
    let list = from_bytes::<List>(&ok).unwrap();
    assert_eq!(to_bytes(&list), ok);
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

/// A reader that returns at most a few bytes per call and sometimes fails with `Interrupted`.
struct Dribble<'a> {
    data: &'a [u8],
    rng: Rng,
}

impl Read for Dribble<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.rng.below(5) == 0 {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        let n = (self.rng.below(13) as usize).min(buf.len()).min(self.data.len());
        let n = if n == 0 && !buf.is_empty() { buf.len().min(self.data.len()) } else { n };
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn random_frames(rng: &mut Rng) -> Vec<Vec<u8>> {
    (0..1 + rng.below(6)).map(|_| rng.bytes()).collect()
}

fn wire(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut w = Vec::new();
    for f in frames {
        write_frame(&mut w, f).unwrap();
    }
    w
}

#[test]
fn frames_survive_short_reads_and_interrupts() {
    for seed in 0..200 {
        let mut rng = Rng(seed);
        let frames = random_frames(&mut rng);
        let data = wire(&frames);
        let mut r = Dribble { data: &data, rng: Rng(seed + 1000) };
        let mut buf = Vec::new();
        for f in &frames {
            read_frame_into(&mut r, &mut buf, None).unwrap();
            assert_eq!(&buf, f, "seed {seed}");
        }
        assert!(matches!(read_frame(&mut r, None), Err(FrameError::Eof)), "seed {seed}");
    }
}

#[test]
fn eof_at_every_position_is_eof_or_truncated() {
    let mut rng = Rng(5);
    let frames = random_frames(&mut rng);
    let data = wire(&frames);
    // Frame boundaries: offsets where a clean EOF is legitimate.
    let mut boundaries = vec![0];
    for f in &frames {
        boundaries.push(boundaries.last().unwrap() + FRAME_HEADER_LEN + f.len());
    }
    for cut in 0..=data.len() {
        let mut r = &data[..cut];
        let mut complete = 0;
        let err = loop {
            match read_frame(&mut r, None) {
                Ok(f) => {
                    assert_eq!(f, frames[complete], "cut {cut}");
                    complete += 1;
                }
                Err(e) => break e,
            }
        };
        let start = boundaries[complete];
        if cut == start {
            assert!(matches!(err, FrameError::Eof), "cut {cut}: {err:?}");
        } else {
            let expected = if cut - start < FRAME_HEADER_LEN {
                FRAME_HEADER_LEN
            } else {
                boundaries[complete + 1] - start
            };
            match err {
                FrameError::Truncated { expected: e, received } => {
                    assert_eq!(e, expected as u64, "cut {cut}");
                    assert_eq!(received, (cut - start) as u64, "cut {cut}");
                }
                other => panic!("cut {cut}: {other:?}"),
            }
        }
    }
}

#[test]
fn maxlength_rejects_long_frames_and_discarding_keeps_sync() {
    let frames = vec![vec![1u8; 10], vec![2u8; 11], vec![3u8; 3], Vec::new()];
    let data = wire(&frames);
    let mut r = &data[..];
    assert_eq!(read_frame(&mut r, Some(10)).unwrap(), frames[0]);
    match read_frame(&mut r, Some(10)) {
        Err(FrameError::TooLong { len: 11, max: 10 }) => discard_frame_payload(&mut r, 11).unwrap(),
        other => panic!("{other:?}"),
    }
    assert_eq!(read_frame(&mut r, Some(10)).unwrap(), frames[2]);
    assert_eq!(read_frame(&mut r, Some(0)).unwrap(), frames[3]);
    assert!(matches!(read_frame(&mut r, Some(0)), Err(FrameError::Eof)));
    // Discarding more than is there is a truncation.
    let mut short = &[0u8; 3][..];
    assert!(matches!(
        discard_frame_payload(&mut short, 5),
        Err(FrameError::Truncated { expected: 5, received: 3 })
    ));
}

#[test]
fn huge_claimed_lengths_followed_by_eof_cost_nothing() {
    for len in [u64::MAX, 1 << 63, 1 << 40, 1 << 31, 10 << 20] {
        for tail in [0usize, 1, 4096] {
            let data = [&encode_frame_header(len)[..], &vec![9u8; tail]].concat();
            let (r, largest) = largest_allocation(|| read_frame(&mut &data[..], None));
            match r {
                Err(FrameError::Truncated { received, .. }) => {
                    assert_eq!(received, (FRAME_HEADER_LEN + tail) as u64)
                }
                Err(FrameError::TooLong { len: l, .. }) => assert_eq!(l, len),
                other => panic!("{len}: {other:?}"),
            }
            assert!(largest <= (1 << 20) + 64 * 1024, "{len}: allocated {largest}");
        }
    }
}

#[test]
fn large_frames_arrive_whole_with_a_tight_buffer() {
    let payload: Vec<u8> = (0..(5 << 20) + 12345).map(|i: u32| (i % 251) as u8).collect();
    let data = wire(std::slice::from_ref(&payload));
    // Chunked growth never overshoots the announced length.
    let (got, largest) = largest_allocation(|| read_frame(&mut &data[..], None).unwrap());
    assert_eq!(got, payload);
    assert!(got.capacity() <= payload.len() + 64, "capacity {}", got.capacity());
    assert!(largest <= payload.len() + 64, "largest allocation {largest}");
}

#[test]
fn encode_framed_matches_header_then_payload() {
    let mut rng = Rng(11);
    for _ in 0..100 {
        let r = record(&mut rng);
        let mut framed = vec![0xee; 3];
        encode_framed(&r, &mut framed);
        let payload = to_bytes(&r);
        assert_eq!(&framed[..3], &[0xee; 3]);
        assert_eq!(framed[3..11], encode_frame_header(payload.len() as u64));
        assert_eq!(&framed[11..], &payload[..]);
        let got = read_frame(&mut &framed[3..], Some(payload.len() as u64)).unwrap();
        assert_eq!(from_bytes::<Record>(&got).unwrap(), r);
    }
}

#[test]
fn byte_strings_expose_their_bytes_and_take_a_buffer_over() {
    fn check<T: Encode + Decode + PartialEq + Debug>(v: T, bytes: &[u8]) {
        // The wire format is the length, then exactly the bytes a transport may send as they are.
        assert_eq!(v.as_byte_string(), Some(bytes));
        let mut wire = (bytes.len() as u64).to_le_bytes().to_vec();
        wire.extend_from_slice(bytes);
        assert_eq!(to_bytes(&v), wire);
        assert!(T::BYTE_STRING);
        assert_eq!(T::from_byte_string(bytes.to_vec()).unwrap(), v);
    }
    check(b"bytes".to_vec(), b"bytes");
    check(Vec::<u8>::new(), b"");
    check("h\u{e9}llo".to_string(), "h\u{e9}llo".as_bytes());
    check(std::sync::Arc::new(vec![1u8, 2, 3]), &[1, 2, 3]);
    check(Box::new("x".to_string()), b"x");
    check(std::rc::Rc::new(vec![9u8]), &[9]);
    assert_eq!(b"ab"[..].as_byte_string(), Some(&b"ab"[..]));
    assert_eq!("ab".as_byte_string(), Some(&b"ab"[..]));

    // Bytes that are not UTF-8 are the same error the ordinary decode gives.
    let bad = vec![b'a', 0xff, b'b'];
    let mut wire = 3u64.to_le_bytes().to_vec();
    wire.extend_from_slice(&bad);
    assert_eq!(String::from_byte_string(bad), Err(DecodeError::InvalidUtf8 { valid_up_to: 1 }));
    assert_eq!(from_bytes::<String>(&wire), Err(DecodeError::InvalidUtf8 { valid_up_to: 1 }));

    // Everything else is not a byte string; the default `from_byte_string` decodes what a
    // receiver of the wire (length prefix, then the bytes) would.
    assert_eq!(vec![1u16, 2].as_byte_string(), None);
    assert_eq!(7u64.as_byte_string(), None);
    const { assert!(!<Vec<u16>>::BYTE_STRING && !<u64>::BYTE_STRING && !<Option<Vec<u8>>>::BYTE_STRING) };
    assert_eq!(<(u64, u8)>::from_byte_string(vec![5]), Ok((1, 5)));
    assert!(<Vec<u16>>::from_byte_string(vec![1, 0, 2, 0]).is_err());
}
