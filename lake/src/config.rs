//! `[lake]`: where raw tables are published as Delta tables, and how.

use std::{collections::BTreeMap, fmt, path::Path, time::Duration};

use bytesize::ByteSize;
use serde::Deserialize;
use url::Url;

/// `[lake]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LakeConfig {
    /// The table format; `"delta"` (Delta Lake) is the one there is.
    pub format: LakeFormat,
    /// `s3://bucket/prefix`, or a local directory (relative to `data_dir`); each raw
    /// table is published as the Delta table `<uri>/<table>`.
    pub uri: String,
    /// Passed to the object store (`aws_region`, `aws_endpoint_url`, `aws_allow_http`,
    /// `aws_access_key_id`, ...); without credentials here, the standard AWS environment
    /// variables and profile are used. Values whose key names a secret are redacted
    /// wherever the configuration is shown.
    #[serde(default)]
    pub storage_options: BTreeMap<String, String>,
    /// Data files of a lake commit are rolled at this size.
    #[serde(default = "default_target_file_size")]
    pub target_file_size: ByteSize,
    /// A Delta checkpoint is written every this many commits (Delta's
    /// `delta.checkpointInterval`, set when sluice creates a table).
    #[serde(default = "default_checkpoint_interval")]
    pub checkpoint_interval: u64,
    /// A partition with this many files smaller than `target_file_size` is compacted
    /// (0: never).
    #[serde(default = "default_compact_after")]
    pub compact_after: usize,
    /// Files no version needs (compacted away, expired, left by a failed commit) are
    /// deleted once this old (Delta's default is 7 days).
    #[serde(default = "default_vacuum_retention", with = "humantime_serde")]
    pub vacuum_retention: Duration,
    /// Partitions whose `dt` is older than this are removed from the table (off when
    /// absent).
    #[serde(default, with = "humantime_serde")]
    pub retention: Option<Duration>,
}

/// `lake.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LakeFormat {
    Delta,
}

fn default_target_file_size() -> ByteSize {
    ByteSize::mib(128)
}

fn default_checkpoint_interval() -> u64 {
    10
}

fn default_compact_after() -> usize {
    32
}

fn default_vacuum_retention() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

/// Words that mark a storage option's value as a secret.
const SECRET_WORDS: &[&str] = &["secret", "token", "key", "password", "credential"];

/// Whether the value of storage option `key` is a secret.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| key.contains(w))
}

impl fmt::Debug for LakeConfig {
    /// Secrets never reach logs: values of secret-named options are `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options: BTreeMap<&str, &str> = self
            .storage_options
            .iter()
            .map(|(k, v)| (k.as_str(), if is_secret(k) { "***" } else { v.as_str() }))
            .collect();
        f.debug_struct("LakeConfig")
            .field("format", &self.format)
            .field("uri", &self.uri)
            .field("storage_options", &options)
            .field("target_file_size", &self.target_file_size)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("compact_after", &self.compact_after)
            .field("vacuum_retention", &self.vacuum_retention)
            .field("retention", &self.retention)
            .finish()
    }
}

impl LakeConfig {
    /// The root URL: `uri` as given when it has a scheme, else a directory (relative to
    /// `data_dir`) as a `file://` URL. Schemes other than `s3`/`s3a` and `file` are refused.
    pub fn root_url(&self, data_dir: &Path) -> Result<Url, String> {
        let uri = self.uri.trim();
        if uri.is_empty() {
            return Err("is empty".into());
        }
        let url = match Url::parse(uri) {
            Ok(url) if url.scheme().len() > 1 => url,
            // No scheme (or a Windows drive letter): a local directory.
            _ => {
                let path = data_dir.join(uri);
                Url::from_directory_path(&path)
                    .map_err(|()| format!("{} is not an absolute directory", path.display()))?
            }
        };
        match url.scheme() {
            "s3" | "s3a" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(url),
            "s3" | "s3a" => Err(format!("{uri:?} names no bucket (s3://bucket/prefix)")),
            "file" => Ok(url),
            other => Err(format!(
                "scheme {other:?} is not supported (s3://bucket/prefix or a local directory)"
            )),
        }
    }

    /// The checks that need no store: the URI's form and the numbers' ranges.
    pub fn problems(&self, data_dir: &Path) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if let Err(e) = self.root_url(data_dir) {
            problems.push(("uri", e));
        }
        if !(1..=1_000_000).contains(&self.checkpoint_interval) {
            problems.push(("checkpoint_interval", "must be 1 to 1000000".into()));
        }
        if self.target_file_size < ByteSize::mib(1) || self.target_file_size > ByteSize::gib(16) {
            problems.push(("target_file_size", "must be 1 MiB to 16 GiB".into()));
        }
        // Ages are subtracted from dates: beyond a century they would overflow them.
        let century = Duration::from_secs(100 * 365 * 86_400);
        if self.vacuum_retention > century {
            problems.push(("vacuum_retention", "must be at most 100 years".into()));
        }
        if self.retention.is_some_and(|r| r > century) {
            problems.push(("retention", "must be at most 100 years".into()));
        }
        if self.compact_after == 1 {
            problems.push(("compact_after", "must be 0 (never) or at least 2".into()));
        }
        if self
            .retention
            .is_some_and(|r| r < Duration::from_secs(24 * 3600))
        {
            problems.push((
                "retention",
                "must be at least a day (partitions are days)".into(),
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_counts_and_ages_out_of_range_are_refused() {
        for (extra, key) in [
            ("checkpoint_interval = 0", "checkpoint_interval"),
            ("target_file_size = \"1TiB\"", "target_file_size"),
            ("vacuum_retention = \"1000years\"", "vacuum_retention"),
            ("retention = \"1000years\"", "retention"),
        ] {
            let c: LakeConfig =
                toml::from_str(&format!("format = \"delta\"\nuri = \"lake\"\n{extra}\n"))
                    .expect("parses");
            let keys: Vec<&str> = c
                .problems(Path::new("/d"))
                .into_iter()
                .map(|p| p.0)
                .collect();
            assert_eq!(keys, [key], "{extra}");
        }
    }

    fn config(uri: &str) -> LakeConfig {
        toml::from_str(&format!(
            "format = \"delta\"\nuri = {uri:?}\n[storage_options]\naws_secret_access_key = \"hunter22\"\naws_region = \"eu-west-1\"\n"
        ))
        .expect("parses")
    }

    #[test]
    fn local_paths_are_relative_to_the_data_dir_and_s3_needs_a_bucket() {
        let dir = Path::new("/var/lib/sluice");
        assert_eq!(
            config("lake").root_url(dir).expect("url").as_str(),
            "file:///var/lib/sluice/lake/"
        );
        assert_eq!(
            config("/srv/lake").root_url(dir).expect("url").as_str(),
            "file:///srv/lake/"
        );
        assert_eq!(
            config("s3://bucket/prefix")
                .root_url(dir)
                .expect("url")
                .as_str(),
            "s3://bucket/prefix"
        );
        assert!(config("s3:///prefix").root_url(dir).is_err());
        let gs = config("gs://bucket/x").problems(dir);
        assert_eq!(gs.len(), 1);
        assert!(gs[0].1.contains("not supported"), "{gs:?}");
    }

    #[test]
    fn secrets_are_redacted_when_shown() {
        let shown = format!("{:?}", config("s3://b/p"));
        assert!(!shown.contains("hunter22"), "{shown}");
        assert!(shown.contains("eu-west-1"), "{shown}");
    }
}
