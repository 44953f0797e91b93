//! Persistence of small named blobs (keys, pairings, counters, the IID cache).
//!
//! [`FileStore`] writes each blob atomically: temp file, fsync, rename, fsync of the
//! directory, so a kill -9 at any point leaves either the old or the new file. Files are mode
//! 0600 and the directory 0700 because they hold the accessory's long-term secret key.
//! [`MemoryStore`] is the in-memory twin for tests; clones share contents, so a "restart" is a
//! new server over a clone.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// Named blob storage.
pub trait Store: Send + Sync {
    /// The blob `name`, or `None` if it was never saved.
    ///
    /// # Errors
    /// IO errors other than "not found".
    fn load(&self, name: &str) -> io::Result<Option<Vec<u8>>>;

    /// Replaces the blob `name` atomically.
    ///
    /// # Errors
    /// IO errors; the previous contents are then unchanged.
    fn save(&self, name: &str, data: &[u8]) -> io::Result<()>;
}

/// Blobs as files in one directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// Opens (creating with mode 0700 if needed) the state directory `dir`.
    ///
    /// # Errors
    /// When the directory cannot be created or its mode set.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            builder.mode(0o700);
        }
        builder.create(&dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        }
        // Temp files of saves that a crash interrupted (other processes' ids; this process's
        // own may be in flight in another store on the same directory).
        let ours = format!(".{}.", std::process::id());
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') && name.ends_with(".tmp") && !name.contains(&ours) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(Self { dir })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> io::Result<PathBuf> {
        // Names are ours, but keep them from escaping the directory.
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bad store name",
            ));
        }
        Ok(self.dir.join(name))
    }
}

impl Store for FileStore {
    fn load(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.path(name)?) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn save(&self, name: &str, data: &[u8]) -> io::Result<()> {
        let path = self.path(name)?;
        // A fresh temp file per save: an existing one (a crash mid-save, or planted) would keep
        // its own mode and owner through `truncate`, and two saves of one name (a handler and
        // the control task) must not write into the same file.
        static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = self
            .dir
            .join(format!(".{name}.{}.{n}.tmp", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        let written = Self::write_synced(&mut f, data);
        drop(f);
        if let Err(e) = written.and_then(|()| fs::rename(&tmp, &path)) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        // Make the rename itself durable.
        fs::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }
}

impl FileStore {
    fn write_synced(f: &mut fs::File, data: &[u8]) -> io::Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            // Explicit, whatever the umask or the file system did at create.
            f.set_permissions(fs::Permissions::from_mode(0o600))?;
        }
        f.write_all(data)?;
        f.sync_all()
    }
}

/// In-memory store; clones share the same contents.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    blobs: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemoryStore {
    fn load(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        let blobs = self.blobs.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(blobs.get(name).cloned())
    }

    fn save(&self, name: &str, data: &[u8]) -> io::Result<()> {
        let mut blobs = self.blobs.lock().unwrap_or_else(PoisonError::into_inner);
        blobs.insert(name.to_owned(), data.to_vec());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_store_round_trips_with_private_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let s = FileStore::open(&dir).unwrap();
        assert_eq!(s.load("a.json").unwrap(), None);
        s.save("a.json", b"one").unwrap();
        s.save("a.json", b"two").unwrap();
        assert_eq!(s.load("a.json").unwrap().as_deref(), Some(&b"two"[..]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let fmode = fs::metadata(dir.join("a.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(fmode & 0o777, 0o600);
            let dmode = fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(dmode & 0o777, 0o700);
        }
        // No temp file is left behind.
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.json")]);
        // A reopened store sees the data.
        assert_eq!(
            FileStore::open(&dir)
                .unwrap()
                .load("a.json")
                .unwrap()
                .as_deref(),
            Some(&b"two"[..])
        );
    }

    #[test]
    fn a_stale_temp_file_from_a_crash_does_not_hide_the_old_value() {
        let tmp = tempfile::tempdir().unwrap();
        let s = FileStore::open(tmp.path()).unwrap();
        s.save("p.json", b"old").unwrap();
        // Simulate kill -9 after writing the temp file but before the rename.
        fs::write(tmp.path().join(".p.json.tmp"), b"half").unwrap();
        assert_eq!(s.load("p.json").unwrap().as_deref(), Some(&b"old"[..]));
        s.save("p.json", b"new").unwrap();
        assert_eq!(s.load("p.json").unwrap().as_deref(), Some(&b"new"[..]));
    }

    #[cfg(unix)]
    #[test]
    fn a_stale_world_writable_temp_file_does_not_make_the_state_file_public() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let s = FileStore::open(tmp.path()).unwrap();
        let stale = tmp.path().join(".accessory.json.tmp");
        fs::write(&stale, b"planted").unwrap();
        fs::set_permissions(&stale, fs::Permissions::from_mode(0o666)).unwrap();
        s.save("accessory.json", b"secret").unwrap();
        let mode = fs::metadata(tmp.path().join("accessory.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            s.load("accessory.json").unwrap().as_deref(),
            Some(&b"secret"[..])
        );
    }

    #[test]
    fn names_cannot_escape_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let s = FileStore::open(tmp.path()).unwrap();
        assert!(s.save("../x", b"1").is_err());
        assert!(s.save(".hidden", b"1").is_err());
        assert!(s.load("").is_err());
    }

    #[test]
    fn memory_store_clones_share() {
        let a = MemoryStore::new();
        let b = a.clone();
        a.save("k", b"v").unwrap();
        assert_eq!(b.load("k").unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(b.load("missing").unwrap(), None);
    }
}
