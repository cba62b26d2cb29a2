//! A `Decode` impl that panics on what it receives is an error of the receiving call, never an
//! unwind out of it: `codec::from_bytes`, `Queue::get`, `Connection::recv` and a pool's results
//! report `DecodeError::Panicked` (or the pool's `Decode` error), and the queue, the pipe and
//! the pool keep working for the next message.

mod common;

use common::{TEST_LIMIT, watchdog};
use multiproc::codec::{self, DecodeError, Decoder};
use multiproc::{ConnectionError, Decode, Encode, GetError, Pool, PoolError, Queue, pipe};

/// A number whose `Decode` panics on 13.
#[derive(Debug, PartialEq)]
struct Touchy(u32);

impl Encode for Touchy {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
    }
}

impl Decode for Touchy {
    fn decode(input: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let v = input.decode::<u32>()?;
        assert!(v != 13, "unlucky {v}");
        Ok(Touchy(v))
    }
}

fn is_unlucky_panic(e: &DecodeError) -> bool {
    matches!(e, DecodeError::Panicked(msg) if msg == "unlucky 13")
}

#[test]
fn from_bytes_reports_the_panic() {
    match codec::from_bytes::<Touchy>(&codec::to_bytes(&Touchy(13))) {
        Err(e) => {
            assert!(is_unlucky_panic(&e), "{e:?}");
            assert!(e.to_string().contains("unlucky 13"), "{e}");
        }
        Ok(t) => panic!("decoded {t:?}"),
    }
    // Inside a container too: the panic surfaces from the outermost call.
    let nested = codec::to_bytes(&vec![Touchy(1), Touchy(13)]);
    assert!(matches!(codec::from_bytes::<Vec<Touchy>>(&nested), Err(e) if is_unlucky_panic(&e)));
    assert_eq!(codec::from_bytes::<Touchy>(&codec::to_bytes(&Touchy(12))), Ok(Touchy(12)));
}

#[test]
fn queue_get_reports_it_and_the_queue_goes_on() {
    let _w = watchdog(TEST_LIMIT);
    let q = Queue::<Touchy>::new().unwrap();
    q.put(Touchy(13)).unwrap();
    q.put(Touchy(1)).unwrap();
    match q.get() {
        Err(GetError::Decode(e)) => assert!(is_unlucky_panic(&e), "{e:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(q.get().unwrap(), Touchy(1));
}

#[test]
fn connection_recv_reports_it_and_the_pipe_goes_on() {
    let _w = watchdog(TEST_LIMIT);
    let (a, b) = pipe(true).unwrap();
    a.send(&Touchy(13)).unwrap();
    a.send(&Touchy(2)).unwrap();
    match b.recv::<Touchy>() {
        Err(ConnectionError::Decode(e)) => assert!(is_unlucky_panic(&e), "{e:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(b.recv::<Touchy>().unwrap(), Touchy(2));
}

fn make(x: u32) -> Touchy {
    Touchy(x)
}

fn unwrap(t: Touchy) -> u32 {
    t.0
}

#[test]
fn pool_results_and_arguments_report_it_and_the_pool_goes_on() {
    let _w = watchdog(TEST_LIMIT);
    let pool = Pool::new(1).unwrap();
    // The parent's decode of a result panics.
    match pool.apply(make, 13) {
        Err(PoolError::Decode(msg)) => assert!(msg.contains("unlucky 13"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(pool.map(make, [1, 13, 2]), Err(PoolError::Decode(_))));
    let each: Vec<_> = pool.imap(make, [12, 13], 1).unwrap().collect();
    assert!(matches!(&each[0], Ok(Touchy(12))), "{each:?}");
    assert!(matches!(&each[1], Err(PoolError::Decode(_))), "{each:?}");
    // The worker's decode of an argument panics: that task fails, the worker lives on.
    let pid = pool.worker_pids();
    match pool.apply(unwrap, Touchy(13)) {
        Err(PoolError::Decode(msg)) => assert!(msg.contains("unlucky 13"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.apply(make, 5).unwrap(), Touchy(5));
    assert_eq!(pool.apply(unwrap, Touchy(6)).unwrap(), 6);
    assert_eq!(pool.worker_pids(), pid, "the worker was not replaced");
}
