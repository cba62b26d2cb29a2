//! A parent and its child greet each other over a duplex `Pipe`.
//!
//! Python: `parent_conn, child_conn = Pipe()`, `conn.send(...)`, `conn.recv()`.
//! Run: `cargo run --example pipe_greeting`

use multiproc::{ProcessBuilder, current_process, pipe};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init(); // first: the fork server is made while the program is single-threaded
    let (parent_end, child_end) = pipe(true)?;
    let child = ProcessBuilder::new().name("greeter").spawn(move || {
        let me = current_process();
        child_end.send(&format!("hello from {} (pid {})", me.name, me.pid)).unwrap();
        let reply: String = child_end.recv().unwrap();
        println!("child got: {reply}");
    })?;
    // `start` dropped the parent's copy of `child_end` (it moved into the closure), so the
    // parent would see end-of-file if the child died.
    let greeting: String = parent_end.recv()?;
    println!("parent got: {greeting}");
    parent_end.send("nice to meet you, child")?;
    child.join()?;
    Ok(())
}
