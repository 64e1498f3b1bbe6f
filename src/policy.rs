//! The policy documents of the stack, and a comparison that ignores how AWS re-serialises
//! them (a one-element list may come back as a string, lists in another order).
use serde_json::{Value, json};

use crate::config::{PolicyScope, PrincipalArn};
use crate::state::Settings;

pub(crate) const WRITE_ACTIONS: [&str; 2] = ["s3:PutObject", "s3:PutObjectTagging"];
pub(crate) const INLINE_POLICY_NAME: &str = "privbucket-bucket-write";
pub(crate) const VPC_ACCESS_POLICY: &str = "service-role/AWSLambdaVPCAccessExecutionRole";
pub(crate) const BASIC_EXECUTION_POLICY: &str = "service-role/AWSLambdaBasicExecutionRole";

/// Trust policy of both roles: Lambda may assume them.
pub(crate) fn lambda_trust() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole"
        }]
    })
}

/// Inline policy of both roles: write objects to this bucket, nothing else; and, for the
/// uploader of a bucket encrypted with a KMS key, the data keys S3 asks for on its behalf
/// (`kms:GenerateDataKey`, "Using SSE-KMS", S3 user guide). The bucket statement stays first:
/// a stack without its state file tells its bucket from it. The key's use carries the key
/// policy's conditions (only through S3 in `region`, for this bucket): the key policy's root
/// statement lets IAM policies grant the key, so the role's own grant is kept as narrow.
pub(crate) fn bucket_write(partition: &str, bucket: &str, key: Option<(&str, &str)>) -> Value {
    let mut statements = vec![json!({
        "Sid": "WriteToPrivateBucket",
        "Effect": "Allow",
        "Action": WRITE_ACTIONS,
        "Resource": format!("arn:{partition}:s3:::{bucket}/*")
    })];
    if let Some((key, region)) = key {
        statements.push(json!({
            "Sid": "EncryptWithTheBucketKey",
            "Effect": "Allow",
            "Action": KEY_USE,
            "Resource": key,
            "Condition": {"StringEquals": via_s3(partition, region, bucket)}
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// What S3 asks KMS for when the uploader writes an object to a bucket encrypted with the
/// key (a single-part PutObject; "Using SSE-KMS", S3 user guide).
pub(crate) const KEY_USE: &str = "kms:GenerateDataKey";

/// What the key's administrators may do: manage it, never use it for data (KMS developer
/// guide, "Default key policy": "Allows key administrators to administer the KMS key").
const KEY_ADMIN_ACTIONS: [&str; 15] = [
    "kms:Create*",
    "kms:Describe*",
    "kms:Enable*",
    "kms:List*",
    "kms:Put*",
    "kms:Update*",
    "kms:Revoke*",
    "kms:Disable*",
    "kms:Get*",
    "kms:Delete*",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
    "kms:RotateKeyOnDemand",
];

/// Sids of the key policy's statements.
pub(crate) const SID_KEY_ROOT: &str = "EnableIamPoliciesOfTheAccount";
pub(crate) const SID_KEY_ADMINS: &str = "KeyAdministrators";
pub(crate) const SID_KEY_UPLOADER: &str = "UploaderEncryptsThroughS3ForTheBucketOnly";

/// The policy of a key privbucket makes.
///
/// - The account root statement: without it no IAM policy can grant access to the key, and a
///   key whose admins are gone is unmanageable ("Default key policy", KMS developer guide).
/// - The operator and `--admin-principal`s administer it.
/// - The uploader's role may have data keys made only by S3 (`kms:ViaService`) in this
///   region, for this bucket (`kms:EncryptionContext:aws:s3:arn`: with S3 Bucket Keys the
///   context is the bucket's ARN, "Reducing the cost of SSE-KMS with Amazon S3 Bucket Keys").
///   The role is named by `aws:PrincipalArn` rather than as the principal: a principal in a
///   key policy must exist when the policy is put, and a role made again later would no longer
///   match its predecessor's unique ID; the condition names the role by its ARN whatever its
///   age ("Key policies", KMS developer guide).
pub(crate) fn key_policy(
    partition: &str,
    account: &str,
    region: &str,
    bucket: &str,
    uploader_role: &str,
    admins: &[&str],
) -> Value {
    let mut statements = vec![json!({
        "Sid": SID_KEY_ROOT,
        "Effect": "Allow",
        "Principal": {"AWS": format!("arn:{partition}:iam::{account}:root")},
        "Action": "kms:*",
        "Resource": "*"
    })];
    if !admins.is_empty() {
        statements.push(json!({
            "Sid": SID_KEY_ADMINS,
            "Effect": "Allow",
            "Principal": {"AWS": admins},
            "Action": KEY_ADMIN_ACTIONS,
            "Resource": "*"
        }));
    }
    let mut via = via_s3(partition, region, bucket);
    via["kms:CallerAccount"] = json!(account);
    statements.push(json!({
        "Sid": SID_KEY_UPLOADER,
        "Effect": "Allow",
        "Principal": {"AWS": "*"},
        "Action": KEY_USE,
        "Resource": "*",
        "Condition": {
            "StringEquals": via,
            "ArnEquals": {"aws:PrincipalArn": uploader_role}
        }
    }));
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// Through S3 in `region`, for `bucket` (with S3 Bucket Keys the encryption context is the
/// bucket's ARN).
fn via_s3(partition: &str, region: &str, bucket: &str) -> Value {
    json!({
        "kms:ViaService": format!("s3.{region}.amazonaws.com"),
        "kms:EncryptionContext:aws:s3:arn": format!("arn:{partition}:s3:::{bucket}")
    })
}

/// Sids of the bucket policy's statements: `observe` names the one that differs.
pub(crate) const SID_WRITES: &str = "DenyWritesNotThroughTheVpcEndpoint";
pub(crate) const SID_ALL: &str = "DenyAllNotThroughTheVpcEndpointExceptAdmins";
pub(crate) const SID_TLS: &str = "DenyInsecureTransport";
pub(crate) const SID_OTHER_KEY: &str = "DenyWritesAskingForAnotherKmsKey";
pub(crate) const SID_OTHER_ENCRYPTION: &str = "DenyWritesAskingForAnotherEncryption";
pub(crate) const SID_AWS_MANAGED_KEY: &str = "DenyWritesAskingForTheAwsManagedKey";

/// The condition keys of a write's encryption headers (S3 service authorization reference).
pub(crate) const SSE_HEADER: &str = "s3:x-amz-server-side-encryption";
pub(crate) const KMS_KEY_HEADER: &str = "s3:x-amz-server-side-encryption-aws-kms-key-id";

/// The bucket policy of a stack.
///
/// - Always the original template's statement: writes are denied unless they come through the
///   endpoint. `aws:SourceVpce` is absent on requests that did not use an endpoint, and
///   `StringNotEquals` matches (denies) when the key is absent. No one is exempt: not even an
///   admin writes objects from outside the VPC.
/// - Scope `all`: every other S3 action is denied the same way, except to the admins
///   (`ArnNotEquals` with a list matches only when the caller is none of them), so the
///   operator can still read, repair and remove the stack from outside the VPC.
/// - `tls_deny`: any request without TLS is denied, to everyone.
/// - With a KMS key: an object write that asks for another key, for the AWS managed key, or
///   for another encryption than SSE-KMS (SSE-S3's `AES256`, DSSE-KMS) is denied, in both
///   scopes. A write that asks for nothing gets the bucket's default, the key (the key
///   condition takes the key's ARN, "Specifying server-side encryption with AWS KMS", S3 user
///   guide).
///
/// `endpoints`: the stack's endpoint, and in a borrowed network each other endpoint that serves
/// the uploader's subnets (a negated operator with several values denies only a request from
/// none of them). One endpoint is written as a string, as the original template does.
pub(crate) fn bucket_policy(
    partition: &str,
    bucket: &str,
    endpoints: &[String],
    key: Option<&str>,
    settings: &Settings,
) -> Value {
    let endpoint_id = match endpoints {
        [one] => json!(one),
        many => json!(many),
    };
    let bucket_arn = format!("arn:{partition}:s3:::{bucket}");
    let objects = format!("{bucket_arn}/*");
    let deny_everything = |sid: &str, condition: Value| {
        json!({
            "Sid": sid,
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn, objects],
            "Condition": condition
        })
    };
    let mut statements = vec![json!({
        "Sid": SID_WRITES,
        "Effect": "Deny",
        "Principal": "*",
        "Action": WRITE_ACTIONS,
        "Resource": objects,
        "Condition": {"StringNotEquals": {"aws:SourceVpce": endpoint_id}}
    })];
    if settings.policy_scope == PolicyScope::All {
        let admins: Vec<&str> = settings
            .admin_principals
            .iter()
            .map(PrincipalArn::as_str)
            .collect();
        statements.push(deny_everything(
            SID_ALL,
            json!({
                "StringNotEquals": {"aws:SourceVpce": endpoint_id},
                "ArnNotEquals": {"aws:PrincipalArn": admins}
            }),
        ));
    }
    if let Some(key) = key {
        let deny_writes = |sid: &str, condition: Value| {
            json!({
                "Sid": sid,
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": objects,
                "Condition": condition
            })
        };
        // `Null: false`: only a request that carries the header; one that asks for nothing
        // gets the bucket's default, the key (an `…IfExists` operator would deny it too: it
        // is true when the key is absent, IAM user guide, "Condition operators").
        statements.push(deny_writes(
            SID_OTHER_KEY,
            json!({
                "StringNotEquals": {KMS_KEY_HEADER: key},
                "Null": {KMS_KEY_HEADER: "false"}
            }),
        ));
        statements.push(deny_writes(
            SID_OTHER_ENCRYPTION,
            json!({
                "StringNotEquals": {SSE_HEADER: "aws:kms"},
                "Null": {SSE_HEADER: "false"}
            }),
        ));
        // `aws:kms` without a key ID asks for the AWS managed key (aws/s3), which any
        // principal of the account allowed to read the object can use.
        statements.push(deny_writes(
            SID_AWS_MANAGED_KEY,
            json!({
                "StringEquals": {SSE_HEADER: "aws:kms"},
                "Null": {KMS_KEY_HEADER: "true"}
            }),
        ));
    }
    if settings.tls_deny {
        statements.push(deny_everything(
            SID_TLS,
            json!({"Bool": {"aws:SecureTransport": "false"}}),
        ));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The endpoint policy: through this endpoint, only this bucket and its objects. Without it
/// the VPC could copy data to any bucket in the world through the endpoint.
pub(crate) fn endpoint_policy(partition: &str, bucket: &str) -> Value {
    let bucket_arn = format!("arn:{partition}:s3:::{bucket}");
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "OnlyThePrivateBucket",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn.clone(), format!("{bucket_arn}/*")]
        }]
    })
}

/// A policy value that may be one string or a list of them (IAM accepts both), as strings.
pub(crate) fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        Value::Bool(b) => vec![b.to_string()],
        Value::Null | Value::Number(_) | Value::Object(_) => Vec::new(),
    }
}

/// A policy's statements: IAM accepts one statement or a list.
pub(crate) fn statements(doc: &Value) -> Vec<Value> {
    match &doc["Statement"] {
        Value::Array(a) => a.clone(),
        Value::Null => Vec::new(),
        one @ (Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Object(_)) => {
            vec![one.clone()]
        }
    }
}

/// The policy AWS gives a VPC endpoint that was created without one.
pub(crate) fn full_access() -> Value {
    json!({
        "Version": "2008-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}]
    })
}

/// Some statement allows every action on every resource to everyone, unconditionally.
pub(crate) fn allows_everything(doc: &Value) -> bool {
    let star = |v: &Value| v == "*" || v.as_array().is_some_and(|a| a.iter().any(|x| x == "*"));
    statements(doc).iter().any(|s| {
        s["Effect"] == "Allow"
            && s.get("Condition").is_none()
            && (star(&s["Principal"]) || star(&s["Principal"]["AWS"]))
            && (star(&s["Action"]) || s["Action"] == "s3:*")
            && star(&s["Resource"])
    })
}

/// How `live` differs from `want`, statement by statement (by Sid): what `plan` and
/// `status` say would change.
pub(crate) fn statement_differences(live: &Value, want: &Value) -> Vec<String> {
    let sid = |s: &Value| s["Sid"].as_str().unwrap_or("(no Sid)").to_string();
    let (live, want) = (statements(live), statements(want));
    let mut out = Vec::new();
    for w in &want {
        match live.iter().find(|l| sid(l) == sid(w)) {
            None => out.push(format!("statement {} is missing", sid(w))),
            Some(l) if !same(l, w) => {
                out.push(format!("statement {} is {}, should be {}", sid(w), l, w))
            }
            Some(_) => {}
        }
    }
    for l in &live {
        if !want.iter().any(|w| sid(w) == sid(l)) {
            out.push(format!("statement {} should not be there: {l}", sid(l)));
        }
    }
    out
}

/// Two policy documents mean the same (up to AWS's re-serialisation).
pub(crate) fn same(a: &Value, b: &Value) -> bool {
    normalize(a) == normalize(b)
}

/// Parses a policy as IAM returns it: JSON, possibly URL-encoded (GetRole, GetRolePolicy).
pub(crate) fn parse(text: &str) -> Option<Value> {
    serde_json::from_str(text).ok().or_else(|| {
        let decoded = percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .ok()?;
        serde_json::from_str(&decoded).ok()
    })
}

fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                let v = normalize(v);
                // A list of one is the same as the thing itself; lists are sets.
                let v = match v {
                    Value::Array(mut items) => {
                        items.sort_by_key(|a| a.to_string());
                        match (items.len(), items.pop()) {
                            (1, Some(one)) => one,
                            (_, last) => {
                                items.extend(last);
                                Value::Array(items)
                            }
                        }
                    }
                    v @ (Value::Null
                    | Value::Bool(_)
                    | Value::Number(_)
                    | Value::String(_)
                    | Value::Object(_)) => v,
                };
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        v @ (Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_)) => v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::new(
            "unused-here".parse().unwrap(),
            "10.16.0.0/16".parse().unwrap(),
            [
                "10.16.0.0/24".parse().unwrap(),
                "10.16.1.0/24".parse().unwrap(),
            ],
        )
    }

    #[test]
    fn reserialised_policies_compare_equal() {
        let s = settings();
        let a = bucket_policy("aws", "b", &["vpce-1".to_string()], None, &s);
        let mut b = a.clone();
        b["Statement"][0]["Action"] = json!(["s3:PutObjectTagging", "s3:PutObject"]);
        b["Statement"][0]["Resource"] = json!(["arn:aws:s3:::b/*"]);
        assert!(same(&a, &b));
        assert!(!same(
            &a,
            &bucket_policy("aws", "b", &["vpce-2".to_string()], None, &s)
        ));
    }

    #[test]
    fn the_difference_names_the_statement() {
        let mut s = settings();
        let writes = bucket_policy("aws", "b", &["vpce-1".to_string()], None, &s);
        s.policy_scope = PolicyScope::All;
        s.admin_principals = vec!["arn:aws:iam::123456789012:role/Admin".parse().unwrap()];
        let all = bucket_policy("aws", "b", &["vpce-1".to_string()], None, &s);
        assert_eq!(
            statement_differences(&writes, &all),
            vec![format!("statement {SID_ALL} is missing")]
        );
        let back = statement_differences(&all, &writes);
        assert_eq!(back.len(), 1);
        assert!(back[0].starts_with(&format!("statement {SID_ALL} should not be there")));
        s.tls_deny = false;
        let d = statement_differences(
            &all,
            &bucket_policy("aws", "b", &["vpce-2".to_string()], None, &s),
        );
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(
            d[0].contains(SID_WRITES) && d[0].contains("vpce-2"),
            "{d:?}"
        );
    }

    #[test]
    fn url_encoded_policies_parse() {
        let enc = "%7B%22Version%22%3A%222012-10-17%22%7D";
        assert_eq!(parse(enc).unwrap(), json!({"Version": "2012-10-17"}));
    }
}
