//! A manager's `dict` and `list`, changed by a child process — Python's documentation example
//! for `multiprocessing.Manager`:
//!
//! ```python
//! from multiprocessing import Process, Manager
//!
//! def f(d, l):
//!     d[1] = '1'
//!     d['2'] = 2
//!     d[0.25] = None
//!     l.reverse()
//!
//! if __name__ == '__main__':
//!     with Manager() as manager:
//!         d = manager.dict()
//!         l = manager.list(range(10))
//!         p = Process(target=f, args=(d, l))
//!         p.start()
//!         p.join()
//!         print(d)
//!         print(l)
//! ```
//!
//! Python's dict mixes key and value types; here the dict is typed, so the keys are strings and
//! the values `Option<i64>`. The list has no `reverse` method on the proxy: the child reads it,
//! reverses it and writes it back. Then the manager's `Lock` and the server-side `incr` show how
//! to update a shared counter from several processes without losing updates.
//!
//! Run: `cargo run --example manager`

use multiproc::Process;
use multiproc::manager::{DictProxy, ListProxy, Manager};

multiproc::init_before_main!(); // the manager's server comes from the clean fork server

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manager = Manager::start()?;
    let d: DictProxy<String, Option<i64>> = manager.dict()?;
    let l: ListProxy<i32> = manager.list(&(0..10).collect::<Vec<_>>())?;

    let (d2, l2) = (d.clone(), l.clone());
    let p = Process::new(move || {
        d2.set(&"1".into(), &Some(1)).unwrap();
        d2.set(&"2".into(), &Some(2)).unwrap();
        d2.set(&"0.25".into(), &None).unwrap();
        let mut items = l2.to_vec().unwrap();
        items.reverse();
        l2.clear().unwrap();
        l2.extend(&items).unwrap();
    });
    p.start()?;
    p.join()?;
    let mut items = d.items()?;
    items.sort();
    println!("{items:?}");
    println!("{:?}", l.to_vec()?);

    // Several processes updating one counter: a manager Lock around the read and the write
    // (what Python users do), or one atomic call in the server.
    let counts: DictProxy<String, i64> = manager.dict()?;
    let lock = manager.lock()?;
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (counts, lock) = (counts.clone(), lock.clone());
            Process::new(move || {
                for _ in 0..100 {
                    let guard = lock.lock().unwrap();
                    let n = counts.get(&"locked".into()).unwrap().unwrap_or(0);
                    counts.set(&"locked".into(), &(n + 1)).unwrap();
                    drop(guard);
                    counts.incr(&"incr".into(), 1).unwrap();
                }
            })
        })
        .collect();
    for w in &workers {
        w.start()?;
    }
    for w in &workers {
        w.join()?;
    }
    println!(
        "locked: {:?}, incr: {:?} (400 each)",
        counts.get(&"locked".into())?,
        counts.get(&"incr".into())?
    );
    manager.shutdown()?;
    Ok(())
}
