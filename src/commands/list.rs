//! `privbucket list`: every privbucket stack in the region (or in every enabled region, read
//! at once), found the way `down --name` finds one: EC2 objects by the `privbucket:stack` tag,
//! functions and roles by their derived names, buckets by name (the reads are
//! `resources::inventory`'s). Reads only.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;
use tokio::task::JoinSet;

use super::{connect, emit};
use crate::config::Global;
use crate::graph::{Function, Step};
use crate::resources::inventory;
use crate::stack;
use crate::state::{Ownership, State};

/// What a stack needs to look complete (the control function and its role only as a pair).
/// In a borrowed network (no VPC of its own), only what privbucket makes there is needed.
const NEEDED_BORROWED: &[Step] = &[
    Step::SecurityGroup,
    Step::UploaderRole,
    Step::Bucket,
    Step::UploaderFunction,
];

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
    /// The VPC is the user's (`up --vpc --subnets`): found by the stack's security group.
    pub(crate) borrowed_network: bool,
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
                        match (&s.vpc, s.borrowed_network) {
                            (Some(v), true) => format!("{v} (borrowed)"),
                            (Some(v), false) => v.clone(),
                            (None, _) => "-".into(),
                        },
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

pub(crate) async fn run(g: &Global, all_regions: bool) -> Result<ExitCode> {
    let session = connect(g, None, None).await?;
    let account = session.account_id.clone();
    let clients = session.clients.clone();
    let here = session.region.to_string();
    // Round one: the regions, and what is global (IAM roles, S3 buckets) and the state, at
    // once; each region is then read in one round of its own, every region at once.
    let regions = async {
        let regions = if all_regions {
            inventory::enabled_regions(&clients).await?
        } else {
            vec![here.clone()]
        };
        // Every region's round at once, each on a task of its own.
        let mut reads = JoinSet::new();
        for (i, r) in regions.iter().enumerate() {
            let (c, r) = (clients.in_region(r), r.clone());
            reads.spawn(async move { (i, inventory::read_region(c, &r).await) });
        }
        let mut seen: Vec<inventory::Seen> =
            regions.iter().map(|_| inventory::Seen::default()).collect();
        while let Some(done) = reads.join_next().await {
            let (i, read) = done.map_err(|e| anyhow::anyhow!("a region's read panicked: {e}"))?;
            seen[i] = read?;
        }
        Ok::<_, anyhow::Error>((regions, seen))
    };
    // The state is compared when it can be read; a listing does not depend on it.
    let state = async {
        let store = super::open_store(g).await?;
        store.load().await
    };
    let (regions, roles, buckets, state) = tokio::join!(
        regions,
        inventory::role_names(&clients),
        inventory::bucket_names(&clients),
        state
    );
    let ((regions, seen), roles, buckets) = (regions?, roles?, buckets?);
    let (state, unreadable) = match state {
        Ok(st) => (st, None),
        Err(e) => (
            None,
            Some(format!("State {} could not be read: {e:#}", g.state)),
        ),
    };
    let mut stacks = Vec::new();
    for (region, seen) in regions.iter().zip(seen) {
        let global = Shared {
            roles: &roles,
            buckets: &buckets,
            account: &account,
        };
        stacks.extend(rows(region, seen, &global, state.as_ref()));
    }
    let state_note = unreadable.or_else(|| note(g, state.as_ref()?, &account, &stacks, &regions));
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

/// What the state says that no row shows: another account's, or a stack not found.
fn note(
    g: &Global,
    st: &State,
    account: &str,
    stacks: &[Listed],
    regions: &[String],
) -> Option<String> {
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
}

/// What is read once for every region: the account's roles and buckets.
struct Shared<'a> {
    roles: &'a BTreeSet<String>,
    buckets: &'a BTreeSet<String>,
    account: &'a str,
}

/// One region's rows: what the region holds, with the roles and buckets named for its stacks.
fn rows(
    region: &str,
    mut seen: inventory::Seen,
    global: &Shared<'_>,
    state: Option<&State>,
) -> Vec<Listed> {
    for f in Function::BOTH {
        for role in global.roles {
            if let Some(name) = stack::stack_of_role(role, region, f) {
                seen.found
                    .entry(name.to_string())
                    .or_default()
                    .insert(f.role(), role.clone());
            }
        }
    }
    for (name, found) in &mut seen.found {
        let bucket = seen
            .buckets
            .get(name)
            .cloned()
            .unwrap_or_else(|| stack::default_bucket_name(name, global.account, region));
        if global.buckets.contains(&bucket) {
            found.insert(Step::Bucket, bucket);
        }
    }
    let mut rows = Vec::new();
    for (name, found) in seen.found {
        let control = [Step::ControlRole, Step::ControlFunction];
        let borrowed_vpc = if found.contains_key(&Step::Vpc) {
            None
        } else {
            seen.group_vpcs.get(&name).cloned()
        };
        let needed = if borrowed_vpc.is_some() {
            NEEDED_BORROWED
        } else {
            NEEDED
        };
        let mut missing: Vec<&'static str> = needed
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
        rows.push(Listed {
            state: state
                .filter(|st| st.stack.as_str() == name && st.region.as_str() == region)
                .map(|st| agreement(st, &found)),
            stack: name,
            region: region.to_string(),
            vpc: found.get(&Step::Vpc).cloned().or(borrowed_vpc.clone()),
            borrowed_network: borrowed_vpc.is_some(),
            bucket: found.get(&Step::Bucket).cloned(),
            complete: missing.is_empty(),
            missing,
        });
    }
    rows
}

/// Whether the state's record is what was found: `agrees`, or each difference.
fn agreement(st: &State, found: &BTreeMap<Step, String>) -> String {
    let diffs: Vec<String> = st
        .resources
        .iter()
        .filter(|(step, _)| inventory::lists(step.resource_kind()))
        // What the stack borrows carries no tag of it: not for `list` to find.
        .filter(|(_, res)| res.ownership != Ownership::Borrowed)
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
