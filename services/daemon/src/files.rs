//! Files only their service may read: the configuration database (SIP
//! passwords) and the call history.

use std::path::Path;

/// Creates `path` (and its missing folders, 0700) as a file readable by this
/// service alone (0600), or narrows an existing one and its SQLite companions
/// (`-wal`, `-shm`, `-journal`) to 0600, and its folder to 0700 when the
/// service owns it, before SQLite opens it. SQLite gives
/// the companions it creates the mode of the database file, so the process's
/// umask does not decide who reads them.
pub fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    let private = || std::fs::Permissions::from_mode(0o600);
    file.set_permissions(private())?;
    // A folder of this service's own (its state directory) is narrowed too.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        use std::os::unix::fs::MetadataExt;
        let folder = std::fs::metadata(dir)?;
        if folder.uid() == file.metadata()?.uid() && folder.mode() & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        match std::fs::set_permissions(&companion, private()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_file_and_its_folders_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/db");
        private_file(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("a/b")), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
    }

    #[test]
    fn an_existing_readable_database_its_wal_and_its_folder_are_narrowed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("db");
        for p in [path.clone(), dir.path().join("db-wal")] {
            std::fs::write(&p, b"").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        private_file(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("db-wal")), 0o600);
        assert_eq!(mode(dir.path()), 0o700);
    }
}
