//! `privbucket list`: every privbucket stack in the region (or in every enabled region, read
//! at once), found the way `down --name` finds one: EC2 objects by the `privbucket:stack` tag,
//! functions and roles by their derived names, buckets by name. Reads only.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::process::ExitCode;

use anyhow::Result;
use aws_sdk_ec2::types::Tag;
use serde::Serialize;
use tokio::task::JoinSet;

use super::{connect, emit};
use crate::aws::Clients;
use crate::config::Global;
use crate::error::Call;
use crate::graph::{Function, Step};
use crate::resources::ec2::{filter, tag};
use crate::stack::{RESOURCE_TAG, STACK_TAG};
use crate::state::{State, Store};

/// What a stack needs to look complete (the control function and its role only as a pair).
const NEEDED: &[Step] = &[
    Step::Vpc,
    Step::SubnetA,
    Step::SubnetB,
    Step::RouteTableA,
    Step::RouteTableB,
    Step::Endpoint,
    Step::SecurityGroup,
    Step::UploaderRole,
    Step::Bucket,
    Step::UploaderFunction,
];

#[derive(Debug, Serialize)]
pub(crate) struct Listed {
    pub(crate) stack: String,
    pub(crate) region: String,
    pub(crate) vpc: Option<String>,
    pub(crate) bucket: Option<String>,
    /// Every resource of the stack was found (`status` says whether each is as it should be).
    pub(crate) complete: bool,
    pub(crate) missing: Vec<&'static str>,
    /// How the state (`--state`) and what was found agree, when the state is this stack's.
    pub(crate) state: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ListReport {
    pub(crate) account_id: String,
    pub(crate) regions: Vec<String>,
    pub(crate) stacks: Vec<Listed>,
    /// What the state says that no row shows (another account's, a stack not found).
    pub(crate) state_note: Option<String>,
}

impl fmt::Display for ListReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match self.regions.as_slice() {
            [one] => one.clone(),
            many => format!("{} regions", many.len()),
        };
        if self.stacks.is_empty() {
            write!(
                f,
                "No privbucket stack in {place} (account {}).",
                self.account_id
            )?;
        } else {
            let rows: Vec<[String; 6]> = self
                .stacks
                .iter()
                .map(|s| {
                    [
                        s.stack.clone(),
                        s.region.clone(),
                        s.vpc.clone().unwrap_or_else(|| "-".into()),
                        s.bucket.clone().unwrap_or_else(|| "-".into()),
                        if s.complete {
                            "yes".into()
                        } else {
                            format!("no (missing {})", s.missing.join(", "))
                        },
                        s.state.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            let head = ["STACK", "REGION", "VPC", "BUCKET", "COMPLETE", "STATE"];
            let width: Vec<usize> = (0..6)
                .map(|i| {
                    rows.iter()
                        .map(|r| r[i].len())
                        .chain([head[i].len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |cells: [&str; 6]| {
                let mut l = String::new();
                for (i, c) in cells.iter().enumerate() {
                    l.push_str(&format!("{c:<w$}  ", w = width[i]));
                }
                l.trim_end().to_string()
            };
            writeln!(f, "{}", line(head))?;
            for r in &rows {
                writeln!(f, "{}", line(r.each_ref().map(String::as_str)))?;
            }
            write!(
                f,
                "{} stack(s) in {place} (account {}).",
                self.stacks.len(),
                self.account_id
            )?;
        }
        if let Some(note) = &self.state_note {
            write!(f, "\n{note}")?;
        }
        Ok(())
    }
}

/// What one region holds, by stack name.
#[derive(Debug, Default)]
struct Seen {
    /// Step → ID, from the `privbucket:resource` tag (EC2) or the derived names.
    found: BTreeMap<String, BTreeMap<Step, String>>,
    /// The bucket each stack's functions name.
    buckets: BTreeMap<String, String>,
}

pub(crate) async fn run(g: &Global, all_regions: bool) -> Result<ExitCode> {
    let session = connect(g, None, None).await?;
    let account = session.account_id.clone();
    let clients = session.clients.clone();
    let here = session.region.to_string();
    // Round one: the regions, and what is global (IAM roles, S3 buckets) and the state, at
    // once; each region is then read in one round of its own, every region at once.
    let regions = async {
        let regions = if all_regions {
            enabled_regions(&clients).await?
        } else {
            vec![here.clone()]
        };
        // Every region's round at once, each on a task of its own.
        let mut reads = JoinSet::new();
        for (i, r) in regions.iter().enumerate() {
            let (c, r) = (clients.in_region(r), r.clone());
            reads.spawn(async move { (i, read_region(c, &r).await) });
        }
        let mut seen: Vec<Seen> = regions.iter().map(|_| Seen::default()).collect();
        while let Some(done) = reads.join_next().await {
            let (i, read) = done.map_err(|e| anyhow::anyhow!("a region's read panicked: {e}"))?;
            seen[i] = read?;
        }
        Ok::<_, anyhow::Error>((regions, seen))
    };
    // The state is compared when it can be read; a listing does not depend on it.
    let state = async {
        let store = Store::open(g).await?;
        store.load().await
    };
    let (regions, roles, buckets, state) =
        tokio::join!(regions, role_names(&clients), bucket_names(&clients), state);
    let ((regions, seen), roles, buckets) = (regions?, roles?, buckets?);
    let (state, unreadable) = match state {
        Ok(st) => (st, None),
        Err(e) => (
            None,
            Some(format!("State {} could not be read: {e:#}", g.state)),
        ),
    };
    let mut stacks = Vec::new();
    for (region, mut seen) in regions.iter().zip(seen) {
        for f in [Function::Uploader, Function::Control] {
            let suffix = format!("-{region}-{}", f.word());
            for role in &roles {
                if let Some(name) = role.strip_suffix(&suffix) {
                    seen.found
                        .entry(name.to_string())
                        .or_default()
                        .insert(role_step(f), role.clone());
                }
            }
        }
        for (name, found) in &mut seen.found {
            let bucket = seen
                .buckets
                .get(name)
                .cloned()
                .unwrap_or_else(|| format!("{name}-{account}-{region}"));
            if buckets.contains(&bucket) {
                found.insert(Step::Bucket, bucket);
            }
        }
        for (name, found) in seen.found {
            let control = [Step::ControlRole, Step::ControlFunction];
            let mut missing: Vec<&'static str> = NEEDED
                .iter()
                .filter(|s| !found.contains_key(s))
                .map(|s| s.key())
                .collect();
            if control.iter().any(|s| found.contains_key(s)) {
                missing.extend(
                    control
                        .iter()
                        .filter(|s| !found.contains_key(s))
                        .map(|s| s.key()),
                );
            }
            stacks.push(Listed {
                state: state
                    .as_ref()
                    .filter(|st| st.stack.as_str() == name && st.region.as_str() == region)
                    .map(|st| agreement(st, &found)),
                stack: name,
                region: region.clone(),
                vpc: found.get(&Step::Vpc).cloned(),
                bucket: found.get(&Step::Bucket).cloned(),
                complete: missing.is_empty(),
                missing,
            });
        }
    }
    let state_note = unreadable.or_else(|| {
        state.as_ref().and_then(|st| {
            if st.account_id != account {
                return Some(format!(
                    "State {} is for account {}, not this one ({account}).",
                    g.state, st.account_id
                ));
            }
            let listed = stacks
                .iter()
                .any(|s| s.stack == st.stack.as_str() && s.region == st.region.as_str());
            let looked = regions.iter().any(|r| r == st.region.as_str());
            (!listed && looked).then(|| {
                format!(
                    "State {} records stack {} in {}, but nothing of it was found there \
                 (`privbucket status` shows what the state records).",
                    g.state, st.stack, st.region
                )
            })
        })
    });
    emit(
        g,
        &ListReport {
            account_id: account,
            regions,
            stacks,
            state_note,
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

fn role_step(f: Function) -> Step {
    match f {
        Function::Uploader => Step::UploaderRole,
        Function::Control => Step::ControlRole,
    }
}

fn function_step(f: Function) -> Step {
    match f {
        Function::Uploader => Step::UploaderFunction,
        Function::Control => Step::ControlFunction,
    }
}

/// Whether the state's record is what was found: `agrees`, or each difference.
fn agreement(st: &State, found: &BTreeMap<Step, String>) -> String {
    let diffs: Vec<String> = st
        .resources
        .iter()
        // Associations, the bucket policy and the ENIs are not found by `list`.
        .filter(|(step, _)| {
            !matches!(
                step,
                Step::AssociationA | Step::AssociationB | Step::BucketPolicy | Step::LambdaEnis
            )
        })
        .filter_map(|(step, res)| {
            let id = res.id.as_str();
            match found.get(step) {
                Some(f) if f == id => None,
                Some(f) => Some(format!("{} {id} recorded, {f} found", step.key())),
                None => Some(format!("{} {id} recorded, not found", step.key())),
            }
        })
        .collect();
    if diffs.is_empty() {
        "agrees".into()
    } else {
        format!("differs: {}", diffs.join("; "))
    }
}

/// The regions enabled for the account (`DescribeRegions` answers only those by default).
async fn enabled_regions(clients: &Clients) -> Result<Vec<String>> {
    let out = clients
        .ec2
        .describe_regions()
        .send()
        .await
        .call("DescribeRegions", "the account's regions")?;
    let mut names: Vec<String> = out
        .regions()
        .iter()
        .filter_map(|r| r.region_name().map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

async fn role_names(clients: &Clients) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    let mut pages = clients.iam.list_roles().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.call("ListRoles", "the account's roles")?;
        names.extend(page.roles().iter().map(|r| r.role_name().to_string()));
    }
    Ok(names)
}

async fn bucket_names(clients: &Clients) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    let mut pages = clients.s3.list_buckets().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.call("ListBuckets", "the account's buckets")?;
        names.extend(
            page.buckets()
                .iter()
                .filter_map(|b| b.name().map(str::to_string)),
        );
    }
    Ok(names)
}

/// One region, in one round: each EC2 kind by the stack tag, and the functions.
async fn read_region(clients: Clients, region: &str) -> Result<Seen> {
    let ec2 = &clients.ec2;
    let tagged = || filter("tag-key", STACK_TAG);
    let target = format!("region {region}");
    let functions = async {
        let mut all = Vec::new();
        let mut pages = clients.lambda.list_functions().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.call("ListFunctions", &target)?;
            all.extend(page.functions().to_vec());
        }
        Ok::<_, anyhow::Error>(all)
    };
    let (v, s, t, g, e, fns) = tokio::join!(
        ec2.describe_vpcs().filters(tagged()).send(),
        ec2.describe_subnets().filters(tagged()).send(),
        ec2.describe_route_tables().filters(tagged()).send(),
        ec2.describe_security_groups().filters(tagged()).send(),
        ec2.describe_vpc_endpoints().filters(tagged()).send(),
        functions,
    );
    let mut seen = Seen::default();
    let mut put = |tags: &[Tag], id: Option<&str>| {
        let (Some(name), Some(step), Some(id)) = (
            tag(tags, STACK_TAG),
            tag(tags, RESOURCE_TAG).and_then(Step::from_key),
            id,
        ) else {
            return;
        };
        seen.found
            .entry(name.to_string())
            .or_default()
            .insert(step, id.to_string());
    };
    for x in v.call("DescribeVpcs", &target)?.vpcs() {
        put(x.tags(), x.vpc_id());
    }
    for x in s.call("DescribeSubnets", &target)?.subnets() {
        put(x.tags(), x.subnet_id());
    }
    for x in t.call("DescribeRouteTables", &target)?.route_tables() {
        put(x.tags(), x.route_table_id());
    }
    for x in g.call("DescribeSecurityGroups", &target)?.security_groups() {
        put(x.tags(), x.group_id());
    }
    for x in e.call("DescribeVpcEndpoints", &target)?.vpc_endpoints() {
        if !crate::resources::endpoint::is_gone(x) {
            put(x.tags(), x.vpc_endpoint_id());
        }
    }
    // privbucket's functions are `NAME-uploader` / `NAME-control` and carry PRIVATE_BUCKET.
    for f in fns? {
        let Some(name) = f.function_name() else {
            continue;
        };
        let bucket = f
            .environment()
            .and_then(|e| e.variables())
            .and_then(|v| v.get("PRIVATE_BUCKET"));
        let Some(bucket) = bucket else {
            continue;
        };
        for which in [Function::Uploader, Function::Control] {
            if let Some(stack) = name.strip_suffix(&format!("-{}", which.word())) {
                seen.found
                    .entry(stack.to_string())
                    .or_default()
                    .insert(function_step(which), name.to_string());
                seen.buckets.insert(stack.to_string(), bucket.clone());
            }
        }
    }
    Ok(seen)
}
