//! `spawn` runs a function only in the same executable: a copy of this binary (same bytes,
//! another file) and a program that is not multiproc at all are refused with a clear error,
//! never a jump to an address of another image. Its own binary: `set_executable` is global.

mod common;

use common::{TEST_LIMIT, watchdog};
use multiproc::{Context, StartError, StartMethod};

multiproc::init_before_main!();

fn square(x: u64) -> u64 {
    x * x
}

fn start(ctx: &Context) -> Result<u64, String> {
    let p = ctx.process(square, 3);
    match p.start() {
        Ok(()) => p.join(None).map_err(|e| e.to_string()),
        Err(StartError::Launch(e)) => Err(e.to_string()),
        Err(e) => panic!("unexpected start error {e:?}"),
    }
}

#[test]
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
