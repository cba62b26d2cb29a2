//! Addresses and payloads for the `Listener`/`Client` tests (`listener.rs`, `listener_python.rs`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use multiproc::connection::Address;

/// A name no other call of this process (or another process) gets: pid, tag, counter.
fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("mp-listener-{}-{tag}-{n}", std::process::id())
}

/// A fresh socket path in the temporary directory (not created).
pub fn temp_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(unique(tag))
}

/// A fresh abstract name.
pub fn abstract_address(tag: &str) -> Address {
    Address::abstract_name(unique(tag))
}

/// Loopback TCP on a free port.
pub fn loopback() -> Address {
    Address::tcp("127.0.0.1:0").unwrap()
}

/// Deterministic pseudo-random bytes (xorshift64, 8 bytes a step).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
