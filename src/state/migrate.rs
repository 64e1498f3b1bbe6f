//! Older state documents, brought to this version's schema as JSON before they are typed.
//! A migration is pure: the file itself changes only at the next write.
use serde_json::{Value, json};

use crate::graph::{ResourceKind, Step};

/// Version 1 kept what a resource records beside its ID as a string map, `extra`:
/// - a subnet's `availability_zone` and `availability_zone_id`;
/// - an association's `route_table` and `subnet`;
/// - the bucket policy's `endpoint`;
/// - an endpoint's `state` at its create (read live since; dropped);
/// - the bucket's `pending: create`, recorded before `CreateBucket` (now `ownership`).
pub(super) fn from_v1(mut doc: Value) -> Result<Value, String> {
    let resources = doc
        .get_mut("resources")
        .and_then(Value::as_object_mut)
        .ok_or("it has no resources map")?;
    for (key, r) in resources.iter_mut() {
        let step = Step::from_key(key).ok_or_else(|| format!("unknown resource {key:?}"))?;
        let r = r
            .as_object_mut()
            .ok_or_else(|| format!("resource {key} is not an object"))?;
        let Some(extra) = r.remove("extra") else {
            continue;
        };
        let Value::Object(mut extra) = extra else {
            return Err(format!("{key}'s extra is {extra}, not a map"));
        };
        let mut take = |name: &str| extra.remove(name);
        if take("pending").is_some_and(|v| v == "create") {
            r.insert("ownership".into(), json!("pending"));
        }
        let facts = match step.resource_kind() {
            ResourceKind::Subnet => take("availability_zone").map(|zone| {
                let mut f = json!({ "availability_zone": zone });
                if let Some(id) = take("availability_zone_id") {
                    f["availability_zone_id"] = id;
                }
                json!({ "subnet": f })
            }),
            ResourceKind::Association => match (take("route_table"), take("subnet")) {
                (Some(rt), Some(subnet)) => {
                    Some(json!({ "association": { "route_table": rt, "subnet": subnet } }))
                }
                (None, None) => None,
                (Some(_), None) | (None, Some(_)) => {
                    return Err(format!("{key} records only one of route_table and subnet"));
                }
            },
            ResourceKind::BucketPolicy => take("endpoint")
                .filter(|e| e != "")
                .map(|e| json!({ "bucket_policy": { "endpoint": e } })),
            ResourceKind::Endpoint => {
                take("state");
                None
            }
            ResourceKind::Vpc
            | ResourceKind::Key
            | ResourceKind::RouteTable
            | ResourceKind::SecurityGroup
            | ResourceKind::Role
            | ResourceKind::Bucket
            | ResourceKind::Function
            | ResourceKind::LambdaEnis => None,
        };
        if let Some(name) = extra.keys().next() {
            return Err(format!(
                "{key} records {name:?}, which version 1 never wrote"
            ));
        }
        if let Some(f) = facts {
            r.insert("facts".into(), f);
        }
    }
    doc["schema_version"] = json!(2);
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fact_version_1_wrote_becomes_typed() {
        let v1 = json!({
            "schema_version": 1,
            "resources": {
                "subnet-a": {"id": "subnet-1", "extra": {
                    "availability_zone": "us-east-1a", "availability_zone_id": "use1-az6"}},
                "subnet-b": {"id": "subnet-2", "extra": {"availability_zone": "us-east-1b"}},
                "association-a": {"id": "rtbassoc-1", "extra": {
                    "route_table": "rtb-1", "subnet": "subnet-1"}},
                "endpoint": {"id": "vpce-1", "extra": {"state": "pending"}},
                "bucket": {"id": "b", "extra": {"pending": "create"}},
                "bucket-policy": {"id": "b", "extra": {"endpoint": "vpce-1"}},
                "vpc": {"id": "vpc-1"}
            }
        });
        let v2 = from_v1(v1).unwrap();
        assert_eq!(v2["schema_version"], 2);
        let r = &v2["resources"];
        assert_eq!(
            r["subnet-a"]["facts"],
            json!({"subnet": {"availability_zone": "us-east-1a", "availability_zone_id": "use1-az6"}})
        );
        assert_eq!(
            r["subnet-b"]["facts"],
            json!({"subnet": {"availability_zone": "us-east-1b"}})
        );
        assert_eq!(
            r["association-a"]["facts"],
            json!({"association": {"route_table": "rtb-1", "subnet": "subnet-1"}})
        );
        assert_eq!(r["endpoint"], json!({"id": "vpce-1"}));
        assert_eq!(r["bucket"], json!({"id": "b", "ownership": "pending"}));
        assert_eq!(
            r["bucket-policy"]["facts"],
            json!({"bucket_policy": {"endpoint": "vpce-1"}})
        );
        assert_eq!(r["vpc"], json!({"id": "vpc-1"}));
    }

    #[test]
    fn what_version_1_never_wrote_is_refused() {
        for (key, extra) in [
            ("vpc", json!({"color": "red"})),
            ("association-b", json!({"subnet": "subnet-1"})),
            ("bucket", json!("create")),
        ] {
            let doc = json!({"schema_version": 1, "resources": {key: {"id": "x", "extra": extra}}});
            assert!(from_v1(doc).is_err(), "{key}");
        }
    }
}
