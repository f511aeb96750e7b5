//! Sysctls under `/proc/sys/net`, which belong to the network namespace of the calling thread.

use std::io;
use std::path::Path;

/// Writes `value` to `/proc/sys/<key>` (key with `/` separators, e.g. `net/ipv4/ip_forward`),
/// skipping the write when the value is already set.
pub fn set(key: &str, value: &str) -> io::Result<()> {
    let path = Path::new("/proc/sys").join(key);
    match std::fs::read_to_string(&path) {
        Ok(current) if current.trim() == value => return Ok(()),
        _ => {}
    }
    std::fs::write(&path, value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing {value:?} to {}: {e}", path.display()),
        )
    })
}

/// Reads `/proc/sys/<key>`, trimmed.
pub fn get(key: &str) -> io::Result<String> {
    Ok(std::fs::read_to_string(Path::new("/proc/sys").join(key))?
        .trim()
        .to_owned())
}
