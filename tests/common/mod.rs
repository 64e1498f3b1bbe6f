//! Test harness: every test gets its own moto server (its own AWS, on 127.0.0.1), a recording
//! proxy between the binary and that server, a temp dir for the state file, and SDK clients
//! that talk to the emulator directly so the checks never show up in the proxy's call log.
//! The binary runs with a scrubbed environment: a developer's real AWS account can never be
//! touched.

pub(crate) mod aws_model;
pub(crate) mod proxy;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::types::Filter;

pub(crate) use proxy::Proxy;

pub(crate) const REGION: &str = "us-east-1";
pub(crate) const ACCOUNT: &str = "123456789012";
/// The bucket a team keeps its privbucket states in (`--state s3://team-state/…`).
pub(crate) const STATE_BUCKET: &str = "team-state";

/// The moto server the tests run against. Its absence fails the test loudly: a test suite
/// that skips when the emulator is missing proves nothing.
pub(crate) struct Emulator {
    process: Process,
    pub(crate) url: String,
    /// When it started: how long each test held an emulator is where the suite's time goes.
    since: Instant,
}

/// An emulator's process: started on its own (ministack), or forked by the fork server (moto).
enum Process {
    Own(Child),
    Forked(u32),
}

/// moto's fork server (`tests/common/moto_forkserver.py`): one Python process that imported
/// moto and made one read of each service privbucket calls, once for the whole run. Each
/// test's moto is a fork of it: a process of its own with nothing in it, as a freshly started
/// `moto_server` is, but ready in milliseconds rather than after the second or two moto
/// spends importing and setting up a service on its first call (which made up most of what a
/// test cost). When the test binary ends, however it ends, the fork server sees its input
/// close and kills every server it started.
struct ForkServer {
    _child: Child,
    input: std::process::ChildStdin,
    output: std::io::BufReader<std::process::ChildStdout>,
}

impl ForkServer {
    fn start() -> ForkServer {
        use std::io::BufRead;
        let server = moto_server();
        assert!(
            server.exists(),
            "the AWS emulator is missing: {} does not exist. Run `scripts/emulator.sh install` \
             (scripts/test.sh does it for you), or set PRIVBUCKET_MOTO_SERVER",
            server.display()
        );
        // moto_server's own interpreter: the virtualenv's.
        let python = server.with_file_name("python3");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/moto_forkserver.py");
        let mut child = StdCommand::new(&python)
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} {}: {e}", python.display(), script.display()));
        let input = child.stdin.take().unwrap();
        let mut output = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        output.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "moto's fork server did not start");
        ForkServer {
            _child: child,
            input,
            output,
        }
    }

    /// One request and its answer; `None` when the fork server is gone.
    fn ask(&mut self, request: &str) -> Option<String> {
        use std::io::{BufRead, Write};
        writeln!(self.input, "{request}").ok()?;
        let mut line = String::new();
        self.output.read_line(&mut line).ok()?;
        (!line.is_empty()).then(|| line.trim().to_string())
    }
}

fn fork_server() -> std::sync::MutexGuard<'static, ForkServer> {
    static SERVER: std::sync::OnceLock<std::sync::Mutex<ForkServer>> = std::sync::OnceLock::new();
    SERVER
        .get_or_init(|| std::sync::Mutex::new(ForkServer::start()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn moto_server() -> PathBuf {
    if let Ok(p) = std::env::var("PRIVBUCKET_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server")
}

fn ministack_server() -> PathBuf {
    if let Ok(p) = std::env::var("PRIVBUCKET_MINISTACK") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-ministack/bin/ministack")
}

/// ministack's account: its root credentials are `test`/`test`.
pub(crate) const MINISTACK_ACCOUNT: &str = "000000000000";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl Emulator {
    pub(crate) fn start() -> Emulator {
        Emulator::spawn(
            "moto server",
            |port| {
                let pid = fork_server()
                    .ask(&format!("start {port}"))
                    .expect("moto's fork server ended");
                Process::Forked(pid.parse().expect("a pid from moto's fork server"))
            },
            |port| {
                http_post(
                    port,
                    "/moto-api/config",
                    r#"{"lambda":{"use_docker":false}}"#,
                )
                .is_ok()
            },
            Duration::from_secs(30),
        )
    }

    /// ministack with `AUTH=true`: it evaluates bucket policies (conditions and
    /// `aws:PrincipalArn` included) and runs Python handlers, which moto does not. Used only for
    /// the enforcement tests; its EC2 is weaker than moto's.
    pub(crate) fn start_ministack() -> Emulator {
        let server = ministack_server();
        assert!(
            server.exists(),
            "the policy-enforcement emulator is missing: {} does not exist. Run \
             `scripts/emulator.sh install` (scripts/test.sh does it for you), or set \
             PRIVBUCKET_MINISTACK",
            server.display()
        );
        Emulator::spawn(
            "ministack",
            |port| {
                let logs = std::env::temp_dir().join(format!("privbucket-ministack-{port}"));
                std::fs::create_dir_all(&logs).unwrap();
                let child = StdCommand::new(&server)
                    .env("AUTH", "true")
                    .env("BIND_HOST", "127.0.0.1")
                    .env("GATEWAY_PORT", port.to_string())
                    .env("MINISTACK_REGION", REGION)
                    .env("TMPDIR", &logs)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap_or_else(|e| panic!("starting ministack: {e}"));
                Process::Own(child)
            },
            |port| http(port, "GET", "/_ministack/health", "").is_ok(),
            Duration::from_secs(60),
        )
    }

    /// Starts a server on a free 127.0.0.1 port and waits until `ready`; three tries, as a
    /// port can be taken between finding it free and binding it.
    fn spawn(
        what: &str,
        start: impl Fn(u16) -> Process,
        ready: impl Fn(u16) -> bool,
        wait: Duration,
    ) -> Emulator {
        let mut last_err = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut emu = Emulator {
                process: start(port),
                url: format!("http://127.0.0.1:{port}"),
                since: Instant::now(),
            };
            let deadline = Instant::now() + wait;
            while Instant::now() < deadline {
                if let Process::Own(child) = &mut emu.process
                    && let Ok(Some(status)) = child.try_wait()
                {
                    last_err = format!("{what} exited with {status}");
                    break;
                }
                if ready(port) {
                    return emu;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if last_err.is_empty() {
                last_err = format!("{what} did not answer within {wait:?}");
            }
            // Dropped here: killed.
        }
        panic!("the emulator did not start: {last_err}");
    }

    pub(crate) fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        record_time(self.since);
        match &mut self.process {
            Process::Own(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Process::Forked(pid) => {
                // A fork server that is gone has killed its servers already.
                let _ = fork_server().ask(&format!("kill {pid}"));
            }
        }
    }
}

/// With `PRIVBUCKET_TEST_TIMES=FILE` (scripts/test.sh sets it), appends how long the running
/// test held an emulator, and the test's name (libtest names each test's thread after it), so
/// the script can print where the suite's time went.
fn record_time(since: Instant) {
    use std::io::Write as _;
    let Some(file) = std::env::var_os("PRIVBUCKET_TEST_TIMES") else {
        return;
    };
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let line = format!("{:.1} {test}\n", since.elapsed().as_secs_f64());
    // One write of one line, appended: lines from tests running at once do not interleave.
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

fn http_post(port: u16, path: &str, body: &str) -> std::io::Result<String> {
    http(port, "POST", path, body)
}

/// A tiny blocking HTTP/1.1 client for the emulators' own control APIs.
fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out.split(' ').nth(1).unwrap_or_default();
    if status.starts_with('2') {
        Ok(out)
    } else {
        Err(std::io::Error::other(out))
    }
}

/// What the binary printed and how it ended.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) cmd: String,
}

impl Run {
    pub(crate) fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Panics with the whole run when the exit code is not the one expected.
    #[track_caller]
    pub(crate) fn expect(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "`{}` exited {} (expected {code})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmd, self.code, self.stdout, self.stderr
        );
        self
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("`{}` printed no JSON ({e}):\n{}", self.cmd, self.stdout))
    }
}

pub(crate) struct Clients {
    pub(crate) ec2: aws_sdk_ec2::Client,
    pub(crate) iam: aws_sdk_iam::Client,
    pub(crate) kms: aws_sdk_kms::Client,
    pub(crate) lambda: aws_sdk_lambda::Client,
    pub(crate) s3: aws_sdk_s3::Client,
}

/// One test's world: emulator, proxy, temp dir, clients.
pub(crate) struct World {
    pub(crate) emulator: Emulator,
    pub(crate) proxy: Proxy,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) aws: Clients,
    /// The credentials the binary runs with unless a test says otherwise.
    creds: (&'static str, &'static str),
}

impl World {
    pub(crate) async fn new() -> World {
        let emulator = tokio::task::spawn_blocking(Emulator::start).await.unwrap();
        let proxy = Proxy::start(emulator.port()).await;
        let aws = clients(&emulator.url, "testing", "testing", None).await;
        World {
            emulator,
            proxy,
            dir: tempfile::tempdir().unwrap(),
            aws,
            creds: ("testing", "testing"),
        }
    }

    /// A world on ministack (see [`Emulator::start_ministack`]), as its root user. The proxy
    /// stands in for TLS: the binary and `aws` talk plain HTTP to it on 127.0.0.1, and it tells
    /// ministack the request came over TLS (`X-Forwarded-Proto: https`, as a TLS-terminating
    /// load balancer does). A request sent straight to ministack is one without TLS.
    pub(crate) async fn ministack() -> World {
        let emulator = tokio::task::spawn_blocking(Emulator::start_ministack)
            .await
            .unwrap();
        let proxy = Proxy::start_tls(emulator.port()).await;
        let aws = clients(&proxy.url, "test", "test", None).await;
        World {
            emulator,
            proxy,
            dir: tempfile::tempdir().unwrap(),
            aws,
            creds: ("test", "test"),
        }
    }

    pub(crate) fn state_path(&self) -> PathBuf {
        self.dir.path().join("privbucket.state.json")
    }

    /// Runs the binary through the proxy with a scrubbed environment.
    pub(crate) async fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[]).await
    }

    pub(crate) async fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(args, env);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn().expect("running privbucket");
        self.proxy.set_pid(child.id());
        let out = child.wait_with_output().await.expect("running privbucket");
        self.proxy.set_pid(None);
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            cmd: format!("privbucket {}", args.join(" ")),
        }
    }

    pub(crate) fn command(&self, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
        self.command_of(env!("CARGO_BIN_EXE_privbucket"), args, env)
    }

    /// [`World::command`] for another program (one that runs privbucket itself).
    pub(crate) fn command_of(
        &self,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        let home = self.dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("AWS_ACCESS_KEY_ID", self.creds.0)
            .env("AWS_SECRET_ACCESS_KEY", self.creds.1)
            .env("AWS_REGION", REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", home.join("no-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"))
            .env("AWS_ENDPOINT_URL", &self.proxy.url)
            .env("PRIVBUCKET_STATE", self.state_path())
            .current_dir(self.dir.path())
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs a command that must be refused as bad input: exit 2, with `want` in its error.
    pub(crate) async fn refused(&self, args: &[&str], want: &str) -> Run {
        let r = self.run(args).await;
        r.expect(2);
        assert!(
            r.stderr.contains(want),
            "`{}`: wanted {want:?} in:\n{}",
            r.cmd,
            r.stderr
        );
        r
    }

    pub(crate) async fn up(&self) -> Run {
        let r = self.run(&["up"]).await;
        r.expect(0);
        r
    }

    /// Turns one of the bucket's Block Public Access flags off, behind privbucket's back.
    pub(crate) async fn turn_off_public_access_flag(&self, bucket: &str, flag: &str) {
        let on = |f: &str| f != flag;
        self.aws
            .s3
            .put_public_access_block()
            .bucket(bucket)
            .public_access_block_configuration(
                aws_sdk_s3::types::PublicAccessBlockConfiguration::builder()
                    .block_public_acls(on("BlockPublicAcls"))
                    .ignore_public_acls(on("IgnorePublicAcls"))
                    .block_public_policy(on("BlockPublicPolicy"))
                    .restrict_public_buckets(on("RestrictPublicBuckets"))
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }

    /// An IAM user with an access key and an inline policy, made by the test's own clients.
    pub(crate) async fn iam_user(&self, name: &str, policy: &str) -> Principal {
        let iam = &self.aws.iam;
        let user = iam.create_user().user_name(name).send().await.unwrap();
        let arn = user.user().unwrap().arn().to_string();
        iam.put_user_policy()
            .user_name(name)
            .policy_name("test")
            .policy_document(policy)
            .send()
            .await
            .unwrap();
        let key = iam
            .create_access_key()
            .user_name(name)
            .send()
            .await
            .unwrap();
        let key = key.access_key().unwrap();
        Principal {
            arn,
            key: key.access_key_id().to_string(),
            secret: key.secret_access_key().to_string(),
        }
    }

    /// Runs the binary with extra environment given as owned pairs.
    pub(crate) async fn run_as(&self, args: &[&str], env: &[(String, String)]) -> Run {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.run_with(args, &env).await
    }

    /// A bucket's policy as the SDK reads it, parsed.
    pub(crate) async fn bucket_policy_of(&self, bucket: &str) -> serde_json::Value {
        let out = self
            .aws
            .s3
            .get_bucket_policy()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
        serde_json::from_str(out.policy().unwrap()).unwrap()
    }

    /// A bucket's versioning as S3 reports it (`None`: never turned on).
    pub(crate) async fn versioning_of(&self, bucket: &str) -> Option<String> {
        let out = self
            .aws
            .s3
            .get_bucket_versioning()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
        out.status().map(|s| s.as_str().to_string())
    }

    /// Suspends a bucket's versioning behind privbucket's back.
    pub(crate) async fn suspend_versioning(&self, bucket: &str) {
        self.aws
            .s3
            .put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Suspended)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }

    /// Writes an object with the bucket's policy lifted: moto applies a policy's Deny to
    /// everyone, conditions ignored, so a write that AWS would let through the endpoint cannot
    /// be made there with the policy on. The next `up` puts the policy back.
    pub(crate) async fn put_with_policy_lifted(&self, bucket: &str, key: &str, body: &[u8]) {
        let s3 = &self.aws.s3;
        s3.delete_bucket_policy()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(body.to_vec().into())
            .send()
            .await
            .unwrap();
    }

    /// An endpoint as the SDK reads it.
    pub(crate) async fn endpoint_of(&self, endpoint: &str) -> aws_sdk_ec2::types::VpcEndpoint {
        let out = self
            .aws
            .ec2
            .describe_vpc_endpoints()
            .vpc_endpoint_ids(endpoint)
            .send()
            .await
            .unwrap();
        out.vpc_endpoints()[0].clone()
    }

    /// An endpoint's policy as the SDK reads it, parsed.
    pub(crate) async fn endpoint_policy_of(&self, endpoint: &str) -> serde_json::Value {
        let e = self.endpoint_of(endpoint).await;
        serde_json::from_str(e.policy_document().unwrap()).unwrap()
    }

    /// The ID the state file records for a step (`vpc`, `security-group`, ...).
    pub(crate) fn id(&self, key: &str) -> String {
        self.state()["resources"][key]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("the state file has no {key}"))
            .to_string()
    }

    pub(crate) fn state(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.state_path()).expect("a state file");
        serde_json::from_str(&text).expect("the state file is JSON")
    }

    /// VPCs other than the default one.
    /// The team's state bucket (`--state s3://team-state/…`).
    pub(crate) async fn make_state_bucket(&self) {
        self.aws
            .s3
            .create_bucket()
            .bucket(STATE_BUCKET)
            .send()
            .await
            .unwrap();
    }

    /// An object in the team's state bucket, read through the SDK; `None`: there is none.
    pub(crate) async fn state_object(&self, key: &str) -> Option<Vec<u8>> {
        match self
            .aws
            .s3
            .get_object()
            .bucket(STATE_BUCKET)
            .key(key)
            .send()
            .await
        {
            Ok(o) => Some(o.body.collect().await.unwrap().into_bytes().to_vec()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => None,
            Err(e) => panic!("GetObject {key}: {e:?}"),
        }
    }

    pub(crate) async fn vpcs(&self) -> Vec<aws_sdk_ec2::types::Vpc> {
        self.aws
            .ec2
            .describe_vpcs()
            .send()
            .await
            .unwrap()
            .vpcs()
            .iter()
            .filter(|v| v.is_default() != Some(true))
            .cloned()
            .collect()
    }

    pub(crate) async fn stack_vpc(&self, stack: &str) -> Option<aws_sdk_ec2::types::Vpc> {
        let vpcs = self
            .aws
            .ec2
            .describe_vpcs()
            .filters(tag_filter("privbucket:stack", stack))
            .send()
            .await
            .unwrap();
        assert!(
            vpcs.vpcs().len() <= 1,
            "more than one VPC for stack {stack}"
        );
        vpcs.vpcs().first().cloned()
    }

    /// Every bucket but the team's state bucket ([`STATE_BUCKET`]), which is the user's.
    pub(crate) async fn buckets(&self) -> Vec<String> {
        self.aws
            .s3
            .list_buckets()
            .send()
            .await
            .unwrap()
            .buckets()
            .iter()
            .filter_map(|b| b.name().map(str::to_string))
            .filter(|b| b != STATE_BUCKET)
            .collect()
    }

    pub(crate) async fn roles(&self) -> Vec<String> {
        self.aws
            .iam
            .list_roles()
            .send()
            .await
            .unwrap()
            .roles()
            .iter()
            .map(|r| r.role_name().to_string())
            .collect()
    }

    pub(crate) async fn functions(&self) -> Vec<String> {
        self.aws
            .lambda
            .list_functions()
            .send()
            .await
            .unwrap()
            .functions()
            .iter()
            .filter_map(|f| f.function_name().map(str::to_string))
            .collect()
    }

    pub(crate) async fn lambda_enis(&self) -> Vec<String> {
        self.aws
            .ec2
            .describe_network_interfaces()
            .filters(
                Filter::builder()
                    .name("description")
                    .values("AWS Lambda VPC ENI*")
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .network_interfaces()
            .iter()
            .filter_map(|e| e.network_interface_id().map(str::to_string))
            .collect()
    }

    /// Nothing of any stack is left: no VPC but the default, no bucket, role, function or
    /// Lambda ENI, no endpoint, and no state file.
    pub(crate) async fn assert_nothing_left(&self) {
        assert!(
            self.vpcs().await.is_empty(),
            "VPCs left: {:?}",
            self.vpcs().await
        );
        assert!(
            self.buckets().await.is_empty(),
            "buckets left: {:?}",
            self.buckets().await
        );
        assert!(
            self.roles().await.is_empty(),
            "roles left: {:?}",
            self.roles().await
        );
        assert!(
            self.functions().await.is_empty(),
            "functions left: {:?}",
            self.functions().await
        );
        assert!(
            self.lambda_enis().await.is_empty(),
            "ENIs left: {:?}",
            self.lambda_enis().await
        );
        let endpoints = self.aws.ec2.describe_vpc_endpoints().send().await.unwrap();
        let live: Vec<_> = endpoints
            .vpc_endpoints()
            .iter()
            .filter(|e| {
                !matches!(
                    e.state()
                        .map(|s| s.as_str().to_ascii_lowercase())
                        .as_deref(),
                    Some("deleted")
                )
            })
            .collect();
        assert!(live.is_empty(), "endpoints left: {live:?}");
        // A KMS key cannot be deleted at once: one pending deletion counts as gone.
        let keys: Vec<(String, String)> = self
            .stack_keys()
            .await
            .into_iter()
            .filter(|(_, state)| state != "PendingDeletion")
            .collect();
        assert!(keys.is_empty(), "KMS keys left: {keys:?}");
        assert!(!self.state_path().exists(), "the state file is still there");
    }

    /// Every KMS key tagged for a privbucket stack, with its state (`Enabled`,
    /// `PendingDeletion`, …).
    pub(crate) async fn stack_keys(&self) -> Vec<(String, String)> {
        let kms = &self.aws.kms;
        let mut out = Vec::new();
        for k in kms.list_keys().send().await.unwrap().keys() {
            let id = k.key_id().unwrap();
            let tags = kms.list_resource_tags().key_id(id).send().await.unwrap();
            if tags
                .tags()
                .iter()
                .any(|t| t.tag_key() == "privbucket:stack")
            {
                let meta = kms.describe_key().key_id(id).send().await.unwrap();
                let state = meta.key_metadata().unwrap().key_state().unwrap();
                out.push((id.to_string(), state.as_str().to_string()));
            }
        }
        out
    }
}

/// An IAM user the test made, with its access key.
pub(crate) struct Principal {
    pub(crate) arn: String,
    pub(crate) key: String,
    pub(crate) secret: String,
}

impl Principal {
    /// The environment that makes the binary run as this user.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".to_string(), self.key.clone()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), self.secret.clone()),
        ]
    }

    /// SDK clients for `url`, as this user.
    pub(crate) async fn clients(&self, url: &str) -> Clients {
        clients(url, &self.key, &self.secret, None).await
    }
}

/// SDK clients for `url` with the given credentials.
pub(crate) async fn clients(url: &str, key: &str, secret: &str, token: Option<&str>) -> Clients {
    let creds = aws_sdk_ec2::config::Credentials::new(
        key,
        secret,
        token.map(str::to_string),
        None,
        "tests",
    );
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(creds)
        .endpoint_url(url)
        .load()
        .await;
    let s3 = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(true)
        .build();
    Clients {
        ec2: aws_sdk_ec2::Client::new(&sdk),
        iam: aws_sdk_iam::Client::new(&sdk),
        kms: aws_sdk_kms::Client::new(&sdk),
        lambda: aws_sdk_lambda::Client::new(&sdk),
        s3: aws_sdk_s3::Client::from_conf(s3),
    }
}

/// The default bucket of the stack `privbucket` in an account (moto's unless told).
pub(crate) fn bucket_in(account: &str) -> String {
    format!("privbucket-{account}-{REGION}")
}

pub(crate) fn bucket() -> String {
    bucket_in(ACCOUNT)
}

/// A role the test makes itself (not privbucket's), that Lambda may assume: its ARN.
pub(crate) async fn other_role(iam: &aws_sdk_iam::Client, name: &str) -> String {
    iam.create_role()
        .role_name(name)
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .unwrap()
        .role()
        .unwrap()
        .arn()
        .to_string()
}

/// A function the test makes itself (not privbucket's): one trivial Python handler, as
/// `role`; the caller adds what else it needs and sends it.
pub(crate) fn other_function(
    lambda: &aws_sdk_lambda::Client,
    name: &str,
    role: &str,
) -> aws_sdk_lambda::operation::create_function::builders::CreateFunctionFluentBuilder {
    use std::io::Write;
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    z.start_file("h.py", zip::write::SimpleFileOptions::default())
        .unwrap();
    z.write_all(b"def handler(e, c):\n    return e\n").unwrap();
    let zip = z.finish().unwrap().into_inner();
    lambda
        .create_function()
        .function_name(name)
        .runtime(aws_sdk_lambda::types::Runtime::Python313)
        .role(role)
        .handler("h.handler")
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(aws_sdk_lambda::primitives::Blob::new(zip))
                .build(),
        )
}

/// The first line of `out` that starts with `kind`.
pub(crate) fn line<'a>(out: &'a str, kind: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(kind))
        .unwrap_or_else(|| panic!("no {kind} line:\n{out}"))
}

/// The object in the list `doc[list]` whose `field` is `value` (a status resource, a plan
/// step, a verify check, a policy statement by Sid).
pub(crate) fn find_in(
    doc: &serde_json::Value,
    list: &str,
    field: &str,
    value: &str,
) -> serde_json::Value {
    doc[list]
        .as_array()
        .unwrap_or_else(|| panic!("no list {list} in {doc:#}"))
        .iter()
        .find(|x| x[field] == value)
        .unwrap_or_else(|| panic!("no {field} {value} in {list} of {doc:#}"))
        .clone()
}

pub(crate) fn tag_filter(key: &str, value: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{key}"))
        .values(value)
        .build()
}
