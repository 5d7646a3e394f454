//! Owner-only files (issue 14 point 10): the data directory holds HA1 hashes (each one enough to
//! log in as its user), the nonce secret and the control socket, so the directory is 0700 and
//! each file 0600, set when it is created. A directory or file found with group or other bits (a
//! data directory made by an older version, a copied backup) is narrowed at start, with a warning
//! naming it.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of the data directory.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file in it.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) as [`DIR_MODE`]; an existing one is narrowed with
/// [`narrow`].
pub fn private_dir(dir: &Path) -> io::Result<()> {
    if !dir.is_dir() {
        DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)?;
    }
    narrow(dir).map(|_| ())
}

/// Takes the group and other bits off `path` if it has any, with a warning; `Ok(true)` when it
/// did. A missing path is left alone (`Ok(false)`).
pub fn narrow(path: &Path) -> io::Result<bool> {
    let mode = match std::fs::metadata(path) {
        Ok(m) => m.permissions().mode() & 0o7777,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if mode & 0o077 == 0 {
        return Ok(false);
    }
    let fixed = mode & 0o700;
    std::fs::set_permissions(path, Permissions::from_mode(fixed))?;
    tracing::warn!("{} was mode {mode:o}, readable by other local users; set to {fixed:o}", path.display());
    Ok(true)
}

/// Opens `path` for writing, creating it as [`FILE_MODE`] if missing (an existing file keeps its
/// content and is narrowed).
pub fn create_private(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new().write(true).create(true).truncate(false).mode(FILE_MODE).open(path)?;
    narrow(path)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777).unwrap_or(0)
    }

    #[test]
    fn created_private_and_loose_ones_narrowed() {
        let base = std::env::temp_dir().join(format!("sb-files-{}", std::process::id()));
        let dir = base.join("a/b");
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let f = dir.join("f");
        create_private(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        std::fs::set_permissions(&f, Permissions::from_mode(0o644)).unwrap();
        assert!(narrow(&f).unwrap());
        assert_eq!(mode(&f), 0o600);
        assert!(!narrow(&f).unwrap());
        assert!(!narrow(&dir.join("missing")).unwrap());
        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let _ = std::fs::remove_dir_all(&base);
    }
}
