//! The requests a private bucket's policy must let through and must deny, for a stack's
//! scope and hardening, and their verdicts under the live policy: pure, beside the policy
//! builder (`policy`) and the evaluator (`evaluate`) they test, so `verify`'s reasoning is
//! unit-tested without AWS.
use anyhow::Result;
use serde_json::Value;

use crate::config::PolicyScope;
use crate::evaluate::{Decision, Request, evaluate};
use crate::graph::Function;
use crate::stack::Stack;

/// One request the bucket policy is evaluated against, and whether it must be denied.
pub(crate) struct PolicyCase {
    who: String,
    request: Request,
    deny: bool,
    note: &'static str,
}

/// Builds the requests: an object write, or a bucket-level read, on the stack's bucket.
struct Ask {
    bucket_arn: String,
    object: String,
}

impl Ask {
    fn request(&self, who: Option<&str>, action: &str, vpce: Option<&str>, tls: bool) -> Request {
        let resource = if matches!(action, "s3:ListBucket" | "s3:GetBucketPolicy") {
            self.bucket_arn.clone()
        } else {
            self.object.clone()
        };
        Request {
            principal: who.map(str::to_string),
            action: action.to_string(),
            resource,
            context: [
                vpce.map(|v| ("aws:SourceVpce".to_string(), v.to_string())),
                Some(("aws:SecureTransport".to_string(), tls.to_string())),
                who.map(|w| ("aws:PrincipalArn".to_string(), w.to_string())),
            ]
            .into_iter()
            .flatten()
            .collect(),
        }
    }
}

fn case(who: &str, request: Request, deny: bool) -> PolicyCase {
    PolicyCase {
        who: who.to_string(),
        request,
        deny,
        note: "",
    }
}

/// A caller outside the endpoint: who, the principal, and the endpoint it comes through.
type Outsider<'a> = (String, Option<&'a str>, Option<&'a str>);

/// The requests that must and must not get through, for the stack's scope and hardening:
/// writes from anywhere but the endpoint are denied to everyone; in scope `all` every other
/// action is too, except to the admins; without TLS, everything is (unless turned off).
/// `endpoints`: the stack's endpoint first, then (in a borrowed network) the other endpoints
/// serving the uploader's subnets; the uploader must get through each. `key`: the stack's KMS
/// key, which a write may ask for, and no other.
pub(crate) fn policy_cases(
    stack: &Stack,
    endpoints: &[String],
    key: Option<&str>,
) -> Vec<PolicyCase> {
    let endpoint = endpoints.first().map_or("vpce-unknown", String::as_str);
    let s = &stack.settings;
    let bucket_arn = format!("arn:{}:s3:::{}", stack.partition(), stack.bucket());
    let ask = Ask {
        object: format!("{bucket_arn}/privbucket-verify"),
        bucket_arn,
    };
    let uploader = stack.role_arn(Function::Uploader);
    let control = stack.role_arn(Function::Control);
    let other = "vpce-0000000000other";
    let outsiders: Vec<Outsider<'_>> = vec![
        (
            "the uploader without the endpoint".into(),
            Some(&uploader),
            None,
        ),
        (
            "the uploader through another endpoint".into(),
            Some(&uploader),
            Some(other),
        ),
        ("the control function".into(), Some(&control), None),
        ("an anonymous caller".into(), None, None),
    ];
    let mut cases = vec![case(
        "the uploader through the endpoint",
        ask.request(Some(&uploader), "s3:PutObject", Some(endpoint), true),
        false,
    )];
    for other in endpoints.iter().skip(1) {
        cases.push(case(
            &format!("the uploader through endpoint {other}"),
            ask.request(Some(&uploader), "s3:PutObject", Some(other), true),
            false,
        ));
    }
    for (who, principal, vpce) in &outsiders {
        for action in crate::policy::WRITE_ACTIONS {
            cases.push(case(
                who,
                ask.request(*principal, action, *vpce, true),
                true,
            ));
        }
    }
    let mut tls = case(
        "the uploader through the endpoint without TLS",
        ask.request(Some(&uploader), "s3:PutObject", Some(endpoint), false),
        s.tls_deny,
    );
    if !s.tls_deny {
        tls.note = " (the TLS Deny is off: --no-tls-deny)";
    }
    cases.push(tls);
    if s.policy_scope == PolicyScope::All {
        cases.extend(scope_all_cases(
            &ask, stack, &outsiders, &uploader, endpoint,
        ));
    }
    if let Some(key) = key {
        cases.extend(key_cases(&ask, &uploader, endpoint, key));
    }
    cases
}

/// With a KMS key: the uploader, through the endpoint, may ask for the stack's key (or for
/// nothing: the bucket's default), and is denied another key, the AWS managed key, SSE-S3.
fn key_cases(ask: &Ask, uploader: &str, endpoint: &str, key: &str) -> Vec<PolicyCase> {
    let other_key = "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-0000-0000-000000000000";
    let asking = |who: &str, headers: &[(&str, &str)], deny: bool| {
        let mut request = ask.request(Some(uploader), "s3:PutObject", Some(endpoint), true);
        for (k, v) in headers {
            request.context.insert((*k).to_string(), (*v).to_string());
        }
        case(who, request, deny)
    };
    let (sse, id) = (crate::policy::SSE_HEADER, crate::policy::KMS_KEY_HEADER);
    vec![
        asking(
            "the uploader through the endpoint asking for the stack's key",
            &[(sse, "aws:kms"), (id, key)],
            false,
        ),
        asking(
            "the uploader through the endpoint asking for another KMS key",
            &[(sse, "aws:kms"), (id, other_key)],
            true,
        ),
        asking(
            "the uploader through the endpoint asking for the AWS managed key",
            &[(sse, "aws:kms")],
            true,
        ),
        asking(
            "the uploader through the endpoint asking for SSE-S3",
            &[(sse, "AES256")],
            true,
        ),
    ]
}

/// Scope `all`: every other action is denied to the outsiders, and let through for the
/// admins, who still may not write from outside the endpoint.
fn scope_all_cases(
    ask: &Ask,
    stack: &Stack,
    outsiders: &[Outsider<'_>],
    uploader: &str,
    endpoint: &str,
) -> Vec<PolicyCase> {
    let s = &stack.settings;
    let others = [
        "s3:GetObject",
        "s3:ListBucket",
        "s3:DeleteObject",
        "s3:GetBucketPolicy",
    ];
    let mut cases = Vec::new();
    for (who, principal, vpce) in outsiders {
        for action in others {
            cases.push(case(
                who,
                ask.request(*principal, action, *vpce, true),
                true,
            ));
        }
    }
    for admin in &s.admin_principals {
        let who = format!("admin {admin}");
        for action in others {
            cases.push(case(
                &who,
                ask.request(Some(admin.as_str()), action, None, true),
                false,
            ));
        }
        cases.push(case(
            &who,
            ask.request(Some(admin.as_str()), "s3:PutObject", None, true),
            true,
        ));
        let mut plain = case(
            &format!("{who} without TLS"),
            ask.request(Some(admin.as_str()), "s3:GetObject", None, false),
            s.tls_deny,
        );
        if !s.tls_deny {
            plain.note = " (the TLS Deny is off: --no-tls-deny)";
        }
        cases.push(plain);
    }
    cases.push(case(
        "the uploader through the endpoint",
        ask.request(Some(uploader), "s3:GetObject", Some(endpoint), true),
        false,
    ));
    cases
}

/// Whether the policy denies `who` an object write (the first such case): what a diagram's
/// edge says. `None`: no such case, or a policy the evaluator cannot read.
pub(crate) fn write_denied(doc: &Value, cases: &[PolicyCase], who: &str) -> Option<bool> {
    let case = cases
        .iter()
        .find(|c| c.who == who && c.request.action == "s3:PutObject")?;
    evaluate(doc, &case.request)
        .ok()
        .map(|d| d == Decision::Deny)
}

/// The verdicts, one line per caller and outcome naming the actions: what holds (evidence)
/// and what does not (failures).
pub(crate) fn judge(doc: &Value, cases: Vec<PolicyCase>) -> Result<(Vec<String>, Vec<String>)> {
    /// Cases that read as one line: the same caller, outcome and note.
    struct Line {
        who: String,
        denied: bool,
        note: &'static str,
        as_expected: bool,
        actions: Vec<String>,
    }
    let mut lines: Vec<Line> = Vec::new();
    for case in cases {
        let denied = evaluate(doc, &case.request)? == Decision::Deny;
        let as_expected = denied == case.deny;
        let same = |l: &&mut Line| {
            l.who == case.who
                && l.denied == denied
                && l.note == case.note
                && l.as_expected == as_expected
        };
        match lines.iter_mut().find(|l| same(l)) {
            Some(line) => line.actions.push(case.request.action),
            None => lines.push(Line {
                who: case.who,
                denied,
                note: case.note,
                as_expected,
                actions: vec![case.request.action],
            }),
        }
    }
    let (mut failures, mut evidence) = (Vec::new(), Vec::new());
    for l in lines {
        let text = format!(
            "{} by {}: {}{}",
            l.actions.join(", "),
            l.who,
            if l.denied { "denied" } else { "not denied" },
            l.note
        );
        if l.as_expected {
            evidence.push(text);
        } else {
            failures.push(text);
        }
    }
    Ok((failures, evidence))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Settings;

    fn stack(scope: PolicyScope, tls_deny: bool) -> Stack {
        let mut settings = Settings::new(
            "b-123456789012-us-east-1".parse().unwrap(),
            "10.16.0.0/16".parse().unwrap(),
            [
                "10.16.0.0/24".parse().unwrap(),
                "10.16.1.0/24".parse().unwrap(),
            ],
        );
        settings.policy_scope = scope;
        settings.tls_deny = tls_deny;
        if scope == PolicyScope::All {
            settings.admin_principals =
                vec!["arn:aws:iam::123456789012:user/admin".parse().unwrap()];
        }
        Stack {
            name: "privbucket".parse().unwrap(),
            region: "us-east-1".parse().unwrap(),
            account_id: "123456789012".into(),
            endpoint_url: None,
            settings,
            partition: "aws".into(),
            bucket_intent: false,
        }
    }

    fn judged(stack: &Stack, doc: &Value) -> (Vec<String>, Vec<String>) {
        judge(doc, policy_cases(stack, &["vpce-1".to_string()], None)).unwrap()
    }

    #[test]
    fn the_stacks_own_policy_passes_every_case_of_every_scope() {
        for scope in [PolicyScope::Writes, PolicyScope::All] {
            for tls in [true, false] {
                let s = stack(scope, tls);
                let doc = crate::policy::bucket_policy(
                    s.partition(),
                    s.bucket(),
                    &["vpce-1".to_string()],
                    None,
                    &s.settings,
                );
                let (failures, evidence) = judged(&s, &doc);
                assert!(failures.is_empty(), "{scope:?} tls {tls}: {failures:?}");
                assert!(
                    evidence.iter().any(|e| e.starts_with("s3:PutObject")
                        && e.ends_with("by the uploader through the endpoint: not denied")),
                    "{evidence:?}"
                );
            }
        }
    }

    #[test]
    fn a_policy_without_the_endpoint_condition_fails_and_says_who_gets_in() {
        let s = stack(PolicyScope::Writes, true);
        let open = serde_json::json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"}
        ]});
        let (failures, _) = judged(&s, &open);
        assert!(
            failures.contains(
                &"s3:PutObject, s3:PutObjectTagging by the control function: not denied"
                    .to_string()
            ),
            "{failures:?}"
        );
        assert!(
            failures
                .iter()
                .any(|f| f.contains("without TLS: not denied")),
            "{failures:?}"
        );
    }

    #[test]
    fn without_the_tls_deny_the_plain_request_is_expected_and_said_so() {
        let s = stack(PolicyScope::Writes, false);
        let doc = crate::policy::bucket_policy(
            s.partition(),
            s.bucket(),
            &["vpce-1".to_string()],
            None,
            &s.settings,
        );
        let (_, evidence) = judged(&s, &doc);
        assert!(
            evidence
                .iter()
                .any(|e| e.ends_with("not denied (the TLS Deny is off: --no-tls-deny)")),
            "{evidence:?}"
        );
    }
}
