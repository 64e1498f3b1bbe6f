//! Validated input. Every rule on names, CIDRs and regions lives here and runs before any AWS
//! call, so bad input costs nothing and changes nothing (exit 2).
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::error::InputError;

/// Where the state is kept (`--state`): a file on this machine, or an S3 object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Location {
    File(PathBuf),
    S3 { bucket: String, key: String },
}

impl FromStr for Location {
    type Err = InputError;

    fn from_str(s: &str) -> Result<Self, InputError> {
        let Some(rest) = s.strip_prefix("s3://") else {
            if s.is_empty() {
                return Err(InputError(
                    "--state is empty: give a path or s3://BUCKET/KEY".into(),
                ));
            }
            return Ok(Location::File(PathBuf::from(s)));
        };
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !valid_bucket {
            return Err(InputError(format!(
                "--state {s}: {bucket:?} is not an S3 bucket name (3 to 63 lowercase letters, \
                 digits, dots and hyphens)"
            )));
        }
        if key.is_empty() || key.ends_with('/') {
            return Err(InputError(format!(
                "--state {s} names no object: give its key, e.g. s3://{bucket}/privbucket/\
                 NAME.state.json"
            )));
        }
        Ok(Location::S3 {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(p) => write!(f, "{}", p.display()),
            Location::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// Defaults of the original template.
pub(crate) const DEFAULT_STACK: &str = "privbucket";
pub(crate) const DEFAULT_VPC_CIDR: &str = "10.16.0.0/16";
pub(crate) const DEFAULT_SUBNET_CIDRS: [&str; 2] = ["10.16.0.0/24", "10.16.1.0/24"];
pub(crate) const DEFAULT_ENI_TIMEOUT: Duration = Duration::from_secs(45 * 60);

/// How results are printed (`--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    Text,
    Json,
}

/// Flags every command takes.
#[derive(Debug, Clone)]
pub(crate) struct Global {
    /// `--state`: a file, or an object in S3.
    pub(crate) state: Location,
    pub(crate) region: Option<Region>,
    pub(crate) profile: Option<String>,
    pub(crate) endpoint_url: Option<String>,
    pub(crate) output: Output,
    pub(crate) verbose: bool,
    pub(crate) quiet: bool,
    pub(crate) lock_timeout: Option<Duration>,
}

/// `verify --report FILE [--force]`: where the evidence goes, and whether an existing file
/// may be replaced.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) path: PathBuf,
    pub(crate) force: bool,
}

/// What `up` was asked for; `None` means "the state file's value, else the default".
#[derive(Debug, Clone, Default)]
pub(crate) struct UpArgs {
    pub(crate) name: Option<StackName>,
    pub(crate) bucket: Option<BucketName>,
    pub(crate) vpc_cidr: Option<Cidr>,
    pub(crate) subnet_cidrs: Option<[Cidr; 2]>,
    pub(crate) zones: Option<[Zone; 2]>,
    /// `--vpc` and `--subnets`: the user's network, borrowed.
    pub(crate) network: Option<BorrowedNetwork>,
    pub(crate) no_control_function: bool,
    pub(crate) max_concurrency: Option<usize>,
    pub(crate) policy_scope: Option<PolicyScope>,
    /// `--admin-principal`, in the order given; empty when not given.
    pub(crate) admin_principals: Vec<PrincipalArn>,
    pub(crate) hardening: HardeningArgs,
    /// `--versioning` (true) / `--no-versioning` (false); `None`: the stack's setting.
    pub(crate) versioning: Option<bool>,
    /// `--kms-key`; `None`: the stack's setting.
    pub(crate) kms_key: Option<KmsKey>,
    /// `--code` and the uploader's settings.
    pub(crate) code: crate::code::CodeArgs,
}

/// The three hardening defaults; `None`: keep the stack's setting (on for a new stack).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HardeningArgs {
    pub(crate) tls_deny: Option<bool>,
    pub(crate) egress_limit: Option<bool>,
    pub(crate) endpoint_policy: Option<bool>,
}

/// Which requests the bucket policy denies unless they come through the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PolicyScope {
    /// The original template's policy: object writes (PutObject, PutObjectTagging).
    #[default]
    Writes,
    /// Every S3 action on the bucket and its objects, with an exception for the admins.
    All,
}

impl fmt::Display for PolicyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PolicyScope::Writes => "writes",
            PolicyScope::All => "all",
        })
    }
}

/// The ARN of an IAM user, an IAM role or an account root: the value `aws:PrincipalArn` takes
/// for requests they (or sessions of the role) make.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) struct PrincipalArn(String);

impl PrincipalArn {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PrincipalArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for PrincipalArn {
    type Err = InputError;

    fn from_str(s: &str) -> Result<Self, InputError> {
        let rule = "expected the ARN of an IAM role, an IAM user or an account root, such as \
                    arn:aws:iam::123456789012:role/Admin";
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        let [arn, partition, service, region, account, resource] = parts.as_slice() else {
            return bad(format!("invalid principal {s:?}: {rule}"));
        };
        let account_ok = account.len() == 12 && account.chars().all(|c| c.is_ascii_digit());
        let partition_ok = matches!(*partition, "aws" | "aws-cn" | "aws-us-gov");
        if *arn != "arn" || !partition_ok || !account_ok || !region.is_empty() {
            return bad(format!("invalid principal {s:?}: {rule}"));
        }
        if *service == "sts" && resource.starts_with("assumed-role/") {
            return bad(format!(
                "invalid principal {s:?}: that is a session of a role; give the role's own ARN \
                 (arn:{partition}:iam::{account}:role/NAME, with its path if it has one), which \
                 is what aws:PrincipalArn holds for every session of the role"
            ));
        }
        let named = |p: &str| {
            resource
                .strip_prefix(p)
                .is_some_and(|n| !n.is_empty() && !n.contains('*') && !n.contains('?'))
        };
        if *service != "iam" || !(*resource == "root" || named("role/") || named("user/")) {
            return bad(format!("invalid principal {s:?}: {rule}"));
        }
        Ok(PrincipalArn(s.to_string()))
    }
}

/// `--kms-key`: a key privbucket makes (`new`), or the user's own, borrowed, by its ARN or
/// alias. KMS keys are regional and S3 uses only a key of the bucket's own region, so an ARN
/// names its region and is checked against the stack's before any call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) enum KmsKey {
    New,
    /// `arn:PARTITION:kms:REGION:ACCOUNT:key/ID`.
    Arn {
        arn: String,
        region: String,
    },
    /// `alias/NAME`.
    Alias(String),
}

impl KmsKey {
    /// The key as KMS takes it (`KeyId`).
    pub(crate) fn key_id(&self) -> Option<&str> {
        match self {
            KmsKey::New => None,
            KmsKey::Arn { arn, .. } => Some(arn),
            KmsKey::Alias(a) => Some(a),
        }
    }
}

impl fmt::Display for KmsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KmsKey::New => f.write_str("new"),
            KmsKey::Arn { arn, .. } => f.write_str(arn),
            KmsKey::Alias(a) => f.write_str(a),
        }
    }
}

impl FromStr for KmsKey {
    type Err = InputError;

    fn from_str(s: &str) -> Result<Self, InputError> {
        let rule = "expected `new`, a key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID) or an alias \
                    (alias/NAME)";
        if s == "new" {
            return Ok(KmsKey::New);
        }
        if let Some(name) = s.strip_prefix("alias/") {
            // KMS's AliasName pattern; `alias/aws/` names AWS managed keys (KMS API reference,
            // CreateAlias).
            let ok = !name.is_empty()
                && s.len() <= 256
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-'));
            if !ok {
                return bad(format!("invalid --kms-key {s:?}: {rule}"));
            }
            return Ok(KmsKey::Alias(s.to_string()));
        }
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        let [arn, partition, service, region, account, resource] = parts.as_slice() else {
            return bad(format!("invalid --kms-key {s:?}: {rule}"));
        };
        let account_ok = account.len() == 12 && account.chars().all(|c| c.is_ascii_digit());
        let id_ok = resource.strip_prefix("key/").is_some_and(|id| {
            !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
        if *arn != "arn"
            || !matches!(*partition, "aws" | "aws-cn" | "aws-us-gov")
            || *service != "kms"
            || region.parse::<Region>().is_err()
            || !account_ok
            || !id_ok
        {
            return bad(format!("invalid --kms-key {s:?}: {rule}"));
        }
        Ok(KmsKey::Arn {
            arn: s.to_string(),
            region: region.to_string(),
        })
    }
}

impl TryFrom<String> for KmsKey {
    type Error = InputError;

    fn try_from(s: String) -> Result<Self, InputError> {
        s.parse()
    }
}

impl From<KmsKey> for String {
    fn from(k: KmsKey) -> String {
        k.to_string()
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct StatusArgs {
    /// Without a state file: find the stack by tag and name.
    pub(crate) name: Option<StackName>,
}

#[derive(Debug, Clone)]
pub(crate) struct DownArgs {
    /// Without a state file: find the stack by tag and name.
    pub(crate) name: Option<StackName>,
    pub(crate) delete_objects: bool,
    pub(crate) eni_timeout: Duration,
    pub(crate) max_concurrency: Option<usize>,
    /// Do not ask first (`--yes`).
    pub(crate) yes: bool,
    /// Days before KMS deletes a key privbucket made (`--kms-deletion-window`, 7 to 30).
    pub(crate) kms_deletion_window: i32,
}

#[derive(Debug, Clone)]
pub(crate) enum Command {
    Up(UpArgs),
    /// What `up` would do, with the same flags; reads only.
    Plan(UpArgs),
    Status(StatusArgs),
    /// Prove the bucket is private; `invoke` also runs the functions; `report` also writes
    /// the evidence to a Markdown file.
    Verify {
        invoke: bool,
        report: Option<Report>,
    },
    /// The live stack as a graph.
    Diagram {
        format: crate::diagram::Format,
    },
    Down(DownArgs),
    Invoke(InvokeArgs),
    List {
        all_regions: bool,
    },
    StatePull,
    StatePush {
        file: std::path::PathBuf,
        force: bool,
    },
    ForceUnlock {
        id: String,
        yes: bool,
    },
    /// A shell completion script on standard output.
    Completions(clap_complete::Shell),
    /// The man page on standard output.
    Man,
}

#[derive(Debug, Clone)]
pub(crate) struct InvokeArgs {
    pub(crate) payload: serde_json::Value,
    pub(crate) function: crate::graph::Function,
    pub(crate) log: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) global: Global,
    pub(crate) command: Command,
}

fn bad<T>(msg: String) -> Result<T, InputError> {
    Err(InputError(msg))
}

/// Read from a state file as from a flag: through `FromStr`, so a state someone else wrote
/// passes the same rules (`serde(try_from)`), and written back as the string it was.
macro_rules! validated_string {
    ($($t:ty),*) => {$(
        impl TryFrom<String> for $t {
            type Error = InputError;
            fn try_from(s: String) -> Result<Self, InputError> {
                s.parse()
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
    )*};
}

validated_string!(
    PrincipalArn,
    StackName,
    BucketName,
    Zone,
    Region,
    VpcId,
    SubnetId
);

/// A stack name: it becomes part of role, function, security group and bucket names, so it
/// takes the strictest of their rules (bucket names: lowercase; role names: 64 characters in
/// all, of which the derived suffix takes up to 30).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) struct StackName(String);

impl StackName {
    pub(crate) const MAX_LEN: usize = 32;

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StackName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for StackName {
    type Err = InputError;

    fn from_str(s: &str) -> Result<Self, InputError> {
        let rule = "a stack name is 1 to 32 characters of lowercase letters, digits and \
                    hyphens, starting with a letter and not ending with a hyphen \
                    (it becomes part of bucket, role and function names)";
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && !s.ends_with('-')
            && !s.contains("--")
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return bad(format!("invalid stack name {s:?}: {rule}"));
        }
        // The names derived from it must be valid too: the security group `NAME-uploader`
        // (EC2 refuses a group name starting with `sg-`) and the default bucket
        // `NAME-ACCOUNT-REGION` (S3 reserves these prefixes).
        if s.starts_with("sg-") {
            return bad(format!(
                "invalid stack name {s:?}: it may not start with `sg-`, as the security group \
                 named after it would (EC2 reserves that prefix for group IDs)"
            ));
        }
        // The account that follows is twelve digits: a sample one shows every prefix it makes.
        let bucket = format!("{s}-000000000000-");
        if let Some(p) = BUCKET_PREFIXES.iter().find(|p| bucket.starts_with(*p)) {
            return bad(format!(
                "invalid stack name {s:?}: the default bucket named after it would start with \
                 `{p}`, which S3 reserves; choose another name"
            ));
        }
        Ok(StackName(s.to_string()))
    }
}

/// An S3 general purpose bucket name, checked against the S3 naming rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) struct BucketName(String);

impl BucketName {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BucketName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

const BUCKET_PREFIXES: &[&str] = &["xn--", "sthree-", "amzn-s3-demo-"];
const BUCKET_SUFFIXES: &[&str] = &["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"];

impl FromStr for BucketName {
    type Err = InputError;

    fn from_str(s: &str) -> Result<Self, InputError> {
        let fail = |rule: &str| bad(format!("invalid bucket name {s:?}: {rule}"));
        if s.len() < 3 || s.len() > 63 {
            return fail("a bucket name is 3 to 63 characters long");
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        {
            return fail("only lowercase letters, digits, dots and hyphens are allowed");
        }
        let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        if !s.starts_with(alnum) || !s.ends_with(alnum) {
            return fail("it must begin and end with a letter or digit");
        }
        if s.contains("..") {
            return fail("it must not contain two adjacent dots");
        }
        if s.contains(".-") || s.contains("-.") {
            return fail("a dot must not be next to a hyphen");
        }
        if s.parse::<Ipv4Addr>().is_ok() {
            return fail("it must not be formatted as an IP address");
        }
        if let Some(p) = BUCKET_PREFIXES.iter().find(|p| s.starts_with(**p)) {
            return fail(&format!("the prefix {p:?} is reserved by S3"));
        }
        if let Some(x) = BUCKET_SUFFIXES.iter().find(|x| s.ends_with(**x)) {
            return fail(&format!("the suffix {x:?} is reserved by S3"));
        }
        Ok(BucketName(s.to_string()))
    }
}

/// An IPv4 CIDR block whose host bits are zero (EC2 rejects anything else).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr(Ipv4Net);

impl Cidr {
    pub(crate) fn prefix(self) -> u8 {
        self.0.prefix_len()
    }

    pub(crate) fn contains(self, other: Cidr) -> bool {
        self.0.contains(&other.0)
    }

    pub(crate) fn overlaps(self, other: Cidr) -> bool {
        self.0.contains(&other.0) || other.0.contains(&self.0)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Cidr {
    type Err = InputError;

    fn from_str(s: &str) -> Result<Self, InputError> {
        let Ok(net) = s.parse::<Ipv4Net>() else {
            return bad(format!(
                "invalid CIDR {s:?}: expected an IPv4 block such as 10.16.0.0/16"
            ));
        };
        if net.addr() != net.network() {
            return bad(format!(
                "invalid CIDR {s:?}: the address has host bits set; did you mean {}?",
                net.trunc()
            ));
        }
        Ok(Cidr(net))
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The VPC block and the two subnet blocks, checked together: EC2 allows /16 to /28 for
/// both, and the subnets must lie inside the VPC without overlapping.
pub(crate) fn check_network(vpc: Cidr, subnets: [Cidr; 2]) -> Result<(), InputError> {
    if !(16..=28).contains(&vpc.prefix()) {
        return bad(format!(
            "invalid VPC CIDR {vpc}: a VPC block must be between /16 and /28"
        ));
    }
    for s in subnets {
        if !(16..=28).contains(&s.prefix()) {
            return bad(format!(
                "invalid subnet CIDR {s}: a subnet block must be between /16 and /28"
            ));
        }
        if !vpc.contains(s) {
            return bad(format!(
                "subnet CIDR {s} is not inside the VPC CIDR {vpc}; choose subnet blocks \
                 within it (--subnet-cidrs) or another --vpc-cidr"
            ));
        }
    }
    if subnets[0].overlaps(subnets[1]) {
        return bad(format!(
            "subnet CIDRs {} and {} overlap; the two subnets need disjoint blocks",
            subnets[0], subnets[1]
        ));
    }
    Ok(())
}

/// `--subnet-cidrs A,B`.
pub(crate) fn parse_subnet_cidrs(s: &str) -> Result<[Cidr; 2], InputError> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let [a, b] = parts.as_slice() else {
        return bad(format!(
            "invalid --subnet-cidrs {s:?}: give exactly two CIDR blocks separated by a comma, \
             e.g. 10.16.0.0/24,10.16.1.0/24"
        ));
    };
    Ok([a.parse()?, b.parse()?])
}

/// An availability zone name such as `eu-west-1a` (AWS checks that the region has it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) struct Zone(String);

impl Zone {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Zone {
    type Err = InputError;

    fn from_str(s: &str) -> Result<Self, InputError> {
        let ok = s.len() <= 32
            && s.contains('-')
            && s.ends_with(|c: char| c.is_ascii_lowercase())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return bad(format!(
                "invalid zone {s:?}: expected an availability zone name such as us-east-1a \
                 (`aws ec2 describe-availability-zones` lists the region's)"
            ));
        }
        Ok(Zone(s.to_string()))
    }
}

/// `--zones A,B`: two different zones.
pub(crate) fn parse_zones(s: &str) -> Result<[Zone; 2], InputError> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let [a, b] = parts.as_slice() else {
        return bad(format!(
            "invalid --zones {s:?}: give exactly two zones separated by a comma, e.g. \
             us-east-1a,us-east-1b"
        ));
    };
    if a == b {
        return bad(format!(
            "invalid --zones {s:?}: the two subnets need two different zones"
        ));
    }
    Ok([a.parse()?, b.parse()?])
}

/// An EC2 ID of one kind: its prefix and 8 or 17 hex digits (`vpc-0a1b…`, `subnet-…`).
fn ec2_id(s: &str, prefix: &str, flag: &str) -> Result<String, InputError> {
    let digits = s.strip_prefix(prefix).unwrap_or_default();
    let ok = s.starts_with(prefix)
        && (digits.len() == 8 || digits.len() == 17)
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    if !ok {
        return bad(format!(
            "invalid {flag} {s:?}: expected an ID such as {prefix}0123456789abcdef0"
        ));
    }
    Ok(s.to_string())
}

/// A VPC's ID (`up --vpc`): a network privbucket borrows, never changes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) struct VpcId(String);

impl VpcId {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VpcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for VpcId {
    type Err = InputError;

    fn from_str(s: &str) -> Result<Self, InputError> {
        ec2_id(s, "vpc-", "--vpc").map(VpcId)
    }
}

/// A subnet's ID (`up --subnets`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) struct SubnetId(String);

impl SubnetId {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SubnetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SubnetId {
    type Err = InputError;

    fn from_str(s: &str) -> Result<Self, InputError> {
        ec2_id(s, "subnet-", "--subnets").map(SubnetId)
    }
}

/// `--subnets A,B,…`: one or more subnets, each named once.
pub(crate) fn parse_subnets(s: &str) -> Result<Vec<SubnetId>, InputError> {
    let ids = s
        .split(',')
        .map(|p| p.trim().parse())
        .collect::<Result<Vec<SubnetId>, _>>()?;
    let mut seen = ids.clone();
    seen.sort();
    seen.dedup();
    if seen.len() != ids.len() {
        return bad(format!("invalid --subnets {s:?}: a subnet is named twice"));
    }
    Ok(ids)
}

/// The user's own network (`up --vpc --subnets`): privbucket borrows the VPC and the subnets
/// and makes only what the private bucket needs in them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BorrowedNetwork {
    pub(crate) vpc: VpcId,
    pub(crate) subnets: Vec<SubnetId>,
}

/// An AWS region name such as `eu-west-1` or `us-gov-west-1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(crate) struct Region(String);

impl Region {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Region {
    type Err = InputError;

    fn from_str(s: &str) -> Result<Self, InputError> {
        let parts: Vec<&str> = s.split('-').collect();
        let ok = parts.len() >= 3
            && s.len() <= 20
            && parts[..parts.len() - 1]
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
            && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
            && !parts[parts.len() - 1].is_empty();
        if ok {
            Ok(Region(s.to_string()))
        } else {
            bad(format!(
                "invalid region {s:?}: expected an AWS region name such as us-east-1 or eu-west-2"
            ))
        }
    }
}

/// `--eni-timeout 45m`, `--lock-timeout 30s`.
pub(crate) fn parse_duration(flag: &str, s: &str) -> Result<Duration, InputError> {
    humantime::parse_duration(s).map_err(|e| {
        InputError(format!(
            "invalid {flag} {s:?}: {e}; use a duration such as 90s, 20m or 1h"
        ))
    })
}

/// `--endpoint-url`: must be an http(s) URL; the tests bind the emulator to 127.0.0.1.
pub(crate) fn check_endpoint_url(s: &str) -> Result<String, InputError> {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() => Ok(s.trim_end_matches('/').to_string()),
        _ => bad(format!(
            "invalid endpoint URL {s:?}: expected http://HOST:PORT or https://HOST"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        for ok in [
            "abc",
            "my-bucket.logs",
            "a1b2",
            "privbucket-123456789012-us-east-1",
        ] {
            assert!(ok.parse::<BucketName>().is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("ab", "3 to 63"),
            ("Upper", "lowercase"),
            ("-abc", "begin and end"),
            ("a..b", "adjacent dots"),
            ("a.-b", "next to a hyphen"),
            ("192.168.1.1", "IP address"),
            ("xn--abc", "prefix"),
            ("abc-s3alias", "suffix"),
            ("abc--ol-s3", "suffix"),
            ("under_score", "lowercase"),
        ] {
            let err = bad.parse::<BucketName>().unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!("a".repeat(64).parse::<BucketName>().is_err());
    }

    #[test]
    fn cidrs() {
        let c: Cidr = "10.16.0.0/16".parse().unwrap();
        assert_eq!(c.to_string(), "10.16.0.0/16");
        assert!(
            "10.16.0.1/16"
                .parse::<Cidr>()
                .unwrap_err()
                .0
                .contains("host bits")
        );
        assert!("10.16.0.0".parse::<Cidr>().is_err());
        assert!("10.16.0.0/33".parse::<Cidr>().is_err());
        assert!("300.1.0.0/16".parse::<Cidr>().is_err());
        let sub = |s: &str| s.parse::<Cidr>().unwrap();
        assert!(check_network(c, [sub("10.16.0.0/24"), sub("10.16.1.0/24")]).is_ok());
        let e = check_network(c, [sub("10.17.0.0/24"), sub("10.16.1.0/24")]).unwrap_err();
        assert!(e.0.contains("not inside"), "{e}");
        let e = check_network(c, [sub("10.16.0.0/23"), sub("10.16.1.0/24")]).unwrap_err();
        assert!(e.0.contains("overlap"), "{e}");
        let e =
            check_network(sub("10.0.0.0/8"), [sub("10.0.0.0/24"), sub("10.0.1.0/24")]).unwrap_err();
        assert!(e.0.contains("/16 and /28"), "{e}");
    }

    #[test]
    fn stack_names_that_would_make_an_invalid_group_or_bucket_name_are_refused() {
        for bad in ["sg-prod", "sthree-x", "amzn-s3-demo-x", "sthree"] {
            let e = bad.parse::<StackName>().unwrap_err();
            assert!(e.0.contains("invalid stack name"), "{bad}: {e}");
        }
        for ok in ["sgx", "prod", "amzn", "s3-team"] {
            let name: StackName = ok.parse().unwrap();
            let bucket = format!("{name}-123456789012-us-east-1");
            assert!(bucket.parse::<BucketName>().is_ok(), "{ok}");
        }
    }

    #[test]
    fn principal_arns() {
        for ok in [
            "arn:aws:iam::123456789012:role/Admin",
            "arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_A_1",
            "arn:aws:iam::123456789012:user/alice",
            "arn:aws-cn:iam::123456789012:root",
        ] {
            let p: PrincipalArn = ok.parse().unwrap();
            assert_eq!(p.as_str(), ok);
        }
        for (bad, why) in [
            (
                "arn:aws:sts::123456789012:assumed-role/Admin/me",
                "role's own ARN",
            ),
            ("arn:aws:iam::12345:role/Admin", "expected the ARN"),
            ("arn:aws:iam::123456789012:role/*", "expected the ARN"),
            ("arn:aws:iam::123456789012:group/ops", "expected the ARN"),
            ("arn:aws:s3:::bucket", "expected the ARN"),
            ("Admin", "expected the ARN"),
        ] {
            let err = bad.parse::<PrincipalArn>().unwrap_err().0;
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn stack_names_and_regions() {
        assert!("privbucket".parse::<StackName>().is_ok());
        assert!("team-a2".parse::<StackName>().is_ok());
        for bad in ["", "Upper", "1abc", "a_b", "abc-", "a--b", &"a".repeat(33)] {
            assert!(bad.parse::<StackName>().is_err(), "{bad}");
        }
        for ok in ["us-east-1", "eu-west-2", "us-gov-west-1", "ap-southeast-5"] {
            assert!(ok.parse::<Region>().is_ok(), "{ok}");
        }
        for bad in ["useast1", "us-east", "US-EAST-1", "us-east-1a", "us--1"] {
            assert!(bad.parse::<Region>().is_err(), "{bad}");
        }
    }

    #[test]
    fn locations() {
        assert_eq!(
            "s3://team-state/privbucket/a.json"
                .parse::<Location>()
                .unwrap(),
            Location::S3 {
                bucket: "team-state".into(),
                key: "privbucket/a.json".into()
            }
        );
        assert_eq!(
            "privbucket.state.json".parse::<Location>().unwrap(),
            Location::File("privbucket.state.json".into())
        );
        for bad in [
            "s3://team-state",
            "s3://team-state/",
            "s3://Team/k",
            "s3:///k",
            "",
        ] {
            assert!(bad.parse::<Location>().is_err(), "{bad}");
        }
        assert_eq!(
            "s3://b-1/k".parse::<Location>().unwrap().to_string(),
            "s3://b-1/k"
        );
    }
}
