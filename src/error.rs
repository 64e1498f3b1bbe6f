//! Error policy. Everything returns `anyhow::Result`; two typed errors exist because callers
//! branch on them:
//! - [`InputError`]: bad flags or an unusable state file. Exit 2, and nothing was called.
//! - [`AwsError`]: a failed AWS call, with the [`Kind`] callers branch on (not found, already
//!   exists, still propagating, dependency violation, throttled, ambiguous). The kind comes from
//!   the error *code*, never from the message, with one documented exception (IAM propagation,
//!   which Lambda reports only as a generic `InvalidParameterValueException`).
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
    /// The request may or may not have taken effect (5xx, timeout, connection lost).
    Ambiguous,
    Other,
}

/// One failed AWS call: which call, on what, and what AWS said.
#[derive(Debug)]
pub(crate) struct AwsError {
    pub(crate) call: &'static str,
    pub(crate) target: String,
    pub(crate) code: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) kind: Kind,
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
            target: target.into(),
            code: None,
            message: Some(message.to_string()),
            kind,
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
    "NoSuchPublicAccessBlockConfiguration",
    "ServerSideEncryptionConfigurationNotFoundError",
    "OwnershipControlsNotFoundError",
    "NoSuchTagSet",
    "NoSuchTagSetError",
    "ResourceNotFoundException",
    "NotFound",
];
const ALREADY_EXISTS: &[&str] = &[
    "EntityAlreadyExists",
    "BucketAlreadyOwnedByYou",
    "InvalidGroup.Duplicate",
    "RouteAlreadyExists",
    "Resource.AlreadyAssociated",
];
const IN_USE: &[&str] = &[
    "DependencyViolation",
    "InvalidGroup.InUse",
    "DeleteConflict",
];
const THROTTLED: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "TooManyRequestsException",
    "PriorRequestNotComplete",
];
const ACCESS_DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthFailure",
    "InvalidClientTokenId",
    "ExpiredToken",
    "SignatureDoesNotMatch",
];

/// Lambda reports IAM propagation delay only as `InvalidParameterValueException` with one of
/// these messages (Lambda developer guide; the Terraform provider matches the same text).
const PROPAGATION_MESSAGES: &[&str] = &[
    "cannot be assumed by Lambda",
    "does not have permissions to call CreateNetworkInterface",
    "The provided execution role does not have permissions",
];

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
    } else if THROTTLED.contains(&code) {
        Kind::Throttled
    } else if ACCESS_DENIED.contains(&code) {
        Kind::AccessDenied
    } else if code == "InvalidParameterValueException"
        && message.is_some_and(|m| PROPAGATION_MESSAGES.iter().any(|p| m.contains(p)))
    {
        Kind::Propagating
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
            let (code, message, kind) = match &err {
                SdkError::ServiceError(se) => {
                    let e = se.err();
                    let code = e.code().map(str::to_string);
                    let message = e.message().map(str::to_string);
                    let kind = classify(code.as_deref(), message.as_deref(), status);
                    (code, message, kind)
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
                target: target.to_string(),
                code,
                message,
                kind,
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
            "the credentials lack a permission this step needs (README lists them), or have \
             expired; fix that and run the same command again: it resumes where it stopped"
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
    fn iam_propagation_is_the_only_message_match() {
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
