//! The S3 Gateway endpoint in a borrowed network (`up --vpc --subnets`), where the route
//! tables are the user's and other workloads' S3 traffic shares them.
//!
//! - A table already served by an S3 Gateway endpoint keeps it: the endpoint is borrowed, and
//!   its policy never changed (narrowing it would cut other workloads off S3).
//! - A table served by none is added to a borrowed endpoint (`ModifyVpcEndpoint
//!   --add-route-table-ids`), recorded as privbucket's addition before the call, and taken off
//!   again by `down`; when the VPC has no S3 endpoint, privbucket makes one on the tables. Its
//!   policy is AWS's full access: the tables carry other workloads' S3 traffic, and the bucket
//!   policy is what keeps the bucket private.
//! - A route table holds one route per destination, so a table served by one endpoint cannot
//!   take a second: several endpoints may serve the subnets, and the bucket policy names each.
//! - Another privbucket stack in the VPC borrows an endpoint privbucket made; the last stack
//!   that uses it deletes it.
//! - What privbucket added is shared the same way. Each stack's security group carries a tag
//!   per table privbucket added for it (`privbucket:added-route-table:rtb-…` = the endpoint),
//!   so a stack that finds a table served knows whether privbucket put it there, and takes a
//!   share of it (records it as added); `down` takes a table off only when no other stack's
//!   group claims it. Going down, the endpoint waits for the stack's own group
//!   (`graph::IN_A_BORROWED_NETWORK`), so of stacks going down at once the last one out sees
//!   no other group, and removes what they shared.
use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use aws_sdk_ec2::types::{SecurityGroup, VpcEndpoint, VpcEndpointType};

use super::{self as endpoint, Drift};
use crate::error::Call;
use crate::evaluate::{Decision, Request, evaluate};
use crate::graph::{Function, Step};
use crate::resources::contract::LEFT_AS_IT_WAS;
use crate::resources::ec2::{filter, tag};
use crate::resources::read::{self, Ec2Read};
use crate::resources::{Ctx, Difference, Live, Made, need, network, route_table};
use crate::run::Action;
use crate::stack::{RESOURCE_TAG, STACK_TAG};
use crate::state::{Facts, Ownership, Resource, Resources};

/// The VPC's S3 Gateway endpoints, those being deleted left out.
async fn s3_endpoints(ctx: &Ctx, vpc: &str) -> Result<Vec<VpcEndpoint>> {
    let service = ctx.stack.s3_service();
    Ok(
        read::endpoints(&ctx.aws.ec2, vec![filter("vpc-id", vpc)], vpc)
            .await?
            .into_iter()
            .filter(|e| {
                e.vpc_endpoint_type() == Some(&VpcEndpointType::Gateway)
                    && e.service_name() == Some(service.as_str())
            })
            .collect(),
    )
}

fn serves(e: &VpcEndpoint, table: &str) -> bool {
    e.route_table_ids().iter().any(|t| t == table)
}

fn id_of(e: &VpcEndpoint) -> String {
    e.vpc_endpoint_id().unwrap_or_default().to_string()
}

/// The prefix of the tag, on a stack's security group, that says privbucket added the route
/// table the key ends with to a borrowed endpoint (the tag's value), and that the stack needs
/// it there.
pub(crate) const ADDED_TABLE_TAG: &str = "privbucket:added-route-table:";

/// The tags the stack's group should carry for the tables privbucket added, or shares, on a
/// borrowed endpoint: one per table, naming the endpoint.
pub(crate) fn group_tags(res: &Resources) -> BTreeMap<String, String> {
    match res.get(&Step::Endpoint) {
        Some(e) if e.ownership == Ownership::Borrowed => e
            .endpoint_facts()
            .0
            .iter()
            .map(|t| (format!("{ADDED_TABLE_TAG}{t}"), e.id.clone()))
            .collect(),
        Some(_) | None => BTreeMap::new(),
    }
}

/// The tables of `endpoint` that other stacks' groups claim as privbucket's additions, each
/// with the stacks that claim it.
fn claimed(groups: &[SecurityGroup], endpoint: &str) -> BTreeMap<String, Vec<String>> {
    let mut claims: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for g in groups {
        let stack = tag(g.tags(), STACK_TAG).unwrap_or_default();
        for t in g.tags() {
            if let (Some(table), Some(e)) = (
                t.key().and_then(|k| k.strip_prefix(ADDED_TABLE_TAG)),
                t.value(),
            ) && e == endpoint
            {
                claims
                    .entry(table.to_string())
                    .or_default()
                    .push(stack.to_string());
            }
        }
    }
    claims
}

/// The stack's endpoint among the VPC's: the one serving most of the stack's tables (the
/// lowest ID on a tie), else the VPC's first; the tables it must be added to; and the other
/// endpoints serving the stack's tables.
fn pick(all: &[VpcEndpoint], tables: &BTreeSet<String>) -> (String, Vec<String>, Vec<String>) {
    let mut sorted: Vec<&VpcEndpoint> = all.iter().collect();
    sorted.sort_by_key(|e| id_of(e));
    let served = |e: &VpcEndpoint| tables.iter().filter(|t| serves(e, t)).count();
    let primary = sorted
        .iter()
        .max_by(|a, b| served(a).cmp(&served(b)).then(id_of(b).cmp(&id_of(a))))
        .map(|e| id_of(e))
        .unwrap_or_default();
    let unserved = tables
        .iter()
        .filter(|t| !all.iter().any(|e| serves(e, t)))
        .cloned()
        .collect();
    let others = others(all, tables, &primary);
    (primary, unserved, others)
}

/// The endpoints besides `primary` that serve one of the stack's tables.
fn others(all: &[VpcEndpoint], tables: &BTreeSet<String>, primary: &str) -> Vec<String> {
    let mut ids: Vec<String> = all
        .iter()
        .filter(|e| id_of(e) != primary && tables.iter().any(|t| serves(e, t)))
        .map(id_of)
        .collect();
    ids.sort();
    ids
}

/// Borrows the VPC's S3 endpoints (recording the tables to add, which `fix` then adds), or,
/// when the VPC has none, makes one.
pub(crate) async fn create(ctx: &Ctx, res: &Resources) -> Result<Made<Drift>> {
    let vpc = need(res, Step::Vpc)?;
    let tables = network::route_tables(res);
    let (all, groups) = tokio::try_join!(s3_endpoints(ctx, vpc), network::other_groups(ctx, vpc))?;
    if all.is_empty() {
        let made = endpoint::create(ctx, res).await?;
        let resource = made.resource.with_facts(Facts::Endpoint {
            added_route_tables: Vec::new(),
            other_endpoints: Vec::new(),
        });
        return Ok(Made::lacking(resource, made.lacks));
    }
    let (primary, unserved, others) = pick(&all, &tables);
    let mut lacks: Vec<Drift> = unserved
        .iter()
        .cloned()
        .map(Drift::NotOnRouteTable)
        .collect();
    // A table another stack's group claims was added by privbucket: this stack takes a share,
    // so whichever of them goes last takes it off.
    let claims = claimed(&groups, &primary);
    let shared = all
        .iter()
        .filter(|e| id_of(e) == primary)
        .flat_map(|e| tables.iter().filter(|t| serves(e, t)))
        .filter(|t| claims.contains_key(*t));
    let added: Vec<String> = unserved
        .iter()
        .chain(shared)
        .cloned()
        .collect::<BTreeSet<String>>()
        .into_iter()
        .collect();
    if !added.is_empty() {
        ctx.progress.debug(&format!(
            "VPC endpoint {primary}: route table(s) {} are privbucket's to add or share",
            added.join(", ")
        ));
    }
    // An endpoint that would shut the uploader out is said now, before the functions are made.
    for e in all
        .iter()
        .filter(|e| id_of(e) == primary || others.contains(&id_of(e)))
    {
        lacks.extend(shuts_out(ctx, e));
    }
    let resource = Resource::new(primary)
        .owned_as(Ownership::Borrowed)
        .with_facts(Facts::Endpoint {
            added_route_tables: added,
            other_endpoints: others,
        });
    Ok(Made::lacking(resource, lacks))
}

/// The statement a borrowed endpoint's policy needs for the uploader to reach the bucket.
fn statement_to_add(ctx: &Ctx) -> serde_json::Value {
    serde_json::json!({
        "Sid": "PrivbucketUploader",
        "Effect": "Allow",
        "Principal": "*",
        "Action": crate::policy::WRITE_ACTIONS,
        "Resource": format!("arn:{}:s3:::{}/*", ctx.stack.partition(), ctx.stack.bucket())
    })
}

/// Whether a borrowed endpoint's policy lets the uploader put objects in the bucket: `None`
/// when it does, or when the policy uses what the evaluator does not know (`verify` says so).
fn shuts_out(ctx: &Ctx, e: &VpcEndpoint) -> Option<Drift> {
    let doc = e.policy_document().and_then(crate::policy::parse)?;
    let req = Request {
        principal: Some(ctx.stack.role_arn(Function::Uploader)),
        action: "s3:PutObject".to_string(),
        resource: format!(
            "arn:{}:s3:::{}/privbucket-verify",
            ctx.stack.partition(),
            ctx.stack.bucket()
        ),
        context: Default::default(),
    };
    match evaluate(&doc, &req) {
        Ok(Decision::Allow) | Err(_) => None,
        Ok(Decision::Deny | Decision::NotAllowed) => Some(Drift::ShutsOut {
            endpoint: id_of(e),
            statement: statement_to_add(ctx).to_string(),
        }),
    }
}

pub(crate) async fn observe(
    ctx: &Ctx,
    res: &Resources,
    known: &Resource,
    read: Option<&Ec2Read>,
) -> Result<Live<Drift>> {
    let _ = read;
    let vpc = need(res, Step::Vpc)?;
    let borrowed = known.ownership == Ownership::Borrowed;
    let (all, groups) = tokio::try_join!(s3_endpoints(ctx, vpc), async {
        match borrowed {
            true => network::other_groups(ctx, vpc).await,
            false => Ok(Vec::new()),
        }
    })?;
    let Some(e) = all.iter().find(|e| id_of(e) == known.id) else {
        return Ok(Live::Missing);
    };
    let tables = network::route_tables(res);
    let (recorded, _) = known.endpoint_facts();
    // A served table of the stack's that another stack's group claims is a share this stack
    // takes, as `create` takes one: so a stack made before shares were recorded takes its
    // share at its next `up`, and the other stack's `down` leaves the table on.
    let claims = claimed(&groups, &known.id);
    let mut added = recorded.to_vec();
    for t in tables
        .iter()
        .filter(|t| serves(e, t) && claims.contains_key(*t) && !recorded.contains(*t))
    {
        added.push(t.clone());
    }
    let mut diffs = Vec::new();
    if read::endpoint_state(e) != "available" {
        diffs.push(Drift::EndpointState(read::endpoint_state(e)));
    }
    let others = others(&all, &tables, &known.id);
    match known.ownership {
        Ownership::Made | Ownership::Pending => diffs.extend(endpoint::policy_differences(ctx, e)),
        Ownership::Borrowed => diffs.extend(shuts_out(ctx, e)),
    }
    for other in all.iter().filter(|o| others.contains(&id_of(o))) {
        diffs.extend(shuts_out(ctx, other));
    }
    // What privbucket put on the endpoint (or every table of one it made) must still be there
    // with its route; the tables other endpoints serve are theirs.
    let ours: Vec<String> = match known.ownership {
        Ownership::Borrowed => added.clone(),
        Ownership::Made | Ownership::Pending => tables
            .iter()
            .filter(|t| !all.iter().any(|o| id_of(o) != known.id && serves(o, t)))
            .cloned()
            .collect(),
    };
    for t in tables.iter().filter(|t| !all.iter().any(|e| serves(e, t))) {
        diffs.push(Drift::NotOnRouteTable(t.clone()));
    }
    let on: Vec<String> = ours.iter().filter(|t| serves(e, t)).cloned().collect();
    for table in read::route_tables_of(&ctx.aws.ec2, &on).await? {
        let id = table.route_table_id().unwrap_or_default();
        if !route_table::routes_s3_to(&table, &known.id) {
            diffs.push(Drift::NoPrefixListRoute(id.to_string()));
        }
    }
    let seen = known.clone().with_facts(Facts::Endpoint {
        added_route_tables: added,
        other_endpoints: others,
    });
    Ok(Live::Present(seen, diffs))
}

/// What privbucket may put right on a borrowed endpoint: only the tables it added.
pub(crate) fn fixes_on_borrowed(known: &Resource, diff: &Difference) -> bool {
    let (added, _) = known.endpoint_facts();
    if let Difference::Endpoint(Drift::NotOnRouteTable(t) | Drift::NoPrefixListRoute(t)) = diff {
        added.contains(t)
    } else {
        false
    }
}

/// `down` for an endpoint privbucket made in a borrowed network: kept while another
/// privbucket stack in the VPC uses it (that stack deletes it when it goes).
pub(crate) async fn delete(ctx: &Ctx, known: &Resource, vpc: Option<&str>) -> Result<Action> {
    if let Some(vpc) = vpc {
        let others = network::stacks_of(&network::other_groups(ctx, vpc).await?);
        if !others.is_empty() {
            return Ok(Action::Shared(format!(
                "privbucket made it, and stack(s) {} in VPC {vpc} use it: the last of them \
                 deletes it",
                others.join(", ")
            )));
        }
    }
    endpoint::delete(ctx, &known.id).await
}

/// `down` for a borrowed endpoint: the tables privbucket added are taken off, but for those
/// another stack's group still claims; one that privbucket made, and that no privbucket stack
/// uses any more, is deleted. Runs once the stack's own group is gone.
pub(crate) async fn give_back(ctx: &Ctx, known: &Resource, vpc: Option<&str>) -> Result<Action> {
    let (found, groups) = tokio::try_join!(read::endpoint(&ctx.aws.ec2, &known.id), async {
        match vpc {
            Some(vpc) => network::other_groups(ctx, vpc).await,
            None => Ok(Vec::new()),
        }
    })?;
    let Some(e) = found else {
        return Ok(Action::AlreadyGone);
    };
    let made_by_privbucket = tag(e.tags(), RESOURCE_TAG) == Some(Step::Endpoint.key())
        && tag(e.tags(), STACK_TAG).is_some();
    if made_by_privbucket && let Some(vpc) = vpc {
        let others = network::stacks_of(&groups);
        if others.is_empty() {
            ctx.progress.note(&format!(
                "VPC endpoint {} was made by privbucket stack {}, and no privbucket stack in \
                 VPC {vpc} uses it any more: deleting it",
                known.id,
                tag(e.tags(), STACK_TAG).unwrap_or_default()
            ));
            return endpoint::delete(ctx, &known.id).await;
        }
    }
    let (added, _) = known.endpoint_facts();
    let claims = claimed(&groups, &known.id);
    let (still_needed, off): (Vec<String>, Vec<String>) = added
        .iter()
        .filter(|t| serves(&e, t))
        .cloned()
        .partition(|t| claims.contains_key(t));
    if !off.is_empty() {
        ctx.aws
            .ec2
            .modify_vpc_endpoint()
            .vpc_endpoint_id(&known.id)
            .set_remove_route_table_ids(Some(off.clone()))
            .send()
            .await
            .call("ModifyVpcEndpoint", &known.id)?;
    }
    if !still_needed.is_empty() {
        let by: BTreeSet<&String> = still_needed.iter().flat_map(|t| &claims[t]).collect();
        let by: Vec<&str> = by.into_iter().map(String::as_str).collect();
        let took_off = if off.is_empty() {
            String::new()
        } else {
            format!(
                "took off route table(s) {} that privbucket had added; ",
                off.join(", ")
            )
        };
        return Ok(Action::Shared(format!(
            "borrowed: {took_off}route table(s) {} that privbucket added stay on it for \
             stack(s) {}: the last of them takes them off",
            still_needed.join(", "),
            by.join(", ")
        )));
    }
    if off.is_empty() {
        return Ok(Action::Left(LEFT_AS_IT_WAS.to_string()));
    }
    Ok(Action::Left(format!(
        "borrowed: took off route table(s) {} that privbucket had added; left as it was",
        off.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(id: &str, tables: &[&str]) -> VpcEndpoint {
        tables
            .iter()
            .fold(VpcEndpoint::builder().vpc_endpoint_id(id), |b, t| {
                b.route_table_ids(*t)
            })
            .build()
    }

    #[test]
    fn the_endpoint_serving_most_tables_takes_the_unserved_ones() {
        let all = [
            endpoint("vpce-b", &["rtb-1", "rtb-2"]),
            endpoint("vpce-a", &["rtb-3"]),
            endpoint("vpce-c", &["rtb-9"]),
        ];
        let tables: BTreeSet<String> = ["rtb-1", "rtb-2", "rtb-3", "rtb-4"]
            .into_iter()
            .map(String::from)
            .collect();
        let (primary, added, others) = pick(&all, &tables);
        assert_eq!(primary, "vpce-b");
        assert_eq!(added, ["rtb-4"]);
        // Another team's endpoint on a table of none of the stack's subnets is not named.
        assert_eq!(others, ["vpce-a"]);
    }

    #[test]
    fn with_no_endpoint_on_any_table_the_lowest_id_takes_them_all() {
        let all = [endpoint("vpce-z", &[]), endpoint("vpce-y", &["rtb-9"])];
        let tables: BTreeSet<String> = ["rtb-1"].into_iter().map(String::from).collect();
        let (primary, added, others) = pick(&all, &tables);
        assert_eq!(
            (primary.as_str(), added, others),
            ("vpce-y", vec!["rtb-1".to_string()], vec![])
        );
    }
}
