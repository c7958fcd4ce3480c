//! One sluice per data directory. The lock is an advisory `flock` on
//! `<data_dir>/sluice.lock`, released by the kernel when the process dies however it dies,
//! so a crash never leaves a stale lock. The file holds the owner's pid for the message
//! a second instance prints, and the address its HTTP listener bound (`http ADDR`), so
//! `sluice sql` finds a daemon configured with port 0.

use std::{
    fs::{self, File, OpenOptions, TryLockError},
    io::{Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

/// Held for the life of the process.
#[derive(Debug)]
pub struct DataDirLock {
    file: File,
}

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another sluice{pid} holds the data directory {dir} (lock file {lock}); run one sluice per data_dir")]
    Held {
        dir: PathBuf,
        lock: PathBuf,
        pid: String,
        /// The HTTP address the holder advertised, if any.
        http: Option<std::net::SocketAddr>,
    },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Creates `data_dir` if needed and takes its lock, or says who holds it.
pub fn lock_data_dir(data_dir: &Path) -> Result<DataDirLock, LockError> {
    let path = data_dir.join("sluice.lock");
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(data_dir).map_err(io)?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let pid = text.lines().next().unwrap_or_default().trim();
            let http = text
                .lines()
                .find_map(|l| l.strip_prefix("http "))
                .and_then(|a| a.trim().parse().ok());
            return Err(LockError::Held {
                dir: data_dir.to_path_buf(),
                lock: path.clone(),
                http,
                pid: if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                },
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(DataDirLock { file })
}

impl DataDirLock {
    /// Records the address the HTTP listener bound, for `sluice sql`.
    pub fn advertise_http(&mut self, addr: std::net::SocketAddr) -> std::io::Result<()> {
        self.file.seek(SeekFrom::End(0))?;
        writeln!(self.file, "http {addr}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_with_the_owner_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = lock_data_dir(dir.path()).expect("first lock");
        let err = lock_data_dir(dir.path()).expect_err("second lock");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("another sluice"), "{msg}");
    }
}
