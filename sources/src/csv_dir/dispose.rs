//! What happens to a file after it is committed (or recorded as quarantined): moved under
//! `<data_dir>/archive/<source>/` or `<data_dir>/quarantine/<source>/`, deleted, or kept.
//! Moves keep the file's relative name; a name already taken gets the content hash
//! appended, so nothing in the archive is overwritten by different content.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use sluice_core::FileHash;

/// Moves `path` to `dest_root/<name>` and returns where it went.
pub fn move_into(
    path: &Path,
    dest_root: &Path,
    name: &str,
    hash: &FileHash,
) -> io::Result<PathBuf> {
    let mut dest = dest_root.join(name);
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)?;
    }
    if dest.exists() {
        dest = with_hash(&dest, hash);
    }
    match fs::rename(path, &dest) {
        Ok(()) => Ok(dest),
        // Another filesystem: copy, make it durable, then remove the original.
        Err(e) if e.raw_os_error() == Some(libc_exdev()) => {
            fs::copy(path, &dest)?;
            fs::File::open(&dest)?.sync_all()?;
            fs::remove_file(path)?;
            Ok(dest)
        }
        Err(e) => Err(e),
    }
}

/// Deletes a committed file.
pub fn delete(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn with_hash(dest: &Path, hash: &FileHash) -> PathBuf {
    let short = &hash.0[..hash.0.len().min(12)];
    let stem = dest
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match dest.extension() {
        Some(ext) => format!("{stem}.{short}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{short}"),
    };
    dest.with_file_name(name)
}

/// `EXDEV` ("cross-device link") on Linux.
const fn libc_exdev() -> i32 {
    18
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_and_never_overwrites_other_content() {
        let inbox = tempfile::tempdir().expect("tempdir");
        let archive = tempfile::tempdir().expect("tempdir");
        let a = inbox.path().join("t.csv");
        fs::write(&a, "one").expect("write");
        let h1 = FileHash("aaaaaaaaaaaaaaaa".into());
        let first = move_into(&a, archive.path(), "t.csv", &h1).expect("move");
        assert_eq!(first, archive.path().join("t.csv"));
        fs::write(&a, "two").expect("write");
        let h2 = FileHash("bbbbbbbbbbbbbbbb".into());
        let second = move_into(&a, archive.path(), "t.csv", &h2).expect("move");
        assert_eq!(second, archive.path().join("t.bbbbbbbbbbbb.csv"));
        assert_eq!(fs::read_to_string(first).expect("read"), "one");
        assert!(!a.exists());
    }
}
