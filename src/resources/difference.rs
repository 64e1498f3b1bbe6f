//! How a live resource differs from what it should be: one variant per fact, so `fix` matches
//! on the fact (Terraform's `d.HasChange("attr")`) and the words are only for people. The
//! words are the `Display`; `status`, `plan` and `verify` print them, and JSON carries them
//! as strings.
use std::fmt;

use serde::{Serialize, Serializer};

use super::egress::Rule;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Difference {
    /// A VPC's or subnet's CIDR block.
    Cidr {
        have: String,
        want: String,
    },
    /// A subnet in another zone than `--zones` asks for.
    Zone {
        have: String,
        want: String,
    },
    /// A subnet, route table or security group in another VPC than the stack's.
    OtherVpc {
        have: String,
        want: String,
    },
    DnsSupportOff,
    DnsHostnamesOff,
    PublicIpOnLaunch,
    /// A route to an internet or NAT gateway.
    InternetRoute(String),
    EgressMissing(Rule),
    EgressExtra(Rule),
    EndpointType(String),
    EndpointService {
        have: String,
        want: String,
    },
    EndpointState(String),
    /// One statement of the endpoint's policy, or the whole document.
    EndpointPolicy(String),
    NotOnRouteTable(String),
    OnOtherRouteTable(String),
    NoPrefixListRoute(String),
    TrustPolicy,
    ManagedPolicyMissing(String),
    InlinePolicyMissing(&'static str),
    InlinePolicyDiffers {
        name: &'static str,
        bucket: String,
    },
    /// The bucket lacks the stack's tag (S3 tags a bucket with a call of its own).
    BucketTags,
    Encryption,
    PublicAccessBlockOff(Vec<&'static str>),
    Ownership,
    /// One statement of the bucket policy, or the whole document.
    BucketPolicy(String),
    BucketPolicyNotJson(String),
    /// The policy names an endpoint, and the stack has none to compare with.
    BucketPolicyEndpointUnknown,
    Runtime {
        have: String,
        want: String,
    },
    Handler {
        have: String,
        want: String,
    },
    Role {
        have: String,
        want: String,
    },
    BucketVariable {
        have: String,
        want: String,
    },
    VpcConfig {
        have: String,
        want: String,
    },
    /// The control function runs in a VPC.
    InVpc(String),
    Memory {
        have: i32,
        want: i32,
    },
    Timeout {
        have: i32,
        want: i32,
    },
    /// Variables other than the bucket's, by name.
    Environment(String),
    /// The code is not the package of (where it should come from).
    Code(String),
    Architecture {
        have: String,
        want: String,
    },
    /// The stack's own code cannot be packaged (moved, deleted, over a limit).
    CodeUnreadable(String),
    /// Lambda's `State` is `Failed` (with AWS's `StateReason`): such a function takes no
    /// update, and AWS's remedy is to delete and create it again ("Lambda function states",
    /// Lambda developer guide), which `up` does.
    FunctionFailed(String),
    /// Lambda's `State` is not `Active` (with AWS's `StateReason`).
    FunctionState {
        state: String,
        reason: Option<String>,
    },
    LastUpdateFailed(Option<String>),
}

use Difference::*;

impl Difference {
    /// Whether `up` can put it right without replacing the resource. What it cannot (another
    /// CIDR, another VPC, a route out to the internet, another kind of endpoint) is reported,
    /// and the user decides: privbucket never replaces a resource on its own.
    /// Whether `up` replaces the resource (deletes it and makes it again) to put it right:
    /// only a `Failed` function, which nothing else can mend and which holds no data.
    pub(crate) fn replaces(&self) -> bool {
        matches!(self, FunctionFailed(_))
    }

    pub(crate) fn in_place(&self) -> bool {
        match self {
            Cidr { .. }
            | Zone { .. }
            | OtherVpc { .. }
            | InternetRoute(_)
            | EndpointType(_)
            | EndpointService { .. }
            | CodeUnreadable(_) => false,
            DnsSupportOff
            | DnsHostnamesOff
            | PublicIpOnLaunch
            | EgressMissing(_)
            | EgressExtra(_)
            | EndpointState(_)
            | EndpointPolicy(_)
            | NotOnRouteTable(_)
            | OnOtherRouteTable(_)
            | NoPrefixListRoute(_)
            | TrustPolicy
            | ManagedPolicyMissing(_)
            | InlinePolicyMissing(_)
            | InlinePolicyDiffers { .. }
            | BucketTags
            | Encryption
            | PublicAccessBlockOff(_)
            | Ownership
            | BucketPolicy(_)
            | BucketPolicyNotJson(_)
            | BucketPolicyEndpointUnknown
            | Runtime { .. }
            | Handler { .. }
            | Role { .. }
            | BucketVariable { .. }
            | VpcConfig { .. }
            | InVpc(_)
            | Memory { .. }
            | Timeout { .. }
            | Environment(_)
            | Code(_)
            | Architecture { .. }
            | FunctionFailed(_)
            | FunctionState { .. }
            | LastUpdateFailed(_) => true,
        }
    }
}

fn reason(r: &Option<String>) -> String {
    r.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cidr { have, want } => write!(f, "CIDR is {have}, expected {want}"),
            Zone { have, want } => write!(f, "in zone {have}, expected {want}"),
            OtherVpc { have, want } => write!(f, "in VPC {have}, expected {want}"),
            DnsSupportOff => write!(f, "DNS support is off"),
            DnsHostnamesOff => write!(f, "DNS hostnames is off"),
            PublicIpOnLaunch => write!(f, "gives public IPs on launch"),
            InternetRoute(to) => write!(
                f,
                "has a route to {to} (the subnets should have no way to the internet)"
            ),
            EgressMissing(r) => write!(f, "egress {r} is missing"),
            EgressExtra(r) => write!(f, "egress {r} should not be there"),
            EndpointType(t) => write!(f, "type is {t}, expected Gateway"),
            EndpointService { have, want } => write!(f, "service is {have}, expected {want}"),
            EndpointState(s) => write!(f, "state is {s}"),
            EndpointPolicy(d) => write!(f, "policy {d}"),
            NotOnRouteTable(rt) => write!(f, "not on route table {rt}"),
            OnOtherRouteTable(rt) => {
                write!(f, "also on route table {rt}, which is not the stack's")
            }
            NoPrefixListRoute(rt) => {
                write!(f, "route table {rt} has no S3 prefix-list route to it")
            }
            TrustPolicy => write!(f, "trust policy is not Lambda-only"),
            ManagedPolicyMissing(arn) => write!(f, "managed policy {arn} is not attached"),
            InlinePolicyMissing(name) => write!(f, "inline policy {name} is missing"),
            InlinePolicyDiffers { name, bucket } => write!(
                f,
                "inline policy {name} differs from PutObject on {bucket}/*"
            ),
            BucketTags => write!(f, "not tagged privbucket:stack"),
            Encryption => write!(f, "default encryption is not SSE-S3 (AES256)"),
            PublicAccessBlockOff(flags) => {
                write!(f, "public access block off: {}", flags.join(", "))
            }
            Ownership => write!(f, "object ownership is not BucketOwnerEnforced"),
            BucketPolicy(d) => write!(f, "{d}"),
            BucketPolicyNotJson(doc) => write!(f, "the policy is not JSON: {doc}"),
            BucketPolicyEndpointUnknown => {
                write!(f, "the endpoint it names is not in the stack")
            }
            Runtime { have, want } => write!(f, "runtime is {have}, expected {want}"),
            Handler { have, want } => write!(f, "handler is {have}, expected {want}"),
            Role { have, want } => write!(f, "role is {have}, expected {want}"),
            BucketVariable { have, want } => {
                write!(f, "PRIVATE_BUCKET is {have}, expected {want}")
            }
            VpcConfig { have, want } => write!(f, "VPC config is {have}, expected {want}"),
            InVpc(subnets) => write!(f, "runs in a VPC (subnets [{subnets}]), expected none"),
            Memory { have, want } => write!(f, "memory is {have} MB, expected {want} MB"),
            Timeout { have, want } => write!(f, "timeout is {have} s, expected {want} s"),
            Environment(what) => write!(f, "environment: {what}"),
            Code(source) => write!(f, "code differs from {source}"),
            Architecture { have, want } => write!(f, "architecture is {have}, expected {want}"),
            CodeUnreadable(e) => write!(f, "code could not be compared: {e}"),
            FunctionFailed(reason) => write!(f, "state is Failed ({reason})"),
            FunctionState { state, reason: r } => write!(f, "state is {state}{}", reason(r)),
            LastUpdateFailed(r) => write!(f, "last update failed{}", reason(r)),
        }
    }
}

impl Serialize for Difference {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_words_are_the_ones_status_has_always_printed() {
        let d = PublicAccessBlockOff(vec!["BlockPublicPolicy", "BlockPublicAcls"]);
        assert_eq!(
            d.to_string(),
            "public access block off: BlockPublicPolicy, BlockPublicAcls"
        );
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            "public access block off: BlockPublicPolicy, BlockPublicAcls"
        );
        let cidr = Cidr {
            have: "10.0.0.0/16".into(),
            want: "10.16.0.0/16".into(),
        };
        assert_eq!(
            cidr.to_string(),
            "CIDR is 10.0.0.0/16, expected 10.16.0.0/16"
        );
        assert!(!cidr.in_place());
        assert!(PublicIpOnLaunch.in_place());
    }
}
