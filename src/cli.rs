//! The flags (clap) and their conversion into a validated [`Config`]. clap parses straight
//! into the domain types (`ValueEnum` on the enums, `FromStr` on the names, CIDRs, region and
//! state location), so a bad value is refused by clap with the type's own message (exit 2);
//! what needs more than one flag is checked here. Nothing below this module sees a raw string
//! from the command line.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::code::{self, CodeArgs};
use crate::config::{
    self, BucketName, Command, Config, DEFAULT_ENI_TIMEOUT, DownArgs, Global, HardeningArgs,
    InvokeArgs, Location, Output, PolicyScope, PrincipalArn, Region, StackName, StatusArgs, UpArgs,
    check_endpoint_url, check_network, parse_duration, parse_subnet_cidrs, parse_subnets,
    parse_zones,
};
use crate::error::InputError;

// The headings `up --help` and `plan --help` group their flags under, so a person can scan
// 40 flags; the global flags are under their own heading in every command's help.
const STACK: &str = "The stack";
const NETWORK: &str = "Network";
const BUCKET: &str = "The bucket: policy, encryption and versioning";
const HARDENING: &str = "Hardening (on by default)";
const FUNCTION: &str = "Your function";
const GLOBAL: &str = "Global options";

#[derive(Debug, Parser)]
#[command(
    name = "privbucket",
    version,
    about = "A private S3 bucket, writable only from Lambda in a VPC through a Gateway endpoint",
    long_about = None,
    after_help = "Exit codes: 0 success; 1 the command ran and found or left a problem; \
                  2 bad input or unusable state file (nothing changed); 3 an AWS call failed."
)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalFlags,
    #[command(subcommand)]
    pub(crate) command: Cmd,
}

#[derive(Debug, Args)]
pub(crate) struct GlobalFlags {
    /// Where the state (every resource ID) is kept: a file, or s3://BUCKET/KEY to share it
    /// with a team (locked with S3 conditional writes; docs/state.md).
    #[arg(
        long,
        global = true, help_heading = GLOBAL,
        env = "PRIVBUCKET_STATE",
        default_value = "privbucket.state.json",
        value_name = "PATH|s3://BUCKET/KEY"
    )]
    pub(crate) state: Location,
    /// AWS region (default: the standard AWS chain, then the state file's region).
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub(crate) region: Option<Region>,
    /// Named profile from the AWS config files.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub(crate) profile: Option<String>,
    /// Send every AWS call to this endpoint (e.g. a local emulator); S3 then uses path-style.
    #[arg(long, global = true, help_heading = GLOBAL, env = "AWS_ENDPOINT_URL")]
    pub(crate) endpoint_url: Option<String>,
    /// Output format.
    #[arg(long, global = true, help_heading = GLOBAL, value_enum, default_value = "text")]
    pub(crate) output: Output,
    /// Say more: every wait and retry.
    #[arg(short, long, global = true, help_heading = GLOBAL, conflicts_with = "quiet")]
    pub(crate) verbose: bool,
    /// Print only errors and the final result.
    #[arg(short, long, global = true, help_heading = GLOBAL)]
    pub(crate) quiet: bool,
    /// Wait this long for another privbucket command holding the state file's lock
    /// (default: fail at once).
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "DURATION")]
    pub(crate) lock_timeout: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Cmd {
    /// Create (or complete, or repair) the private-bucket stack.
    #[command(after_help = "Examples:
  # A stack named privbucket in a VPC of its own, its bucket named for the account and region
  privbucket up
  # Encrypted with a KMS key privbucket makes, every version kept, your code as the uploader
  privbucket up --name team-a --kms-key new --versioning --code ./handler/
  # In your own network: borrowed, never changed, tagged or deleted
  privbucket up --name team-b --vpc vpc-0a1b2c3d4e5f67890 --subnets subnet-0a1b2c3d4e5f67890,subnet-0f1e2d3c4b5a69788")]
    Up(UpFlags),
    /// Show what `up` would do (create, update, adopt, or nothing), with reads only.
    #[command(after_help = "Examples:
  # What `up` would change on the stack the state file names
  privbucket plan
  # What turning versioning on would change, as JSON
  privbucket plan --versioning --output json")]
    Plan(UpFlags),
    /// Show every resource of the stack and whether it is as it should be.
    #[command(after_help = "Examples:
  # The stack the state file names (exit 1 when something differs)
  privbucket status
  # Lost the state file? Find the stack by its tags and names
  privbucket status --name team-a")]
    Status(StatusFlags),
    /// Prove, from the live configuration, that the bucket is private.
    #[command(after_help = "Examples:
  # Read the policies, routes and groups, and say whether they keep the bucket private
  privbucket verify
  # Also run the article's proof (write from each function and as yourself), kept as evidence
  privbucket verify --invoke --report evidence.md")]
    Verify(VerifyFlags),
    /// Draw the live stack (Mermaid or Graphviz DOT), read from the account.
    #[command(after_help = "Examples:
  # Mermaid, drawn by GitHub and GitLab in Markdown
  privbucket diagram
  # An SVG through Graphviz
  privbucket diagram --format dot")]
    Diagram(DiagramFlags),
    /// Remove every resource of the stack.
    #[command(after_help = "Examples:
  # Show what will be deleted, and ask (a bucket holding objects is kept)
  privbucket down
  # Without asking, the bucket's objects and versions included
  privbucket down --yes --delete-objects
  # Lost the state file? Find the stack by its tags and names, and remove it
  privbucket down --name team-a")]
    Down(DownFlags),
    /// Invoke a function of the stack and print what it returned.
    #[command(after_help = "Examples:
  # The uploader writes an object to the bucket through the endpoint
  privbucket invoke
  # The control function tries the same from outside the VPC, with its log
  privbucket invoke --function control --log")]
    Invoke(InvokeFlags),
    /// List every privbucket stack in the region (reads only).
    #[command(after_help = "Examples:
  privbucket list
  privbucket list --all-regions --output json")]
    List(ListFlags),
    /// Print the state, or upload a local state file to --state.
    #[command(
        subcommand,
        after_help = "Examples:
  # Share a stack with a team: its state to S3, locked with conditional writes
  privbucket state push privbucket.state.json --state s3://team-state/privbucket.json
  privbucket state pull --state s3://team-state/privbucket.json"
    )]
    State(StateCmd),
    /// Remove the lock a crashed command left on a state in S3.
    #[command(after_help = "Examples:
  # The lock ID is the one the lock message names
  privbucket force-unlock 0f6c4c1e-7d4c-4b6a-9a53-5c1d2e3f4a5b --state s3://team-state/privbucket.json")]
    ForceUnlock(ForceUnlockFlags),
    /// Print a shell completion script, e.g. `privbucket completions bash >
    /// ~/.local/share/bash-completion/completions/privbucket`.
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `privbucket man > ~/.local/share/man/man1/privbucket.1`.
    Man,
}

#[derive(Debug, Args)]
pub(crate) struct ListFlags {
    /// Every region enabled for the account, read at once.
    #[arg(long)]
    pub(crate) all_regions: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum StateCmd {
    /// Print the state document.
    Pull,
    /// Upload a local state file to --state (e.g. s3://BUCKET/KEY), to share the stack.
    Push {
        /// The local state file.
        file: PathBuf,
        /// Replace a state that is already there.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ForceUnlockFlags {
    /// The lock ID the lock message names.
    pub(crate) lock_id: String,
    /// Do not ask first.
    #[arg(long)]
    pub(crate) yes: bool,
}

#[derive(Debug, Args)]
pub(crate) struct InvokeFlags {
    /// The event, as JSON (default {}).
    #[arg(long, value_name = "JSON", conflicts_with = "payload_file")]
    pub(crate) payload: Option<String>,
    /// The event, from a JSON file.
    #[arg(long, value_name = "FILE")]
    pub(crate) payload_file: Option<PathBuf>,
    /// Which function: `uploader` (in the VPC, the one that may write) or `control` (outside
    /// it, the one the bucket denies).
    #[arg(long, value_enum, default_value = "uploader")]
    pub(crate) function: crate::graph::Function,
    /// Also print the tail of the execution log (to stderr).
    #[arg(long)]
    pub(crate) log: bool,
}

#[derive(Debug, Args)]
pub(crate) struct UpFlags {
    /// Stack name: tags every resource and names roles, functions and the default bucket.
    #[arg(long, help_heading = STACK)]
    pub(crate) name: Option<StackName>,
    /// Bucket name (default: NAME-ACCOUNT-REGION).
    #[arg(long, help_heading = STACK)]
    pub(crate) bucket: Option<BucketName>,
    /// VPC CIDR block (default 10.16.0.0/16).
    #[arg(long, value_name = "CIDR", help_heading = NETWORK)]
    pub(crate) vpc_cidr: Option<config::Cidr>,
    /// The two subnets' CIDR blocks (default 10.16.0.0/24,10.16.1.0/24).
    #[arg(long, value_name = "CIDR,CIDR", help_heading = NETWORK)]
    pub(crate) subnet_cidrs: Option<String>,
    /// The two subnets' availability zones (default: the region's first two that take
    /// subnets). A stack keeps its zones: to move, `down` first.
    #[arg(long, value_name = "ZONE,ZONE", help_heading = NETWORK)]
    pub(crate) zones: Option<String>,
    /// Your own VPC: privbucket borrows it (and --subnets) and makes only the security group,
    /// roles, bucket, functions and the S3 endpoint routes that are missing. Never changed,
    /// tagged or deleted.
    #[arg(
        long,
        value_name = "VPC_ID",
        requires = "subnets",
        conflicts_with_all = ["vpc_cidr", "subnet_cidrs", "zones"],
        help_heading = NETWORK
    )]
    pub(crate) vpc: Option<config::VpcId>,
    /// With --vpc: the subnets of that VPC the uploader runs in (one or more; two zones or
    /// more for availability).
    #[arg(long, value_name = "SUBNET_ID,…", requires = "vpc", help_heading = NETWORK)]
    pub(crate) subnets: Option<String>,
    /// Do not create the control function (the one outside the VPC).
    #[arg(long, help_heading = STACK)]
    pub(crate) no_control_function: bool,
    /// At most N steps and N AWS calls at once (default: as many as the dependency graph
    /// allows; 1 is one call after another, as a plain script would).
    #[arg(long, value_name = "N", help_heading = STACK)]
    pub(crate) max_concurrency: Option<usize>,
    /// What the bucket policy denies unless it comes through the endpoint: `writes` (object
    /// writes, the original template's policy; the default) or `all` (every S3 action; the operator
    /// running `up` and each --admin-principal stay able to read and manage the bucket, but
    /// not to write objects). Changing it on a stack updates the policy in place.
    #[arg(long, value_enum, value_name = "SCOPE", help_heading = BUCKET)]
    pub(crate) policy_scope: Option<PolicyScope>,
    /// With `--policy-scope all`: also exempt this IAM role, IAM user or account root
    /// (repeatable). Replaces the stack's earlier list; the operator is always added.
    #[arg(long, value_name = "ARN", help_heading = BUCKET)]
    pub(crate) admin_principal: Vec<PrincipalArn>,
    /// Hardening off: do not deny requests without TLS in the bucket policy.
    #[arg(long, conflicts_with = "tls_deny", help_heading = HARDENING)]
    pub(crate) no_tls_deny: bool,
    /// Hardening back on (the default): deny requests without TLS.
    #[arg(long, help_heading = HARDENING)]
    pub(crate) tls_deny: bool,
    /// Hardening off: keep the security group's default allow-all egress.
    #[arg(long, conflicts_with = "egress_limit", help_heading = HARDENING)]
    pub(crate) no_egress_limit: bool,
    /// Hardening back on (the default): egress only tcp/443 to the S3 prefix list.
    #[arg(long, help_heading = HARDENING)]
    pub(crate) egress_limit: bool,
    /// Hardening off: the endpoint gets AWS's default full-access policy.
    #[arg(long, conflicts_with = "endpoint_policy", help_heading = HARDENING)]
    pub(crate) no_endpoint_policy: bool,
    /// Hardening back on (the default): the endpoint allows only this bucket.
    #[arg(long, help_heading = HARDENING)]
    pub(crate) endpoint_policy: bool,
    /// Turn the bucket's versioning on, so an overwrite or delete can be undone (`down` counts
    /// versions and delete markers as data).
    #[arg(long, conflicts_with = "no_versioning", help_heading = BUCKET)]
    pub(crate) versioning: bool,
    /// Suspend the bucket's versioning (S3 cannot turn it off once on; versions kept stay).
    #[arg(long, help_heading = BUCKET)]
    pub(crate) no_versioning: bool,
    /// Encrypt the bucket with a customer managed KMS key (SSE-KMS, S3 Bucket Keys on):
    /// `new` (privbucket makes one, with rotation on and alias/NAME-bucket), or your own key's
    /// ARN or alias/NAME (used, never changed). The bucket policy then denies writes that ask
    /// for another key or for SSE-S3.
    #[arg(long, value_name = "new|ARN|alias/NAME", help_heading = BUCKET)]
    pub(crate) kms_key: Option<config::KmsKey>,
    /// The uploader's code: a directory, a .zip, or one file (a .py / .mjs handler, or a
    /// `bootstrap` executable for provided.al2023). Kept for the next `up`.
    #[arg(long, value_name = "PATH", help_heading = FUNCTION)]
    pub(crate) code: Option<PathBuf>,
    /// The handler (default from the code: `uploader.handler` for uploader.py, `bootstrap`
    /// for a provided runtime).
    #[arg(long, help_heading = FUNCTION)]
    pub(crate) handler: Option<String>,
    /// A Lambda runtime (default from the code: python3.13, nodejs22.x or provided.al2023).
    #[arg(long, help_heading = FUNCTION)]
    pub(crate) runtime: Option<String>,
    /// Memory in MB, 128 to 10240 (default 128).
    #[arg(long, value_name = "MB", help_heading = FUNCTION)]
    pub(crate) memory: Option<i32>,
    /// Up to 15 minutes, e.g. 30s or 5m (default 15s).
    #[arg(long, value_name = "DURATION", help_heading = FUNCTION)]
    pub(crate) timeout: Option<String>,
    /// The uploader's instruction set: x86_64 (default) or arm64 (Graviton).
    #[arg(long, value_name = "x86_64|arm64", help_heading = FUNCTION)]
    pub(crate) architecture: Option<String>,
    /// An environment variable for the uploader; repeat for more. Replaces the stack's set.
    /// The state keeps its name and a SHA-256 of its value, never the value.
    #[arg(long, value_name = "KEY=VALUE", help_heading = FUNCTION)]
    pub(crate) env: Vec<String>,
    /// Environment variables from a dotenv file (KEY=VALUE lines, # comments, quotes): the
    /// values stay off the command line and out of shell history. With --env, --env wins.
    #[arg(long, value_name = "FILE", help_heading = FUNCTION)]
    pub(crate) env_file: Option<PathBuf>,
}

/// A pair of flags: `None` when neither was given (keep the stack's setting).
fn toggle(on: bool, off: bool) -> Option<bool> {
    match (on, off) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

#[derive(Debug, Args)]
pub(crate) struct VerifyFlags {
    /// Also run the original article's proof: invoke the uploader (the object must appear) and the
    /// control function (it must be denied), and try a PutObject with your own credentials
    /// (it must be denied).
    #[arg(long)]
    pub(crate) invoke: bool,
    /// Also write the evidence to FILE as one Markdown document (when, by whom, the diagram,
    /// every check, the live policies), atomically.
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Option<PathBuf>,
    /// With --report: replace FILE if it exists.
    #[arg(long, requires = "report")]
    pub(crate) force: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DiagramFlags {
    /// `mermaid` (drawn by GitHub and GitLab in Markdown) or `dot` (Graphviz).
    #[arg(long, value_enum, default_value = "mermaid")]
    pub(crate) format: crate::diagram::Format,
}

#[derive(Debug, Args)]
pub(crate) struct StatusFlags {
    /// With no state file: find the stack's resources by their tags and names.
    #[arg(long)]
    pub(crate) name: Option<StackName>,
}

#[derive(Debug, Args)]
pub(crate) struct DownFlags {
    /// With no state file: find the stack's resources by their tags and names, and remove them.
    #[arg(long)]
    pub(crate) name: Option<StackName>,
    /// Delete every object version and delete marker in the bucket, then the bucket.
    #[arg(long)]
    pub(crate) delete_objects: bool,
    /// How long to wait for Lambda to release its network interfaces.
    #[arg(long, value_name = "DURATION", default_value = "45m")]
    pub(crate) eni_timeout: String,
    /// At most N steps and N AWS calls at once (default: as many as the dependency graph
    /// allows; 1 is one call after another, as a plain script would).
    #[arg(long, value_name = "N")]
    pub(crate) max_concurrency: Option<usize>,
    /// Do not ask first. Without a terminal to ask on, `down` refuses to run without it.
    #[arg(long)]
    pub(crate) yes: bool,
    /// Days before KMS deletes the key privbucket made (7 to 30); the key is scheduled for
    /// deletion only once the bucket is gone, and can be restored until then.
    #[arg(long, value_name = "DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(i32).range(7..=30))]
    pub(crate) kms_deletion_window: i32,
}

fn concurrency(n: Option<usize>) -> Result<Option<usize>, InputError> {
    match n {
        Some(0) => Err(InputError(
            "invalid --max-concurrency 0: give 1 or more".to_string(),
        )),
        n => Ok(n),
    }
}

/// `up` and `plan` take the same flags.
/// The payload must be JSON (Lambda's `Invoke` takes a JSON event) and within Lambda's 6 MB
/// for a synchronous invoke ("Lambda quotas").
fn invoke_args(f: InvokeFlags) -> Result<InvokeArgs, InputError> {
    let text = match (&f.payload, &f.payload_file) {
        (Some(p), _) => p.clone(),
        (None, Some(file)) => std::fs::read_to_string(file)
            .map_err(|e| InputError(format!("--payload-file {}: {e}", file.display())))?,
        (None, None) => "{}".to_string(),
    };
    let payload: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| InputError(format!("the payload is not JSON: {e}")))?;
    if text.len() > 6 * 1024 * 1024 {
        return Err(InputError(format!(
            "the payload is {} bytes, over Lambda's 6 MB for a synchronous invoke",
            text.len()
        )));
    }
    Ok(InvokeArgs {
        payload,
        function: f.function,
        log: f.log,
    })
}

fn up_args(f: UpFlags) -> anyhow::Result<UpArgs> {
    let up = UpArgs {
        name: f.name,
        bucket: f.bucket,
        vpc_cidr: f.vpc_cidr,
        subnet_cidrs: f
            .subnet_cidrs
            .as_deref()
            .map(parse_subnet_cidrs)
            .transpose()?,
        zones: f.zones.as_deref().map(parse_zones).transpose()?,
        network: match (f.vpc, f.subnets.as_deref()) {
            (Some(vpc), Some(subnets)) => Some(config::BorrowedNetwork {
                vpc,
                subnets: parse_subnets(subnets)?,
            }),
            _ => None,
        },
        no_control_function: f.no_control_function,
        max_concurrency: concurrency(f.max_concurrency)?,
        policy_scope: f.policy_scope,
        admin_principals: f.admin_principal,
        hardening: HardeningArgs {
            tls_deny: toggle(f.tls_deny, f.no_tls_deny),
            egress_limit: toggle(f.egress_limit, f.no_egress_limit),
            endpoint_policy: toggle(f.endpoint_policy, f.no_endpoint_policy),
        },
        versioning: toggle(f.versioning, f.no_versioning),
        kms_key: f.kms_key,
        code: CodeArgs {
            code: f.code,
            handler: f.handler,
            runtime: f.runtime,
            memory: f.memory,
            timeout: f
                .timeout
                .as_deref()
                .map(|t| {
                    code::parse_timeout(t)
                        .map_err(|e| InputError(format!("invalid --timeout {t:?}: {e}")))
                })
                .transpose()?,
            architecture: f.architecture.as_deref().map(str::parse).transpose()?,
            env: f
                .env
                .iter()
                .map(|e| code::parse_env(e).map_err(|m| InputError(format!("invalid --env: {m}"))))
                .collect::<Result<_, _>>()?,
            env_file: f.env_file,
            prebuilt: None,
        },
    };
    // Check what can be checked without the state file now; the rest is checked again against
    // the state file's settings before any call.
    if let (Some(vpc), Some(subnets)) = (up.vpc_cidr, up.subnet_cidrs) {
        check_network(vpc, subnets)?;
    }
    Ok(up)
}

impl Cli {
    /// Validates every flag; an error here is exit 2 with nothing called.
    pub(crate) fn into_config(self) -> anyhow::Result<Config> {
        let g = self.global;
        let global = Global {
            state: g.state,
            region: g.region,
            profile: g.profile,
            endpoint_url: g
                .endpoint_url
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(check_endpoint_url)
                .transpose()?,
            output: g.output,
            verbose: g.verbose,
            quiet: g.quiet,
            lock_timeout: g
                .lock_timeout
                .as_deref()
                .map(|s| parse_duration("--lock-timeout", s))
                .transpose()?,
        };
        let command = match self.command {
            Cmd::Up(f) => Command::Up(up_args(f)?),
            Cmd::Plan(f) => Command::Plan(up_args(f)?),
            Cmd::Verify(f) => Command::Verify {
                invoke: f.invoke,
                report: f.report.map(|path| config::Report {
                    path,
                    force: f.force,
                }),
            },
            Cmd::Diagram(f) => Command::Diagram { format: f.format },
            Cmd::Status(f) => Command::Status(StatusArgs { name: f.name }),
            Cmd::Down(f) => Command::Down(DownArgs {
                name: f.name,
                delete_objects: f.delete_objects,
                eni_timeout: if f.eni_timeout.is_empty() {
                    DEFAULT_ENI_TIMEOUT
                } else {
                    parse_duration("--eni-timeout", &f.eni_timeout)?
                },
                max_concurrency: concurrency(f.max_concurrency)?,
                yes: f.yes,
                kms_deletion_window: f.kms_deletion_window,
            }),
            Cmd::Invoke(f) => Command::Invoke(invoke_args(f)?),
            Cmd::List(f) => Command::List {
                all_regions: f.all_regions,
            },
            Cmd::State(StateCmd::Pull) => Command::StatePull,
            Cmd::State(StateCmd::Push { file, force }) => Command::StatePush { file, force },
            Cmd::ForceUnlock(f) => Command::ForceUnlock {
                id: f.lock_id,
                yes: f.yes,
            },
            Cmd::Completions { shell } => Command::Completions(shell),
            Cmd::Man => Command::Man,
        };
        Ok(Config { global, command })
    }
}

/// The completion script for `shell`, from the same definitions as `--help`.
pub(crate) fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    use clap::CommandFactory as _;
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "privbucket", &mut out);
    out
}

/// The man page (roff), from the same definitions as `--help`.
pub(crate) fn man_page() -> std::io::Result<Vec<u8>> {
    use clap::CommandFactory as _;
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod flag_docs {
    use clap::{CommandFactory as _, Parser as _};

    /// Every command and subcommand, by its path (`privbucket state push`).
    fn every_command() -> Vec<(String, clap::Command)> {
        let mut all = Vec::new();
        let mut todo = vec![(String::from("privbucket"), super::Cli::command())];
        while let Some((path, cmd)) = todo.pop() {
            for sub in cmd.get_subcommands() {
                let name = sub.get_name().to_string();
                if name != "help" {
                    todo.push((format!("{path} {name}"), sub.clone()));
                }
            }
            all.push((path, cmd));
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The flags of every command (as `--help` lists them) that `doc` does not name.
    fn missing_in(doc: &str) -> Vec<String> {
        let mut missing = Vec::new();
        for (path, cmd) in every_command() {
            for arg in cmd.get_arguments() {
                if let Some(long) = arg.get_long()
                    && !matches!(long, "help" | "version")
                    && !doc.contains(&format!("--{long}"))
                {
                    missing.push(format!("{path} --{long}"));
                }
            }
        }
        missing
    }

    /// Every flag of every command appears in docs/usage.md: a flag added without its
    /// documentation fails here (as the doc without one of its flags shows).
    #[test]
    fn every_flag_of_every_command_is_in_the_usage_doc() {
        let doc = include_str!("../docs/usage.md");
        assert_eq!(
            missing_in(doc),
            Vec::<String>::new(),
            "not in docs/usage.md"
        );
        let without = doc.replace("--architecture", "");
        assert_eq!(
            missing_in(&without),
            [
                "privbucket plan --architecture",
                "privbucket up --architecture"
            ]
        );
    }

    /// Every flag and argument of every command says in a line what it is for.
    #[test]
    fn every_flag_has_a_line_of_help() {
        let mut bare = Vec::new();
        for (path, cmd) in every_command() {
            for arg in cmd.get_arguments() {
                if arg.get_help().is_none() {
                    bare.push(format!("{path} {}", arg.get_id()));
                }
            }
        }
        assert_eq!(bare, Vec::<String>::new(), "flags without help");
    }

    /// Every example in a command's help parses, and passes the checks `into_config` makes,
    /// so an example cannot go stale; every command that takes flags has one.
    #[test]
    fn every_example_in_the_help_is_a_valid_command() {
        let mut without = Vec::new();
        let mut examples = 0;
        for (path, cmd) in every_command() {
            let help = cmd
                .get_after_help()
                .map(ToString::to_string)
                .unwrap_or_default();
            let lines: Vec<&str> = help
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with("privbucket "))
                .collect();
            for line in &lines {
                let parsed = super::Cli::try_parse_from(line.split_whitespace())
                    .map_err(|e| e.to_string())
                    .and_then(|cli| cli.into_config().map_err(|e| e.to_string()));
                assert!(parsed.is_ok(), "{path}: `{line}`: {parsed:?}");
            }
            examples += lines.len();
            let takes_flags = cmd.get_arguments().any(|a| a.get_long() != Some("help"));
            if lines.is_empty() && takes_flags && path.matches(' ').count() == 1 {
                without.push(path);
            }
        }
        assert_eq!(
            without,
            ["privbucket completions"],
            "commands without an example"
        );
        assert!(examples >= 20, "{examples} examples");
    }
}
