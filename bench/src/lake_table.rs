//! The lake side of the Kafka benchmark: a Delta table's rows (from its files'
//! statistics, through delta-rs) and the time of its last commit; and the S3 server the
//! S3 rounds write to (SeaweedFS's `weed mini`, installed by scripts/env.sh beside the
//! Python Delta readers, as for the tests).

use std::{
    collections::HashMap,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use futures::StreamExt as _;
use sluice_lake::deltalake;

/// Rows in the table's current version, and its last commit's time (ms since the epoch).
pub fn rows_and_last_commit(
    table: &url::Url,
    options: &HashMap<String, String>,
) -> anyhow::Result<(u64, i64)> {
    deltalake::aws::register_handlers(None);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let delta = runtime
        .block_on(deltalake::open_table_with_storage_options(
            table.clone(),
            options.clone(),
        ))
        .with_context(|| format!("opening the Delta table {table}"))?;
    let snapshot = delta.snapshot()?;
    let rows = snapshot
        .log_data()
        .iter()
        .map(|f| f.num_records().unwrap_or(0) as u64)
        .sum();
    // The commit's own record of its time (the log segment lists no commit file for a
    // version that is also a checkpoint).
    let last = runtime.block_on(delta.history(Some(1)).next());
    let ms = last
        .transpose()?
        .and_then(|info| info.timestamp)
        .context("the last commit's time")?;
    Ok((rows, ms))
}

pub const ACCESS_KEY: &str = "sluicebench";
pub const SECRET_KEY: &str = "sluice-bench-secret";

/// A SeaweedFS S3 server on free ports, killed when dropped.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
    python: PathBuf,
}

impl S3Server {
    /// CPU seconds (user + system) the server has used so far: on a small machine it
    /// shares the cores with sluice, which a remote store would not.
    pub fn cpu_secs(&self) -> anyhow::Result<f64> {
        let stat = format!("/proc/{}/stat", self.child.id());
        crate::threads::read_stat(std::path::Path::new(&stat))
            .map(|(_, secs)| secs)
            .context("the S3 server's /proc stat")
    }

    /// Starts `weed mini` (next to `python`) with its data in `dir`.
    pub fn start(python: &Path, dir: &Path) -> anyhow::Result<S3Server> {
        let ports: Vec<u16> = (0..9)
            .map(|_| {
                TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map(|a| a.port())
            })
            .collect::<Result<_, _>>()?;
        let names = [
            "s3.port",
            "s3.port.grpc",
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "admin.port",
        ];
        let data = dir.join("weed");
        std::fs::create_dir_all(&data)?;
        let child = Command::new(python.with_file_name("weed"))
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.port.grpc=0"])
            .args([
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-webdav=false",
                "-admin.ui=false",
            ])
            .args(names.iter().zip(&ports).map(|(n, p)| format!("-{n}={p}")))
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting weed mini (scripts/bench.sh installs it)")?;
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{}", ports[0]),
            python: python.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Err(e) = ureq::get(&server.endpoint).call() {
            if matches!(e, ureq::Error::StatusCode(_)) {
                break;
            }
            if Instant::now() > deadline {
                bail!("SeaweedFS did not start: {e}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    pub fn create_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        let script = format!(
            "import boto3\nboto3.client('s3', endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='{ACCESS_KEY}', aws_secret_access_key='{SECRET_KEY}')\
             .create_bucket(Bucket='{bucket}')\n",
            self.endpoint
        );
        let out = Command::new(&self.python).arg("-c").arg(script).output()?;
        if !out.status.success() {
            bail!(
                "creating bucket {bucket}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Storage options reaching this server.
    pub fn options(&self) -> HashMap<String, String> {
        [
            ("aws_endpoint_url", self.endpoint.as_str()),
            ("aws_allow_http", "true"),
            ("aws_region", "us-east-1"),
            ("aws_access_key_id", ACCESS_KEY),
            ("aws_secret_access_key", SECRET_KEY),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
