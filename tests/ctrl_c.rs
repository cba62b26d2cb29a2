//! Ctrl-C: what `SIGINT` to the parent alone, and to the whole process group (a terminal's
//! Ctrl-C), does to a program's processes, pools and executors, with the default `SIGINT`
//! disposition and with a handler of the program's own. Its own `main` (`harness = false`): it
//! runs a copy of itself as the program under test, in a process group of its own, signals it,
//! and checks every process of the tree by the pids it saw (`/proc`), within a watchdog.
//!
//! The program under test (`CTRL_C_ROLE=program`) calls `init` (so `forkserver` is the default
//! start method), then starts one of everything, each blocked for good in a task or child
//! (`block`, which records its pid in a file first):
//!
//! | name | what |
//! |---|---|
//! | `fork` | a non-daemon `Process` of a closure (`fork`) |
//! | `fork-daemon` | a daemon `Process` of a closure |
//! | `fork-tied` | a non-daemon `Process` with `death_signal(Some(SIGKILL))` |
//! | `fs` | a non-daemon `Process` of a function (`forkserver`) |
//! | `fs-daemon` | a daemon `Process` of a function (`forkserver`) |
//! | `pool` | a `Pool` (`forkserver`), `map` over two blocked tasks |
//! | `fork-pool` | a `Pool` (`fork`), `apply_async` of a blocked task |
//! | `executor` | a `ProcessPoolExecutor` (`forkserver`), a blocked `submit` |
//! | `fork-executor` | a `ProcessPoolExecutor` (`fork`), a blocked `submit` |
//! | `queue` | a `Queue::get(None)` that nobody feeds (the program's own handler feeds it) |
//!
//! Each wait runs on a thread of its own and prints what it returned. Then the test:
//!
//! 1. `SIGINT` to the parent only: the parent dies (default disposition); every process of the
//!    crate's making dies with it — daemon children, tied children, pool servers and workers,
//!    the executor's, the fork server — and the non-daemon children run on (as Python's, which
//!    its parent would join at exit), to be killed by the test.
//! 2. `SIGINT` to the process group: every process dies (the fork server ignores `SIGINT`, and
//!    exits with its parent).
//! 3. The program installs a `SIGINT` handler (a self-pipe, as the `ctrlc` crate does) before
//!    `init`. `SIGINT` to the process group: what the fork server started (`forkserver`
//!    children, pool servers and their workers) gets the default disposition back and dies,
//!    and the waits on it return by themselves; what was forked from the parent (`fork`)
//!    inherits the handler, as in Python, and lives on. The program reacts on a thread of its
//!    own, as a real one would: it feeds the queue a sentinel and terminates the `fork` pool,
//!    executor and children. Every wait returns, the program exits 0, and no process is left.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use multiproc::{Context, Process, Queue, Signal, StartMethod};

/// How long the test waits for anything.
const LIMIT: Duration = Duration::from_secs(20);

/// Blocks for good, after appending its pid to the file `path` (a task or a child).
fn block(path: String) -> u32 {
    let mut f = std::fs::OpenOptions::new().append(true).create(true).open(&path).unwrap();
    // One `write` of the whole line: appends of two processes never interleave.
    f.write_all(format!("{}\n", std::process::id()).as_bytes()).unwrap();
    drop(f);
    loop {
        // SAFETY: no preconditions.
        unsafe { libc::pause() };
    }
}

/// The write end of the program's self-pipe (written by its `SIGINT` handler).
static SELF_PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn on_sigint(_: libc::c_int) {
    let fd = SELF_PIPE.load(std::sync::atomic::Ordering::Relaxed);
    // SAFETY: `write` is async-signal-safe; a full pipe just drops the byte.
    unsafe { libc::write(fd, b"!".as_ptr().cast(), 1) };
}

/// Installs `on_sigint` (no `SA_RESTART`, as a C program might) and returns the read end.
fn install_handler() -> std::fs::File {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    SELF_PIPE.store(fds[1], std::sync::atomic::Ordering::Relaxed);
    // SAFETY: an all-zero sigaction is valid; the handler only writes to a pipe.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_sigint as *const () as usize;
    // SAFETY: `sa` is a valid sigaction.
    assert_eq!(unsafe { libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut()) }, 0);
    // SAFETY: a fresh descriptor that nothing else owns.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(fds[0]) }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

fn program(handler: bool) {
    let sigint = handler.then(install_handler);
    multiproc::init();
    let dir = std::env::var("CTRL_C_DIR").unwrap();
    let path = |name: &str| format!("{dir}/{name}");
    let fs = Context::new(StartMethod::Forkserver);

    let fork = {
        let p = path("fork");
        Process::builder().daemon(false).spawn(move || block(p)).unwrap()
    };
    let fork_daemon = {
        let p = path("fork-daemon");
        Process::builder().daemon(true).spawn(move || block(p)).unwrap()
    };
    let fork_tied = {
        let p = path("fork-tied");
        Process::builder().death_signal(Some(Signal::KILL)).spawn(move || block(p)).unwrap()
    };
    let fs_proc = fs.process(block, path("fs"));
    fs_proc.start().unwrap();
    let fs_daemon = fs.process_builder().daemon(true).call(block, path("fs-daemon"));
    fs_daemon.start().unwrap();
    let pool = fs.pool(2).unwrap();
    let fork_pool = Context::new(StartMethod::Fork).pool(1).unwrap();
    let fork_task = fork_pool.apply_async(block, path("fork-pool")).unwrap();
    let executor = fs.executor(1).unwrap();
    let future = executor.submit(block, path("executor")).unwrap();
    let fork_executor = Context::new(StartMethod::Fork).executor(1).unwrap();
    let fork_future = fork_executor.submit(block, path("fork-executor")).unwrap();
    let queue = Queue::<u32>::new().unwrap();

    let (tx, rx) = mpsc::channel::<String>();
    // Borrowed by the waiting threads and by the handler's reaction.
    let (fork, fork_daemon, fork_tied, fs_proc, fs_daemon) =
        (&fork, &fork_daemon, &fork_tied, &fs_proc, &fs_daemon);
    let (pool, fork_pool, fork_task, queue) = (&pool, &fork_pool, &fork_task, &queue);
    let (future, fork_executor, fork_future) = (&future, &fork_executor, &fork_future);
    let path = &path;
    std::thread::scope(|s| {
        macro_rules! wait {
            ($name:expr, $e:expr) => {{
                let tx = tx.clone();
                s.spawn(move || tx.send(format!("{}: {:?}", $name, $e)).unwrap());
            }};
        }
        wait!("fork", fork.join());
        wait!("fork-daemon", fork_daemon.join());
        wait!("fork-tied", fork_tied.join());
        wait!("fs", fs_proc.join());
        wait!("fs-daemon", fs_daemon.join());
        wait!("pool", pool.map(block, [path("pool"), path("pool")]));
        wait!("fork-pool", fork_task.get());
        wait!("executor", future.result());
        wait!("fork-executor", fork_future.result());
        wait!("queue", queue.get());

        // Ready once every blocked task and child has recorded its pid.
        let expect = [
            ("fork", 1),
            ("fork-daemon", 1),
            ("fork-tied", 1),
            ("fs", 1),
            ("fs-daemon", 1),
            ("pool", 2),
            ("fork-pool", 1),
            ("executor", 1),
            ("fork-executor", 1),
        ];
        let start = Instant::now();
        while !expect
            .iter()
            .all(|(n, k)| std::fs::read_to_string(path(n)).is_ok_and(|s| s.lines().count() >= *k))
        {
            assert!(start.elapsed() < LIMIT, "the tasks did not start");
            std::thread::sleep(Duration::from_millis(5)); // polling files, not synchronising
        }
        say("ready");

        if let Some(mut sigint) = sigint {
            // The program's reaction to Ctrl-C, on a thread of its own (as with `ctrlc`).
            let mut byte = [0u8; 1];
            std::io::Read::read_exact(&mut sigint, &mut byte).unwrap();
            say("handler: SIGINT");
            // Only what survives Ctrl-C needs it: what was forked from this process, which
            // inherited the handler. What the fork server started (`fs`, `fs-daemon`, `pool`,
            // `executor`) died of the SIGINT, and its waits return by themselves.
            queue.put(7).unwrap();
            fork_pool.terminate().unwrap();
            fork_executor.terminate_workers().unwrap();
            for p in [fork, fork_daemon, fork_tied] {
                p.terminate().unwrap();
            }
        }
        for _ in 0..10 {
            match rx.recv_timeout(LIMIT) {
                Ok(line) => say(&line),
                Err(_) => {
                    say("a wait did not return");
                    std::process::exit(3);
                }
            }
        }
    });
    say("all returned");
}

/// The pids of `root` and all its descendants now, with their start times (`/proc`).
fn tree(root: i32) -> BTreeMap<i32, u64> {
    let mut parent = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        if let Some((ppid, start)) = stat(pid) {
            parent.insert(pid, (ppid, start));
        }
    }
    let mut found = BTreeMap::new();
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        if let Some(&(_, start)) = parent.get(&p) {
            found.insert(p, start);
        }
        todo.extend(parent.iter().filter(|(_, (pp, _))| *pp == p).map(|(c, _)| *c));
    }
    found
}

/// `(ppid, start time)` of a live (not zombie) `pid`.
fn stat(pid: i32) -> Option<(i32, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
    if fields[0] == "Z" || fields[0] == "X" {
        return None;
    }
    Some((fields[1].parse().ok()?, fields[19].parse().ok()?))
}

/// Whether the process `pid` that started at `start` is still alive (not a zombie).
fn alive(pid: i32, start: u64) -> bool {
    stat(pid).is_some_and(|(_, s)| s == start)
}

/// Reaps the orphans reparented to this process (a subreaper).
fn reap_orphans() {
    // SAFETY: plain waitpid with a null status pointer.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
}

/// The process group of the program under test, killed by the watchdog before it aborts.
static GROUP: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Kills the program's process group (every process of its tree) and removes its pid files
/// when dropped: nothing is left behind when a check fails.
struct KillGroup(i32, std::path::PathBuf);

impl Drop for KillGroup {
    fn drop(&mut self) {
        GROUP.store(0, std::sync::atomic::Ordering::SeqCst);
        // SAFETY: plain kill of the group this test made.
        unsafe { libc::kill(-self.0, libc::SIGKILL) };
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scenario {
    ParentOnly,
    Group,
    GroupWithHandler,
}

fn run(scenario: Scenario) -> BTreeSet<String> {
    let dir = std::env::temp_dir().join(format!("ctrl_c.{}.{scenario:?}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let role = if scenario == Scenario::GroupWithHandler { "program-handler" } else { "program" };
    let mut prog = Command::new(std::env::current_exe().unwrap())
        .env("CTRL_C_ROLE", role)
        .env("CTRL_C_DIR", &dir)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = prog.id() as i32;
    GROUP.store(pid, std::sync::atomic::Ordering::SeqCst);
    let _kill_group = KillGroup(pid, dir.clone());
    let (lines_tx, lines) = mpsc::channel();
    let stdout = prog.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    assert_eq!(lines.recv_timeout(LIMIT).expect("the program got ready"), "ready");

    // Who is there: every process of the tree, by the names the pid files give.
    let procs = tree(pid);
    let mut named = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        for line in std::fs::read_to_string(entry.path()).unwrap().lines() {
            named.insert(line.parse::<i32>().unwrap(), name.clone());
        }
    }
    for p in named.keys() {
        assert!(procs.contains_key(p), "{scenario:?}: task {p} is not in the tree {procs:?}");
    }
    // The program, 8 blocked processes, the fork server, 3 pool servers, 2 idle workers? At
    // least the program and the blocked ones.
    assert!(procs.len() > named.len(), "{scenario:?}: {procs:?}");

    let target = if scenario == Scenario::ParentOnly { pid } else { -pid };
    // SAFETY: plain kill.
    assert_eq!(unsafe { libc::kill(target, libc::SIGINT) }, 0);

    let start = Instant::now();
    let status = loop {
        if let Some(status) = prog.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < LIMIT, "{scenario:?}: the program did not end");
        std::thread::sleep(Duration::from_millis(5)); // polling for an exit
    };
    let mut said: Vec<String> = lines.try_iter().collect();
    if scenario == Scenario::GroupWithHandler {
        // The reader thread may be behind: read on up to the program's last line.
        while !said.iter().any(|l| l == "all returned") {
            match lines.recv_timeout(LIMIT) {
                Ok(line) => said.push(line),
                Err(_) => break,
            }
        }
    }
    match scenario {
        Scenario::ParentOnly | Scenario::Group => {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.signal(), Some(libc::SIGINT), "{scenario:?}: {status:?} {said:?}");
        }
        Scenario::GroupWithHandler => {
            assert!(status.success(), "{scenario:?}: {status:?} {said:?}");
            assert!(said.iter().any(|l| l == "all returned"), "{said:?}");
            // How each wait returned.
            for (name, outcome) in [
                ("fork", "Err(Signaled(15))"),
                ("fork-daemon", "Err(Signaled(15))"),
                ("fork-tied", "Err(Signaled(15))"),
                ("fs", "Err(Signaled(2))"),
                ("fs-daemon", "Err(Signaled(2))"),
                ("pool", "Err("), // BrokenPool, or WorkerLost if a worker died first
                ("fork-pool", "Err(Terminated)"),
                ("executor", "Err("), // BrokenPool, or WorkerLost if a worker died first
                ("fork-executor", "Err(Terminated)"),
                ("queue", "Ok(7)"),
            ] {
                let prefix = format!("{name}: {outcome}");
                assert!(said.iter().any(|l| l.starts_with(&prefix)), "no {prefix:?} in {said:?}");
            }
        }
    }

    // Which processes are left, once things have had the time to die.
    let expected_survivors: BTreeSet<&str> = match scenario {
        Scenario::ParentOnly => ["fork", "fs"].into(),
        _ => BTreeSet::new(),
    };
    let start = Instant::now();
    let left = loop {
        reap_orphans();
        let left: BTreeMap<i32, u64> =
            procs.iter().filter(|&(&p, &s)| alive(p, s)).map(|(&p, &s)| (p, s)).collect();
        let unexpected: Vec<_> = left
            .keys()
            .filter(|p| !named.get(p).is_some_and(|n| expected_survivors.contains(n.as_str())))
            .collect();
        if unexpected.is_empty() || start.elapsed() > LIMIT {
            break left;
        }
        std::thread::sleep(Duration::from_millis(10)); // polling for exits
    };
    let left_names: BTreeSet<String> = left
        .keys()
        .map(|p| named.get(p).cloned().unwrap_or_else(|| format!("unnamed {p}")))
        .collect();
    // Clean up whatever is left, then report.
    for &p in left.keys() {
        // SAFETY: plain kill of a process this test's program made.
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    let start = Instant::now();
    while left.iter().any(|(&p, &s)| alive(p, s)) && start.elapsed() < LIMIT {
        reap_orphans();
        std::thread::sleep(Duration::from_millis(5));
    }
    reap_orphans();
    eprintln!("{scenario:?}: program said {said:?}; left running: {left_names:?}");
    left_names
}

fn main() {
    match std::env::var("CTRL_C_ROLE").as_deref() {
        Ok("program") => return program(false),
        Ok("program-handler") => return program(true),
        _ => {}
    }
    // Orphans of the program are reparented here, so that they can be checked and reaped.
    // SAFETY: plain prctl.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }, 0);
    // Watchdog: a deadlock fails in seconds instead of hanging CI.
    let (done, finished) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if finished.recv_timeout(Duration::from_secs(120)).is_err() {
            eprintln!("ctrl_c: still running after 120 s: deadlock; aborting");
            let group = GROUP.load(std::sync::atomic::Ordering::SeqCst);
            if group != 0 {
                // SAFETY: plain kill of the group this test made.
                unsafe { libc::kill(-group, libc::SIGKILL) };
            }
            std::process::abort();
        }
    });
    let mut failed = 0;
    for (scenario, survivors) in [
        (Scenario::ParentOnly, &["fork", "fs"][..]),
        (Scenario::Group, &[][..]),
        (Scenario::GroupWithHandler, &[][..]),
    ] {
        let left = run(scenario);
        let want: BTreeSet<String> = survivors.iter().map(|s| s.to_string()).collect();
        if left != want {
            eprintln!("ctrl_c: {scenario:?}: left running {left:?}, expected {want:?}");
            failed += 1;
        }
    }
    done.send(()).unwrap();
    println!("ctrl_c: {} passed, {failed} failed", 3 - failed);
    if failed > 0 {
        std::process::exit(1);
    }
}
