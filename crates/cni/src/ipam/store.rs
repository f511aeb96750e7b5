//! The on-disk IPAM store for one network on one node: the whole [`IpamState`] in one JSON file,
//! read and replaced under an exclusive file lock.
//!
//! Layout of `<dataDir>/<network name>/`:
//! - `lock`: empty. Every invocation holds an exclusive `flock` on it from load to save, so
//!   concurrent ADD/DEL/GC (threads or processes) see each other's changes. host-local locks the
//!   same file name in the same default directory.
//! - `state.<N>.json`: generation N of the state, `{"version": 1, "state": {"attachments": [...],
//!   "lastReserved": {...}}}`. The highest N is the committed state.
//! - `state.tmp`: the next state while it is written. It is renamed to `state.<N+1>.json`, then
//!   older generations are removed. A crash of the process at any point leaves the old or the new
//!   generation as the highest, never a torn one; a leftover temp file is never read, and older
//!   generations left by a crash are removed by the next save.
//! - `boot`: the kernel's boot ID of the last boot in which this store was saved.
//!
//! Each generation gets a fresh name rather than replacing `state.json`: ext4 flushes a file
//! renamed *over* another to disk at once (`auto_da_alloc`), which costs a third of a millisecond
//! per save; a rename to a new name and an unlink cost a few microseconds.
//!
//! Durability is paid once per boot, not per ADD. The first save of a boot syncs the state and
//! the directory, then records the boot ID (synced too); later saves skip `fsync`, which would
//! otherwise be a third of an ADD. Only a power loss or kernel crash can lose an unsynced save,
//! and that means a reboot: no pod of the old boot is still running, the runtime's GC reconciles
//! what the state still lists, and a state file torn by it is recognised by its stale `boot`
//! record and started afresh. A state that does not decode in the boot that wrote it is an error,
//! never an empty state (that would hand out addresses pods still use).
//!
//! Why one file: a single atomic rename is the simplest crash-safe unit, and a node holds a few
//! hundred allocations at most, so rewriting them all per change costs little. It also makes DEL
//! a map lookup instead of host-local's walk over one file per address.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::allocator::IpamState;
use crate::error::{CniError, Code, Result};

const LOCK_FILE: &str = "lock";
const STATE_PREFIX: &str = "state.";
const STATE_SUFFIX: &str = ".json";
const TEMP_FILE: &str = "state.tmp";
const PROBE_FILE: &str = "probe";
const BOOT_FILE: &str = "boot";
const BOOT_TEMP_FILE: &str = "boot.tmp";
/// The running kernel's boot ID (a random UUID per boot).
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";
/// Bumped when the file's meaning changes, so an older plugin refuses a newer file.
const VERSION: u32 = 1;

/// The store directory of one network.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    /// Where to read the current boot ID; tests point it elsewhere.
    boot_id_path: PathBuf,
}

/// The store while this process holds its lock; dropping it unlocks.
#[derive(Debug)]
pub struct Locked {
    /// Held for its lock only: closing the file releases the `flock`.
    _lock: File,
    dir: PathBuf,
    boot_id_path: PathBuf,
}

#[derive(Serialize)]
struct StateFileRef<'a> {
    version: u32,
    state: &'a IpamState,
}

#[derive(Deserialize)]
struct StateFile {
    version: u32,
    state: IpamState,
}

impl Store {
    /// Opens (creating with parents) `<data_dir>/<network>`. The network name becomes a
    /// directory name, so `/`, `.` and `..` are refused.
    pub fn open(data_dir: &Path, network: &str) -> Result<Self> {
        if network.is_empty()
            || network == "."
            || network == ".."
            || network.contains('/')
            || network.contains('\0')
        {
            return Err(CniError::new(
                Code::InvalidConfig,
                format!(
                    "name: {network:?} cannot name the IPAM store directory (expected a \
                     non-empty name without '/', not \".\" or \"..\")"
                ),
            ));
        }
        let dir = data_dir.join(network);
        fs::create_dir_all(&dir).map_err(|e| io_error("cannot create IPAM directory", &dir, e))?;
        Ok(Self {
            dir,
            boot_id_path: PathBuf::from(BOOT_ID_PATH),
        })
    }

    /// Reads the current boot ID from `path` instead of the kernel's (for tests).
    pub fn with_boot_id_path(mut self, path: PathBuf) -> Self {
        self.boot_id_path = path;
        self
    }

    /// The store directory, `<data_dir>/<network>`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding the committed state, if any (for tests and tools that read it).
    pub fn state_file(&self) -> Result<Option<PathBuf>> {
        Ok(self.lock()?.generations()?.pop().map(|(_, p)| p))
    }

    /// Waits for the exclusive lock. Each call opens `lock` anew: `flock` locks belong to an
    /// open file, so this serialises threads of one process as well as processes.
    pub fn lock(&self) -> Result<Locked> {
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_error("cannot open IPAM lock file", &path, e))?;
        file.lock()
            .map_err(|e| io_error("cannot lock IPAM lock file", &path, e))?;
        Ok(Locked {
            _lock: file,
            dir: self.dir.clone(),
            boot_id_path: self.boot_id_path.clone(),
        })
    }

    /// Lock, load, run `f`, save if `f` changed the state, unlock. An error from `f` saves
    /// nothing. Read-only uses (CHECK, STATUS) thus never write.
    pub fn update<T>(&self, f: impl FnOnce(&mut IpamState) -> Result<T>) -> Result<T> {
        let locked = self.lock()?;
        // Nobody else changes the generations while the lock is held: one listing serves both.
        let generations = locked.generations()?;
        let before = locked.load_latest(generations.last())?;
        let mut state = before.clone();
        let out = f(&mut state)?;
        if state != before {
            locked.save_after(&state, &generations)?;
        }
        Ok(out)
    }

    /// For STATUS: `Ok` if files can be locked, created and removed in the directory; the error
    /// says which operation failed on which path.
    pub fn is_writable(&self) -> Result<()> {
        let _locked = self.lock()?;
        let probe = self.dir.join(PROBE_FILE);
        fs::write(&probe, b"").map_err(|e| io_error("cannot write", &probe, e))?;
        fs::remove_file(&probe).map_err(|e| io_error("cannot remove", &probe, e))
    }
}

impl Locked {
    /// The committed state; an empty one if nothing was ever saved, or if the file was torn in an
    /// earlier boot. A file that does not decode in the boot that wrote it is an error.
    pub fn load(&self) -> Result<IpamState> {
        self.load_latest(self.generations()?.last())
    }

    /// [`Locked::load`] from `latest`, the highest generation present.
    fn load_latest(&self, latest: Option<&(u64, PathBuf)>) -> Result<IpamState> {
        let Some((_, path)) = latest else {
            return Ok(IpamState::default());
        };
        let bytes = fs::read(path).map_err(|e| io_error("cannot read IPAM state", path, e))?;
        let file: StateFile = match serde_json::from_slice(&bytes) {
            Ok(file) => file,
            Err(_) if self.saved_in_earlier_boot() => {
                // Torn by the power loss or crash that ended that boot; its pods died with it.
                eprintln!(
                    "podnet-cni: IPAM state {} was torn by the end of an earlier boot; starting \
                     from an empty state",
                    path.display()
                );
                return Ok(IpamState::default());
            }
            Err(e) => return Err(corrupt(path, e)),
        };
        if file.version != VERSION {
            return Err(CniError::new(
                Code::Decode,
                format!(
                    "IPAM state {} has version {}; this podnet-cni reads version {VERSION}",
                    path.display(),
                    file.version
                ),
            ));
        }
        Ok(file.state)
    }

    /// Replaces the committed state with `state` atomically (temp file, rename); durably on the
    /// first save of a boot (see the module docs).
    pub fn save(&self, state: &IpamState) -> Result<()> {
        self.save_after(state, &self.generations()?)
    }

    /// [`Locked::save`] over `older`, the generations present (oldest first).
    fn save_after(&self, state: &IpamState, older: &[(u64, PathBuf)]) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(&StateFileRef {
            version: VERSION,
            state,
        })
        .map_err(|e| {
            CniError::new(Code::Io, format!("cannot encode IPAM state: {e}")).with_details(e)
        })?;
        let next = older.last().map_or(1, |(n, _)| n + 1);
        let boot = self.current_boot();
        let first_in_boot = boot.is_none() || self.recorded_boot() != boot;

        let tmp = self.dir.join(TEMP_FILE);
        let path = self.state_path(next);
        write_file(&tmp, &bytes, first_in_boot)?;
        fs::rename(&tmp, &path).map_err(|e| io_error("cannot rename to", &path, e))?;
        for (_, old) in older {
            match fs::remove_file(old) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_error("cannot remove", old, e));
                }
                _ => {}
            }
        }
        if let (true, Some(boot)) = (first_in_boot, boot) {
            self.sync_dir()?;
            let tmp = self.dir.join(BOOT_TEMP_FILE);
            let path = self.dir.join(BOOT_FILE);
            write_file(&tmp, boot.as_bytes(), true)?;
            fs::rename(&tmp, &path).map_err(|e| io_error("cannot replace", &path, e))?;
            self.sync_dir()?;
        }
        Ok(())
    }

    /// The path of generation `n`.
    fn state_path(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{STATE_PREFIX}{n}{STATE_SUFFIX}"))
    }

    /// The state generations present, oldest first.
    fn generations(&self) -> Result<Vec<(u64, PathBuf)>> {
        let entries = fs::read_dir(&self.dir).map_err(|e| io_error("cannot list", &self.dir, e))?;
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error("cannot list", &self.dir, e))?;
            let name = entry.file_name();
            let generation = name
                .to_str()
                .and_then(|n| n.strip_prefix(STATE_PREFIX))
                .and_then(|n| n.strip_suffix(STATE_SUFFIX))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(n) = generation {
                found.push((n, entry.path()));
            }
        }
        found.sort();
        Ok(found)
    }

    fn sync_dir(&self) -> Result<()> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error("cannot sync", &self.dir, e))
    }

    /// The running kernel's boot ID, if it can be read.
    fn current_boot(&self) -> Option<String> {
        let id = fs::read_to_string(&self.boot_id_path).ok()?;
        Some(id.trim().to_owned()).filter(|id| !id.is_empty())
    }

    /// The boot ID recorded by the first save of the latest boot that saved.
    fn recorded_boot(&self) -> Option<String> {
        let id = fs::read_to_string(self.dir.join(BOOT_FILE)).ok()?;
        Some(id.trim().to_owned())
    }

    /// True when the state was last saved in an earlier boot than the running one (and both
    /// are known).
    fn saved_in_earlier_boot(&self) -> bool {
        matches!(
            (self.recorded_boot(), self.current_boot()),
            (Some(recorded), Some(now)) if recorded != now
        )
    }
}

/// Writes `bytes` to a fresh `path`, syncing its data to disk when `durable`.
fn write_file(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| io_error("cannot create", path, e))?;
    file.write_all(bytes)
        .and_then(|()| if durable { file.sync_data() } else { Ok(()) })
        .map_err(|e| io_error("cannot write", path, e))
}

fn corrupt(path: &Path, e: serde_json::Error) -> CniError {
    CniError::new(
        Code::Decode,
        format!(
            "IPAM state {} is corrupt: {e} (moving it aside frees every address of this \
             network on this node, including ones pods still use)",
            path.display()
        ),
    )
    .with_details(e)
}

fn io_error(what: &str, path: &Path, e: io::Error) -> CniError {
    CniError::new(Code::Io, format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests;
