//! Finding a stack's resources by what marks them as the stack's, not by the state file: EC2
//! by the stack's tag (one describe per kind, the `privbucket:resource` tag saying which step
//! each is), roles, functions and the bucket by their deterministic names (checked for the
//! stack's tag). All reads run at once: one round trip.
//!
//! `status --name` and `down --name` build a whole state from it; `down` and `status` with a
//! state file use it to find what the file misses (a crash between a create and the write, a
//! file from an older version), and `plan` to find what `up` would adopt.
use anyhow::{Result, bail};
use aws_sdk_ec2::types::{RouteTable, SecurityGroup, Subnet, Vpc, VpcEndpoint};
use aws_sdk_lambda::types::FunctionConfiguration;

use super::{Ctx, bucket, function, key, read, role, subnet};
use crate::config::{BucketName, KmsKey, PolicyScope};
use crate::graph::{Function, Side, Step};
use crate::policy;
use crate::stack::{RESOURCE_TAG, STACK_TAG};
use crate::state::{Facts, Ownership, Resource, Resources, Settings};

/// What one round of reads found of a stack, with the live objects the settings are read
/// back from.
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub(crate) resources: Resources,
    vpc: Option<Vpc>,
    subnets: [Option<Subnet>; 2],
    endpoint: Option<VpcEndpoint>,
    group: Option<SecurityGroup>,
    /// The VPC of a stack that borrows its network (its group's; nothing of it is tagged).
    borrowed_vpc: Option<String>,
    bucket_policy: Option<String>,
    /// The bucket the functions write to (their `PRIVATE_BUCKET`), or the uploader role's
    /// inline policy names.
    bucket_in_use: Option<BucketName>,
    /// The functions as read (by [`Function::index`]).
    configurations: [Option<FunctionConfiguration>; 2],
}

/// The value of the `privbucket:resource` tag, which says which step a resource is.
fn step_tag(tags: &[aws_sdk_ec2::types::Tag]) -> Option<&str> {
    super::ec2::tag(tags, RESOURCE_TAG)
}

/// The one object tagged as `step`; more than one is the user's to sort out.
fn only<'a, T>(
    ctx: &Ctx,
    step: Step,
    items: &'a [T],
    tag: impl Fn(&T) -> Option<&str>,
    id: impl Fn(&T) -> Option<&str>,
) -> Result<Option<&'a T>> {
    let mine: Vec<&T> = items
        .iter()
        .filter(|i| tag(i) == Some(step.key()))
        .collect();
    match mine.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        many => bail!(
            "found {} {}s tagged {STACK_TAG}={} {RESOURCE_TAG}={} ({}); privbucket expects \
             one. Delete the extra ones (or all, then run `privbucket up` again)",
            many.len(),
            step.kind(),
            ctx.stack.name,
            step.key(),
            many.iter()
                .filter_map(|i| id(i))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// One round of reads for the stack `ctx` describes (its bucket included).
pub(crate) async fn scan(ctx: &Ctx) -> Result<Found> {
    let uploader = Function::Uploader;
    let control = Function::Control;
    let target = format!("stack {}", ctx.stack.name);
    let (ec2, roles, functions, bucket_hint, bucket, policy, made_key) = tokio::join!(
        read::all(
            &ctx.aws.ec2,
            read::By::Tag {
                key: STACK_TAG,
                value: Some(ctx.stack.name.as_str()),
            },
            &target,
        ),
        async { tokio::try_join!(role::find(uploader, ctx), role::find(control, ctx)) },
        async {
            tokio::try_join!(
                function::find_configured(uploader, ctx),
                function::find_configured(control, ctx)
            )
        },
        role::bucket_named(ctx, uploader),
        bucket::find(ctx),
        bucket::policy(ctx),
        key::find_for_stack(ctx),
    );
    let mut found = Found::default();
    network(ctx, ec2?, &mut found)?;
    let res = &mut found.resources;
    let (uploader_role, control_role) = roles?;
    res.extend(uploader_role.map(|r| (Step::UploaderRole, r)));
    res.extend(control_role.map(|r| (Step::ControlRole, r)));
    let (uploader_fn, control_fn) = functions?;
    for (f, got) in [(uploader, uploader_fn), (control, control_fn)] {
        if let Some((r, bucket, c)) = got {
            res.insert(f.step(), r);
            found.bucket_in_use = found.bucket_in_use.or(bucket);
            found.configurations[f.index()] = c;
        }
    }
    found.bucket_in_use = found.bucket_in_use.or(bucket_hint?);
    res.extend(made_key?.map(|k| (Step::Key, k)));
    if let Some(b) = bucket? {
        res.insert(Step::Bucket, b);
        let policy = policy?;
        if found.borrowed_vpc.is_some()
            && !res.contains_key(&Step::Endpoint)
            && let Some(ep) = policy.as_deref().and_then(borrowed_endpoints)
        {
            res.insert(Step::Endpoint, ep);
        }
        if policy.is_some() {
            let mut r = Resource::new(ctx.stack.bucket());
            if let Some(ep) = res.get(&Step::Endpoint) {
                r = r.with_facts(Facts::BucketPolicy {
                    endpoint: ep.id.clone(),
                    other_endpoints: ep.endpoint_facts().1.to_vec(),
                });
            }
            res.insert(Step::BucketPolicy, r);
        }
        // A borrowed key is not the stack's to tag: the bucket policy names it.
        if !res.contains_key(&Step::Key)
            && let Some(key) = policy.as_deref().and_then(borrowed_key)
        {
            res.insert(Step::Key, key);
        }
        found.bucket_policy = policy;
    }
    Ok(found)
}

/// In a borrowed network the stack tags no endpoint it borrows: the bucket policy names them
/// (`aws:SourceVpce`, the stack's endpoint first). Which route tables `up` added to one is not
/// known without the state.
fn borrowed_endpoints(policy: &str) -> Option<Resource> {
    let doc = policy::parse(policy)?;
    let statements = policy::statements(&doc);
    let writes = statements.iter().find(|s| s["Sid"] == policy::SID_WRITES)?;
    let mut ids =
        policy::strings(&writes["Condition"]["StringNotEquals"]["aws:SourceVpce"]).into_iter();
    let first = ids.next()?;
    Some(
        Resource::new(first)
            .owned_as(Ownership::Borrowed)
            .with_facts(Facts::Endpoint {
                added_route_tables: Vec::new(),
                other_endpoints: ids.collect(),
            }),
    )
}

/// The key the bucket policy pins writes to (the stack's own key is found by its alias).
fn borrowed_key(policy: &str) -> Option<Resource> {
    let arn = pinned_key(&policy::parse(policy)?)?;
    let id = arn.rsplit('/').next()?.to_string();
    Some(
        Resource::new(id)
            .with_arn(arn)
            .owned_as(Ownership::Borrowed),
    )
}

/// The key ARN of the bucket policy's statement against writes asking for another key.
fn pinned_key(doc: &serde_json::Value) -> Option<String> {
    let statements = policy::statements(doc);
    let other = statements
        .iter()
        .find(|s| s["Sid"] == policy::SID_OTHER_KEY)?;
    other["Condition"]["StringNotEquals"][policy::KMS_KEY_HEADER]
        .as_str()
        .map(str::to_string)
}

/// The stack's network among the EC2 objects carrying its tag: its VPC, and what is in it.
fn network(ctx: &Ctx, ec2: read::Ec2Read, found: &mut Found) -> Result<()> {
    let vpcs: Vec<Vpc> = ec2.vpcs.into_iter().map(|v| v.vpc).collect();
    let vpc = only(
        ctx,
        Step::Vpc,
        &vpcs,
        |v| step_tag(v.tags()),
        |v| v.vpc_id(),
    )?;
    let mut vpc_id = vpc.and_then(|v| v.vpc_id()).map(str::to_string);
    if let (Some(v), Some(id)) = (vpc, &vpc_id) {
        found.resources.insert(Step::Vpc, Resource::new(id));
        found.vpc = Some(v.clone());
    }
    // A stack in a borrowed network tags nothing of the user's: its VPC is the one its own
    // security group is in.
    if vpc_id.is_none()
        && let Some(g) = only(
            ctx,
            Step::SecurityGroup,
            &ec2.security_groups,
            |g| step_tag(g.tags()),
            |g| g.group_id(),
        )?
        && let Some(id) = g.vpc_id()
    {
        found
            .resources
            .insert(Step::Vpc, Resource::new(id).owned_as(Ownership::Borrowed));
        found.borrowed_vpc = Some(id.to_string());
        vpc_id = Some(id.to_string());
    }
    // Everything else of the stack lives in its VPC; a tagged leftover elsewhere is not it.
    let in_vpc = |id: Option<&str>| vpc_id.is_some() && id == vpc_id.as_deref();
    let subnets: Vec<Subnet> = ec2
        .subnets
        .into_iter()
        .filter(|s| in_vpc(s.vpc_id()))
        .collect();
    let tables: Vec<RouteTable> = ec2
        .route_tables
        .into_iter()
        .filter(|t| in_vpc(t.vpc_id()))
        .collect();
    for side in Side::BOTH {
        halves(ctx, side, &subnets, &tables, found)?;
    }
    let groups: Vec<SecurityGroup> = ec2
        .security_groups
        .into_iter()
        .filter(|g| in_vpc(g.vpc_id()))
        .collect();
    if let Some(g) = only(
        ctx,
        Step::SecurityGroup,
        &groups,
        |g| step_tag(g.tags()),
        |g| g.group_id(),
    )? && let Some(id) = g.group_id()
    {
        found
            .resources
            .insert(Step::SecurityGroup, Resource::new(id));
        found.group = Some(g.clone());
    }
    let endpoints: Vec<VpcEndpoint> = ec2
        .endpoints
        .into_iter()
        .filter(|e| in_vpc(e.vpc_id()))
        .collect();
    if let Some(e) = only(
        ctx,
        Step::Endpoint,
        &endpoints,
        |e| step_tag(e.tags()),
        |e| e.vpc_endpoint_id(),
    )? && let Some(id) = e.vpc_endpoint_id()
    {
        found.resources.insert(Step::Endpoint, Resource::new(id));
        found.endpoint = Some(e.clone());
    }
    Ok(())
}

/// One half of the network: its subnet, its route table, and their association.
fn halves(
    ctx: &Ctx,
    side: Side,
    subnets: &[Subnet],
    tables: &[RouteTable],
    found: &mut Found,
) -> Result<()> {
    let res = &mut found.resources;
    let subnet = only(
        ctx,
        side.subnet(),
        subnets,
        |s| step_tag(s.tags()),
        |s| s.subnet_id(),
    )?;
    if let Some(s) = subnet
        && let Some(id) = s.subnet_id()
    {
        res.insert(side.subnet(), subnet::with_zone(Resource::new(id), s));
        found.subnets[side.index()] = Some(s.clone());
    }
    let table = only(
        ctx,
        side.route_table(),
        tables,
        |t| step_tag(t.tags()),
        |t| t.route_table_id(),
    )?;
    let (Some(t), Some(rt)) = (table, table.and_then(|t| t.route_table_id())) else {
        return Ok(());
    };
    res.insert(side.route_table(), Resource::new(rt));
    let subnet_id = subnet.and_then(|s| s.subnet_id());
    let association = t
        .associations()
        .iter()
        .find(|a| subnet_id.is_some() && a.subnet_id() == subnet_id);
    if let (Some(a), Some(subnet_id)) = (association, subnet_id)
        && let Some(id) = a.route_table_association_id()
    {
        res.insert(
            side.association(),
            Resource::new(id).with_facts(Facts::Association {
                route_table: rt.to_string(),
                subnet: subnet_id.to_string(),
            }),
        );
    }
    Ok(())
}

/// Adds what was found and `res` lacks; returns the steps added. What `res` has wins: the
/// state file is the record, discovery only fills its gaps.
pub(crate) fn merge(res: &mut Resources, found: Resources) -> Vec<Step> {
    let mut added = Vec::new();
    for (step, r) in found {
        if let std::collections::btree_map::Entry::Vacant(e) = res.entry(step) {
            e.insert(r);
            added.push(step);
        }
    }
    added
}

impl Found {
    /// The functions' configurations as read, for `down`'s deletes.
    pub(crate) fn take_configurations(&mut self) -> [Option<FunctionConfiguration>; 2] {
        std::mem::take(&mut self.configurations)
    }

    /// The bucket the stack's functions (or its uploader role) say it writes to, when that is
    /// not the one scanned for.
    pub(crate) fn other_bucket(&self, scanned: &str) -> Option<&BucketName> {
        self.bucket_in_use
            .as_ref()
            .filter(|b| b.as_str() != scanned)
    }

    /// Settings read back from the live stack: the CIDRs from the VPC and subnets, the policy
    /// scope and admins from the bucket policy's statements (by Sid), the endpoint policy and
    /// the egress limit from the endpoint and the group.
    pub(crate) fn read_settings(&self, settings: &mut Settings) -> Result<()> {
        if let Some(vpc) = &self.borrowed_vpc {
            let subnets = self.configurations[Function::Uploader.index()]
                .as_ref()
                .and_then(|c| c.vpc_config())
                .map(|v| v.subnet_ids().to_vec())
                .unwrap_or_default();
            settings.network = Some(crate::config::BorrowedNetwork {
                vpc: vpc.parse()?,
                subnets: subnets
                    .iter()
                    .map(|s| s.parse())
                    .collect::<Result<_, _>>()?,
            });
        }
        if let Some(c) = self.vpc.as_ref().and_then(|v| v.cidr_block()) {
            settings.vpc_cidr = c.parse()?;
        }
        for side in Side::BOTH {
            if let Some(c) = self.subnets[side.index()]
                .as_ref()
                .and_then(|s| s.cidr_block())
            {
                settings.subnet_cidrs[side.index()] = c.parse()?;
            }
        }
        if let Some(doc) = self.bucket_policy.as_deref().and_then(policy::parse) {
            let statements = policy::statements(&doc);
            let by_sid = |sid: &str| statements.iter().find(|s| s["Sid"] == sid).cloned();
            settings.tls_deny = by_sid(policy::SID_TLS).is_some();
            if let Some(arn) = pinned_key(&doc) {
                let made = self
                    .resources
                    .get(&Step::Key)
                    .is_some_and(|k| k.ownership != Ownership::Borrowed);
                settings.kms_key = Some(if made { KmsKey::New } else { arn.parse()? });
            }
            if let Some(all) = by_sid(policy::SID_ALL) {
                settings.policy_scope = PolicyScope::All;
                let admins = &all["Condition"]["ArnNotEquals"]["aws:PrincipalArn"];
                settings.admin_principals = policy::strings(admins)
                    .iter()
                    .filter_map(|a| a.parse().ok())
                    .collect();
            }
        }
        if let Some(doc) = self
            .endpoint
            .as_ref()
            .and_then(|e| e.policy_document())
            .and_then(policy::parse)
        {
            settings.endpoint_policy = !policy::allows_everything(&doc);
        }
        if let Some(g) = &self.group {
            settings.egress_limit = !super::egress::egress(g).iter().any(|r| r.is_allow_all());
        }
        Ok(())
    }
}
