//! The desired stack: settings, and every name derived from the stack name. Names are never
//! random, so a rerun (or `down` without a state file) finds what an earlier run made.
use crate::config::{BucketName, Region, StackName};
use crate::error::InputError;
use crate::graph::{Function, Step};
use crate::state::{Ownership, SCHEMA_VERSION, Settings, State, WRITTEN_BY};

/// The tag that marks a resource as part of a stack.
pub(crate) const STACK_TAG: &str = "privbucket:stack";
/// The tag that says which step of the stack a resource is.
pub(crate) const RESOURCE_TAG: &str = "privbucket:resource";

#[derive(Debug, Clone)]
pub(crate) struct Stack {
    pub(crate) name: StackName,
    pub(crate) region: Region,
    pub(crate) account_id: String,
    pub(crate) endpoint_url: Option<String>,
    pub(crate) settings: Settings,
    /// `aws`, `aws-cn`, `aws-us-gov`, …: every ARN privbucket writes is in it.
    pub(crate) partition: String,
    /// The state records the bucket as about to be created ([`crate::state::Ownership::Pending`]).
    pub(crate) bucket_intent: bool,
}

impl Stack {
    /// The stack a state file describes, for a caller whose ARN says the partition.
    pub(crate) fn from_state(state: &State, caller_arn: &str) -> Self {
        Stack {
            name: state.stack.clone(),
            region: state.region.clone(),
            account_id: state.account_id.clone(),
            endpoint_url: state.endpoint_url.clone(),
            settings: state.settings.clone(),
            partition: partition_of(caller_arn, &state.region),
            bucket_intent: state
                .resources
                .get(&Step::Bucket)
                .is_some_and(|r| r.ownership == Ownership::Pending),
        }
    }

    /// A state file for this stack with no resources yet.
    pub(crate) fn empty_state(&self) -> State {
        State {
            schema_version: SCHEMA_VERSION,
            written_by: Some(WRITTEN_BY.to_string()),
            stack: self.name.clone(),
            region: self.region.clone(),
            account_id: self.account_id.clone(),
            endpoint_url: self.endpoint_url.clone(),
            settings: self.settings.clone(),
            resources: Default::default(),
        }
    }

    pub(crate) fn bucket(&self) -> &str {
        self.settings.bucket.as_str()
    }

    /// `<name>-<account>-<region>`: unique across S3. A long name in a long region passes
    /// S3's 63 characters: refused (exit 2) naming the flags that fix it.
    pub(crate) fn default_bucket(
        name: &StackName,
        account: &str,
        region: &Region,
    ) -> Result<BucketName, InputError> {
        let bucket = default_bucket_name(name.as_str(), account, region.as_str());
        bucket.parse().map_err(|e: InputError| {
            InputError(format!(
                "the default bucket name {name}-ACCOUNT-{region} ({} characters) is not a \
                 valid S3 bucket name: {}; choose a shorter --name (at most {} characters in \
                 {region}) or name the bucket with --bucket",
                bucket.len(),
                e.0.split_once(": ").map_or(e.0.as_str(), |(_, why)| why),
                63usize.saturating_sub(bucket.len() - name.as_str().len())
            ))
        })
    }

    /// IAM is global: the region keeps two stacks of one name in two regions apart.
    pub(crate) fn role_name(&self, f: Function) -> String {
        format!("{}-{}-{}", self.name, self.region, f.word())
    }

    pub(crate) fn function_name(&self, f: Function) -> String {
        format!("{}-{}", self.name, f.word())
    }

    pub(crate) fn security_group_name(&self) -> String {
        format!("{}-uploader", self.name)
    }

    /// The `Name` tag of a resource.
    pub(crate) fn display_name(&self, step: Step) -> String {
        format!("{}-{}", self.name, step.key())
    }

    pub(crate) fn s3_service(&self) -> String {
        format!("com.amazonaws.{}.s3", self.region)
    }

    pub(crate) fn role_arn(&self, f: Function) -> String {
        format!(
            "arn:{}:iam::{}:role/{}",
            self.partition(),
            self.account_id,
            self.role_name(f)
        )
    }

    pub(crate) fn partition(&self) -> &str {
        &self.partition
    }

    /// `(key, value)` tags every taggable resource of a step gets.
    pub(crate) fn tags(&self, step: Step) -> Vec<(String, String)> {
        vec![
            (STACK_TAG.to_string(), self.name.to_string()),
            (RESOURCE_TAG.to_string(), step.key().to_string()),
            ("Name".to_string(), self.display_name(step)),
        ]
    }
}

/// The partition from the caller's ARN (`arn:PARTITION:sts::…`), as STS says it: the region's
/// prefix only guesses it (regions of new partitions would be missed). The guess stands in
/// when the ARN has none.
pub(crate) fn partition_of(caller_arn: &str, region: &Region) -> String {
    match caller_arn.split(':').nth(1) {
        Some(p) if caller_arn.starts_with("arn:") && !p.is_empty() => p.to_string(),
        _ => {
            let r = region.as_str();
            if r.starts_with("cn-") {
                "aws-cn"
            } else if r.starts_with("us-gov-") {
                "aws-us-gov"
            } else {
                "aws"
            }
            .to_string()
        }
    }
}

/// The stack a role is named for ([`Stack::role_name`] read backwards), in `region`.
pub(crate) fn stack_of_role<'a>(role: &'a str, region: &str, f: Function) -> Option<&'a str> {
    role.strip_suffix(&format!("-{region}-{}", f.word()))
}

/// The stack a function is named for ([`Stack::function_name`] read backwards).
pub(crate) fn stack_of_function(function: &str, f: Function) -> Option<&str> {
    function.strip_suffix(&format!("-{}", f.word()))
}

/// The bucket a stack gets without `--bucket` (unchecked: a listing only compares names).
pub(crate) fn default_bucket_name(stack: &str, account: &str, region: &str) -> String {
    format!("{stack}-{account}-{region}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_bucket_name_over_63_characters_names_the_flags() {
        let name: StackName = "a".repeat(32).parse().unwrap();
        let region: Region = "abcdefgh-ijklmnop-12".parse().unwrap();
        let e = Stack::default_bucket(&name, "123456789012", &region).unwrap_err();
        assert!(e.0.contains("--name") && e.0.contains("--bucket"), "{e}");
        assert!(e.0.contains("66 characters"), "{e}");
        let short: Region = "us-east-1".parse().unwrap();
        assert!(Stack::default_bucket(&name, "123456789012", &short).is_ok());
    }

    #[test]
    fn the_partition_comes_from_the_callers_arn() {
        let r: Region = "eu-west-1".parse().unwrap();
        assert_eq!(
            partition_of("arn:aws-cn:sts::123456789012:assumed-role/R/s", &r),
            "aws-cn"
        );
        assert_eq!(
            partition_of("arn:aws-eusc:iam::123456789012:user/u", &r),
            "aws-eusc"
        );
        assert_eq!(partition_of("", &"cn-north-1".parse().unwrap()), "aws-cn");
        assert_eq!(partition_of("", &r), "aws");
    }
}
