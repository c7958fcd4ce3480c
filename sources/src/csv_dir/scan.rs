//! Listing candidate files under a watched root. Hidden entries (a leading `.`, as
//! temporary files of most copy tools are) are skipped, subdirectories are entered only
//! when `recursive`, and a symlink is followed only if its target is a regular file inside
//! the root: nothing outside the watched directory is ever read.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use globset::GlobMatcher;

/// A file that may be ingested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Path as found in the directory (what is archived or deleted).
    pub path: PathBuf,
    /// Path to read: the canonical target, inside the root.
    pub real: PathBuf,
    /// Name relative to the root, `/`-separated (what provenance records).
    pub name: String,
}

/// Why a path is not a candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not for this source (hidden, wrong name, a directory...): ignored silently.
    Ignored,
    /// A symlink leading outside the root or to a non-file: logged.
    Escapes(String),
}

/// Decides which paths under one root are candidates.
#[derive(Debug, Clone)]
pub struct Scope {
    root: PathBuf,
    glob: GlobMatcher,
    recursive: bool,
}

impl Scope {
    /// `root` must exist; it is canonicalised so symlinks can be checked against it.
    pub fn new(root: &Path, glob: &str, recursive: bool) -> io::Result<Self> {
        let root = root.canonicalize()?;
        let glob = globset::Glob::new(glob)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
            .compile_matcher();
        Ok(Scope {
            root,
            glob,
            recursive,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Classifies one path (from a listing or a notification).
    pub fn check(&self, path: &Path) -> Result<Candidate, Refusal> {
        let rel = path
            .strip_prefix(&self.root)
            .map_err(|_| Refusal::Ignored)?;
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let Some(file_name) = parts.last() else {
            return Err(Refusal::Ignored);
        };
        if parts.iter().any(|p| p.starts_with('.')) || (!self.recursive && parts.len() > 1) {
            return Err(Refusal::Ignored);
        }
        if !self.glob.is_match(file_name) {
            return Err(Refusal::Ignored);
        }
        let meta = fs::symlink_metadata(path).map_err(|_| Refusal::Ignored)?;
        let real = if meta.file_type().is_symlink() {
            self.confine(path)?
        } else if meta.is_file() {
            path.to_path_buf()
        } else {
            return Err(Refusal::Ignored);
        };
        Ok(Candidate {
            path: path.to_path_buf(),
            real,
            name: parts.join("/"),
        })
    }

    fn confine(&self, link: &Path) -> Result<PathBuf, Refusal> {
        let target = link.canonicalize().map_err(|e| {
            Refusal::Escapes(format!("symlink {} is dangling: {e}", link.display()))
        })?;
        if !target.starts_with(&self.root) {
            return Err(Refusal::Escapes(format!(
                "symlink {} points outside the watched directory (to {})",
                link.display(),
                target.display()
            )));
        }
        if !target.is_file() {
            return Err(Refusal::Escapes(format!(
                "symlink {} does not point to a regular file",
                link.display()
            )));
        }
        Ok(target)
    }

    /// Every path under the root worth checking (not following symlinked directories).
    pub fn list(&self) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        let mut dirs = vec![self.root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in fs::read_dir(&dir)? {
                let entry = entry?;
                let hidden = entry.file_name().to_string_lossy().starts_with('.');
                let ty = entry.file_type()?;
                if ty.is_dir() {
                    if self.recursive && !hidden {
                        dirs.push(entry.path());
                    }
                } else if !hidden {
                    out.push(entry.path());
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn confines_symlinks_and_filters_names() {
        let outside = tempfile::tempdir().expect("tempdir");
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        fs::write(outside.path().join("secret.csv"), "x\n").expect("write");
        fs::write(r.join("a.csv"), "x\n").expect("write");
        fs::write(r.join("b.txt"), "x\n").expect("write");
        fs::write(r.join(".hidden.csv"), "x\n").expect("write");
        fs::create_dir(r.join("sub")).expect("mkdir");
        fs::write(r.join("sub/c.csv"), "x\n").expect("write");
        symlink(outside.path().join("secret.csv"), r.join("escape.csv")).expect("symlink");
        symlink(r.join("a.csv"), r.join("inside.csv")).expect("symlink");

        let scope = Scope::new(r, "*.csv", false).expect("scope");
        let root = scope.root().to_path_buf();
        let names: Vec<String> = scope
            .list()
            .expect("list")
            .iter()
            .filter_map(|p| scope.check(p).ok())
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["a.csv", "inside.csv"]);
        assert!(matches!(
            scope.check(&root.join("escape.csv")),
            Err(Refusal::Escapes(msg)) if msg.contains("outside")
        ));
        let inside = scope.check(&root.join("inside.csv")).expect("inside");
        assert_eq!(inside.real, root.join("a.csv"));

        let recursive = Scope::new(r, "*.csv", true).expect("scope");
        let found: Vec<String> = recursive
            .list()
            .expect("list")
            .iter()
            .filter_map(|p| recursive.check(p).ok())
            .map(|c| c.name)
            .collect();
        assert!(found.contains(&"sub/c.csv".to_string()), "{found:?}");
    }
}
