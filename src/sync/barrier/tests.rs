//! The barrier's single-process tests: garbled segments, party liveness.
use super::*;

fn expect_corrupt(r: Result<(), BarrierError>) {
    match r {
        Err(BarrierError::Os(e)) => assert_eq!(e.kind(), io::ErrorKind::InvalidData),
        other => panic!("expected InvalidData, got {other:?}"),
    }
}

#[test]
fn a_garbled_segment_is_an_error_not_a_panic() {
    let b = Barrier::new(2).unwrap();
    let h = b.shm.get();

    h.state.store(99, Ordering::Relaxed);
    expect_corrupt(b.wait_timeout(Duration::ZERO).map(drop));
    expect_corrupt(b.abort());
    assert!(!b.broken());
    assert_eq!(b.n_waiting(), 0);
    h.state.store(FILLING, Ordering::Relaxed);

    h.count.store(1000, Ordering::Relaxed);
    expect_corrupt(b.reset());
    h.count.store(0, Ordering::Relaxed);

    h.parties.store(5, Ordering::Relaxed);
    expect_corrupt(b.wait().map(drop));
    h.parties.store(2, Ordering::Relaxed);

    // An occupied slot past the count.
    b.slots()[0].pid.store(12345, Ordering::Relaxed);
    expect_corrupt(b.wait_timeout(Duration::ZERO).map(drop));
    b.slots()[0].pid.store(0, Ordering::Relaxed);

    // Repaired by hand, it works again (a lone wait with a zero timeout breaks it).
    assert!(matches!(b.wait_timeout(Duration::ZERO), Err(BarrierError::Timeout)));
    assert!(b.broken());
    b.reset().unwrap();
    assert!(!b.broken());
}

#[test]
fn party_alive_tells_the_living_from_the_dead() {
    let me = getpid().as_raw_nonzero().get();
    assert!(party_alive(me));
    assert!(party_alive(1));
    assert!(!party_alive(0));
    assert!(!party_alive(-5));
    // A reaped child's pid is gone (until reused).
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id() as i32;
    child.wait().unwrap();
    assert!(!party_alive(pid));
}

#[test]
fn a_zombie_counts_as_dead() {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id() as i32;
    // Not reaped yet: once it has exited it is a zombie, which `kill(pid, 0)` still finds.
    let start = std::time::Instant::now();
    while party_alive(pid) {
        assert!(start.elapsed() < Duration::from_secs(10), "child never exited");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        multiproc_sys::process::signal::probe(Pid::from_raw(pid).unwrap()).is_ok(),
        "a zombie is still there"
    );
    child.wait().unwrap();
}
