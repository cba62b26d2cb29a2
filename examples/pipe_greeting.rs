//! A parent and its child greet each other over a duplex `Pipe`, then the child adds up the
//! numbers the parent sends.
//!
//! Python: `parent_conn, child_conn = Pipe()`, `conn.send(...)`, `conn.recv()`.
//! Here the pipe is typed (`typed_pipe::<ToChild, ToParent>()`): each end sends and receives
//! only the declared types, so nothing needs a type annotation and a wrong type does not
//! compile. The untyped `pipe(true)`, where each `send`/`recv` picks its own type, is in
//! `examples/demo.rs`.
//! Run: `cargo run --example pipe_greeting`

use multiproc::{ProcessBuilder, current_process, typed_pipe};

/// What the parent sends: its greeting, then the numbers to add up.
type ToChild = (String, Vec<i64>);
/// What the child sends back: its greeting, then the sum.
type ToParent = (String, i64);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init(); // first: the fork server is made while the program is single-threaded
    let (parent_end, child_end) = typed_pipe::<ToChild, ToParent>()?;
    let child = ProcessBuilder::new().name("greeter").spawn(move || {
        let me = current_process();
        let (greeting, numbers) = child_end.recv().unwrap();
        println!("child got: {greeting} and {numbers:?}");
        let reply = format!("hello from {} (pid {})", me.name, me.pid);
        child_end.send(&(reply, numbers.iter().sum())).unwrap();
    })?;
    // `start` dropped the parent's copy of `child_end` (it moved into the closure), so the
    // parent would see end-of-file if the child died.
    // `vec![1, 2, 3]` is a `Vec<i64>` here, the declared type: with the untyped `pipe`, it
    // would be a `Vec<i32>`, and the child's `recv::<Vec<i64>>()` a decode error.
    parent_end.send(&("nice to meet you, child".into(), vec![1, 2, 3]))?;
    let (greeting, sum) = parent_end.recv()?;
    println!("parent got: {greeting}; the sum is {sum}");
    assert_eq!(sum, 6);
    child.join()?;
    Ok(())
}
