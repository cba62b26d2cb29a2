//! `Manager` under load and under fire (issue 17): 8 processes × 1000 updates on one dict lose
//! nothing (with the server-side `incr` and with a manager `Lock` around a read-modify-write);
//! a server killed in the middle of a call is a prompt `Gone`, never a hang; the server dies
//! with its creator, even on `SIGKILL` (P10); the server comes from the clean fork server.
//!
//! `init_before_main!` makes the fork server before the harness starts its threads, so
//! managers here are launched from it. Every test has a watchdog.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{TEST_LIMIT, eventually, watchdog};
use multiproc::manager::{DictProxy, Manager, ManagerError, QueueProxy};
use multiproc::sys::process::procfs::is_running;
use multiproc::{Process, Signal, pipe};

multiproc::init_before_main!();

const PROCS: usize = 8;
const UPDATES: i64 = 1000;

fn run_all(procs: Vec<Process<()>>) {
    for p in &procs {
        p.start().unwrap();
    }
    for p in &procs {
        p.join().unwrap();
    }
}

#[test]
fn the_server_comes_from_the_fork_server() {
    let _w = watchdog(TEST_LIMIT);
    let m = Manager::start().unwrap();
    let pid = m.server_pid().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero())).unwrap();
    let ppid: u32 =
        stat.rsplit(')').next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_ne!(ppid, std::process::id(), "launched by the fork server, not forked from here");
    let d: DictProxy<u8, u8> = m.dict().unwrap();
    d.set(&1, &2).unwrap();
    assert_eq!(d.get(&1).unwrap(), Some(2));
}

#[test]
fn eight_processes_incr_lose_nothing() {
    let _w = watchdog(TEST_LIMIT);
    let m = Manager::start().unwrap();
    let d: DictProxy<String, i64> = m.dict().unwrap();
    let procs = (0..PROCS)
        .map(|_| {
            let d = d.clone();
            Process::new(move || {
                for _ in 0..UPDATES {
                    d.incr(&"n".to_string(), 1).unwrap();
                }
            })
        })
        .collect();
    run_all(procs);
    assert_eq!(d.get(&"n".to_string()).unwrap(), Some(PROCS as i64 * UPDATES));
}

#[test]
fn eight_processes_lock_guarded_read_modify_write_lose_nothing() {
    let _w = watchdog(TEST_LIMIT);
    let m = Manager::start().unwrap();
    let d: DictProxy<String, i64> = m.dict().unwrap();
    let lock = m.lock().unwrap();
    d.set(&"n".to_string(), &0).unwrap();
    let procs = (0..PROCS)
        .map(|_| {
            let (d, lock) = (d.clone(), lock.clone());
            Process::new(move || {
                let key = "n".to_string();
                for _ in 0..UPDATES {
                    // Python: with lock: d['n'] = d['n'] + 1
                    let _g = lock.lock().unwrap();
                    let n = d.get_item(&key).unwrap();
                    d.set(&key, &(n + 1)).unwrap();
                }
            })
        })
        .collect();
    run_all(procs);
    assert_eq!(d.get(&"n".to_string()).unwrap(), Some(PROCS as i64 * UPDATES));
}

#[test]
fn server_killed_mid_call_is_gone_not_a_hang() {
    let _w = watchdog(TEST_LIMIT);
    let m = Manager::start().unwrap();
    let q: QueueProxy<u32> = m.queue(0).unwrap();
    let pid = m.server_pid().unwrap();
    let q2 = q.clone();
    let blocked = thread::spawn(move || {
        let t = Instant::now();
        (q2.get(), t)
    });
    // Wait until the getter is inside its call (the server has two connections: ours, the
    // getter's; ours exists after the first call below).
    assert_eq!(q.qsize().unwrap(), 0);
    let pid_raw = pid.as_raw_nonzero().get();
    assert!(eventually(Duration::from_secs(10), || {
        std::fs::read_dir(format!("/proc/{pid_raw}/task")).map(|d| d.count()).unwrap_or(0) >= 4
    }));
    multiproc::sys::process::signal::kill(pid, Signal::KILL).unwrap();
    let (r, t) = blocked.join().unwrap();
    assert!(matches!(r, Err(ManagerError::Gone)), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(matches!(q.put(&1), Err(ManagerError::Gone)));
    assert!(matches!(m.dict::<u8, u8>(), Err(ManagerError::Gone)));
    m.shutdown().unwrap(); // reaps it and removes its directory
    m.shutdown().unwrap();
    assert!(!is_running(pid));
}

#[test]
fn the_server_dies_with_its_creator() {
    let _w = watchdog(TEST_LIMIT);
    let (tx, rx) = pipe(true).unwrap();
    let creator = Process::new(move || -> () {
        let m = Manager::start().unwrap();
        let d: DictProxy<u8, u8> = m.dict().unwrap();
        d.set(&1, &1).unwrap();
        tx.send(&m.server_pid().unwrap().as_raw_nonzero().get()).unwrap();
        #[allow(clippy::empty_loop)]
        loop {
            thread::park();
        }
    });
    creator.start().unwrap();
    let server: i32 = rx.recv().unwrap();
    let server = multiproc::Pid::from_raw(server).unwrap();
    assert!(is_running(server));
    creator.kill().unwrap(); // SIGKILL: no destructor runs
    let _ = creator.join();
    assert!(
        eventually(Duration::from_secs(10), || !is_running(server)),
        "the server outlived its creator"
    );
}

#[test]
fn a_killed_consumer_takes_nothing() {
    let _w = watchdog(TEST_LIMIT);
    let m = Manager::start().unwrap();
    let q: QueueProxy<u32> = m.queue(0).unwrap();
    let waiting = m.event().unwrap();
    let (q2, w2) = (q.clone(), waiting.clone());
    let consumer = Process::new(move || {
        w2.set().unwrap();
        q2.get().unwrap()
    });
    consumer.start().unwrap();
    waiting.wait().unwrap();
    // The consumer is (about to be) blocked in `get` in the server; kill it and reap it, so
    // its connection is closed before the item arrives.
    consumer.kill().unwrap();
    assert!(consumer.join().is_err());
    q.put(&42).unwrap();
    assert_eq!(q.get_timeout(Duration::from_secs(10)).unwrap(), 42, "the item was swallowed");
}
