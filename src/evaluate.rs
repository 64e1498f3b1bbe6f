//! A small evaluator of resource policies (the bucket policy), for checking what a policy
//! lets through without asking AWS. It covers what privbucket's policies use, with AWS's rules
//! where tools often go wrong (scratchstack-aspen 0.3.1 gets the first three wrong):
//! - a negated operator (`StringNotEquals`, `ArnNotLike`, …) matches when the key is absent;
//! - a negated operator with several values matches only when the key differs from all;
//! - `…IfExists` matches when the key is absent; an explicit Deny wins over any Allow;
//! - `*` and `?` wildcards in actions (case-insensitive) and resources.
//!
//! Anything it does not understand (`ForAnyValue:`, `NotPrincipal`, unknown operators) makes
//! the statement an error, never a silent match.
use std::collections::BTreeMap;

use anyhow::{Result, bail};
use serde_json::Value;

use crate::policy::strings;

/// One request, as the policy sees it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Request {
    /// The caller's ARN; `None` for an anonymous request.
    pub(crate) principal: Option<String>,
    pub(crate) action: String,
    pub(crate) resource: String,
    /// Condition keys present on the request (`aws:SourceVpce`, `aws:SecureTransport`, …).
    pub(crate) context: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// An explicit Deny matched.
    Deny,
    /// An Allow matched and no Deny did.
    Allow,
    /// Nothing matched: the policy neither allows nor denies.
    NotAllowed,
}

pub(crate) fn evaluate(policy: &Value, req: &Request) -> Result<Decision> {
    let statements = match &policy["Statement"] {
        Value::Array(a) => a.clone(),
        s @ Value::Object(_) => vec![s.clone()],
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            bail!("the policy has no Statement")
        }
    };
    let mut allowed = false;
    for st in &statements {
        if !applies(st, req)? {
            continue;
        }
        match st["Effect"].as_str() {
            Some("Deny") => return Ok(Decision::Deny),
            Some("Allow") => allowed = true,
            other => bail!("statement with Effect {other:?}"),
        }
    }
    Ok(if allowed {
        Decision::Allow
    } else {
        Decision::NotAllowed
    })
}

/// `*` any run of characters, `?` any one character.
pub(crate) fn wildcard(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn applies(st: &Value, req: &Request) -> Result<bool> {
    if st.get("NotPrincipal").is_some() {
        bail!("NotPrincipal is not supported");
    }
    let principal_ok = match st.get("Principal") {
        None => true,
        Some(Value::String(s)) if s == "*" => true,
        Some(Value::Object(m)) => m.iter().any(|(kind, v)| {
            strings(v).iter().any(|p| {
                p == "*"
                    || (kind == "AWS" && req.principal.as_deref().is_some_and(|r| wildcard(p, r)))
            })
        }),
        Some(other) => bail!("Principal {other} is not supported"),
    };
    let action_ok = match (st.get("Action"), st.get("NotAction")) {
        (Some(a), _) => strings(a)
            .iter()
            .any(|p| wildcard(&p.to_ascii_lowercase(), &req.action.to_ascii_lowercase())),
        (None, Some(n)) => !strings(n)
            .iter()
            .any(|p| wildcard(&p.to_ascii_lowercase(), &req.action.to_ascii_lowercase())),
        (None, None) => false,
    };
    let resource_ok = match (st.get("Resource"), st.get("NotResource")) {
        (Some(r), _) => strings(r).iter().any(|p| wildcard(p, &req.resource)),
        (None, Some(n)) => !strings(n).iter().any(|p| wildcard(p, &req.resource)),
        (None, None) => false,
    };
    if !(principal_ok && action_ok && resource_ok) {
        return Ok(false);
    }
    let Some(conditions) = st.get("Condition") else {
        return Ok(true);
    };
    let Some(conditions) = conditions.as_object() else {
        bail!("Condition is not an object");
    };
    for (operator, keys) in conditions {
        let Some(keys) = keys.as_object() else {
            bail!("condition {operator} is not an object");
        };
        for (key, values) in keys {
            if !condition(operator, req.context.get(key), &strings(values))? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// One operator on one key.
fn condition(operator: &str, value: Option<&String>, wanted: &[String]) -> Result<bool> {
    if operator.contains(':') {
        bail!("set operator {operator} is not supported");
    }
    let (op, if_exists) = match operator.strip_suffix("IfExists") {
        Some(op) => (op, true),
        None => (operator, false),
    };
    if op == "Null" {
        let absent = value.is_none();
        return Ok(wanted.iter().any(|w| (w == "true") == absent));
    }
    let (base, negated) = match op {
        "StringNotEquals" => ("StringEquals", true),
        "StringNotEqualsIgnoreCase" => ("StringEqualsIgnoreCase", true),
        "StringNotLike" => ("StringLike", true),
        "ArnNotEquals" => ("ArnEquals", true),
        "ArnNotLike" => ("ArnLike", true),
        other => (other, false),
    };
    let Some(value) = value else {
        // An absent key: a negated operator matches; a positive one only with IfExists.
        return Ok(negated || if_exists);
    };
    let matches = |w: &String| -> Result<bool> {
        Ok(match base {
            "StringEquals" => value == w,
            "StringEqualsIgnoreCase" => value.eq_ignore_ascii_case(w),
            "StringLike" | "ArnLike" | "ArnEquals" => wildcard(w, value),
            "Bool" => value.eq_ignore_ascii_case(w),
            other => bail!("condition operator {other} is not supported"),
        })
    };
    let mut any = false;
    for w in wanted {
        if matches(w)? {
            any = true;
        }
    }
    // Several values: a positive operator matches any; a negated one none.
    Ok(if negated { !any } else { any })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PolicyScope;
    use crate::policy::bucket_policy;
    use crate::state::Settings;
    use serde_json::json;

    fn req(principal: Option<&str>, action: &str, ctx: &[(&str, &str)]) -> Request {
        Request {
            principal: principal.map(str::to_string),
            action: action.to_string(),
            resource: "arn:aws:s3:::b/key".to_string(),
            context: ctx
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn settings(scope: PolicyScope, tls_deny: bool) -> Settings {
        let mut s = Settings::new(
            "unused-here".parse().unwrap(),
            "10.16.0.0/16".parse().unwrap(),
            [
                "10.16.0.0/24".parse().unwrap(),
                "10.16.1.0/24".parse().unwrap(),
            ],
        );
        s.policy_scope = scope;
        s.tls_deny = tls_deny;
        s.admin_principals = vec!["arn:aws:iam::123456789012:role/Admin".parse().unwrap()];
        s
    }

    #[test]
    fn the_reference_policy_denies_writes_not_through_the_endpoint() {
        let p = bucket_policy(
            "aws",
            "b",
            &["vpce-1".to_string()],
            None,
            &settings(PolicyScope::Writes, false),
        );
        let role = Some("arn:aws:sts::1:assumed-role/up/x");
        type Row<'a> = (&'a [(&'a str, &'a str)], &'a str, Decision);
        let table: &[Row] = &[
            (
                &[("aws:SourceVpce", "vpce-1")],
                "s3:PutObject",
                Decision::NotAllowed,
            ),
            (&[], "s3:PutObject", Decision::Deny),
            (
                &[("aws:SourceVpce", "vpce-2")],
                "s3:PutObject",
                Decision::Deny,
            ),
            (&[], "s3:PutObjectTagging", Decision::Deny),
            (&[], "s3:GetObject", Decision::NotAllowed),
        ];
        for (ctx, action, want) in table {
            assert_eq!(
                evaluate(&p, &req(role, action, ctx)).unwrap(),
                *want,
                "{action} {ctx:?}"
            );
        }
        assert_eq!(
            evaluate(&p, &req(None, "s3:PutObject", &[])).unwrap(),
            Decision::Deny
        );
    }

    #[test]
    fn scope_all_denies_everything_outside_the_endpoint_but_the_admins_reads() {
        let p = bucket_policy(
            "aws",
            "b",
            &["vpce-1".to_string()],
            None,
            &settings(PolicyScope::All, true),
        );
        let admin = "arn:aws:iam::123456789012:role/Admin";
        let other = "arn:aws:iam::123456789012:role/Other";
        let tls = ("aws:SecureTransport", "true");
        let at = |who: &'static str, extra: &[(&'static str, &'static str)]| {
            let mut c = vec![("aws:PrincipalArn", who), tls];
            c.extend_from_slice(extra);
            c
        };
        type Row = (
            &'static str,
            Vec<(&'static str, &'static str)>,
            &'static str,
            Decision,
        );
        let table: Vec<Row> = vec![
            (admin, at(admin, &[]), "s3:GetObject", Decision::NotAllowed),
            (
                admin,
                at(admin, &[]),
                "s3:DeleteObject",
                Decision::NotAllowed,
            ),
            // Not even an admin writes objects from outside the VPC.
            (admin, at(admin, &[]), "s3:PutObject", Decision::Deny),
            (other, at(other, &[]), "s3:GetObject", Decision::Deny),
            (
                other,
                at(other, &[("aws:SourceVpce", "vpce-1")]),
                "s3:GetObject",
                Decision::NotAllowed,
            ),
            (
                other,
                at(other, &[("aws:SourceVpce", "vpce-1")]),
                "s3:PutObject",
                Decision::NotAllowed,
            ),
            // No TLS: denied to everyone, through the endpoint or not.
            (
                other,
                vec![
                    ("aws:PrincipalArn", other),
                    ("aws:SecureTransport", "false"),
                    ("aws:SourceVpce", "vpce-1"),
                ],
                "s3:PutObject",
                Decision::Deny,
            ),
            (
                admin,
                vec![
                    ("aws:PrincipalArn", admin),
                    ("aws:SecureTransport", "false"),
                ],
                "s3:GetObject",
                Decision::Deny,
            ),
        ];
        for (who, ctx, action, want) in &table {
            assert_eq!(
                evaluate(&p, &req(Some(who), action, ctx)).unwrap(),
                *want,
                "{who} {action} {ctx:?}"
            );
        }
        assert_eq!(
            evaluate(&p, &req(None, "s3:GetObject", &[tls])).unwrap(),
            Decision::Deny
        );
    }

    #[test]
    fn aws_rules_that_are_easy_to_get_wrong() {
        let stmt = |effect: &str, cond: Value| {
            json!({"Statement": [{"Effect": effect, "Principal": "*", "Action": "s3:*",
                   "Resource": "arn:aws:s3:::b/*", "Condition": cond}]})
        };
        let p = |ctx: &[(&str, &str)]| req(Some("arn:aws:iam::1:role/r"), "s3:GetObject", ctx);
        // Negated operator, key absent: matches.
        let neg = stmt(
            "Deny",
            json!({"StringNotEquals": {"aws:SourceVpce": "vpce-1"}}),
        );
        assert_eq!(evaluate(&neg, &p(&[])).unwrap(), Decision::Deny);
        // Negated operator with a list: matches only when the key differs from all.
        let list = stmt(
            "Deny",
            json!({"StringNotEquals": {"aws:SourceVpce": ["vpce-1", "vpce-2"]}}),
        );
        assert_eq!(
            evaluate(&list, &p(&[("aws:SourceVpce", "vpce-2")])).unwrap(),
            Decision::NotAllowed
        );
        assert_eq!(
            evaluate(&list, &p(&[("aws:SourceVpce", "vpce-3")])).unwrap(),
            Decision::Deny
        );
        // IfExists: an absent key matches; a present one is compared.
        let ie = stmt(
            "Allow",
            json!({"StringEqualsIfExists": {"aws:SourceVpce": "vpce-1"}}),
        );
        assert_eq!(evaluate(&ie, &p(&[])).unwrap(), Decision::Allow);
        assert_eq!(
            evaluate(&ie, &p(&[("aws:SourceVpce", "vpce-9")])).unwrap(),
            Decision::NotAllowed
        );
        let pos = stmt(
            "Allow",
            json!({"StringEquals": {"aws:SourceVpce": "vpce-1"}}),
        );
        assert_eq!(evaluate(&pos, &p(&[])).unwrap(), Decision::NotAllowed);
        // ArnNotLike on the principal: the admin exception.
        let admin = stmt(
            "Deny",
            json!({"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::1:role/admin*"}}),
        );
        assert_eq!(
            evaluate(
                &admin,
                &p(&[("aws:PrincipalArn", "arn:aws:iam::1:role/admin-x")])
            )
            .unwrap(),
            Decision::NotAllowed
        );
        assert_eq!(
            evaluate(
                &admin,
                &p(&[("aws:PrincipalArn", "arn:aws:iam::1:role/other")])
            )
            .unwrap(),
            Decision::Deny
        );
        // Bool: TLS.
        let tls = stmt("Deny", json!({"Bool": {"aws:SecureTransport": "false"}}));
        assert_eq!(
            evaluate(&tls, &p(&[("aws:SecureTransport", "false")])).unwrap(),
            Decision::Deny
        );
        assert_eq!(
            evaluate(&tls, &p(&[("aws:SecureTransport", "true")])).unwrap(),
            Decision::NotAllowed
        );
        // Explicit Deny wins over Allow.
        let both = json!({"Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"},
            {"Effect": "Deny", "Principal": "*", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/*"}
        ]});
        assert_eq!(evaluate(&both, &p(&[])).unwrap(), Decision::Deny);
        // Set operators are refused, not guessed.
        let set = stmt(
            "Deny",
            json!({"ForAnyValue:StringEquals": {"aws:TagKeys": "x"}}),
        );
        assert!(evaluate(&set, &p(&[])).is_err());
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("s3:Put*", "s3:PutObject"));
        assert!(wildcard("s3:?etObject", "s3:GetObject"));
        assert!(!wildcard("s3:Put*", "s3:GetObject"));
        assert!(wildcard("arn:aws:s3:::b/*", "arn:aws:s3:::b/a/b/c"));
        assert!(!wildcard("arn:aws:s3:::b/*", "arn:aws:s3:::bb/x"));
        assert!(wildcard("*", ""));
    }
}
