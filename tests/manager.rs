//! `Manager` (issue 17): Python's manager tests — dict, list, Namespace, Value and Array from a
//! child; the lock, condition, event, barrier, semaphore and queue proxies; errors from the
//! server as the method's own error (`l[20]` is an index error); shutdown twice; use after
//! shutdown is one clear `Gone` error.
//!
//! Servers here are forked from the test process (no fork server: `fork` start method);
//! `manager_stress.rs` uses the fork server. Every test has a watchdog.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{TEST_LIMIT, eventually, watchdog};
use multiproc::Process;
use multiproc::manager::{
    DictProxy, ErrorKind, ListProxy, Manager, ManagerError, NamespaceProxy, QueueProxy,
};

/// How many threads the server process has (one per connection, plus its main thread and its
/// parent watcher).
fn server_threads(pid: multiproc::Pid) -> usize {
    let raw = pid.as_raw_nonzero().get();
    std::fs::read_dir(format!("/proc/{raw}/task")).map(|d| d.count()).unwrap_or(0)
}

fn kind(e: ManagerError) -> ErrorKind {
    e.remote_kind().unwrap_or_else(|| panic!("not a remote error: {e:?}"))
}

#[test]
fn dict_list_namespace_from_a_child() {
    let _w = watchdog(TEST_LIMIT);
    let m = Manager::start().unwrap();
    let d: DictProxy<String, f64> = m.dict().unwrap();
    let l: ListProxy<i32> = m.list(&(0..10).collect::<Vec<_>>()).unwrap();
    let ns: NamespaceProxy = m.namespace().unwrap();
    ns.set("x", &10u32).unwrap();
    let (d2, l2, ns2) = (d.clone(), l.clone(), ns.clone());
    let p = Process::new(move || {
        d2.set(&"1".into(), &1.0).unwrap();
        d2.set(&"2".into(), &2.0).unwrap();
        d2.set(&"0.25".into(), &0.25).unwrap();
        let mut v = l2.to_vec().unwrap();
        v.reverse();
        l2.clear().unwrap();
        l2.extend(&v).unwrap();
        let x: u32 = ns2.get("x").unwrap();
        ns2.set("x", &(x + 1)).unwrap();
        ns2.set("y", "from the child").unwrap();
        std::process::id()
    });
    p.start().unwrap();
    let child = p.join().unwrap();
    assert_ne!(child, std::process::id());
    let mut items = d.items().unwrap();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(items, vec![("0.25".into(), 0.25), ("1".into(), 1.0), ("2".into(), 2.0)]);
    assert_eq!(l.to_vec().unwrap(), (0..10).rev().collect::<Vec<_>>());
    assert_eq!(ns.get::<u32>("x").unwrap(), 11);
    assert_eq!(ns.get::<String>("y").unwrap(), "from the child");
    assert_eq!(ns.names().unwrap(), vec!["x".to_string(), "y".to_string()]);
    m.shutdown().unwrap();
}

#[test]
fn remote_errors_are_the_methods_own() {
    let _w = watchdog(TEST_LIMIT);
    let m = Manager::start().unwrap();
    let l = m.list(&[1u8, 2, 3]).unwrap();
    assert_eq!(kind(l.get(20).unwrap_err()), ErrorKind::Index);
    let e = l.get(20).unwrap_err().to_string();
    assert!(e.contains("IndexError") && e.contains("list index out of range"), "{e}");
    assert_eq!(l.get(-1).unwrap(), 3);
    assert_eq!(kind(l.set(3, &0).unwrap_err()), ErrorKind::Index);
    assert_eq!(l.pop().unwrap(), 3);
    assert_eq!(l.pop_at(0).unwrap(), 1);
    l.insert(-10, &9).unwrap();
    assert_eq!(l.to_vec().unwrap(), vec![9, 2]);
    l.del(0).unwrap();
    l.clear().unwrap();
    assert_eq!(kind(l.pop().unwrap_err()), ErrorKind::Index);

    let d: DictProxy<u32, String> = m.dict().unwrap();
    assert_eq!(d.get(&1).unwrap(), None);
    assert_eq!(kind(d.get_item(&1).unwrap_err()), ErrorKind::Key);
    assert_eq!(kind(d.del(&1).unwrap_err()), ErrorKind::Key);
    assert_eq!(kind(d.pop(&1).unwrap_err()), ErrorKind::Key);
    d.update([(&1, &"one".to_string()), (&2, &"two".to_string())]).unwrap();
    assert_eq!(d.len().unwrap(), 2);
    assert!(d.contains_key(&2).unwrap());
    assert_eq!(d.set_default(&2, &"x".into()).unwrap(), "two");
    assert_eq!(d.set_default(&3, &"three".into()).unwrap(), "three");
    assert_eq!(d.pop(&3).unwrap(), "three");
    let mut keys = d.keys().unwrap();
    keys.sort();
    assert_eq!(keys, vec![1, 2]);

    // A proxy typed differently from the object's contents: a decode error, not garbage.
    let same: DictProxy<u32, u64> = m.get_or_create("d", &()).unwrap();
    same.set(&1, &1).unwrap();
    let wrong: DictProxy<u32, String> = m.get_or_create("d", &()).unwrap();
    assert!(matches!(wrong.get_item(&1), Err(ManagerError::Decode(_))));
    // A name holding another type.
    let e = m.get_or_create::<ListProxy<u8>>("d", &[]).unwrap_err();
    assert_eq!(kind(e), ErrorKind::Type);

    let ns = m.namespace().unwrap();
    assert_eq!(kind(ns.get::<u8>("nope").unwrap_err()), ErrorKind::Attribute);

    let a = m.array(&[1.5f64, 2.5]).unwrap();
    assert_eq!(a.len().unwrap(), 2);
    a.set(-1, &4.0).unwrap();
    assert_eq!(a.to_vec().unwrap(), vec![1.5, 4.0]);
    assert_eq!(kind(a.get(2).unwrap_err()), ErrorKind::Index);

    let v = m.value(&7i64).unwrap();
    assert_eq!(v.incr(3).unwrap(), 10);
    v.set(&-1).unwrap();
    assert_eq!(v.get().unwrap(), -1);
    m.shutdown().unwrap();
}

#[test]
fn shutdown_twice_then_gone() {
    let _w = watchdog(TEST_LIMIT);
    let m = Manager::start().unwrap();
    let q: QueueProxy<u32> = m.queue(0).unwrap();
    q.put(&1).unwrap();
    let path = match m.address() {
        multiproc::connection::Address::Unix(p) => p.clone(),
        a => panic!("a private manager listens on a path, not {a}"),
    };
    assert!(path.exists());
    let pid = m.server_pid().unwrap();
    m.shutdown().unwrap();
    m.shutdown().unwrap();
    assert!(!path.exists(), "the socket file is removed");
    assert!(!path.parent().unwrap().exists(), "the private directory is removed");
    // Reaped: no zombie left.
    assert!(!multiproc::sys::process::procfs::is_running(pid));
    let started = Instant::now();
    for _ in 0..3 {
        assert!(matches!(q.get(), Err(ManagerError::Gone)));
        assert!(matches!(q.put(&2), Err(ManagerError::Gone)));
        assert!(matches!(m.dict::<u8, u8>(), Err(ManagerError::Gone)));
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // From a child too.
    let q2 = q.clone();
    let p = Process::new(move || matches!(q2.qsize(), Err(ManagerError::Gone)));
    p.start().unwrap();
    assert!(p.join().unwrap());
    drop(m); // and dropping after shutdown is fine
}

#[test]
fn drop_shuts_down() {
    let _w = watchdog(TEST_LIMIT);
    let m = Manager::start().unwrap();
    let e = m.event().unwrap();
    let pid = m.server_pid().unwrap();
    drop(m);
    assert!(!multiproc::sys::process::procfs::is_running(pid));
    assert!(e.is_set().unwrap_err().is_gone());
}

#[test]
fn lock_proxy() {
    let _w = watchdog(TEST_LIMIT);
    let m = Manager::start().unwrap();
    let lock = m.lock().unwrap();
    assert_eq!(kind(lock.release().unwrap_err()), ErrorKind::Runtime);
    lock.acquire().unwrap();
    assert!(lock.locked().unwrap());
    // Another process cannot take it; it may release it (threading.Lock semantics).
    let l2 = lock.clone();
    let p = Process::new(move || {
        let got = l2.acquire_timeout(Duration::from_millis(50)).unwrap();
        l2.release().unwrap();
        got
    });
    p.start().unwrap();
    assert!(!p.join().unwrap());
    assert!(!lock.locked().unwrap());
    {
        let _g = lock.lock().unwrap();
        assert!(lock.locked().unwrap());
    }
    assert!(!lock.locked().unwrap());

    let r = m.rlock().unwrap();
    r.acquire().unwrap();
    assert!(r.acquire_timeout(Duration::ZERO).unwrap(), "reentrant");
    // Another thread (another connection) cannot release or take it.
    let r2 = r.clone();
    thread::spawn(move || {
        assert_eq!(kind(r2.release().unwrap_err()), ErrorKind::Runtime);
        assert!(!r2.acquire_timeout(Duration::from_millis(20)).unwrap());
    })
    .join()
    .unwrap();
    r.release().unwrap();
    r.release().unwrap();
    assert_eq!(kind(r.release().unwrap_err()), ErrorKind::Runtime);
}

#[test]
fn a_dead_holder_releases_its_lock() {
    let _w = watchdog(TEST_LIMIT);
    let m = Manager::start().unwrap();
    let lock = m.lock().unwrap();
    let l2 = lock.clone();
    let p = Process::new(move || {
        l2.acquire().unwrap();
        // Exits holding it: its connection closes.
    });
    p.start().unwrap();
    p.join().unwrap();
    assert!(lock.acquire_timeout(Duration::from_secs(10)).unwrap());
}

#[test]
fn queue_proxy() {
    let _w = watchdog(TEST_LIMIT);
    let m = Manager::start().unwrap();
    let q: QueueProxy<String> = m.queue(2).unwrap();
    assert!(q.empty().unwrap());
    assert_eq!(kind(q.get_nowait().unwrap_err()), ErrorKind::Empty);
    let t = Instant::now();
    assert_eq!(kind(q.get_timeout(Duration::from_millis(100)).unwrap_err()), ErrorKind::Empty);
    assert!(t.elapsed() >= Duration::from_millis(100));
    q.put(&"a".into()).unwrap();
    q.put(&"b".into()).unwrap();
    assert!(q.full().unwrap());
    assert_eq!(
        kind(q.put_timeout(&"c".into(), Duration::from_millis(20)).unwrap_err()),
        ErrorKind::Full
    );
    assert_eq!(q.qsize().unwrap(), 2);
    // A child consumes and produces.
    let q2 = q.clone();
    let p = Process::new(move || {
        let a = q2.get().unwrap();
        let b = q2.get().unwrap();
        q2.put(&format!("{a}{b}")).unwrap();
    });
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(q.get().unwrap(), "ab");

    let jq = m.joinable_queue::<u32>(0).unwrap();
    for i in 0..5 {
        jq.put(&i).unwrap();
    }
    assert!(!jq.join_timeout(Duration::from_millis(20)).unwrap());
    let jq2 = jq.clone();
    let p = Process::new(move || {
        let mut sum = 0;
        for _ in 0..5 {
            sum += jq2.get().unwrap();
            jq2.task_done().unwrap();
        }
        sum
    });
    p.start().unwrap();
    jq.join().unwrap();
    assert_eq!(p.join().unwrap(), 10);
    assert_eq!(kind(jq.task_done().unwrap_err()), ErrorKind::Value);
}

#[test]
fn event_condition_barrier_semaphore() {
    let _w = watchdog(TEST_LIMIT);
    let m = Manager::start().unwrap();
    let ev = m.event().unwrap();
    assert!(!ev.wait_timeout(Duration::from_millis(10)).unwrap());
    let ev2 = ev.clone();
    let p = Process::new(move || ev2.set().unwrap());
    p.start().unwrap();
    ev.wait().unwrap();
    assert!(ev.is_set().unwrap());
    p.join().unwrap();
    ev.clear().unwrap();
    assert!(!ev.is_set().unwrap());

    let cond = m.condition().unwrap();
    assert_eq!(kind(cond.notify(1).unwrap_err()), ErrorKind::Runtime);
    assert_eq!(kind(cond.wait_timeout(Duration::ZERO).unwrap_err()), ErrorKind::Runtime);
    let flag = m.value(&0u32).unwrap();
    let (c2, f2) = (cond.clone(), flag.clone());
    let p = Process::new(move || {
        let _g = c2.lock().unwrap();
        f2.set(&1).unwrap();
        c2.notify_all().unwrap();
    });
    {
        let _g = cond.lock().unwrap();
        p.start().unwrap();
        while flag.get().unwrap() == 0 {
            assert!(cond.wait_timeout(Duration::from_secs(10)).unwrap());
        }
    }
    p.join().unwrap();
    {
        let _g = cond.lock().unwrap();
        assert!(!cond.wait_timeout(Duration::from_millis(20)).unwrap());
    }

    let b = m.barrier(3).unwrap();
    assert_eq!(b.parties().unwrap(), 3);
    let procs: Vec<_> = (0..2)
        .map(|_| {
            let b = b.clone();
            let p = Process::new(move || b.wait().unwrap());
            p.start().unwrap();
            p
        })
        .collect();
    let mut indices = vec![b.wait().unwrap()];
    indices.extend(procs.iter().map(|p| p.join().unwrap()));
    indices.sort();
    assert_eq!(indices, vec![0, 1, 2]);
    assert_eq!(
        kind(b.wait_timeout(Duration::from_millis(20)).unwrap_err()),
        ErrorKind::BrokenBarrier
    );
    assert!(b.broken().unwrap());
    b.reset().unwrap();
    assert!(!b.broken().unwrap());
    assert_eq!(kind(m.barrier(0).unwrap_err()), ErrorKind::Value);

    let s = m.bounded_semaphore(2).unwrap();
    s.acquire().unwrap();
    s.acquire().unwrap();
    assert!(!s.acquire_timeout(Duration::from_millis(10)).unwrap());
    assert_eq!(s.get_value().unwrap(), 0);
    s.release().unwrap();
    s.release().unwrap();
    assert_eq!(kind(s.release().unwrap_err()), ErrorKind::Value);
    let s = m.semaphore(0).unwrap();
    s.release().unwrap();
    s.release().unwrap();
    assert_eq!(s.get_value().unwrap(), 2);
}

#[test]
fn threads_have_their_own_connections() {
    let _w = watchdog(TEST_LIMIT);
    let m = Manager::start().unwrap();
    let q: QueueProxy<u32> = m.queue(0).unwrap();
    // A thread blocked in `get` does not hold up another thread's `put`.
    assert_eq!(q.qsize().unwrap(), 0); // our connection: the server's third thread
    let q2 = q.clone();
    let getter = thread::spawn(move || q2.get().unwrap());
    // Until the getter's connection has its thread in the server (main, watcher, ours, its).
    let pid = m.server_pid().unwrap();
    assert!(eventually(Duration::from_secs(10), || server_threads(pid) >= 4));
    q.put(&5).unwrap();
    assert_eq!(getter.join().unwrap(), 5);
}

#[test]
fn a_lock_is_released_when_its_thread_ends_even_with_children_alive() {
    let _w = watchdog(TEST_LIMIT);
    let m = Manager::start().unwrap();
    let lock = m.lock().unwrap();
    // Not a manager event: the child must not touch the manager (its first call would drop
    // the connection it inherited anyway).
    let go = multiproc::Event::new().unwrap();
    let (l2, go2) = (lock.clone(), go.clone());
    // A thread takes the lock, forks a child that outlives the thread, and ends holding it.
    let child = thread::spawn(move || {
        l2.acquire().unwrap();
        let child = Process::new(move || go2.wait());
        child.start().unwrap();
        child
    })
    .join()
    .unwrap();
    // The child closed its copy of the thread's connection at its start: the server saw the
    // connection end with the thread.
    assert!(lock.acquire_timeout(Duration::from_secs(5)).unwrap());
    go.set();
    child.join().unwrap();
}

#[test]
fn an_event_pulse_wakes_its_waiter_and_a_semaphore_does_not_overflow() {
    let _w = watchdog(TEST_LIMIT);
    let m = Manager::start().unwrap();
    let ev = m.event().unwrap();
    let ev2 = ev.clone();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done2 = done.clone();
    let waiter = thread::spawn(move || {
        let woke = ev2.wait_timeout(Duration::from_secs(20)).unwrap();
        done2.store(true, std::sync::atomic::Ordering::SeqCst);
        woke
    });
    // `set` then `clear` at once, again and again: a waiter inside `wait` during a pulse returns
    // true (as Python's does) even though the event is clear again by the time it wakes.
    let start = Instant::now();
    while !done.load(std::sync::atomic::Ordering::SeqCst)
        && start.elapsed() < Duration::from_secs(15)
    {
        ev.set().unwrap();
        ev.clear().unwrap();
    }
    assert!(waiter.join().unwrap(), "the waiter missed every pulse");
    assert!(!ev.is_set().unwrap());

    // A value at the top of its range: `release` is an error, and the server goes on.
    let s = m.semaphore(u64::MAX).unwrap();
    assert_eq!(kind(s.release().unwrap_err()), ErrorKind::Value);
    assert_eq!(s.get_value().unwrap(), u64::MAX);
    s.acquire().unwrap();
    assert_eq!(s.get_value().unwrap(), u64::MAX - 1);
}

#[test]
fn a_threads_connection_to_a_manager_nobody_holds_is_closed_on_its_next_call() {
    let _w = watchdog(TEST_LIMIT);
    let m = Manager::start().unwrap();
    let pid = m.server_pid().unwrap();
    let d: DictProxy<u8, u8> = m.dict().unwrap();
    d.set(&0, &0).unwrap();
    let (to_worker, jobs) = std::sync::mpsc::channel::<Option<DictProxy<u8, u8>>>();
    let (to_main, done) = std::sync::mpsc::channel::<()>();
    let d_worker = d.clone();
    let worker = thread::spawn(move || {
        d_worker.set(&1, &1).unwrap(); // the worker's connection to `m`
        while let Ok(Some(other)) = jobs.recv() {
            other.set(&2, &2).unwrap(); // a connection to another manager's target
            drop(other);
            to_main.send(()).unwrap();
        }
        // A call on `m`: prunes the connections of targets nobody holds.
        d_worker.set(&3, &3).unwrap();
        to_main.send(()).unwrap();
        // Stay alive (a thread's exit would close all its connections anyway).
        let _ = jobs.recv();
    });
    let base = {
        assert!(eventually(Duration::from_secs(10), || d.get(&1).unwrap() == Some(1)));
        server_threads(pid)
    };
    for _ in 0..5 {
        // Another manager object for the same server: a target of its own.
        let other = Manager::connect(m.address().clone()).unwrap();
        to_worker.send(Some(other.dict().unwrap())).unwrap();
        done.recv().unwrap();
        drop(other);
    }
    // Each call to a new target pruned the one before (nobody held it); the last is still open.
    assert!(server_threads(pid) > base, "the worker's connection to the last target is open");
    to_worker.send(None).unwrap();
    done.recv().unwrap();
    assert_eq!(d.get(&3).unwrap(), Some(3));
    // The worker, still alive, closed its connection to the last target; the server's thread
    // for it ends.
    assert!(eventually(Duration::from_secs(10), || server_threads(pid) <= base));
    drop(to_worker);
    worker.join().unwrap();
}
