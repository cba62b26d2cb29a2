//! Applies a sequence of operations, decoded from the input, to a real `Semaphore`,
//! `BoundedSemaphore` and two `Barrier`s in one process, and to a naive model of each (a
//! counter, a counter with a bound, a "broken" flag), asserting that they agree after every
//! step, that nothing panics, and that every error displays a message.
//!
//! Input layout: byte 0 and byte 1 give the initial values of the semaphore and the bounded
//! semaphore (low 7 bits; with bit 7 set the value is counted down from `u32::MAX`, so the
//! overflow edge is reached). Every further byte is one operation (low 4 bits) with an argument
//! (high 4 bits).
//!
//! Only zero timeouts are used (and `None` only where it cannot block: a barrier of one), so a
//! run never sleeps.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use multiproc::sync::{AcquireError, ReleaseError};
use multiproc::{Barrier, BarrierError, BoundedSemaphore, Semaphore};

fn initial(b: u8) -> u32 {
    let low = u32::from(b & 0x7f);
    if b & 0x80 != 0 { u32::MAX - low } else { low }
}

fn check_message(e: &dyn std::error::Error) {
    assert!(!e.to_string().is_empty(), "an error without a message: {e:?}");
}

/// The model of a barrier: only its broken flag (in one process nobody is ever left waiting).
struct BarrierModel {
    broken: bool,
}

fuzz_target!(|data: &[u8]| {
    let (Some(&b0), Some(&b1)) = (data.first(), data.get(1)) else {
        return;
    };
    let ops = &data[2..];

    let sem = Semaphore::new(initial(b0)).expect("create Semaphore");
    let mut sem_model: u32 = initial(b0);
    let bounded = BoundedSemaphore::new(initial(b1)).expect("create BoundedSemaphore");
    let max = initial(b1);
    let mut bounded_model: u32 = max;
    // A barrier of one (every wait passes unless broken) and one of two (a lone wait with a
    // zero timeout breaks it).
    let one = Barrier::new(1).expect("create Barrier(1)");
    let mut one_model = BarrierModel { broken: false };
    let two = Barrier::new(2).expect("create Barrier(2)");
    let mut two_model = BarrierModel { broken: false };

    for &byte in ops {
        let arg = byte >> 4;
        match byte & 0x0f {
            // Semaphore: acquire with a zero timeout.
            0 => {
                let got = sem.acquire_timeout(Duration::ZERO).expect("acquire");
                assert_eq!(got, sem_model > 0);
                if got {
                    sem_model -= 1;
                }
            }
            // Semaphore: release (`arg` + 1 times).
            1 => {
                for _ in 0..=arg {
                    match sem.release() {
                        Ok(()) => {
                            assert!(sem_model < u32::MAX);
                            sem_model += 1;
                        }
                        Err(ReleaseError::Os(e)) => {
                            assert_eq!(sem_model, u32::MAX, "unexpected error {e}");
                            assert_eq!(
                                e.raw_os_error(),
                                Some(multiproc::sys::Errno::OVERFLOW.raw_os_error())
                            );
                            check_message(&ReleaseError::Os(e));
                        }
                        Err(e) => panic!("unexpected {e:?}"),
                    }
                }
            }
            // Semaphore: a guard with a zero timeout, held while the value is checked.
            2 => match sem.guard_timeout(Duration::ZERO) {
                Ok(g) => {
                    assert!(sem_model > 0);
                    assert_eq!(sem.get_value(), sem_model - 1);
                    if arg & 1 == 1 {
                        g.release().expect("guard release");
                    } else {
                        drop(g);
                    }
                }
                Err(AcquireError::Timeout) => {
                    assert_eq!(sem_model, 0);
                    check_message(&AcquireError::<()>::Timeout);
                }
                Err(e) => panic!("unexpected {e:?}"),
            },
            // BoundedSemaphore: acquire with a zero timeout.
            3 => {
                let got = bounded.acquire_timeout(Duration::ZERO).expect("acquire");
                assert_eq!(got, bounded_model > 0);
                if got {
                    bounded_model -= 1;
                }
            }
            // BoundedSemaphore: release (`arg` + 1 times), over-releasing when at the bound.
            4 => {
                for _ in 0..=arg {
                    match bounded.release() {
                        Ok(()) => {
                            assert!(bounded_model < max);
                            bounded_model += 1;
                        }
                        Err(e @ ReleaseError::TooManyReleases) => {
                            assert_eq!(bounded_model, max);
                            check_message(&e);
                        }
                        Err(e) => panic!("unexpected {e:?}"),
                    }
                }
            }
            // BoundedSemaphore: a guard with a zero timeout.
            5 => match bounded.guard_timeout(Duration::ZERO) {
                Ok(g) => {
                    assert!(bounded_model > 0);
                    drop(g);
                }
                Err(AcquireError::Timeout) => assert_eq!(bounded_model, 0),
                Err(e) => panic!("unexpected {e:?}"),
            },
            // Barrier(1): wait.
            6 => {
                let r = if arg & 1 == 1 { one.wait() } else { one.wait_timeout(Duration::ZERO) };
                match r {
                    Ok(i) => {
                        assert!(!one_model.broken);
                        assert_eq!(i, 0);
                    }
                    Err(e @ BarrierError::Broken) => {
                        assert!(one_model.broken);
                        check_message(&e);
                    }
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
            7 => {
                one.abort().expect("abort");
                one_model.broken = true;
            }
            8 => {
                one.reset().expect("reset");
                one_model.broken = false;
            }
            // Barrier(2): a lone wait with a zero timeout breaks it.
            9 => match two.wait_timeout(Duration::ZERO) {
                Err(e @ BarrierError::Timeout) => {
                    assert!(!two_model.broken);
                    two_model.broken = true;
                    check_message(&e);
                }
                Err(BarrierError::Broken) => assert!(two_model.broken),
                other => panic!("unexpected {other:?}"),
            },
            10 => {
                two.abort().expect("abort");
                two_model.broken = true;
            }
            11 => {
                two.reset().expect("reset");
                two_model.broken = false;
            }
            _ => {}
        }
        // After every step: the observable state matches the models.
        assert_eq!(sem.get_value(), sem_model);
        assert_eq!(bounded.get_value(), bounded_model);
        assert_eq!(bounded.max_value(), max);
        assert_eq!(one.broken(), one_model.broken);
        assert_eq!(two.broken(), two_model.broken);
        assert_eq!(one.n_waiting(), 0);
        assert_eq!(two.n_waiting(), 0);
    }
});
