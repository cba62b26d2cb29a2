//! A child process changes a shared `Value` and a shared `Array`; the parent sees the changes.
//!
//! Python: `num = Value('d', 0.0)`, `arr = Array('i', range(10))`, and a child running
//! `f(n, a)`, which sets `n.value = 3.1415927` and `a[i] = -a[i]`.
//! Run: `cargo run --example value_array`

use multiproc::{Array, Process, Value};

/// Python: `def f(n, a): n.value = 3.1415927; for i in range(len(a)): a[i] = -a[i]`.
#[allow(clippy::approx_constant)] // the tutorial's number, kept as it is
fn f(n: &Value<f64>, a: &Array<i32>) {
    n.store(3.1415927).expect("store");
    let mut a = a.lock().expect("lock"); // the guard derefs to the shared [i32]
    for x in a.iter_mut() {
        *x = -*x;
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init(); // first: the fork server is made while the program is single-threaded
    let num = Value::new(0.0f64)?;
    let arr = Array::from_slice(&(0..10).collect::<Vec<i32>>())?;
    println!("before: num = {:?}, arr = {:?}", num.load()?, arr.to_vec()?);

    let p = Process::new({
        let (num, arr) = (num.clone(), arr.clone());
        move || f(&num, &arr)
    });
    p.start()?;
    p.join()?;

    // The child wrote into shared memory, so the parent's handles see its writes (a plain
    // variable would have changed only in the child's copy; see the ping_pong example).
    println!("after:  num = {:?}, arr = {:?}", num.load()?, arr.to_vec()?);
    Ok(())
}
