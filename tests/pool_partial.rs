//! `pool::partial` (Python's `functools.partial`): a function sent by address with data sent as
//! a message, under every start method, through every kind of call (`map`, `apply_async`,
//! `imap`, `starmap`, the executor's `submit` and `map`, a function process), and data that
//! does not decode in the worker failing its tasks without breaking the pool.
//!
//! `init_before_main!` makes the fork server before the test harness starts its threads, and
//! lets `spawn`ed copies of this binary take over before the harness runs.

mod common;

use std::time::Duration;

use common::{TEST_LIMIT, watchdog};
use multiproc::codec::{DecodeError, Decoder};
use multiproc::pool::partial;
use multiproc::{Context, Decode, Encode, PoolError, StartMethod};

multiproc::init_before_main!();

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Forkserver, StartMethod::Spawn];
const WAIT: Duration = Duration::from_secs(20);

/// Python: `def scale(k, x): return k * x`.
fn scale(k: &u64, x: u64) -> u64 {
    k * x
}

/// Looks `i` up in a table sent with the call.
fn lookup(table: &[u32], i: usize) -> u32 {
    table[i]
}

fn greet(greeting: &str, name: String) -> String {
    format!("{greeting}, {name}!")
}

/// Data and the worker's pid, to see which workers ran a call.
fn tagged(tag: &str, x: u32) -> (String, u32, u32) {
    (tag.to_owned(), x, std::process::id())
}

fn affine(ab: &(i64, i64), (x, y): (i64, i64)) -> i64 {
    ab.0 * x + ab.1 * y
}

fn fails_on_odd(k: &u32, x: u32) -> u32 {
    if x % 2 == 1 {
        panic!("odd input {x}");
    }
    k + x
}

#[test]
fn partial_runs_under_every_start_method() {
    let _w = watchdog(TEST_LIMIT);
    for m in METHODS {
        let ctx = Context::new(m);
        let pool = ctx.pool(2).unwrap();
        // Data chosen after the pool started.
        let k = 3 + m as u64;
        assert_eq!(
            pool.map(partial(scale, k), 1..=5).unwrap(),
            (1..=5).map(|x| k * x).collect::<Vec<_>>(),
            "{m}"
        );

        // Several chunks: the data reaches each of them.
        let table: Vec<u32> = (0..1000).map(|i| i * 7).collect();
        let got = pool.map_chunksize(partial(lookup, table.clone()), 0..1000usize, 7).unwrap();
        assert_eq!(got, table, "{m}");

        let hello = partial(greet, format!("Hello from {m}"));
        let r = pool.apply_async(hello.clone(), "Ada".to_string()).unwrap();
        assert_eq!(r.get_timeout(WAIT).unwrap(), format!("Hello from {m}, Ada!"));
        // The same `Partial` again (clones share the encoded data).
        assert_eq!(pool.apply(hello, "Bob".to_string()).unwrap(), format!("Hello from {m}, Bob!"));

        let it = pool.imap(partial(scale, 10), 0..20u64, 1).unwrap();
        assert_eq!(
            it.collect::<Result<Vec<_>, _>>().unwrap(),
            (0..20).map(|x| 10 * x).collect::<Vec<_>>(),
            "{m}"
        );
        let it = pool.imap(partial(scale, 2), 0..20u64, 3).unwrap();
        assert_eq!(
            it.collect::<Result<Vec<_>, _>>().unwrap(),
            (0..20).map(|x| 2 * x).collect::<Vec<_>>(),
            "{m}"
        );
        let mut unordered: Vec<u64> = pool
            .imap_unordered(partial(scale, 5), 0..10u64, 2)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        unordered.sort_unstable();
        assert_eq!(unordered, (0..10).map(|x| 5 * x).collect::<Vec<_>>(), "{m}");

        // starmap: the tuple is the second argument.
        assert_eq!(
            pool.starmap(partial(affine, (2, -1)), [(1, 1), (5, 3)]).unwrap(),
            [1, 7],
            "{m}"
        );

        // A closure that captures nothing works as the function.
        let offsets = partial(|base: &[i32], i: usize| base[i] + 1, vec![10, 20, 30]);
        assert_eq!(pool.map(offsets, [2, 0, 1]).unwrap(), [31, 11, 21], "{m}");
        pool.close().unwrap();
        pool.join_timeout(WAIT).unwrap();

        let ex = ctx.executor(2).unwrap();
        let f = ex.submit(partial(scale, 6), 7).unwrap();
        assert_eq!(f.result_timeout(WAIT).unwrap(), 42, "{m}");
        let got: Vec<u64> = ex
            .map(partial(scale, 4), 0..6u64, 2, Some(WAIT))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, [0, 4, 8, 12, 16, 20], "{m}");
        ex.shutdown(true, false).unwrap();

        // A function process.
        let p = ctx.process(partial(greet, "Hi".to_string()), format!("{m}"));
        p.start().unwrap();
        assert_eq!(p.join_timeout(WAIT).unwrap(), format!("Hi, {m}!"));
    }
}

#[test]
fn each_call_carries_its_own_data() {
    let _w = watchdog(TEST_LIMIT);
    for m in METHODS {
        let pool = Context::new(m).pool(2).unwrap();
        // Calls in flight at once, each with its own data, over the same workers.
        let calls: Vec<_> = (0..8u32)
            .map(|i| {
                pool.map_async(partial(tagged, format!("call {i}")), 0..16u32, Some(3)).unwrap()
            })
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            let got = call.get_timeout(WAIT).unwrap();
            assert_eq!(got.len(), 16);
            for (x, (tag, y, _pid)) in got.into_iter().enumerate() {
                assert_eq!((tag.as_str(), y), (format!("call {i}").as_str(), x as u32), "{m}");
            }
        }
    }
}

#[test]
fn large_data_travels_with_every_chunk() {
    let _w = watchdog(TEST_LIMIT);
    for m in [StartMethod::Fork, StartMethod::Spawn] {
        let pool = Context::new(m).pool(2).unwrap();
        let table: Vec<u32> = (0..256 * 1024).map(|i: u32| i.wrapping_mul(2_654_435_761)).collect();
        let picks: Vec<usize> = (0..table.len()).step_by(4099).collect();
        let want: Vec<u32> = picks.iter().map(|&i| table[i]).collect();
        // Four items a chunk: about 16 chunks, each with the 1 MiB table.
        let got = pool.map_chunksize(partial(lookup, table), picks, 4).unwrap();
        assert_eq!(got, want, "{m}");
    }
}

#[test]
fn panics_fail_only_their_item() {
    let _w = watchdog(TEST_LIMIT);
    let pool = Context::new(StartMethod::Fork).pool(2).unwrap();
    let mut it = pool.imap(partial(fails_on_odd, 100), 0..4u32, 4).unwrap();
    assert!(matches!(it.next(), Some(Ok(100))));
    assert!(
        matches!(it.next(), Some(Err(PoolError::Panicked(ref p))) if p.message() == "odd input 1")
    );
    assert!(matches!(it.next(), Some(Ok(102))));
    assert!(matches!(it.next(), Some(Err(PoolError::Panicked(_)))));
    assert!(it.next().is_none());
}

/// Data whose `Encode` writes a `u32` and whose `Decode` reads a `u64`: it never decodes.
#[derive(Debug)]
struct Lopsided;

impl Encode for Lopsided {
    fn encode(&self, out: &mut Vec<u8>) {
        7u32.encode(out);
    }
}

impl Decode for Lopsided {
    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        input.decode::<u64>().map(|_| Lopsided)
    }
}

fn ignore(_: &Lopsided, x: u32) -> u32 {
    x
}

fn pid(_: &(), _: ()) -> u32 {
    std::process::id()
}

#[test]
fn data_that_does_not_decode_fails_its_tasks_not_the_pool() {
    let _w = watchdog(TEST_LIMIT);
    for m in METHODS {
        let pool = Context::new(m).pool(1).unwrap();
        let before = pool.apply(partial(pid, ()), ()).unwrap();
        match pool.map_chunksize(partial(ignore, Lopsided), 0..5u32, 2) {
            Err(PoolError::Decode(msg)) => assert!(msg.contains("partial's data"), "{m}: {msg}"),
            other => panic!("{m}: {other:?}"),
        }
        let each: Vec<_> = pool.imap(partial(ignore, Lopsided), 0..3u32, 2).unwrap().collect();
        assert_eq!(each.len(), 3, "{m}");
        assert!(each.iter().all(|r| matches!(r, Err(PoolError::Decode(_)))), "{m}: {each:?}");
        // The worker lives on and runs the next call.
        assert_eq!(pool.map(partial(scale, 2), [1, 2]).unwrap(), [2, 4], "{m}");
        assert_eq!(
            pool.apply(partial(pid, ()), ()).unwrap(),
            before,
            "{m}: the worker was replaced"
        );
    }
}
