//! Python's exit-time behaviour (its `atexit` handler): when the program returns from `main`,
//! daemon children are terminated and the others are joined, so none runs on as an orphan. Its
//! own `main` (`harness = false`): it runs a copy of itself as the program under test.
//!
//! The program under test (`EXIT_JOIN_ROLE=program`) starts a non-daemon child that waits for a
//! byte on stdin and a daemon child that waits forever, prints their pids, and returns from
//! `main`. The test sees the program still running after it said so (it is joining), releases
//! the non-daemon child through the program's stdin, and then sees the program exit with both
//! children gone. With `join_children_at_exit(false)` the program exits at once and its
//! non-daemon child is left running.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn program(join: bool) {
    multiproc::process::join_children_at_exit(join);
    let worker = multiproc::Process::builder().daemon(false).spawn(|| {
        let mut byte = [0u8; 1];
        let _ = std::io::stdin().read(&mut byte);
    });
    let daemon = multiproc::Process::builder().daemon(true).spawn(|| {
        loop {
            std::thread::park();
        }
        #[allow(unreachable_code)]
        ()
    });
    let (worker, daemon) = (worker.unwrap(), daemon.unwrap());
    println!(
        "{} {}",
        worker.pid().unwrap().as_raw_nonzero(),
        daemon.pid().unwrap().as_raw_nonzero()
    );
    println!("main returns");
    std::io::stdout().flush().unwrap();
    // The handles are dropped here, before the exit handler runs, as in most programs.
}

/// Whether `pid` exists (and is not a zombie).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5)); // polling for an exit, not synchronising
    }
}

fn run(join: bool) {
    let mut prog = Command::new(std::env::current_exe().unwrap())
        .env("EXIT_JOIN_ROLE", if join { "program" } else { "program-nojoin" })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(prog.stdout.take().unwrap()).lines();
    let pids = lines.next().unwrap().unwrap();
    let mut pids = pids.split(' ').map(|p| p.parse::<i32>().unwrap());
    let (worker, daemon) = (pids.next().unwrap(), pids.next().unwrap());
    assert_eq!(lines.next().unwrap().unwrap(), "main returns");
    let mut stdin = prog.stdin.take().unwrap();
    if join {
        // Joining: the program cannot exit while its non-daemon child waits.
        assert!(
            wait_exit(&mut prog, Duration::from_millis(300)).is_none(),
            "exited without joining"
        );
        assert!(alive(worker));
        stdin.write_all(b"x").unwrap();
        let status = wait_exit(&mut prog, Duration::from_secs(20)).expect("joined and exited");
        assert!(status.success(), "{status:?}");
        assert!(!alive(worker), "the non-daemon child was joined");
        assert!(!alive(daemon), "the daemon child was terminated");
    } else {
        let status = wait_exit(&mut prog, Duration::from_secs(20)).expect("exits at once");
        assert!(status.success(), "{status:?}");
        assert!(alive(worker), "left running, as asked");
        stdin.write_all(b"x").unwrap(); // lets the orphan finish
    }
}

fn main() {
    match std::env::var("EXIT_JOIN_ROLE").as_deref() {
        Ok("program") => return program(true),
        Ok("program-nojoin") => return program(false),
        _ => {}
    }
    // Watchdog: a deadlock fails in seconds instead of hanging CI.
    let (done, finished) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if finished.recv_timeout(Duration::from_secs(60)).is_err() {
            eprintln!("exit_join: still running after 60 s: deadlock; aborting");
            std::process::abort();
        }
    });
    run(true);
    run(false);
    done.send(()).unwrap();
    println!("exit_join: 2 passed, 0 failed");
}
