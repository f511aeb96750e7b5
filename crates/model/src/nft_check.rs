//! Tests only: the kernel's own verdict on a rendered script. `nft -c` (check mode: the kernel
//! validates the whole transaction, then discards it), or scripts applied and the table listed,
//! in a throwaway network namespace, so nothing on this machine is touched. Usable only as root with `nft` and `unshare`; callers
//! skip (with a note) otherwise.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Whether `nft -c` can run here: root, `nft` and `unshare`.
pub(crate) fn can_check() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let has = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    root && has("nft") && has("unshare")
}

/// `nft -c -f -` with `script` in a new network namespace; nft's complaint on failure.
pub(crate) fn nft_check(script: &str) -> Result<(), String> {
    let mut child = Command::new("unshare")
        .args(["--net", "nft", "-c", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(script.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// In a new network namespace, `nft -f` each script in turn, then `nft list table <table>`:
/// the listing, or nft's complaint about the first script it refused.
pub(crate) fn nft_apply_and_list(scripts: &[&str], table: &str) -> Result<String, String> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir();
    let run = format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut files = Vec::new();
    for (i, script) in scripts.iter().enumerate() {
        let path = dir.join(format!("podnet-nft-{run}-{i}.nft"));
        std::fs::write(&path, script).map_err(|e| format!("{}: {e}", path.display()))?;
        files.push(path);
    }
    let out = Command::new("unshare")
        .args([
            "--net",
            "sh",
            "-c",
            &format!("set -e; for f in \"$@\"; do nft -f \"$f\"; done; nft list table {table}"),
            "sh",
        ])
        .args(&files)
        .output()
        .map_err(|e| e.to_string());
    for f in &files {
        let _ = std::fs::remove_file(f);
    }
    let out = out?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
