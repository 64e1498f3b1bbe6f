//! Error policy. Everything returns `anyhow::Result`; two typed errors exist because callers
//! branch on them:
//! - [`InputError`]: bad flags or an unusable state file. Exit 2, and nothing was called.
//! - [`AwsError`]: a failed AWS call, with the [`Kind`] callers branch on (not found, already
//!   exists, still propagating, dependency violation, throttled, ambiguous). The kind comes from
//!   the error *code*, never from the message, with two documented exceptions (IAM
//!   propagation, which Lambda reports only as a generic `InvalidParameterValueException`, and
//!   a network interface still in use, which EC2 reports as a generic `InvalidParameterValue`).
use std::fmt;
use std::process::ExitCode;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// Bad input or an unusable state file: the command did nothing.
#[derive(Debug)]
pub(crate) struct InputError(pub String);

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// Shorthand for returning an [`InputError`].
pub(crate) fn input<T>(msg: impl Into<String>) -> anyhow::Result<T> {
    Err(InputError(msg.into()).into())
}

/// What a caller can do about a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    NotFound,
    AlreadyExists,
    /// IAM has not yet propagated a new role to Lambda.
    Propagating,
    /// Something else still uses the resource (EC2 `DependencyViolation`, IAM `DeleteConflict`).
    InUse,
    Throttled,
    AccessDenied,
    /// No usable credentials: none found, expired, or not valid. The request did not get
    /// past authentication (or was never sent).
    Credentials,
    /// The request may or may not have taken effect (5xx, timeout, connection lost).
    Ambiguous,
    Other,
}

/// One failed AWS call: which call, on what, and what AWS said.
#[derive(Debug)]
pub(crate) struct AwsError {
    pub(crate) call: &'static str,
    pub(crate) target: Box<str>,
    pub(crate) code: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) kind: Kind,
    /// S3's `x-amz-bucket-region`: the region a bucket is in, sent with a redirect (301) when
    /// the request went to another one.
    pub(crate) bucket_region: Option<Box<str>>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {} failed", self.call, self.target)?;
        match (&self.code, &self.message) {
            (Some(c), Some(m)) => write!(f, ": {c}: {m}"),
            (Some(c), None) => write!(f, ": {c}"),
            (None, Some(m)) => write!(f, ": {m}"),
            (None, None) => match &self.source {
                Some(s) => write!(f, ": {}", chain(s.as_ref())),
                None => Ok(()),
            },
        }
    }
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

impl std::error::Error for AwsError {}

impl AwsError {
    /// An error of our own about a call's answer (e.g. a field AWS should have sent).
    pub(crate) fn new(
        call: &'static str,
        target: impl Into<String>,
        kind: Kind,
        message: &str,
    ) -> Self {
        AwsError {
            call,
            target: target.into().into(),
            code: None,
            message: Some(message.to_string()),
            kind,
            bucket_region: None,
            source: None,
        }
    }

    pub(crate) fn is(&self, kind: Kind) -> bool {
        self.kind == kind
    }
}

const NOT_FOUND: &[&str] = &[
    "NoSuchEntity",
    "NoSuchBucket",
    "NoSuchBucketPolicy",
    "NoSuchKey",
    "NoSuchPublicAccessBlockConfiguration",
    "ServerSideEncryptionConfigurationNotFoundError",
    "OwnershipControlsNotFoundError",
    "NoSuchTagSet",
    "NoSuchTagSetError",
    "ResourceNotFoundException",
    "NotFound",
    // KMS: no key or alias by that identifier (KMS API reference, DescribeKey).
    "NotFoundException",
];
const ALREADY_EXISTS: &[&str] = &[
    "EntityAlreadyExists",
    "BucketAlreadyOwnedByYou",
    "InvalidGroup.Duplicate",
    "RouteAlreadyExists",
    "Resource.AlreadyAssociated",
    // KMS: an alias by that name exists (KMS API reference, CreateAlias).
    "AlreadyExistsException",
];
const IN_USE: &[&str] = &[
    "DependencyViolation",
    "InvalidGroup.InUse",
    "DeleteConflict",
];
/// The SDK's own list (which its retry uses), less the codes that mean a quota reached, not a
/// rate: IAM's and Lambda's `LimitExceededException` (too many roles, functions or ENIs) does
/// not pass with waiting, and is reported, not retried.
fn throttled(code: &str) -> bool {
    code != "LimitExceededException"
        && aws_runtime::retries::classifiers::THROTTLING_ERRORS.contains(&code)
}
const ACCESS_DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
];
/// The credentials themselves are refused: expired, unknown, or signed with another secret.
const BAD_CREDENTIALS: &[&str] = &[
    "AuthFailure",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
];

/// Lambda reports IAM propagation delay only as `InvalidParameterValueException` with one of
/// these messages (Lambda developer guide; the Terraform provider matches the same text).
const PROPAGATION_MESSAGES: &[&str] = &[
    "cannot be assumed by Lambda",
    "does not have permissions to call CreateNetworkInterface",
    "The provided execution role does not have permissions",
];

/// EC2 refuses to delete a network interface Lambda still holds with the generic
/// `InvalidParameterValue` and "Network interface 'eni-…' is currently in use." (also once
/// right after the interface turns `available`); terraform-provider-aws matches the same text
/// before it retries.
const ENI_IN_USE: &str = "is currently in use";

/// Classifies an error code (and HTTP status) into the kinds callers branch on.
pub(crate) fn classify(code: Option<&str>, message: Option<&str>, status: Option<u16>) -> Kind {
    let Some(code) = code else {
        return match status {
            Some(404) => Kind::NotFound,
            Some(403) => Kind::AccessDenied,
            Some(429) => Kind::Throttled,
            Some(s) if s >= 500 => Kind::Ambiguous,
            _ => Kind::Other,
        };
    };
    if code.ends_with(".NotFound") || NOT_FOUND.contains(&code) {
        Kind::NotFound
    } else if ALREADY_EXISTS.contains(&code) {
        Kind::AlreadyExists
    } else if IN_USE.contains(&code) {
        Kind::InUse
    } else if throttled(code) {
        Kind::Throttled
    } else if ACCESS_DENIED.contains(&code) {
        Kind::AccessDenied
    } else if BAD_CREDENTIALS.contains(&code) {
        Kind::Credentials
    } else if code == "InvalidParameterValueException"
        && message.is_some_and(|m| PROPAGATION_MESSAGES.iter().any(|p| m.contains(p)))
    {
        Kind::Propagating
    } else if code == "InvalidParameterValue" && message.is_some_and(|m| m.contains(ENI_IN_USE)) {
        Kind::InUse
    } else if status.is_some_and(|s| s >= 500) {
        Kind::Ambiguous
    } else {
        Kind::Other
    }
}

/// Turns an SDK result into one whose error names the call and the resource.
pub(crate) trait Call<T> {
    fn call(self, call: &'static str, target: impl fmt::Display) -> Result<T, AwsError>;
}

impl<T, E> Call<T> for Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn call(self, call: &'static str, target: impl fmt::Display) -> Result<T, AwsError> {
        self.map_err(|err| {
            let status = err.raw_response().map(|r| r.status().as_u16());
            let bucket_region = err
                .raw_response()
                .and_then(|r| r.headers().get("x-amz-bucket-region"))
                .map(Box::from);
            let (code, message, kind) = match &err {
                SdkError::ServiceError(se) => {
                    let e = se.err();
                    let code = e.code().map(str::to_string);
                    let message = e.message().map(str::to_string);
                    let kind = classify(code.as_deref(), message.as_deref(), status);
                    (code, message, kind)
                }
                // Neither a connection nor a timeout: the request was never sent. The SDK says
                // so when no credentials could be found (their provider fails before
                // signing).
                SdkError::DispatchFailure(d)
                    if d.as_connector_error().is_some_and(|c| c.is_other()) =>
                {
                    let credentials = chain(&err).contains("credential");
                    let kind = if credentials {
                        Kind::Credentials
                    } else {
                        Kind::Other
                    };
                    (None, None, kind)
                }
                // The request may have reached AWS: a create may have taken effect.
                SdkError::TimeoutError(_)
                | SdkError::DispatchFailure(_)
                | SdkError::ResponseError(_) => (None, None, Kind::Ambiguous),
                // `SdkError` is non-exhaustive: what it may grow is not ambiguous either.
                SdkError::ConstructionFailure(_) | _ => (None, None, Kind::Other),
            };
            AwsError {
                call,
                target: target.to_string().into(),
                code,
                message,
                kind,
                bucket_region,
                source: Some(Box::new(err)),
            }
        })
    }
}

/// Helpers on a classified result.
pub(crate) trait CallResultExt<T> {
    /// `NotFound` becomes `Ok(None)`.
    fn found(self) -> Result<Option<T>, AwsError>;
    /// `NotFound` becomes success: for deletes, where "already gone" is done.
    fn gone(self) -> Result<(), AwsError>;
}

impl<T> CallResultExt<T> for Result<T, AwsError> {
    fn found(self) -> Result<Option<T>, AwsError> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is(Kind::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn gone(self) -> Result<(), AwsError> {
        match self {
            Ok(_) => Ok(()),
            Err(e) if e.is(Kind::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Exit code for an error that ended a command.
pub(crate) fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<InputError>().is_some() {
        2
    } else {
        3
    }
}

/// Prints the error chain once, with a hint for what to do next, and returns the exit code.
pub(crate) fn report(err: &anyhow::Error) -> ExitCode {
    let code = exit_code(err);
    eprintln!("privbucket: error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    if let Some(hint) = hint(err) {
        eprintln!("  hint: {hint}");
    }
    ExitCode::from(code)
}

fn hint(err: &anyhow::Error) -> Option<&'static str> {
    if err.downcast_ref::<InputError>().is_some() {
        return None;
    }
    let aws = err.chain().find_map(|c| c.downcast_ref::<AwsError>());
    Some(match aws.map(|a| a.kind) {
        Some(Kind::AccessDenied) => {
            "the credentials lack a permission this step needs (docs/real-aws.md lists them); grant it \
             and run the same command again: it resumes where it stopped"
        }
        Some(Kind::Credentials) => {
            "no usable AWS credentials (none found, expired, or not valid): sign in again \
             (`aws sso login`, `aws login`), choose a profile with --profile or AWS_PROFILE, \
             or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; then run the same command \
             again"
        }
        Some(Kind::Ambiguous) if aws.is_some_and(|a| a.code.is_none()) => {
            "AWS (or the --endpoint-url) did not answer; check the network and the endpoint, \
             then run the same command again: it resumes where it stopped"
        }
        Some(Kind::Throttled) => {
            "AWS is throttling this account; wait a minute and run the same command again: \
             it resumes where it stopped"
        }
        _ => {
            "run the same command again to resume where it stopped (every finished step is in \
             the state file); `privbucket status` shows what exists, `privbucket down` removes it"
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_code() {
        assert_eq!(
            classify(Some("InvalidVpcID.NotFound"), None, Some(400)),
            Kind::NotFound
        );
        assert_eq!(
            classify(Some("NoSuchEntity"), None, Some(404)),
            Kind::NotFound
        );
        assert_eq!(
            classify(Some("DependencyViolation"), None, Some(400)),
            Kind::InUse
        );
        assert_eq!(
            classify(Some("RequestLimitExceeded"), None, Some(503)),
            Kind::Throttled
        );
        assert_eq!(classify(Some("SlowDown"), None, Some(503)), Kind::Throttled);
        assert_eq!(
            classify(Some("EC2ThrottledException"), None, Some(503)),
            Kind::Throttled
        );
        assert_eq!(
            classify(Some("LimitExceededException"), None, Some(409)),
            Kind::Other
        );
        assert_eq!(
            classify(Some("InternalError"), None, Some(500)),
            Kind::Ambiguous
        );
        assert_eq!(classify(None, None, Some(404)), Kind::NotFound);
        assert_eq!(
            classify(Some("ValidationError"), None, Some(400)),
            Kind::Other
        );
    }

    #[test]
    fn refused_credentials_are_not_a_missing_permission() {
        for code in [
            "ExpiredToken",
            "ExpiredTokenException",
            "InvalidClientTokenId",
        ] {
            assert_eq!(
                classify(Some(code), None, Some(403)),
                Kind::Credentials,
                "{code}"
            );
        }
        assert_eq!(
            classify(Some("UnauthorizedOperation"), None, Some(403)),
            Kind::AccessDenied
        );
    }

    #[test]
    fn an_eni_still_in_use_is_in_use() {
        let m = "Network interface 'eni-0123456789abcdef0' is currently in use.";
        assert_eq!(
            classify(Some("InvalidParameterValue"), Some(m), Some(400)),
            Kind::InUse
        );
        assert_eq!(
            classify(Some("InvalidParameterValue"), Some("bad CIDR"), Some(400)),
            Kind::Other
        );
    }

    #[test]
    fn iam_propagation_is_matched_by_message() {
        let m = "The role defined for the function cannot be assumed by Lambda.";
        assert_eq!(
            classify(Some("InvalidParameterValueException"), Some(m), Some(400)),
            Kind::Propagating
        );
        assert_eq!(
            classify(
                Some("InvalidParameterValueException"),
                Some("Runtime bad"),
                Some(400)
            ),
            Kind::Other
        );
    }
}
