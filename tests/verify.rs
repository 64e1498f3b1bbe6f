//! `verify`: the privacy checks pass right after `up`, and each fails, by name, after the
//! drift it is there to catch.
use crate::common::{ACCOUNT, World, bucket, find_in};
use serde_json::Value;

fn verdicts(doc: &Value) -> Vec<(String, String)> {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn verdict(doc: &Value, name: &str) -> String {
    find_in(doc, "checks", "name", name)["verdict"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn verify(w: &World, code: i32) -> Value {
    let r = w.run(&["verify", "--output", "json"]).await;
    r.expect(code);
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_after_up_and_names_each_drift() {
    let w = World::new().await;
    w.up().await;
    let bucket = bucket();

    // Right after `up`: every check passes; `live` is inconclusive on an emulator that does not
    // run handlers (Invoke echoes the event), and says so rather than passing.
    let r = w.run(&["verify", "--invoke", "--output", "json"]).await;
    r.expect(0);
    let doc = r.json();
    assert_eq!(
        verdicts(&doc),
        [
            ("route", "pass"),
            ("endpoint", "pass"),
            ("bucket-policy", "pass"),
            ("public-access", "pass"),
            ("function", "pass"),
            // Every record the state names as made is proven the stack's (#30).
            ("ownership", "pass"),
            ("live", "inconclusive"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    w.proxy.clear();
    let text = w.run(&["verify"]).await;
    text.expect(0);
    assert!(
        text.stdout.contains("The bucket is private"),
        "{}",
        text.stdout
    );
    assert!(
        w.proxy.writes().is_empty(),
        "verify wrote: {:#?}",
        w.proxy.writes()
    );

    // The endpoint taken off one route table.
    let rt_a = w.id("route-table-a");
    let endpoint = w.id("endpoint");
    w.aws
        .ec2
        .modify_vpc_endpoint()
        .vpc_endpoint_id(&endpoint)
        .remove_route_table_ids(&rt_a)
        .send()
        .await
        .unwrap();
    // (AWS also drops the table's prefix-list route; the emulator leaves it, so only the
    // endpoint check can see this here.)
    let doc = verify(&w, 1).await;
    assert_eq!(verdict(&doc, "endpoint"), "fail", "{doc:#}");
    assert_eq!(verdict(&doc, "bucket-policy"), "pass");
    w.up().await;
    verify(&w, 0).await;

    // The bucket policy replaced by an allow-all.
    let allow_all = serde_json::json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
        "Action": "s3:*", "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")]
    }]});
    w.aws
        .s3
        .put_bucket_policy()
        .bucket(&bucket)
        .policy(allow_all.to_string())
        .send()
        .await
        .unwrap();
    let doc = verify(&w, 1).await;
    assert_eq!(verdict(&doc, "bucket-policy"), "fail", "{doc:#}");
    assert_eq!(verdict(&doc, "route"), "pass");
    w.up().await;
    verify(&w, 0).await;

    // One Block Public Access flag off.
    w.turn_off_public_access_flag(&bucket, "IgnorePublicAcls")
        .await;
    let doc = verify(&w, 1).await;
    assert_eq!(verdict(&doc, "public-access"), "fail", "{doc:#}");
    w.up().await;
    verify(&w, 0).await;

    // The uploader moved to a subnet that is not the stack's.
    let vpc = w.id("vpc");
    let sg = w.id("security-group");
    let other = w
        .aws
        .ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.16.9.0/24")
        .send()
        .await
        .unwrap();
    let other = other.subnet().unwrap().subnet_id().unwrap().to_string();
    w.aws
        .lambda
        .update_function_configuration()
        .function_name("privbucket-uploader")
        .vpc_config(
            aws_sdk_lambda::types::VpcConfig::builder()
                .subnet_ids(&other)
                .security_group_ids(&sg)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let doc = verify(&w, 1).await;
    assert_eq!(verdict(&doc, "function"), "fail", "{doc:#}");
    assert_eq!(verdict(&doc, "route"), "fail", "{doc:#}");
    w.up().await;
    verify(&w, 0).await;

    w.aws
        .ec2
        .delete_subnet()
        .subnet_id(&other)
        .send()
        .await
        .unwrap();
    w.run(&["down", "--yes"]).await.expect(0);
    w.assert_nothing_left().await;
}
