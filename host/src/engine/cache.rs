//! A cache of compiled components, so a restart does not compile again (half a
//! second for the tasks API here, at every start of every replica).
//!
//! An entry is named by the component's SHA-256 and this engine's compatibility
//! hash, so a new component or another wasmtime/configuration misses and compiles.
//! An entry is never trusted blindly, because loading one runs its machine code:
//! - the directory must belong to this user and be writable by nobody else (as
//!   ssh does with its keys), and so must every directory above it (`trust.rs`);
//!   otherwise the cache is not used at all. It is opened once and every entry is
//!   then opened, checked (owner, mode, regular file) and read through that
//!   descriptor, never by a path that could be swapped for a link;
//! - each entry carries the SHA-256 of its bytes, checked before loading, so a
//!   truncated or damaged file is recompiled rather than run;
//! - wasmtime itself checks the header and the engine compatibility hash, and a
//!   refused entry is recompiled and replaced;
//! - entries are written to temporary files created exclusively (`O_EXCL`, mode
//!   600) and removed if anything fails before the rename.
//!
//! The digest beside an entry is not a key: someone running as this same user (a
//! sidecar sharing the uid and the volume) could write both. Against that, use a
//! separate uid or `--no-compile-cache`.
//!
//! A cache that cannot be used costs a warning and the compile time, never the start.

use super::trust;
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use sha2::{Digest, Sha256};
use std::ffi::{OsStr, OsString};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// What happened at a lookup (logged, and asserted by tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from the cache.
    Hit,
    /// Not in the cache: compiled and stored.
    Miss,
    /// An entry was there but failed its digest or wasmtime's checks: compiled
    /// again and replaced.
    Replaced,
    /// The cache could not be used (see the warning): compiled, nothing stored.
    Unusable,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("creating the compile cache directory {0}: {1}")]
    Create(PathBuf, std::io::Error),
    #[error("the compile cache directory {0} is not a directory owned by this user")]
    NotOwned(PathBuf),
    #[error(
        "the compile cache directory {0} is writable by group or others (mode {1:o}); fix it with chmod 700"
    )]
    Writable(PathBuf, u32),
    #[error("the compile cache directory cannot be trusted: {0}")]
    Untrusted(trust::TrustError),
}

pub struct CompileCache {
    dir: PathBuf,
    /// The directory, opened once after its checks: entries are reached through it.
    fd: OwnedFd,
}

impl CompileCache {
    /// Opens (creating, mode 700) the cache directory, refusing one that another
    /// user could write to.
    pub fn open(dir: &Path) -> Result<Self, CacheError> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| CacheError::Create(dir.to_owned(), e))?;
        let meta =
            std::fs::symlink_metadata(dir).map_err(|e| CacheError::Create(dir.to_owned(), e))?;
        if !meta.is_dir() || meta.uid() != trust::euid() {
            return Err(CacheError::NotOwned(dir.to_owned()));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            return Err(CacheError::Writable(dir.to_owned(), mode));
        }
        // The same checks again on the descriptor, the directories above included:
        // the path may have changed since.
        let fd = trust::open_dir(dir).map_err(CacheError::Untrusted)?;
        let st =
            rustix::fs::fstat(&fd).map_err(|e| CacheError::Create(dir.to_owned(), e.into()))?;
        if st.st_uid != trust::euid() {
            return Err(CacheError::NotOwned(dir.to_owned()));
        }
        Ok(Self {
            dir: dir.to_owned(),
            fd,
        })
    }

    /// The entry's file name for a component whose SHA-256 (hex, any prefix length)
    /// is `digest` under this engine: `<name>-<digest>-<engine>.cwasm`.
    fn entry(&self, engine: &Engine, name: &str, digest: &str) -> OsString {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        OsString::from(format!("{name}-{digest}-{:016x}.cwasm", h.finish()))
    }

    /// The component compiled from `wasm`: from the cache when a valid entry exists,
    /// else compiled now and stored (replacing this name's older entries). `digest`
    /// is the component's SHA-256 when the caller already knows it (the built-in
    /// component's is computed at build time); otherwise it is computed here.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        name: &str,
        wasm: &[u8],
        digest: Option<&str>,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let digest = digest.map_or_else(|| hex(&Sha256::digest(wasm)[..16]), str::to_owned);
        let entry = self.entry(engine, name, &digest);
        let path = self.dir.join(&entry);
        let mut outcome = CacheOutcome::Miss;
        match self.read_verified(&entry) {
            Ok(Some(bytes)) => match deserialize(engine, &bytes) {
                Ok(c) => return Ok((c, CacheOutcome::Hit)),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = format!("{e:#}"), "wasmtime refused the cached component; compiling it again");
                    outcome = CacheOutcome::Replaced;
                }
            },
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!(file = %path.display(), reason, "damaged compile cache entry; compiling it again");
                outcome = CacheOutcome::Replaced;
            }
        }
        let compiled = engine.precompile_component(wasm)?;
        // Load what will be stored, so the entry is exactly what runs.
        let component = deserialize(engine, &compiled)?;
        if let Err(e) = self.store(&entry, name, &compiled) {
            tracing::warn!(file = %path.display(), error = %e, "could not write the compile cache entry; the next start compiles again");
            return Ok((component, CacheOutcome::Unusable));
        }
        Ok((component, outcome))
    }

    /// Writes the entry and its digest atomically (temporary file, fsync, rename),
    /// then removes this name's other entries (older components or engines).
    fn store(&self, entry: &OsStr, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let digest = digest_name(entry);
        self.write_atomic(&digest, hex(&Sha256::digest(bytes)).as_bytes())?;
        self.write_atomic(entry, bytes)?;
        let keep = [entry, digest.as_os_str()];
        for found in std::fs::read_dir(&self.dir)?.flatten() {
            let file = found.file_name();
            let stale = file.to_str().is_some_and(|f| {
                f.starts_with(&format!("{name}-"))
                    && (f.ends_with(".cwasm") || f.ends_with(".cwasm.sha256"))
            });
            if stale && !keep.contains(&file.as_os_str()) {
                let _ =
                    rustix::fs::unlinkat(&self.fd, file.as_os_str(), rustix::fs::AtFlags::empty());
            }
        }
        Ok(())
    }

    /// The entry's bytes if it exists and matches its recorded digest; `Ok(None)`
    /// when there is no entry; `Err` with the reason when it is there but not usable
    /// (unreadable, not a regular file, writable by others, or damaged).
    fn read_verified(&self, entry: &OsStr) -> Result<Option<Vec<u8>>, &'static str> {
        let Some(bytes) = trust::read_at(&self.fd, &self.dir, entry)
            .map_err(|_| "untrusted or unreadable entry")?
        else {
            return Ok(None);
        };
        let recorded = trust::read_at(&self.fd, &self.dir, &digest_name(entry))
            .ok()
            .flatten()
            .ok_or("no digest")?;
        if String::from_utf8_lossy(&recorded).trim() != hex(&Sha256::digest(&bytes)) {
            return Err("digest mismatch");
        }
        Ok(Some(bytes))
    }

    /// A new file (never an existing one or a link: `O_EXCL`), written and synced,
    /// then renamed over `name`; removed if anything fails before the rename.
    fn write_atomic(&self, name: &OsStr, bytes: &[u8]) -> std::io::Result<()> {
        let mut tmp = name.to_owned();
        tmp.push(format!(".tmp{}", std::process::id()));
        let fd = rustix::fs::openat(
            &self.fd,
            tmp.as_os_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let written = (|| {
            let mut f = std::fs::File::from(fd);
            f.write_all(bytes)?;
            f.sync_all()?;
            rustix::fs::renameat(&self.fd, tmp.as_os_str(), &self.fd, name)?;
            Ok(())
        })();
        if written.is_err() {
            let _ = rustix::fs::unlinkat(&self.fd, tmp.as_os_str(), rustix::fs::AtFlags::empty());
        }
        written
    }
}

fn digest_name(entry: &OsStr) -> OsString {
    let mut p = entry.to_owned();
    p.push(".sha256");
    p
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: wasmtime trusts these bytes to be its own output. They are: either
    // just produced by `precompile_component`, or read back from a directory only
    // this user can write, after their SHA-256 matched the digest written with
    // them; wasmtime also checks the header and the engine compatibility hash.
    unsafe { Component::deserialize(engine, bytes) }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    // A tiny component (an empty one) keeps these tests fast; the cache does not
    // care what the component does.
    const EMPTY: &[u8] = b"\0asm\x0d\0\x01\0";

    fn engine() -> Engine {
        let mut c = wasmtime::Config::new();
        c.wasm_component_model(true);
        Engine::new(&c).unwrap()
    }

    /// What one lookup of the test component did.
    fn outcome(cache: &CompileCache, engine: &Engine) -> CacheOutcome {
        cache.load_or_compile(engine, "t", EMPTY, None).unwrap().1
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    /// A cache in a fresh directory holding the test component's entry: the
    /// temporary directory (kept alive), the cache directory, the cache, its engine
    /// and the entry's path.
    fn cached() -> (tempfile::TempDir, PathBuf, CompileCache, Engine, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        let cache = CompileCache::open(&dir).unwrap();
        let e = engine();
        cache.load_or_compile(&e, "t", EMPTY, None).unwrap();
        let entry = dir.join(cache.entry(&e, "t", &hex(&Sha256::digest(EMPTY)[..16])));
        (tmp, dir, cache, e, entry)
    }

    #[test]
    fn miss_then_hit_and_one_entry_per_name() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = CompileCache::open(&tmp.path().join("c")).unwrap();
        let e = engine();
        assert_eq!(outcome(&cache, &e), CacheOutcome::Miss);
        assert_eq!(outcome(&cache, &e), CacheOutcome::Hit);
        assert_eq!(entries(&tmp.path().join("c")).len(), 2, "entry + digest");
        // Another engine configuration is another entry, replacing the first.
        let mut c = wasmtime::Config::new();
        c.wasm_component_model(true).epoch_interruption(true);
        let e2 = Engine::new(&c).unwrap();
        assert_eq!(outcome(&cache, &e2), CacheOutcome::Miss);
        assert_eq!(entries(&tmp.path().join("c")).len(), 2, "old entry removed");
    }

    #[test]
    fn damaged_or_foreign_entries_are_recompiled_not_run() {
        let (_tmp, _dir, cache, e, entry) = cached();
        let digest_path = |p: &Path| PathBuf::from(digest_name(p.as_os_str()));

        // One flipped byte in the code: the digest catches it.
        let mut bytes = std::fs::read(&entry).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&entry, &bytes).unwrap();
        assert_eq!(outcome(&cache, &e), CacheOutcome::Replaced);
        assert_eq!(outcome(&cache, &e), CacheOutcome::Hit);

        // A consistent entry (digest matches) that is not wasmtime output for this
        // engine: wasmtime refuses it, and it is replaced.
        let junk = b"not a compiled component".to_vec();
        std::fs::write(&entry, &junk).unwrap();
        std::fs::write(digest_path(&entry), hex(&Sha256::digest(&junk))).unwrap();
        assert_eq!(outcome(&cache, &e), CacheOutcome::Replaced);

        // No digest at all.
        std::fs::remove_file(digest_path(&entry)).unwrap();
        assert_eq!(outcome(&cache, &e), CacheOutcome::Replaced);
        assert_eq!(outcome(&cache, &e), CacheOutcome::Hit);
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            CompileCache::open(&dir),
            Err(CacheError::Writable(_, 0o777))
        ));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(CompileCache::open(&dir).is_ok());
        // A parent others can write (not sticky) could swap the directory itself.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            CompileCache::open(&dir),
            Err(CacheError::Untrusted(_))
        ));
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    }

    /// Entries are read through the directory's descriptor with the same checks:
    /// an entry made a link, or writable by others, is recompiled and replaced, and
    /// what it pointed to is never read; no temporary file is left behind.
    #[test]
    fn links_and_entries_others_can_write_are_not_run() {
        use std::os::unix::fs::PermissionsExt;
        let (tmp, dir, cache, e, entry) = cached();

        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(outcome(&cache, &e), CacheOutcome::Replaced);
        let mode = std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the replacement is a fresh owner-only file");

        let elsewhere = tmp.path().join("planted.cwasm");
        std::fs::rename(&entry, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &entry).unwrap();
        assert_eq!(outcome(&cache, &e), CacheOutcome::Replaced);
        assert!(
            !std::fs::symlink_metadata(&entry)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(outcome(&cache, &e), CacheOutcome::Hit);
        assert!(
            entries(&dir).iter().all(|f| !f.contains(".tmp")),
            "{:?}",
            entries(&dir)
        );
    }
}
