//! Declares the crate's cfgs from the *target* (never by probing the running kernel, so cross
//! builds are right). Features that depend on the running kernel (pidfd, robust futexes) are
//! detected at run time.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    for cfg in ["multiproc_linux", "multiproc_glibc", "multiproc_musl"] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
    }
    // Set by `cargo fuzz` (see fuzz/): the build that gives the fuzz targets their entry points.
    println!("cargo::rustc-check-cfg=cfg(fuzzing)");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" {
        println!("cargo::rustc-cfg=multiproc_linux");
    }
    match env.as_str() {
        // glibc >= 2.30 exports sem_clockwait and pthread_mutex_clocklock.
        "gnu" => println!("cargo::rustc-cfg=multiproc_glibc"),
        "musl" => println!("cargo::rustc-cfg=multiproc_musl"),
        _ => {}
    }
}
