//! Trust at the edges: where privbucket meets the user's folder, other people's buckets, a
//! state someone else wrote, and secrets. Every case runs the real binary against moto and
//! checks the account through the SDK, and the package through what reached Lambda.
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;

use crate::common::{Run, World, bucket};

fn write(dir: &Path, name: &str, body: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

/// Runs the binary in `dir` as a user who `cd`s there would: the default state file
/// (`./privbucket.state.json`), not the world's. No run may hang: a guard of a minute.
async fn run_in(w: &World, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = w.command(args, env);
    cmd.current_dir(dir)
        .env_remove("PRIVBUCKET_STATE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("running privbucket");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "`privbucket {}` did not end within a minute",
                args.join(" ")
            )
        })
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        cmd: format!("privbucket {}", args.join(" ")),
    }
}

/// The files of the uploader's package as Lambda would unzip them: the `ZipFile` of the last
/// `CreateFunction` / `UpdateFunctionCode` of `privbucket-uploader` the proxy saw.
fn deployed_files(w: &World) -> Vec<String> {
    let call = w
        .proxy
        .calls()
        .into_iter()
        .rev()
        .find(|c| match c.api().as_str() {
            "CreateFunction" => String::from_utf8_lossy(&c.body).contains("privbucket-uploader"),
            "UpdateFunctionCode" => c.action.contains("privbucket-uploader"),
            _ => false,
        })
        .expect("a package of the uploader reached Lambda");
    let body: serde_json::Value = serde_json::from_slice(&call.body).unwrap();
    let zip = body["Code"]["ZipFile"]
        .as_str()
        .or(body["ZipFile"].as_str())
        .expect("a ZipFile in the call");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(zip)
        .unwrap();
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    let mut names = Vec::new();
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).unwrap();
        let mut content = Vec::new();
        f.read_to_end(&mut content).unwrap();
        names.push(f.name().unwrap().to_string());
    }
    names
}

/// The function's folder as a user has it while working in it: the code, an editor's
/// dangling lock link, a helper folder linked from outside, and an old rejected state copy.
fn function_folder(w: &World) -> PathBuf {
    let dir = w.dir.path().join("myfn");
    write(
        &dir,
        "app.py",
        "def handler(event, context):\n    return event\n",
    );
    write(
        &dir,
        "privbucket.state.prod.rejected.json",
        "{\"account\": \"123456789012\"}\n",
    );
    let shared = w.dir.path().join("shared-lib");
    write(&shared, "util.py", "X = 1\n");
    std::os::unix::fs::symlink(&shared, dir.join("shared")).unwrap();
    std::os::unix::fs::symlink("user@host.1234", dir.join(".#app.py")).unwrap();
    dir
}

const SECRET: &str = "s3cr3t-Value-that-must-stay-put";

/// The uploader's environment as Lambda holds it.
async fn uploader_variables(w: &World) -> std::collections::HashMap<String, String> {
    let c = w
        .aws
        .lambda
        .get_function_configuration()
        .function_name("privbucket-uploader")
        .send()
        .await
        .unwrap();
    c.environment().unwrap().variables().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_code_dot_twice_in_the_functions_folder_packages_none_of_privbuckets_files() {
    let w = World::new().await;
    let dir = function_folder(&w);
    let env = format!("TOKEN={SECRET}");
    let first = run_in(&w, &dir, &["up", "--code", ".", "--env", &env], &[]).await;
    first.expect(0);
    let said = first.text();
    assert!(
        said.contains(
            "left privbucket's own files out of the package: privbucket.state.prod.rejected.json"
        ),
        "{said}"
    );
    assert!(
        said.contains("followed symbolic links that leave") && said.contains("shared -> "),
        "{said}"
    );
    assert!(
        said.contains("skipped symbolic links whose target does not exist: .#app.py"),
        "{said}"
    );
    assert_eq!(deployed_files(&w), vec!["app.py", "shared/util.py"]);
    assert!(dir.join("privbucket.state.json").exists());

    // The second run finds the state file and its lock in the folder, leaves them out, and
    // changes nothing.
    w.proxy.clear();
    let second = run_in(&w, &dir, &["up"], &[]).await;
    second.expect(0);
    assert!(w.proxy.writes().is_empty(), "{:#?}", w.proxy.writes());
    let said = second.text();
    assert!(
        said.contains("privbucket.state.json") && said.contains("privbucket.state.json.lock"),
        "{said}"
    );
    let again = run_in(&w, &dir, &["up", "--code", "."], &[]).await;
    again.expect(0);
    assert!(w.proxy.writes().is_empty(), "{:#?}", w.proxy.writes());
    run_in(&w, &dir, &["status"], &[]).await.expect(0);

    // The secret went to Lambda, and nowhere else.
    let vars = uploader_variables(&w).await;
    assert_eq!(vars.get("TOKEN").map(String::as_str), Some(SECRET));
    let state = std::fs::read_to_string(dir.join("privbucket.state.json")).unwrap();
    assert!(!state.contains(SECRET), "{state}");
    assert!(state.contains("env_sha256"), "{state}");
    for r in [&first, &second, &again] {
        assert!(!r.text().contains(SECRET), "{}", r.text());
    }
    run_in(&w, &dir, &["down", "--yes"], &[]).await.expect(0);
    w.assert_nothing_left().await;
}

/// Each hazard a folder can hold ends at once with exit 2 naming it, before any call and
/// before any state is written: nothing is read from a FIFO, a socket or a device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_that_cannot_be_packaged_is_refused_at_once_naming_what_is_wrong() {
    let w = World::new().await;
    let case = |name: &str| {
        let dir = w.dir.path().join(name);
        write(&dir, "app.py", "def handler(e, c):\n    return e\n");
        dir
    };
    let fifo = case("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(fifo.join("pipe"))
        .status()
        .unwrap();
    assert!(made.success());
    let socket = case("socket");
    let _listener = std::os::unix::net::UnixListener::bind(socket.join("dev.sock")).unwrap();
    let zero = case("zero");
    std::os::unix::fs::symlink("/dev/zero", zero.join("data.bin")).unwrap();
    let looped = case("loop");
    std::os::unix::fs::symlink(".", looped.join("again")).unwrap();
    let latin = case("latin1");
    {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9.py");
        std::fs::write(latin.join(name), "x = 1\n").unwrap();
    }
    let cases: [(&Path, &str, &str); 5] = [
        (&fifo, "a named pipe (FIFO)", "pipe"),
        (&socket, "a socket", "dev.sock"),
        (&zero, "a character device", "data.bin"),
        (&looped, "loops back", "again"),
        (&latin, "not valid UTF-8", "caf"),
    ];
    for (dir, what, name) in cases {
        w.proxy.clear();
        let r = run_in(
            &w,
            w.dir.path(),
            &["up", "--code", dir.to_str().unwrap()],
            &[],
        )
        .await;
        r.expect(2);
        assert!(r.stderr.contains(what), "{what}: {}", r.stderr);
        assert!(r.stderr.contains(name), "{name}: {}", r.stderr);
        assert!(w.proxy.calls().is_empty(), "{what}: {:#?}", w.proxy.calls());
        assert!(
            !w.dir.path().join("privbucket.state.json").exists(),
            "{what}"
        );
    }
}

/// A tag's key and value.
type Pair = (&'static str, &'static str);

/// Tags a bucket behind privbucket's back, as someone with the console would.
async fn tag_bucket(w: &World, name: &str, tags: &[Pair]) {
    let tags = tags
        .iter()
        .map(|(k, v)| {
            aws_sdk_s3::types::Tag::builder()
                .key(*k)
                .value(*v)
                .build()
                .unwrap()
        })
        .collect();
    w.aws
        .s3
        .put_bucket_tagging()
        .bucket(name)
        .tagging(
            aws_sdk_s3::types::Tagging::builder()
                .set_tag_set(Some(tags))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// A bucket's tags as S3 lists them (`None`: it has none).
async fn bucket_tags(w: &World, name: &str) -> Option<String> {
    w.aws
        .s3
        .get_bucket_tagging()
        .bucket(name)
        .send()
        .await
        .ok()
        .map(|t| format!("{:?}", t.tag_set()))
}

/// Another stack's bucket, an untagged empty bucket and a bucket with someone's tag are each
/// refused before any change, and left exactly as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_privbucket_did_not_make_is_refused_and_left_as_it_was() {
    let w = World::new().await;
    let s3 = &w.aws.s3;
    let cases: [(&str, &[Pair], &str); 3] = [
        (
            "stack-one-data",
            &[
                ("privbucket:stack", "one"),
                ("privbucket:resource", "bucket"),
            ],
            "belongs to privbucket stack one",
        ),
        (
            "new-team-bucket",
            &[],
            "does not say it was about to create it",
        ),
        (
            "log-target",
            &[("team", "data")],
            "carries tags privbucket did not put there (team)",
        ),
    ];
    for (name, tags, why) in cases {
        s3.create_bucket().bucket(name).send().await.unwrap();
        if !tags.is_empty() {
            tag_bucket(&w, name, tags).await;
        }
        let tags_before = bucket_tags(&w, name).await;
        w.proxy.clear();
        let r = w.run(&["up", "--name", "two", "--bucket", name]).await;
        r.expect(2);
        assert!(r.stderr.contains(why), "{why}: {}", r.stderr);
        assert!(r.stderr.contains(name), "{}", r.stderr);
        assert!(
            w.proxy.writes().is_empty(),
            "{name}: {:#?}",
            w.proxy.writes()
        );
        assert!(!w.state_path().exists(), "{name}: a state file was written");
        let tags_after = bucket_tags(&w, name).await;
        assert_eq!(tags_before, tags_after, "{name}");
        assert!(
            s3.get_bucket_policy().bucket(name).send().await.is_err(),
            "{name} was given a policy"
        );
    }
    assert!(w.vpcs().await.is_empty());
}

/// `down` does not take the state file's word for what is the stack's: a bucket without the
/// stack's tag and a role recorded under another name are refused before any change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_checks_the_stacks_tag_and_names_before_deleting() {
    let w = World::new().await;
    w.up().await;
    let b = bucket();
    // The bucket's tags removed behind privbucket's back: it no longer says it is the stack's.
    w.aws
        .s3
        .delete_bucket_tagging()
        .bucket(&b)
        .send()
        .await
        .unwrap();
    w.proxy.clear();
    let r = w.run(&["down", "--yes"]).await;
    r.expect(2);
    assert!(r.stderr.contains(&b), "{}", r.stderr);
    assert!(w.proxy.writes().is_empty(), "{:#?}", w.proxy.writes());
    assert!(w.stack_vpc("privbucket").await.is_some());
    // Nor does `up` take the state's word for it.
    w.proxy.clear();
    w.run(&["up"]).await.expect(2);
    assert!(w.proxy.writes().is_empty(), "{:#?}", w.proxy.writes());
    // Tagged again, as the message says: the stack's once more.
    tag_bucket(
        &w,
        &b,
        &[
            ("privbucket:stack", "privbucket"),
            ("privbucket:resource", "bucket"),
            ("Name", "privbucket-bucket"),
        ],
    )
    .await;
    w.run(&["status"]).await.expect(0);

    // A state that names someone else's role for the stack's.
    let original = std::fs::read(w.state_path()).unwrap();
    let mut state = w.state();
    state["resources"]["control-role"]["id"] = "someone-elses-role".into();
    std::fs::write(w.state_path(), serde_json::to_vec_pretty(&state).unwrap()).unwrap();
    w.proxy.clear();
    let r = w.run(&["down", "--yes"]).await;
    r.expect(2);
    assert!(r.stderr.contains("someone-elses-role"), "{}", r.stderr);
    assert!(w.proxy.writes().is_empty(), "{:#?}", w.proxy.writes());
    std::fs::write(w.state_path(), original).unwrap();
    w.run(&["down", "--yes"]).await.expect(0);
    w.assert_nothing_left().await;
}

/// A state file is data someone else may have written: its values pass the flags' rules, and
/// its endpoint is used only when this command is told the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_written_by_someone_else_is_validated_as_flags_are() {
    let w = World::new().await;
    w.up().await;
    let good = w.state();
    let other = w.dir.path().join("other.json");
    for (field, value, why) in [
        ("stack", "Bad_Name", "invalid stack name"),
        ("region", "us-east-1; rm -rf", "invalid region"),
        ("account_id", "12345", "12-digit"),
    ] {
        let mut doc = good.clone();
        doc[field] = value.into();
        std::fs::write(&other, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
        w.proxy.clear();
        let r = w.run(&["--state", other.to_str().unwrap(), "status"]).await;
        r.expect(2);
        assert!(r.stderr.contains(why), "{field}: {}", r.stderr);
        assert!(w.proxy.calls().is_empty(), "{field}");
    }
    let mut doc = good.clone();
    doc["settings"]["bucket"] = "Not_A_Bucket".into();
    std::fs::write(&other, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let r = w.run(&["--state", other.to_str().unwrap(), "status"]).await;
    r.expect(2);
    assert!(r.stderr.contains("invalid bucket name"), "{}", r.stderr);

    // The endpoint the state names, with none given: refused before any call. Should a call
    // escape, the SDK's own per-service endpoints send it to a closed local port.
    let closed = "http://127.0.0.1:9";
    let mut cmd = w.command(
        &["status"],
        &[
            ("AWS_ENDPOINT_URL_STS", closed),
            ("AWS_ENDPOINT_URL_EC2", closed),
            ("AWS_ENDPOINT_URL_IAM", closed),
            ("AWS_ENDPOINT_URL_S3", closed),
            ("AWS_ENDPOINT_URL_LAMBDA", closed),
        ],
    );
    cmd.env_remove("AWS_ENDPOINT_URL");
    let out = cmd.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let url = good["endpoint_url"].as_str().unwrap();
    assert!(stderr.contains(url), "{stderr}");
    assert!(stderr.contains("--endpoint-url"), "{stderr}");
}

/// `--env-file` keeps values off the command line; the state and the S3 state object keep
/// only hashes; the size Lambda counts is checked before any call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_values_live_in_lambda_only_and_an_oversized_set_is_refused_before_any_call() {
    let w = World::new().await;
    let code = w.dir.path().join("fn");
    write(&code, "app.py", "def handler(e, c):\n    return e\n");
    let vars = w.dir.path().join("prod.env");
    std::fs::write(
        &vars,
        format!(
            "# the database\nDB_PASSWORD=\"{SECRET} with spaces\"\nexport API_KEY='{SECRET}#2'\n"
        ),
    )
    .unwrap();
    let code_s = code.to_str().unwrap();
    let vars_s = vars.to_str().unwrap();
    let r = w
        .run(&[
            "up",
            "--code",
            code_s,
            "--env-file",
            vars_s,
            "--env",
            "MODE=prod",
        ])
        .await;
    r.expect(0);
    let live = uploader_variables(&w).await;
    assert_eq!(
        live.get("DB_PASSWORD").map(String::as_str),
        Some(format!("{SECRET} with spaces").as_str())
    );
    assert_eq!(
        live.get("API_KEY").map(String::as_str),
        Some(format!("{SECRET}#2").as_str())
    );
    assert_eq!(live.get("MODE").map(String::as_str), Some("prod"));
    let state = std::fs::read_to_string(w.state_path()).unwrap();
    assert!(!state.contains(SECRET), "{state}");
    // Without the values, the stack keeps them: no change, and status agrees by hash.
    w.proxy.clear();
    let again = w.run(&["up"]).await;
    again.expect(0);
    assert!(w.proxy.writes().is_empty(), "{:#?}", w.proxy.writes());
    let status = w.run(&["status"]).await;
    status.expect(0);
    // Changed behind privbucket's back: named, never shown.
    let mut changed = live.clone();
    changed.insert("API_KEY".into(), "rotated-by-hand".into());
    w.aws
        .lambda
        .update_function_configuration()
        .function_name("privbucket-uploader")
        .environment(
            aws_sdk_lambda::types::Environment::builder()
                .set_variables(Some(changed))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let status = w.run(&["status"]).await;
    status.expect(1);
    assert!(
        status.stdout.contains("API_KEY differs"),
        "{}",
        status.stdout
    );
    assert!(
        !status.text().contains("rotated-by-hand"),
        "{}",
        status.text()
    );
    // `up` cannot put back a value it only knows by hash: it says so, and the file puts it
    // back.
    let r = w.run(&["up"]).await;
    r.expect(3);
    assert!(
        r.stderr.contains("API_KEY") && r.stderr.contains("--env-file"),
        "{}",
        r.stderr
    );
    w.run(&["up", "--env-file", vars_s, "--env", "MODE=prod"])
        .await
        .expect(0);
    w.run(&["status"]).await.expect(0);
    for r in [&again, &status] {
        assert!(!r.text().contains(SECRET), "{}", r.text());
    }

    // Lambda's 4 KB counts the JSON of the whole set, privbucket's own variables included: a
    // set that fits on its own but not with them is refused before any call.
    let big = format!("BIG={}", "x".repeat(4096 - 100));
    w.proxy.clear();
    let before = std::fs::read(w.state_path()).unwrap();
    let r = w.run(&["up", "--env", &big]).await;
    r.expect(2);
    assert!(r.stderr.contains("4 KB"), "{}", r.stderr);
    assert!(w.proxy.calls().is_empty(), "{:#?}", w.proxy.calls());
    assert_eq!(std::fs::read(w.state_path()).unwrap(), before);
    // A malformed --env never echoes what was typed.
    let r = w.run(&["up", "--env", SECRET]).await;
    r.expect(2);
    assert!(!r.text().contains(SECRET), "{}", r.text());
}

/// The code a teammate deployed from their own laptop: the path is not on this machine. `up`
/// leaves the deployed code alone and says so; `status` says it could not compare it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_code_path_that_is_not_here_leaves_the_deployed_code_alone() {
    let w = World::new().await;
    let code = w.dir.path().join("laptop-checkout");
    write(&code, "app.py", "def handler(e, c):\n    return e\n");
    w.run(&["up", "--code", code.to_str().unwrap()])
        .await
        .expect(0);
    std::fs::rename(&code, w.dir.path().join("elsewhere")).unwrap();
    w.proxy.clear();
    let r = w.run(&["up"]).await;
    r.expect(0);
    assert!(r.text().contains("is not on this machine"), "{}", r.text());
    assert!(w.proxy.writes().is_empty(), "{:#?}", w.proxy.writes());
    let s = w.run(&["status"]).await;
    s.expect(1);
    assert!(
        s.stdout.contains("code could not be compared"),
        "{}",
        s.stdout
    );
    assert!(s.stdout.contains("laptop-checkout"), "{}", s.stdout);
}

/// The longest stack name in the longest region the flags accept would make a default bucket
/// name over S3's 63 characters: refused with the flags to change, before any call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_bucket_name_over_the_limit_is_refused_before_any_call() {
    let w = World::new().await;
    let name = format!("a{}", "b".repeat(31));
    let region = "abcdefgh-ijklmnop-12";
    for cmd in ["up", "plan"] {
        w.proxy.clear();
        let r = w.run(&[cmd, "--name", &name, "--region", region]).await;
        r.expect(2);
        assert!(
            r.stderr.contains("--name") && r.stderr.contains("--bucket"),
            "{}",
            r.stderr
        );
        assert!(w.proxy.calls().is_empty(), "{:#?}", w.proxy.calls());
        assert!(!w.state_path().exists());
    }
}
