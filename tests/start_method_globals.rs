//! Process-wide start-method settings, in their own binary (they would change what the other
//! tests run): Python's `set_start_method` rules, and `set_executable`: `spawn` runs a function
//! only in the same executable, so a copy of this binary (same bytes, another file) and a
//! program that is not multiproc at all are refused with a clear error, never a jump to an
//! address of another image.

mod common;

use common::{TEST_LIMIT, watchdog};
use multiproc::{
    Context, ContextError, StartError, StartMethod, chosen_start_method, get_start_method,
    set_start_method,
};

multiproc::init_before_main!();

fn square(x: u64) -> u64 {
    x * x
}

fn start(ctx: &Context) -> Result<u64, String> {
    let p = ctx.process(square, 3);
    match p.start() {
        Ok(()) => p.join().map_err(|e| e.to_string()),
        Err(StartError::Launch(e)) => Err(e.to_string()),
        Err(e) => panic!("unexpected start error {e:?}"),
    }
}

/// Python: `set_start_method` once (`RuntimeError('context has already been set')`), unless
/// `force=True`; `get_start_method(allow_none=True)` is `None` until then.
fn set_start_method_rules() {
    assert_eq!(chosen_start_method(), None);
    assert_eq!(get_start_method(), StartMethod::Forkserver); // init ran: Python 3.14's default
    set_start_method(StartMethod::Spawn, false).unwrap();
    assert_eq!(get_start_method(), StartMethod::Spawn);
    assert_eq!(chosen_start_method(), Some(StartMethod::Spawn));
    assert_eq!(set_start_method(StartMethod::Fork, false), Err(ContextError::AlreadySet));
    assert_eq!(ContextError::AlreadySet.to_string(), "context has already been set");
    set_start_method(StartMethod::Fork, true).unwrap();
    assert_eq!(get_start_method(), StartMethod::Fork);
    // The crate-level constructors follow it: a pool's server is now this process's child.
    let pool = multiproc::Pool::new(1).unwrap();
    assert_eq!(pool.apply(square, 5).unwrap(), 25);
    set_start_method(StartMethod::Forkserver, true).unwrap();
}

#[test]
fn process_wide_settings() {
    set_start_method_rules();
    another_executable_is_refused();
}

fn another_executable_is_refused() {
    let _w = watchdog(TEST_LIMIT);
    let ctx = Context::new(StartMethod::Spawn);
    assert_eq!(start(&ctx), Ok(9));

    let dir = std::env::temp_dir().join(format!("multiproc-spawn-id-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("copy-of-test");
    std::fs::copy(std::env::current_exe().unwrap(), &copy).unwrap();

    multiproc::set_executable(&copy);
    let err = start(&ctx).unwrap_err();
    assert!(err.contains("is not the same executable"), "{err}");

    multiproc::set_executable("/bin/true");
    let err = start(&ctx).unwrap_err();
    assert!(err.contains("exited before multiproc::init() took over"), "{err}");

    multiproc::set_executable("/proc/self/exe");
    assert_eq!(start(&ctx), Ok(9));
    let _ = std::fs::remove_dir_all(&dir);
}
