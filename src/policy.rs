//! The policy documents of the stack, and a comparison that ignores how AWS re-serialises
//! them (a one-element list may come back as a string, lists in another order).
use serde_json::{Value, json};

pub const WRITE_ACTIONS: [&str; 2] = ["s3:PutObject", "s3:PutObjectTagging"];
pub const INLINE_POLICY_NAME: &str = "privbucket-bucket-write";
pub const VPC_ACCESS_POLICY: &str = "service-role/AWSLambdaVPCAccessExecutionRole";
pub const BASIC_EXECUTION_POLICY: &str = "service-role/AWSLambdaBasicExecutionRole";

/// Trust policy of both roles: Lambda may assume them.
pub fn lambda_trust() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole"
        }]
    })
}

/// Inline policy of both roles: write objects to this bucket, nothing else.
pub fn bucket_write(partition: &str, bucket: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "WriteToPrivateBucket",
            "Effect": "Allow",
            "Action": WRITE_ACTIONS,
            "Resource": format!("arn:{partition}:s3:::{bucket}/*")
        }]
    })
}

/// The reference's bucket policy: writes are denied unless they come through the endpoint.
/// `aws:SourceVpce` is absent on requests that did not use an endpoint, and `StringNotEquals`
/// matches (denies) when the key is absent.
pub fn bucket_policy(partition: &str, bucket: &str, endpoint_id: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyWritesNotThroughTheVpcEndpoint",
            "Effect": "Deny",
            "Principal": "*",
            "Action": WRITE_ACTIONS,
            "Resource": format!("arn:{partition}:s3:::{bucket}/*"),
            "Condition": {"StringNotEquals": {"aws:SourceVpce": endpoint_id}}
        }]
    })
}

/// Two policy documents mean the same (up to AWS's re-serialisation).
pub fn same(a: &Value, b: &Value) -> bool {
    normalize(a) == normalize(b)
}

/// Parses a policy as IAM returns it: JSON, possibly URL-encoded (GetRole, GetRolePolicy).
pub fn parse(text: &str) -> Option<Value> {
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
                        if items.len() == 1 {
                            items.pop().expect("one")
                        } else {
                            Value::Array(items)
                        }
                    }
                    v => v,
                };
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        v => v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserialised_policies_compare_equal() {
        let a = bucket_policy("aws", "b", "vpce-1");
        let mut b = a.clone();
        b["Statement"][0]["Action"] = json!(["s3:PutObjectTagging", "s3:PutObject"]);
        b["Statement"][0]["Resource"] = json!(["arn:aws:s3:::b/*"]);
        assert!(same(&a, &b));
        assert!(!same(&a, &bucket_policy("aws", "b", "vpce-2")));
    }

    #[test]
    fn url_encoded_policies_parse() {
        let enc = "%7B%22Version%22%3A%222012-10-17%22%7D";
        assert_eq!(parse(enc).unwrap(), json!({"Version": "2012-10-17"}));
    }
}
