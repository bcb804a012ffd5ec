//! Native code is trusted only by explicit choice, and only from files nobody else
//! could have written.
//!
//! A `.cwasm` (`--component x.cwasm`, `--precompiled-dir`) and a compile-cache entry
//! are machine code: loading one runs it outside the sandbox, with the host's
//! privileges, the MongoDB URI included. So such a file is used only if it and every
//! directory above it belong to this user or to root and are writable by no one else
//! (a world-writable directory only with the sticky bit, like `/tmp`, where others
//! cannot replace what is ours). The checks are made on open descriptors (`openat`
//! with `O_NOFOLLOW`, then `fstat`), so a path swapped for a link between the check
//! and the read is refused rather than followed; and the file is read into memory,
//! never mapped, so a later write to it cannot change the code that runs.

use rustix::fd::OwnedFd;
use rustix::fs::{FileType, Mode, OFlags, Stat};
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0} belongs to uid {1}, neither this user ({2}) nor root")]
    Owner(PathBuf, u32, u32),
    #[error("{0} is writable by group or others (mode {1:o})")]
    Writable(PathBuf, u32),
    #[error("{0} is not a regular file")]
    NotFile(PathBuf),
}

/// The effective uid: the one the kernel checks, and the owner of what we create.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

fn io(path: &Path, e: impl Into<std::io::Error>) -> TrustError {
    TrustError::Io(path.to_owned(), e.into())
}

fn check(path: &Path, st: &Stat, dir: bool) -> Result<(), TrustError> {
    let me = euid();
    if st.st_uid != me && st.st_uid != 0 {
        return Err(TrustError::Owner(path.to_owned(), st.st_uid, me));
    }
    let mode = st.st_mode & 0o7777;
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !(dir && sticky) {
        return Err(TrustError::Writable(path.to_owned(), mode & 0o777));
    }
    Ok(())
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Opens the directory `dir` (its symbolic links resolved first), checking it and
/// every directory above it on its descriptor, from `/` down.
pub fn open_dir(dir: &Path) -> Result<OwnedFd, TrustError> {
    let real = std::fs::canonicalize(dir).map_err(|e| io(dir, e))?;
    let root = Path::new("/");
    let mut fd = rustix::fs::open(root, DIR_FLAGS, Mode::empty()).map_err(|e| io(root, e))?;
    check(
        root,
        &rustix::fs::fstat(&fd).map_err(|e| io(root, e))?,
        true,
    )?;
    let mut at = PathBuf::from("/");
    for part in real.components() {
        let Component::Normal(name) = part else {
            continue;
        };
        at.push(name);
        let next =
            rustix::fs::openat(&fd, name, DIR_FLAGS, Mode::empty()).map_err(|e| io(&at, e))?;
        check(
            &at,
            &rustix::fs::fstat(&next).map_err(|e| io(&at, e))?,
            true,
        )?;
        fd = next;
    }
    Ok(fd)
}

/// The bytes of `name` in the directory `dir` (a descriptor from [`open_dir`]),
/// if it is a regular file that passes the checks; `Ok(None)` when there is none.
pub fn read_at(
    dir: &OwnedFd,
    dir_path: &Path,
    name: &OsStr,
) -> Result<Option<Vec<u8>>, TrustError> {
    let path = dir_path.join(name);
    let fd = match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(io(&path, e)),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| io(&path, e))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(TrustError::NotFile(path));
    }
    check(&path, &st, false)?;
    let mut bytes = Vec::with_capacity(usize::try_from(st.st_size).unwrap_or(0));
    std::fs::File::from(fd)
        .read_to_end(&mut bytes)
        .map_err(|e| io(&path, e))?;
    Ok(Some(bytes))
}

/// The bytes of the file at `path`, checked as above, directories included.
pub fn read(path: &Path) -> Result<Vec<u8>, TrustError> {
    let name = path
        .file_name()
        .ok_or_else(|| TrustError::NotFile(path.to_owned()))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let fd = open_dir(dir)?;
    read_at(&fd, dir, name)?.ok_or_else(|| io(path, std::io::ErrorKind::NotFound))
}
