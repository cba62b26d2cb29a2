//! The `spawn` start method: a fresh `exec` of the running executable, which
//! [`init`](crate::init) turns into the requested child before `main` goes any further.
//!
//! The parent makes a `SOCK_SEQPACKET` socketpair, starts `/proc/self/exe` (or the path given to
//! [`set_executable`]) with the environment variable [`ENV`] naming the child's end, and sends
//! one [launch message](super::launch) on it. In the child, `init` finds the variable, removes
//! it, reads the message, checks that it runs the same executable as the sender (device and
//! inode: a different program refuses, it never jumps to an address of another binary), answers
//! `ok` (or the reason it refuses) and runs the entry. The parent waits for that answer, so a
//! refused or failed start is an error of `start`, not a silent exit.
#![allow(unsafe_code)] // `pre_exec`, and adopting the inherited socket in the child.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use multiproc_sys::Pid;
use multiproc_sys::io::fd::set_cloexec;
use multiproc_sys::io::poll::wait_readable;
use multiproc_sys::io::scm;
use multiproc_sys::io::socket::is_socket;
use multiproc_sys::process::exit::exit_now;
use multiproc_sys::time::Deadline;

use super::launch::{self, EntryFn, Launched, MAX_MESSAGE};

/// The environment variable that tells a spawned program which descriptor carries its launch
/// message.
pub(crate) const ENV: &str = "MULTIPROC_LAUNCH_FD";

/// How long the parent waits for a spawned program to reach [`init`](crate::init).
const HANDSHAKE: Duration = Duration::from_secs(30);

/// The executable to run instead of `/proc/self/exe`.
static EXECUTABLE: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Sets the program that the `spawn` start method runs (Python's `set_executable`). By default
/// it is the running executable itself (`/proc/self/exe`, which stays right even if the file
/// was replaced on disk since). A program that is not the same executable refuses to run the
/// child, and `start` fails with the reason.
///
/// ```
/// multiproc::set_executable("/proc/self/exe"); // the default
/// ```
pub fn set_executable(path: impl Into<PathBuf>) {
    *EXECUTABLE.lock().unwrap_or_else(|e| e.into_inner()) = Some(path.into());
}

/// Starts a fresh copy of the program running `entry`.
pub(crate) fn launch(
    entry: Option<EntryFn>,
    payload: &[u8],
    fds: Vec<OwnedFd>,
) -> io::Result<Launched> {
    if !super::is_initialised() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the 'spawn' start method needs multiproc::init() as the first line of main (or \
             multiproc::init_before_main!()): the new program must take over before main runs",
        ));
    }
    let msg = launch::encode(entry, payload);
    if msg.len() > MAX_MESSAGE {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "launch message too large"));
    }
    let (mine, theirs) = scm::seqpacket_pair()?;
    let exe = EXECUTABLE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_else(|| PathBuf::from("/proc/self/exe"));
    let mut cmd = std::process::Command::new(exe);
    if let Some(arg0) = std::env::args_os().next() {
        cmd.arg0(arg0);
    }
    let raw = theirs.as_raw_fd();
    cmd.env(ENV, raw.to_string());
    // SAFETY: the closure runs in the forked child before `exec` and only calls `fcntl`, which
    // is async-signal-safe; `raw` stays open in the child (the parent keeps `theirs` until
    // `spawn` returns), so borrowing it there is sound.
    unsafe {
        cmd.pre_exec(move || {
            let fd = std::os::fd::BorrowedFd::borrow_raw(raw);
            set_cloexec(fd, false).map_err(io::Error::from)
        });
    }
    let child = cmd.spawn()?;
    drop(theirs);
    let pid =
        Pid::from_raw(child.id() as i32).ok_or_else(|| io::Error::other("spawn returned pid 0"))?;
    let launched = Launched::direct(pid);
    drop(child);
    let pass: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
    let handshake = (|| -> io::Result<()> {
        match scm::send_fds(mine.as_fd(), &msg, &pass) {
            // The program exited already: the answer below says so.
            Ok(_) | Err(multiproc_sys::Errno::PIPE | multiproc_sys::Errno::CONNRESET) => {}
            Err(e) => return Err(e.into()),
        }
        if !wait_readable(mine.as_fd(), Deadline::after(Some(HANDSHAKE)))? {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the spawned program did not reach multiproc::init() in 30 s",
            ));
        }
        let mut reply = [0u8; 512];
        // A program that exits without reading the message resets the connection.
        let got = match scm::recv_fds(mine.as_fd(), &mut reply, &mut []) {
            Ok(r) => r.bytes,
            Err(multiproc_sys::Errno::CONNRESET) => 0,
            Err(e) => return Err(e.into()),
        };
        match &reply[..got] {
            b"ok" => Ok(()),
            [] => Err(io::Error::other(
                "the spawned program exited before multiproc::init() took over (does its main \
                 call multiproc::init() first?)",
            )),
            text => Err(io::Error::other(String::from_utf8_lossy(text).into_owned())),
        }
    })();
    if let Err(e) = handshake {
        let _ = launched.signal(multiproc_sys::Signal::KILL);
        let _ = launched.wait(Deadline::FOREVER);
        return Err(e);
    }
    Ok(launched)
}

/// In a spawned program: if [`ENV`] is set, becomes the child the launch message asks for
/// (never returns). Called by [`init`](crate::init), before `main` starts threads.
pub(crate) fn take_over_if_launched() {
    let Some(value) = std::env::var_os(ENV) else { return };
    // SAFETY: `init` runs at the top of `main` (or before it), while the program is
    // single-threaded: no other thread reads the environment concurrently.
    unsafe { std::env::remove_var(ENV) };
    let Some(fd) = parse_fd(&value) else {
        eprintln!("multiproc: {ENV}={value:?} does not name a launch socket; ignored");
        return;
    };
    // SAFETY: the descriptor was left open for this program by its parent (checked to be a
    // socket just above), and nothing else in this process owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = set_cloexec(sock.as_fd(), true);
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    let mut fds: [Option<OwnedFd>; scm::MAX_FDS] = Default::default();
    let refuse = |why: &str| -> ! {
        let _ = scm::send_fds(sock.as_fd(), why.as_bytes(), &[]);
        exit_now(127)
    };
    let r = match scm::recv_fds(sock.as_fd(), &mut buf, &mut fds) {
        Ok(r) if !r.truncated && r.bytes > 0 => r,
        _ => refuse("multiproc: no valid launch message arrived"),
    };
    let (header, payload) = match launch::decode(&buf[..r.bytes]) {
        Ok(x) => x,
        Err(e) => refuse(&format!("multiproc: refused to start: {e}")),
    };
    if header.exe != launch::exe_identity() {
        refuse(&format!(
            "multiproc: refused to start: {} is not the same executable as the parent's \
             (device:inode {}:{} here, {}:{} there); spawn only runs functions of the program \
             that asked for them",
            std::env::current_exe()
                .map_or_else(|_| "this program".into(), |p| p.display().to_string()),
            launch::exe_identity().0,
            launch::exe_identity().1,
            header.exe.0,
            header.exe.1,
        ));
    }
    let fds: Vec<OwnedFd> = fds.into_iter().take(r.fds).flatten().collect();
    let _ = scm::send_fds(sock.as_fd(), b"ok", &[]);
    drop(sock);
    super::run_entry(header, payload, fds)
}

/// The descriptor number in `value`, if it is a socket this process has open.
fn parse_fd(value: &OsString) -> Option<i32> {
    let fd: i32 = value.to_str()?.parse().ok()?;
    if fd < 0 {
        return None;
    }
    // SAFETY: borrowed only for the `fstat` in `is_socket`; an fd that is not open makes it
    // fail (EBADF), which reads as "not a socket".
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    is_socket(borrowed).then_some(fd)
}
