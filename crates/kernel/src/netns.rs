//! Network namespaces: open one by path, run code inside one, create and remove named ones.
//!
//! `setns(CLONE_NEWNET)` changes only the calling thread, so [`run_in`] does its work on a fresh
//! thread that enters the namespace and then dies: no thread is ever returned to a pool (or to the
//! caller) in the wrong namespace. Sockets opened there stay bound to that namespace, which is how
//! callers keep working in it from their own thread (see `netlink::Netlink::open_in`).
//!
//! [`visit`] is the cheap variant for a few system calls (opening a socket or a `/proc/sys`
//! file): it switches the calling thread there and back, which costs two `setns` calls where a
//! thread costs a hundred microseconds, a tenth of a CNI ADD.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

/// Where `ip netns` keeps named namespaces; podnet uses the same place so `ip netns exec` works.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Opens a network namespace file (`/run/netns/NAME`, `/proc/PID/ns/net`, …).
pub fn open(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// Runs `f` on a new thread inside the namespace `ns`, and returns its result.
///
/// A panic in `f` is propagated to the caller.
pub fn run_in<T: Send>(ns: &File, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            Ok(f())
        });
        match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Runs `f` on the calling thread inside the namespace `ns`, then returns the thread to the
/// namespace it was in. Meant for short, non-panicking work such as opening sockets or files that
/// stay bound to `ns`.
///
/// If the thread cannot be returned (which needs the kernel to refuse a namespace it was just
/// in), the process aborts: everything it did afterwards would happen in the wrong namespace.
pub fn visit<T>(ns: &File, f: impl FnOnce() -> T) -> io::Result<T> {
    let home = File::open("/proc/thread-self/ns/net")?;
    nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
    let out = f();
    if let Err(e) = nix::sched::setns(home.as_fd(), CloneFlags::CLONE_NEWNET) {
        eprintln!("podnet: cannot return to the original network namespace: {e}; aborting");
        std::process::abort();
    }
    Ok(out)
}

/// True when `ns` is the namespace the calling thread is in (compares device and inode).
pub fn is_current(ns: &File) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let ours = std::fs::metadata("/proc/thread-self/ns/net")?;
    let theirs = ns.metadata()?;
    Ok(ours.dev() == theirs.dev() && ours.ino() == theirs.ino())
}

/// Creates a new, empty network namespace bound at `/run/netns/<name>` (as `ip netns add` does).
///
/// Fails with `AlreadyExists` if the name is taken. The namespace lives until [`delete_named`].
pub fn create_named(name: &str) -> io::Result<PathBuf> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("netns name {name:?} must be a plain file name"),
        ));
    }
    std::fs::create_dir_all(NETNS_RUN_DIR)?;
    let path = Path::new(NETNS_RUN_DIR).join(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    let bound = std::thread::scope(|scope| {
        scope
            .spawn(|| -> io::Result<()> {
                nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                nix::mount::mount(
                    Some("/proc/thread-self/ns/net"),
                    &path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(io::Error::from)
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("netns creation thread panicked")))
    });
    if let Err(e) = bound {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

/// Removes a namespace made by [`create_named`]. Succeeds if it is already gone.
///
/// The namespace itself is freed by the kernel once no process, socket or mount holds it.
pub fn delete_named(name: &str) -> io::Result<()> {
    let path = Path::new(NETNS_RUN_DIR).join(name);
    match nix::mount::umount2(&path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
