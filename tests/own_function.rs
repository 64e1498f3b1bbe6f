//! Your own function as the uploader (`up --code`): deployed, left alone when unchanged, and
//! changed in place (code and configuration apart) on moto; run through `privbucket invoke` on
//! ministack, which runs Python handlers.
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::common::{MINISTACK_ACCOUNT, World, bucket, bucket_in};

fn write(dir: &Path, name: &str, body: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

/// A handler folder as a project keeps it: code, a helper module, and the litter privbucket
/// leaves out of the package (bytecode, a git folder).
fn project(w: &World) -> PathBuf {
    let dir = w.dir.path().join("myfn");
    write(
        &dir,
        "app.py",
        "from lib.helper import greeting\n\ndef handler(event, context):\n    return \
         {'greeting': greeting()}\n",
    );
    write(&dir, "lib/__init__.py", "");
    write(
        &dir,
        "lib/helper.py",
        "def greeting():\n    return 'hello'\n",
    );
    write(&dir, "lib/__pycache__/helper.cpython-313.pyc", "bytecode");
    write(&dir, ".git/HEAD", "ref: refs/heads/main\n");
    dir
}

async fn uploader(w: &World) -> aws_sdk_lambda::types::FunctionConfiguration {
    w.aws
        .lambda
        .get_function()
        .function_name("privbucket-uploader")
        .send()
        .await
        .unwrap()
        .configuration()
        .unwrap()
        .clone()
}

fn writes(w: &World) -> Vec<String> {
    w.proxy.writes().iter().map(|c| c.api()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn your_code_is_deployed_left_alone_and_changed_in_place() {
    let w = World::new().await;
    let dir = project(&w);
    let code = dir.to_str().unwrap();
    w.run(&[
        "up",
        "--code",
        code,
        "--memory",
        "256",
        "--env",
        "MODE=test",
    ])
    .await
    .expect(0);
    let c = uploader(&w).await;
    assert_eq!(c.handler(), Some("app.handler"));
    assert_eq!(c.runtime().map(|r| r.as_str()), Some("python3.13"));
    assert_eq!(c.memory_size(), Some(256));
    let env = c.environment().unwrap().variables().unwrap();
    assert_eq!(env.get("MODE").map(String::as_str), Some("test"));
    assert_eq!(env.get("PRIVBUCKET_BUCKET"), Some(&bucket()));
    assert_eq!(env.get("PRIVATE_BUCKET"), Some(&bucket()));
    // Lambda holds the package privbucket built and recorded.
    let recorded = w.state()["settings"]["function"]["code_sha256"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(c.code_sha256(), Some(recorded.as_str()));
    // The control function keeps the example handler.
    let control = w
        .aws
        .lambda
        .get_function()
        .function_name("privbucket-control")
        .send()
        .await
        .unwrap();
    assert_eq!(
        control.configuration().unwrap().handler(),
        Some("uploader.handler")
    );

    // Unchanged: no write at all, with or without --code.
    w.proxy.clear();
    w.up().await;
    w.run(&["up", "--code", code]).await.expect(0);
    assert!(writes(&w).is_empty(), "{:?}", writes(&w));

    // The same files written again (new times): the same package.
    write(
        &dir,
        "lib/helper.py",
        "def greeting():\n    return 'hello'\n",
    );
    w.run(&["status"]).await.expect(0);

    // A changed file: `status` says the code changed; `up` updates the code, nothing else.
    write(&dir, "lib/helper.py", "def greeting():\n    return 'hi'\n");
    let st = w.run(&["status"]).await;
    st.expect(1);
    let uploader_line = st
        .stdout
        .lines()
        .find(|l| l.contains("privbucket-uploader") && l.starts_with("lambda-function"))
        .unwrap_or_default();
    assert!(
        uploader_line.contains("code differs from the package of"),
        "{}",
        st.stdout
    );
    w.proxy.clear();
    w.up().await;
    assert_eq!(writes(&w), vec!["UpdateFunctionCode"]);
    assert_ne!(uploader(&w).await.code_sha256(), Some(recorded.as_str()));
    w.run(&["status"]).await.expect(0);

    // A setting: only the configuration is updated.
    w.proxy.clear();
    w.run(&["up", "--memory", "512"]).await.expect(0);
    assert_eq!(writes(&w), vec!["UpdateFunctionConfiguration"]);
    let c = uploader(&w).await;
    assert_eq!(c.memory_size(), Some(512));
    let env = c.environment().unwrap().variables().unwrap();
    assert_eq!(env.get("MODE").map(String::as_str), Some("test"));

    // A .zip is deployed as it is: Lambda's CodeSha256 is the file's own.
    let zip_path = w.dir.path().join("fn.zip");
    {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
        zip.start_file("app.py", zip::write::SimpleFileOptions::default())
            .unwrap();
        zip.write_all(b"def handler(event, context):\n    return 'zipped'\n")
            .unwrap();
        zip.finish().unwrap();
    }
    let bytes = std::fs::read(&zip_path).unwrap();
    let sha = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&bytes));
    w.run(&["up", "--code", zip_path.to_str().unwrap()])
        .await
        .expect(0);
    assert_eq!(uploader(&w).await.code_sha256(), Some(sha.as_str()));

    w.run(&["down", "--yes"]).await.expect(0);
    w.assert_nothing_left().await;
}

/// Every limit and mistake is refused before any call, and the state file is left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_code_and_settings_are_refused_before_any_call() {
    let w = World::new().await;
    let dir = project(&w);
    let code = dir.to_str().unwrap().to_string();
    // Over the 50 MB direct-upload limit: a .zip of 51 MiB, stored (not compressed).
    let big = w.dir.path().join("big.zip");
    {
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&big).unwrap());
        zip.start_file("app.py", stored).unwrap();
        zip.write_all(b"def handler(e, c): pass\n").unwrap();
        zip.start_file("data.bin", stored).unwrap();
        zip.write_all(&vec![0u8; 51 * 1024 * 1024]).unwrap();
        zip.finish().unwrap();
    }
    // Under 50 MB zipped, over 250 MB unzipped: 251 MiB of zeros, deflated (by Python's
    // zipfile, which deflates that in a second).
    let deep = w.dir.path().join("deep.zip");
    let made = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\n\
             with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n\
             \x20   z.writestr('app.py', 'def handler(e, c): pass\\n')\n\
             \x20   z.writestr('zeros.bin', bytes(251 * 1024 * 1024))\n",
        ])
        .arg(&deep)
        .status()
        .expect("python3 runs");
    assert!(made.success());
    let missing = w.dir.path().join("nowhere");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--code", missing.to_str().unwrap()], "nowhere"),
        (vec!["--code", big.to_str().unwrap()], "50.0 MiB limit"),
        (
            vec!["--code", deep.to_str().unwrap()],
            "unzipped, over Lambda's 250.0 MiB limit",
        ),
        (
            vec!["--code", &code, "--handler", "main.handler"],
            "has no main.py",
        ),
        (
            vec!["--code", &code, "--runtime", "cobol85"],
            "unknown --runtime",
        ),
        (
            vec!["--code", &code, "--runtime", "python3.8"],
            "deprecated by Lambda on 2024-10-14",
        ),
        (vec!["--code", &code, "--memory", "64"], "128 to 10240 MB"),
        (
            vec!["--code", &code, "--memory", "20000"],
            "128 to 10240 MB",
        ),
        (
            vec!["--code", &code, "--timeout", "16m"],
            "1 second to 15 minutes",
        ),
        (
            vec!["--code", &code, "--timeout", "soon"],
            "invalid --timeout",
        ),
        (
            vec!["--code", &code, "--architecture", "sparc"],
            "x86_64 or arm64",
        ),
        (
            vec!["--code", &code, "--env", "PRIVATE_BUCKET=x"],
            "sets PRIVATE_BUCKET and PRIVBUCKET_BUCKET",
        ),
        (vec!["--code", &code, "--env", "AWS_REGION=x"], "reserves"),
        (vec!["--code", &code, "--env", "NOEQUALS"], "KEY=VALUE"),
        (vec!["--memory", "256"], "pass --code"),
    ];
    for (flags, want) in &cases {
        let mut args = vec!["up"];
        args.extend(flags.iter().copied());
        let r = w.refused(&args, want).await;
        assert!(!w.state_path().exists(), "`{}` wrote a state file", r.cmd);
    }
    w.refused(&["invoke"], "no state file").await;
    w.refused(&["invoke", "--payload", "{not json"], "not JSON")
        .await;
    assert!(
        w.proxy.calls().is_empty(),
        "calls reached AWS: {:#?}",
        w.proxy.calls()
    );

    // On a stack: the state file is left byte for byte.
    w.up().await;
    let before = std::fs::read(w.state_path()).unwrap();
    w.proxy.clear();
    for (flags, _) in &cases {
        let mut args = vec!["up"];
        args.extend(flags.iter().copied());
        w.run(&args).await.expect(2);
    }
    assert_eq!(std::fs::read(w.state_path()).unwrap(), before);
    assert!(w.proxy.calls().is_empty(), "{:#?}", w.proxy.calls());
    w.run(&["down", "--yes"]).await.expect(0);
}

/// On ministack, whose Lambda runs Python handlers: `invoke` prints what the handler returned,
/// a handler that raises gives exit 1 with its error, and `--log` shows what it printed.
/// (ministack has no VPC endpoint, so the bucket policy denies the uploader's writes there;
/// `tests/enforcement.rs` shows that. The handler reports the bucket privbucket named.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_runs_your_function_and_reports_what_it_raised() {
    let w = World::ministack().await;
    let dir = w.dir.path().join("hello");
    write(
        &dir,
        "hello.py",
        "import json, os\n\n\
         def handler(event, context):\n    \
             print('hello from the log', json.dumps(event))\n    \
             if event.get('fail'):\n        \
                 raise ValueError('asked to fail')\n    \
             return {'echo': event.get('id'), 'bucket': os.environ['PRIVBUCKET_BUCKET']}\n",
    );
    w.run(&["up", "--code", dir.join("hello.py").to_str().unwrap()])
        .await
        .expect(0);
    let r = w
        .run(&["invoke", "--payload", r#"{"id": "abc-123"}"#])
        .await;
    r.expect(0);
    assert!(r.stdout.contains("abc-123"), "{}", r.stdout);
    assert!(
        r.stdout.contains(&bucket_in(MINISTACK_ACCOUNT)),
        "{}",
        r.stdout
    );
    let doc = w
        .run(&["invoke", "--output", "json", "--payload", r#"{"id": "j"}"#])
        .await;
    doc.expect(0);
    assert_eq!(doc.json()["result"]["echo"], "j");

    let payload = w.dir.path().join("fail.json");
    std::fs::write(&payload, r#"{"fail": true}"#).unwrap();
    let r = w
        .run(&["invoke", "--payload-file", payload.to_str().unwrap()])
        .await;
    r.expect(1);
    // AWS names the exception (`ValueError`); ministack says `Runtime.HandlerError`.
    assert!(
        r.stderr.contains("raised") && r.stderr.contains("asked to fail"),
        "{}",
        r.stderr
    );

    let r = w
        .run(&["invoke", "--log", "--payload", r#"{"id": "L"}"#])
        .await;
    r.expect(0);
    assert!(r.stderr.contains("hello from the log"), "{}", r.stderr);

    // `verify --invoke` does not run your code with an event of its own making.
    let v = w.run(&["verify", "--invoke", "--output", "json"]).await;
    let doc = v.json();
    let live = crate::common::find_in(&doc, "checks", "name", "live");
    assert!(
        live["evidence"]
            .to_string()
            .contains("inconclusive: privbucket-uploader runs your code"),
        "{live:#}"
    );
}
