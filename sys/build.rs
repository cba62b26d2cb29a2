//! Declares `multiproc_glibc` from the *target* (never by probing the running kernel or libc, so
//! cross builds are right): set when the target's libc is glibc, whose 2.30 and later releases
//! export `sem_clockwait` and `pthread_mutex_clocklock` (linked directly; other libcs fall back
//! to the `CLOCK_REALTIME` calls). Features that depend on the running kernel (pidfd, robust
//! futexes) are detected at run time.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(multiproc_glibc)");
    if std::env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|env| env == "gnu") {
        println!("cargo::rustc-cfg=multiproc_glibc");
    }
}
