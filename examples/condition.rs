//! A `Condition` orders two stages: the stage-2 processes wait until the stage-1 process has
//! done its work and called `notify_all`.
//!
//! Python: the tutorial's `stage_1(cond)` / `stage_2(cond)` program (from PyMOTW): processes
//! `stage_2[1]` and `stage_2[2]` do `with cond: cond.wait()`, then `s1` does
//! `with cond: cond.notify_all()`.
//! Run: `cargo run --example condition`

use std::time::Duration;

use multiproc::{Condition, ProcessBuilder, RawValue, current_process};

/// Python: `stage_1(cond)`: does the first stage, then wakes the waiters.
fn stage_1(cond: &Condition, done: &RawValue<u32>) {
    let name = current_process().name;
    println!("Starting {name}");
    let _guard = cond.lock().expect("lock"); // with cond:
    println!("{name} done and ready for stage 2");
    done.store(1);
    cond.notify_all().expect("notify_all");
}

/// Python: `stage_2(cond)`: waits for stage 1, then runs.
fn stage_2(cond: &Condition, done: &RawValue<u32>, waiting: &RawValue<u32>) {
    let name = current_process().name;
    println!("Starting {name}");
    let _guard = cond.lock().expect("lock"); // with cond:
    waiting.fetch_add(1);
    // Python's `cond.wait()` would miss a notify that came before it started waiting (the
    // tutorial sleeps a second to make that unlikely) and may wake spuriously. `wait_for`
    // checks the flag that stage 1 sets, under the lock, before and after each wait.
    cond.wait_for(|| done.load() == 1).expect("wait");
    println!("{name} running");
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init(); // first: the fork server is made while the program is single-threaded
    let condition = Condition::new()?;
    let done = RawValue::<u32>::new(0)?; // set by stage 1, under the condition's lock
    let waiting = RawValue::<u32>::new(0)?; // stage-2 processes that reached their wait

    let s2_clients = (1..=2)
        .map(|i| {
            let (cond, done, waiting) = (condition.clone(), done.clone(), waiting.clone());
            ProcessBuilder::new()
                .name(format!("stage_2[{i}]"))
                .spawn(move || stage_2(&cond, &done, &waiting))
        })
        .collect::<Result<Vec<_>, _>>()?;

    // Instead of the tutorial's `time.sleep(1)`, start s1 once both stage-2 processes have
    // counted themselves in, under the lock: s1 gets the lock only once the second one's wait
    // has released it, so both are asleep when s1 notifies. (This only shows that they really
    // wait; thanks to the flag, the program is correct in any order.)
    while waiting.load() < 2 {
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("main: both stage-2 processes are waiting; starting s1");
    let s1 = {
        let (cond, done) = (condition.clone(), done.clone());
        ProcessBuilder::new().name("s1").spawn(move || stage_1(&cond, &done))?
    };
    s1.join()?;
    for c in &s2_clients {
        c.join()?;
    }
    Ok(())
}
