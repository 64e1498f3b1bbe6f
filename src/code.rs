//! The user's own function: `up --code PATH` and its settings (handler, runtime, memory,
//! timeout, architecture, environment). Checked against Lambda's limits before any call, and
//! stored in the state file so that `status`, `plan` and the next `up` compare the function
//! with them. Without `--code`, the uploader runs the example handler.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::InputError;
use crate::package::Package;

/// Runtimes Lambda lists, with the date each is deprecated ("Lambda runtimes", Lambda
/// developer guide; the dates as terraform-linters/tflint-ruleset-aws records them in
/// `aws_lambda_function_deprecated_runtime`, and endoflife.date/aws-lambda for the newest).
/// After that date Lambda soon blocks creating functions on it, then updating them.
pub(crate) const RUNTIMES: &[(&str, &str)] = &[
    ("python3.14", "2029-06-30"),
    ("python3.13", "2029-06-30"),
    ("python3.12", "2028-10-31"),
    ("python3.11", "2026-06-30"),
    ("python3.10", "2026-06-30"),
    ("python3.9", "2025-12-15"),
    ("python3.8", "2024-10-14"),
    ("python3.7", "2023-12-04"),
    ("nodejs24.x", "2028-04-30"),
    ("nodejs22.x", "2027-04-30"),
    ("nodejs20.x", "2026-04-30"),
    ("nodejs18.x", "2025-09-01"),
    ("nodejs16.x", "2024-06-12"),
    ("java25", "2029-06-30"),
    ("java21", "2029-06-30"),
    ("java17", "2026-06-30"),
    ("java11", "2026-06-30"),
    ("java8.al2", "2026-06-30"),
    ("dotnet10", "2028-11-14"),
    ("dotnet8", "2026-11-10"),
    ("ruby3.4", "2028-03-31"),
    ("ruby3.3", "2027-03-31"),
    ("ruby3.2", "2026-03-31"),
    ("provided.al2023", "2029-06-30"),
    ("provided.al2", "2026-06-30"),
    ("go1.x", "2024-01-08"),
    ("provided", "2024-01-08"),
];

pub(crate) const DEFAULT_PYTHON: &str = "python3.13";
pub(crate) const DEFAULT_NODE: &str = "nodejs22.x";
pub(crate) const DEFAULT_PROVIDED: &str = "provided.al2023";
/// Lambda's range for `MemorySize`, in MB.
pub(crate) const MEMORY: std::ops::RangeInclusive<i32> = 128..=10240;
/// Lambda's longest `Timeout`: 15 minutes.
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(900);
/// Lambda's limit on all environment variables together ("Lambda quotas": 4 KB).
pub(crate) const ENV_LIMIT: usize = 4 * 1024;
/// Set by privbucket on both functions to the stack's bucket; not the user's to set.
pub(crate) const BUCKET_VARIABLES: [&str; 2] = ["PRIVATE_BUCKET", "PRIVBUCKET_BUCKET"];
/// Lambda's reserved variables ("Defined runtime environment variables", Lambda developer
/// guide): a function cannot set them.
const RESERVED: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

/// The flags of `up` for the uploader's code; `None` / empty: keep the stack's setting.
#[derive(Debug, Clone, Default)]
pub(crate) struct CodeArgs {
    pub(crate) code: Option<PathBuf>,
    pub(crate) handler: Option<String>,
    pub(crate) runtime: Option<String>,
    pub(crate) memory: Option<i32>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) architecture: Option<Architecture>,
    /// `--env KEY=VALUE`, in the order given.
    pub(crate) env: Vec<(String, String)>,
    /// `--env-file FILE`: dotenv lines, read before `--env` (which wins for a name in both).
    pub(crate) env_file: Option<PathBuf>,
    /// The package of `code`, built before the state's lock was taken.
    pub(crate) prebuilt: Option<Package>,
}

impl CodeArgs {
    fn any_setting(&self) -> bool {
        self.handler.is_some()
            || self.runtime.is_some()
            || self.memory.is_some()
            || self.timeout.is_some()
            || self.architecture.is_some()
            || !self.env.is_empty()
            || self.env_file.is_some()
    }

    /// `--env-file`'s variables, then `--env`'s; empty when neither was given.
    fn variables(&self) -> Result<Vec<(String, String)>, InputError> {
        let mut pairs = match &self.env_file {
            Some(f) => read_env_file(f)?,
            None => Vec::new(),
        };
        pairs.extend(self.env.iter().cloned());
        Ok(pairs)
    }
}

/// A dotenv file (`KEY=VALUE`, `#` comments, quotes), read with `dotenvy`. Its errors never
/// quote a line: a line may hold a secret.
fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, InputError> {
    let shown = path.display();
    let iter = dotenvy::from_path_iter(path)
        .map_err(|e| InputError(format!("--env-file {shown}: {}", env_file_error(&e))))?;
    iter.map(|item| {
        item.map_err(|e| InputError(format!("--env-file {shown}: {}", env_file_error(&e))))
    })
    .collect()
}

fn env_file_error(e: &dotenvy::Error) -> String {
    match e {
        dotenvy::Error::LineParse(_, at) => format!(
            "not KEY=VALUE dotenv syntax at character {at} (the line is not shown: it may hold \
             a secret)"
        ),
        dotenvy::Error::Io(io) => io.to_string(),
        dotenvy::Error::EnvVar(e) => e.to_string(),
        // `dotenvy::Error` is non-exhaustive.
        _ => "cannot read it".to_string(),
    }
}

/// SHA-256 of a variable's value, hex: what the state keeps instead of the value.
pub(crate) fn value_hash(value: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(value.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) enum Architecture {
    #[default]
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "arm64")]
    Arm64,
}

impl Architecture {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Architecture::X86_64 => "x86_64",
            Architecture::Arm64 => "arm64",
        }
    }
}

impl std::str::FromStr for Architecture {
    type Err = InputError;

    fn from_str(s: &str) -> Result<Self, InputError> {
        match s {
            "x86_64" => Ok(Architecture::X86_64),
            "arm64" => Ok(Architecture::Arm64),
            _ => Err(InputError(format!(
                "invalid --architecture {s:?}: expected x86_64 or arm64"
            ))),
        }
    }
}

/// The uploader's code and settings, as stored in the state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FunctionSettings {
    /// The directory, `.zip` or file the package is built from, absolute.
    pub(crate) code: PathBuf,
    pub(crate) handler: String,
    pub(crate) runtime: String,
    pub(crate) memory_mb: i32,
    pub(crate) timeout_seconds: i32,
    pub(crate) architecture: Architecture,
    /// Each variable's name and the SHA-256 of its value ([`value_hash`]): never the value,
    /// which may be a secret. The values live in Lambda's configuration only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) env_sha256: BTreeMap<String, String>,
    /// A state written before 0.2 kept the values themselves: read, hashed, never written.
    #[serde(default, rename = "env", skip_serializing)]
    legacy_env: BTreeMap<String, String>,
    /// The values given in this run (`--env`, `--env-file`): in memory only.
    #[serde(skip)]
    pub(crate) env_values: Option<BTreeMap<String, String>>,
    /// The package's `CodeSha256` when `up` last deployed it.
    pub(crate) code_sha256: String,
}

/// Settings are equal when what the state keeps is: the values in memory are not compared.
impl PartialEq for FunctionSettings {
    fn eq(&self, o: &Self) -> bool {
        self.code == o.code
            && self.handler == o.handler
            && self.runtime == o.runtime
            && self.memory_mb == o.memory_mb
            && self.timeout_seconds == o.timeout_seconds
            && self.architecture == o.architecture
            && self.env_sha256 == o.env_sha256
            && self.code_sha256 == o.code_sha256
    }
}

impl Eq for FunctionSettings {}

impl FunctionSettings {
    /// A state that kept the values keeps their hashes instead, from its next write on.
    pub(crate) fn forget_values(&mut self) {
        for (k, v) in std::mem::take(&mut self.legacy_env) {
            self.env_sha256.insert(k, value_hash(&v));
        }
    }
}

/// Where the uploader's code comes from this run.
enum Source<'a> {
    Built(Package),
    /// The stack's recorded code is not on this machine: the deployed code stays.
    LeftAlone(&'a FunctionSettings),
}

/// The uploader's settings for this run, and its package: from the flags, else from what the
/// stack has. `None`: the example handler. Every check is made here, before any call. The
/// package is `None` when the stack's recorded code is not on this machine (a teammate's
/// path, a CI checkout) and no `--code` was given: the deployed code is then left alone.
pub(crate) fn resolve(
    args: &CodeArgs,
    stored: Option<&FunctionSettings>,
    today: &str,
) -> Result<Option<(FunctionSettings, Option<Package>)>, InputError> {
    let code = match (&args.code, stored) {
        (Some(p), _) => absolute(p)?,
        (None, Some(s)) => s.code.clone(),
        (None, None) => {
            if args.any_setting() {
                return Err(InputError(
                    "--handler, --runtime, --memory, --timeout, --architecture, --env and \
                     --env-file set up your own function: pass --code PATH with them (the \
                     example handler keeps its own settings)"
                        .into(),
                ));
            }
            return Ok(None);
        }
    };
    let source = match (&args.code, stored, &args.prebuilt) {
        (Some(_), _, Some(p)) => Source::Built(p.clone()),
        (Some(_), _, None) => Source::Built(Package::build(&code)?),
        (None, Some(s), _) if std::fs::symlink_metadata(&code).is_err() => Source::LeftAlone(s),
        (None, _, _) => Source::Built(Package::build(&code).map_err(|e| {
            InputError(format!(
                "{} (the code this stack was deployed from); pass --code with where it is now",
                e.0
            ))
        })?),
    };
    // Left out, the handler and runtime are the stack's, even with a new --code (a package
    // without the handler's file is refused, naming it); derived only for a first --code.
    let runtime = match (&args.runtime, stored, &source) {
        (Some(r), _, _) => r.clone(),
        (None, Some(s), _) | (None, None, &Source::LeftAlone(s)) => s.runtime.clone(),
        (None, None, Source::Built(p)) => default_runtime(&code, p),
    };
    check_runtime(&runtime, today)?;
    let handler = match (&args.handler, stored, &source) {
        (Some(h), _, _) => h.clone(),
        (None, Some(s), _) | (None, None, &Source::LeftAlone(s)) => s.handler.clone(),
        (None, None, Source::Built(p)) => default_handler(&code, p, &runtime)?,
    };
    let package = match source {
        Source::Built(p) => {
            check_handler(&handler, &runtime, &p, &code)?;
            Some(p)
        }
        Source::LeftAlone(_) => None,
    };
    let (memory_mb, timeout_seconds) = sizes(args, stored)?;
    let (env_sha256, env_values) = variables(args, stored)?;
    let settings = FunctionSettings {
        code,
        handler,
        runtime,
        memory_mb,
        timeout_seconds,
        architecture: args
            .architecture
            .or(stored.map(|s| s.architecture))
            .unwrap_or_default(),
        env_sha256,
        legacy_env: BTreeMap::new(),
        env_values,
        code_sha256: match &package {
            Some(p) => p.sha256(),
            None => stored.map(|s| s.code_sha256.clone()).unwrap_or_default(),
        },
    };
    Ok(Some((settings, package)))
}

/// Memory (MB) and timeout (seconds): the flags', else the stack's, else Lambda's defaults.
fn sizes(args: &CodeArgs, stored: Option<&FunctionSettings>) -> Result<(i32, i32), InputError> {
    let memory = args.memory.or(stored.map(|s| s.memory_mb)).unwrap_or(128);
    if !MEMORY.contains(&memory) {
        return Err(InputError(format!(
            "--memory {memory}: Lambda takes {} to {} MB",
            MEMORY.start(),
            MEMORY.end()
        )));
    }
    let timeout = match args.timeout {
        Some(t) => {
            if t > MAX_TIMEOUT || t < Duration::from_secs(1) {
                return Err(InputError(format!(
                    "--timeout {}: Lambda takes 1 second to 15 minutes",
                    humantime::format_duration(t)
                )));
            }
            t.as_secs() as i32
        }
        None => stored.map(|s| s.timeout_seconds).unwrap_or(15),
    };
    Ok((memory, timeout))
}

/// The variables' hashes (kept in the state) and, when given this run, their values (for
/// Lambda only); none given: the stack's hashes, whose values Lambda holds.
type Variables = (BTreeMap<String, String>, Option<BTreeMap<String, String>>);

fn variables(args: &CodeArgs, stored: Option<&FunctionSettings>) -> Result<Variables, InputError> {
    let given = args.variables()?;
    if given.is_empty() {
        return Ok((
            stored.map(|s| s.env_sha256.clone()).unwrap_or_default(),
            None,
        ));
    }
    let values = check_env(&given)?;
    let hashes = values
        .iter()
        .map(|(k, v)| (k.clone(), value_hash(v)))
        .collect();
    Ok((hashes, Some(values)))
}

fn absolute(p: &Path) -> Result<PathBuf, InputError> {
    std::path::absolute(p).map_err(|e| InputError(format!("--code {}: {e}", p.display())))
}

/// Today as `YYYY-MM-DD` (UTC), for the deprecation dates.
pub(crate) fn today() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()[..10].to_string()
}

pub(crate) fn check_runtime(runtime: &str, today: &str) -> Result<(), InputError> {
    match RUNTIMES.iter().find(|(r, _)| *r == runtime) {
        None => Err(InputError(format!(
            "unknown --runtime {runtime:?}: Lambda's runtimes are {}",
            RUNTIMES
                .iter()
                .filter(|(_, d)| *d > today)
                .map(|(r, _)| *r)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        Some((_, date)) if *date <= today => Err(InputError(format!(
            "--runtime {runtime} was deprecated by Lambda on {date}; choose a supported one, \
             such as {}",
            newest_like(runtime)
        ))),
        Some(_) => Ok(()),
    }
}

/// The newest runtime of the same language.
fn newest_like(runtime: &str) -> &'static str {
    let lang = runtime.trim_end_matches(|c: char| !c.is_ascii_alphabetic());
    let lang = lang
        .split(['.', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9'])
        .next();
    RUNTIMES
        .iter()
        .find(|(r, _)| lang.is_some_and(|l| r.starts_with(l)))
        .map(|(r, _)| *r)
        .unwrap_or(DEFAULT_PYTHON)
}

fn file_name(code: &Path) -> String {
    code.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn is_node(file: &str) -> bool {
    [".mjs", ".js", ".cjs"].iter().any(|s| file.ends_with(s))
}

fn default_runtime(code: &Path, package: &Package) -> String {
    if package.has("bootstrap") {
        return DEFAULT_PROVIDED.into();
    }
    let single = file_name(code);
    let top: Vec<&String> = package.files.iter().filter(|f| !f.contains('/')).collect();
    let node = is_node(&single)
        || (!top.iter().any(|f| f.ends_with(".py")) && top.iter().any(|f| is_node(f)));
    if node { DEFAULT_NODE } else { DEFAULT_PYTHON }.into()
}

/// `uploader.handler` for `uploader.py`, `bootstrap` for a provided runtime; in a directory
/// or zip, the one top-level source file of the runtime's language.
fn default_handler(code: &Path, package: &Package, runtime: &str) -> Result<String, InputError> {
    if runtime.starts_with("provided") {
        return Ok("bootstrap".into());
    }
    let ext: &[&str] = if runtime.starts_with("python") {
        &[".py"]
    } else if runtime.starts_with("nodejs") {
        &[".mjs", ".js", ".cjs"]
    } else if runtime.starts_with("ruby") {
        &[".rb"]
    } else {
        &[]
    };
    let candidates: Vec<&String> = package
        .files
        .iter()
        .filter(|f| !f.contains('/') && ext.iter().any(|e| f.ends_with(e)))
        .collect();
    match candidates.as_slice() {
        [one] => {
            let stem = one.rsplit_once('.').map(|(s, _)| s).unwrap_or(one);
            Ok(format!("{stem}.handler"))
        }
        _ => Err(InputError(format!(
            "--code {}: cannot tell the handler ({}); pass --handler, e.g. --handler \
             app.handler for a function `handler` in app.py",
            code.display(),
            if candidates.is_empty() {
                "no top-level source file of the runtime's language".to_string()
            } else {
                format!(
                    "several top-level source files: {}",
                    candidates
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ))),
    }
}

/// The handler's file must be in the package: `pkg.mod.fn` is `pkg/mod.py` for Python,
/// `dir/file.fn` is `dir/file.mjs` (or `.js`, `.cjs`) for Node.js, `file.method` is
/// `file.rb` for Ruby, and a provided runtime runs `bootstrap`. Java and .NET handlers name
/// classes, which privbucket does not look into.
fn check_handler(
    handler: &str,
    runtime: &str,
    package: &Package,
    code: &Path,
) -> Result<(), InputError> {
    let missing = |wanted: String| {
        Err(InputError(format!(
            "--handler {handler}: the package from {} has no {wanted} (it holds {})",
            code.display(),
            shown(&package.files)
        )))
    };
    if runtime.starts_with("provided") {
        return match package.has("bootstrap") {
            true => Ok(()),
            false => missing("executable named bootstrap at its top".into()),
        };
    }
    let Some((module, _function)) = handler.rsplit_once('.') else {
        if runtime.starts_with("java") || runtime.starts_with("dotnet") {
            return Ok(());
        }
        return Err(InputError(format!(
            "--handler {handler}: expected FILE.FUNCTION, such as app.handler"
        )));
    };
    let wanted: Vec<String> = if runtime.starts_with("python") {
        let path = module.replace('.', "/");
        vec![format!("{path}.py"), format!("{path}/__init__.py")]
    } else if runtime.starts_with("nodejs") {
        [".mjs", ".js", ".cjs"]
            .iter()
            .map(|e| format!("{module}{e}"))
            .collect()
    } else if runtime.starts_with("ruby") {
        vec![format!("{module}.rb")]
    } else {
        return Ok(());
    };
    if wanted.iter().any(|w| package.has(w)) {
        Ok(())
    } else {
        missing(wanted.join(" or "))
    }
}

fn shown(files: &[String]) -> String {
    match files.len() {
        0..=5 => files.join(", "),
        n => format!("{}, and {} more", files[..5].join(", "), n - 5),
    }
}

fn check_env(pairs: &[(String, String)]) -> Result<BTreeMap<String, String>, InputError> {
    let mut env = BTreeMap::new();
    for (k, v) in pairs {
        let valid = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(InputError(format!(
                "--env {k}=…: a variable name is letters, digits and _, starting with a letter"
            )));
        }
        if BUCKET_VARIABLES.contains(&k.as_str()) {
            return Err(InputError(format!(
                "--env {k}: privbucket sets {} to the stack's bucket itself",
                BUCKET_VARIABLES.join(" and ")
            )));
        }
        if RESERVED.contains(&k.as_str()) {
            return Err(InputError(format!(
                "--env {k}: Lambda reserves this variable; a function cannot set it"
            )));
        }
        env.insert(k.clone(), v.clone());
    }
    Ok(env)
}

/// Lambda's 4 KB counts the variables as it stores them: the JSON of the whole set, the
/// bucket variables privbucket adds included. Checked with the bucket's name, before any call.
pub(crate) fn check_env_size(
    values: &BTreeMap<String, String>,
    bucket: &str,
) -> Result<(), InputError> {
    let mut all = values.clone();
    for v in BUCKET_VARIABLES {
        all.insert(v.to_string(), bucket.to_string());
    }
    let size = serde_json::to_string(&all).map_or(usize::MAX, |j| j.len());
    if size > ENV_LIMIT {
        return Err(InputError(format!(
            "--env / --env-file: the variables take {size} bytes as Lambda counts them (the JSON \
             of the whole set, with privbucket's {} included), over Lambda's 4 KB limit",
            BUCKET_VARIABLES.join(" and ")
        )));
    }
    Ok(())
}

/// `KEY=VALUE`. The error never shows what was given: it may be a secret.
pub(crate) fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| "expected KEY=VALUE (the value given is not shown)".to_string())
}

/// `30s`, `5m`, `1m30s`, or plain seconds, for clap.
pub(crate) fn parse_timeout(s: &str) -> Result<Duration, String> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (expected e.g. 30s, 5m or 90)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (name, body) in files {
            let p = d.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        d
    }

    fn args(code: &Path) -> CodeArgs {
        CodeArgs {
            code: Some(code.to_path_buf()),
            ..CodeArgs::default()
        }
    }

    #[test]
    fn handler_and_runtime_are_derived_from_the_code() {
        let d = dir(&[("uploader.py", "def handler(e, c): pass\n")]);
        let (s, _) = resolve(&args(&d.path().join("uploader.py")), None, "2026-11-28")
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.handler.as_str(), s.runtime.as_str()),
            ("uploader.handler", "python3.13")
        );
        let d = dir(&[("index.mjs", "export const handler = async () => 1;\n")]);
        let (s, _) = resolve(&args(d.path()), None, "2026-11-28")
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.handler.as_str(), s.runtime.as_str()),
            ("index.handler", "nodejs22.x")
        );
        let d = dir(&[("bootstrap", "#!/bin/sh\n")]);
        let (s, _) = resolve(&args(d.path()), None, "2026-11-28")
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.handler.as_str(), s.runtime.as_str()),
            ("bootstrap", "provided.al2023")
        );
    }

    #[test]
    fn each_limit_is_refused_with_its_name() {
        let d = dir(&[("app.py", "x"), ("lib/util.py", "y")]);
        let today = "2026-11-28";
        let refused = |a: CodeArgs| resolve(&a, None, today).unwrap_err().0;
        let a = |f: fn(&mut CodeArgs)| {
            let mut a = args(d.path());
            f(&mut a);
            a
        };
        assert!(refused(a(|a| a.memory = Some(64))).contains("128 to 10240 MB"));
        assert!(refused(a(|a| a.timeout = Some(Duration::from_secs(901)))).contains("15 minutes"));
        assert!(refused(a(|a| a.runtime = Some("cobol1".into()))).contains("unknown --runtime"));
        let old = refused(a(|a| a.runtime = Some("python3.9".into())));
        assert!(old.contains("deprecated by Lambda on 2025-12-15"), "{old}");
        assert!(old.contains("python3.14"), "{old}");
        let missing = refused(a(|a| a.handler = Some("main.handler".into())));
        assert!(missing.contains("has no main.py"), "{missing}");
        assert!(
            refused(a(|a| a.env = vec![("PRIVATE_BUCKET".into(), "x".into())]))
                .contains("sets PRIVATE_BUCKET")
        );
        assert!(
            refused(a(|a| a.env = vec![("AWS_REGION".into(), "x".into())])).contains("reserves")
        );
        // A package handler in a sub-package is found.
        let ok = resolve(&a(|a| a.handler = Some("lib.util.run".into())), None, today);
        assert!(ok.is_ok(), "{ok:?}");
        // Settings without --code, on a stack without code: refused.
        let no_code = CodeArgs {
            memory: Some(256),
            ..CodeArgs::default()
        };
        assert!(
            resolve(&no_code, None, today)
                .unwrap_err()
                .0
                .contains("--code")
        );
    }

    #[test]
    fn stored_settings_are_kept_unless_a_flag_changes_them() {
        let d = dir(&[("app.py", "x")]);
        let (first, _) = resolve(
            &CodeArgs {
                memory: Some(512),
                env: vec![("MODE".into(), "test".into())],
                ..args(d.path())
            },
            None,
            "2026-11-28",
        )
        .unwrap()
        .unwrap();
        let (again, _) = resolve(&CodeArgs::default(), Some(&first), "2026-11-28")
            .unwrap()
            .unwrap();
        assert_eq!(again, first);
        let (more, _) = resolve(
            &CodeArgs {
                memory: Some(1024),
                ..CodeArgs::default()
            },
            Some(&first),
            "2026-11-28",
        )
        .unwrap()
        .unwrap();
        assert_eq!(more.memory_mb, 1024);
        assert_eq!(more.env_sha256, first.env_sha256);
        // A handler given once stays, with --code given again.
        let (named, _) = resolve(
            &CodeArgs {
                handler: Some("app.main".into()),
                ..args(d.path())
            },
            Some(&first),
            "2026-11-28",
        )
        .unwrap()
        .unwrap();
        let (again, _) = resolve(&args(d.path()), Some(&named), "2026-11-28")
            .unwrap()
            .unwrap();
        assert_eq!(again.handler, "app.main");
    }
}
