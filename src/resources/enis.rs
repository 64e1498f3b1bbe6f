//! The network interfaces Lambda makes for the uploader (description `AWS Lambda VPC ENI…`,
//! owned by the Lambda service). They outlive the function: Lambda releases them up to 20
//! minutes after it is deleted or leaves the VPC, and until then the subnets and the security
//! group cannot be deleted. `down` polls for them and deletes each as soon as it is available.
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use aws_sdk_ec2::types::{NetworkInterface, NetworkInterfaceStatus};
use tokio::task::JoinSet;

use super::contract::{Answer, Contract, done};
use super::ec2::filter;
use super::read::Ec2Read;
use super::wait::{Seen, Waiter};
use super::{Ctx, Difference, Live, Made, Teardown};
use crate::aws::{Backoff, retry};
use crate::error::{Call, CallResultExt};
use crate::graph::Step;
use crate::run::{Action, Outcome};
use crate::state::{Resource, Resources};

pub(crate) const DESCRIPTION_PREFIX: &str = "AWS Lambda VPC ENI";

/// How often the ENIs are read while Lambda releases them: four times a second, so `down`
/// goes on within a quarter of a second of the release (which takes minutes: a growing backoff
/// would add tens of seconds) and ends within a second of it. Four `DescribeNetworkInterfaces`
/// a second are a fifth of what EC2 refills for that call ("Request throttling for the Amazon
/// EC2 API": each API has its own bucket, for a non-mutating one 100 tokens refilled at 20 a
/// second, per account and region), over a wait of up to `--eni-timeout`; a throttled read is
/// retried by the SDK.
const ENI_POLL: Backoff = Backoff {
    first: Duration::from_millis(250),
    cap: Duration::from_millis(250),
};

/// Right after an ENI turns `available`, EC2 can still refuse its delete as "currently in
/// use" (terraform-provider-aws retries the delete for the same reason): the delete is tried
/// again a tenth of a second later, not at the next read, so `down` ends soon after the
/// release.
const JUST_RELEASED: Duration = Duration::from_secs(20);
const JUST_RELEASED_POLL: Backoff = Backoff {
    first: Duration::from_millis(100),
    cap: Duration::from_secs(1),
};

async fn list(ctx: &Ctx, res: &Resources) -> Result<Vec<NetworkInterface>> {
    let mut req = ctx
        .aws
        .ec2
        .describe_network_interfaces()
        .filters(filter("description", format!("{DESCRIPTION_PREFIX}*")));
    if let Some(vpc) = res.get(&Step::Vpc) {
        req = req.filters(filter("vpc-id", &vpc.id));
    }
    // In a borrowed network other workloads' Lambda ENIs share the subnets: only the
    // uploader's, by its group, are the stack's to wait for (see `release`).
    if let Some(sg) = res.get(&Step::SecurityGroup) {
        req = req.filters(filter("group-id", &sg.id));
    }
    let out = req.send().await.call(
        "DescribeNetworkInterfaces",
        format!("stack {}", ctx.stack.name),
    )?;
    Ok(out.network_interfaces().to_vec())
}

/// Deletes an ENI Lambda has let go of. `Ok(false)`: EC2 still calls it in use after the
/// short retry, and it is read again at the next poll.
async fn delete_released(ctx: &Ctx, id: &str) -> Result<bool> {
    let deleted = retry(
        JUST_RELEASED,
        JUST_RELEASED_POLL,
        crate::aws::in_use,
        |_, _| {},
        || async {
            ctx.aws
                .ec2
                .delete_network_interface()
                .network_interface_id(id)
                .send()
                .await
                .call("DeleteNetworkInterface", id)
        },
    )
    .await
    .gone();
    match deleted {
        Ok(_) => {
            ctx.progress
                .debug(&format!("deleted network interface {id}"));
            Ok(true)
        }
        Err(e) if crate::aws::in_use(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Waits for Lambda to let go of the stack's ENIs, deleting each once it is available.
pub(crate) async fn release(ctx: &Arc<Ctx>, res: &Resources, timeout: Duration) -> Result<Outcome> {
    if !res.contains_key(&Step::Vpc) && !res.contains_key(&Step::SecurityGroup) {
        return Ok(Outcome::new(Action::Skipped, None, ""));
    }
    // Without the stack's group there is no uploader ENI to tell apart from another
    // workload's in a network the stack borrows.
    if super::network::borrowed(ctx) && !res.contains_key(&Step::SecurityGroup) {
        return Ok(Outcome::new(Action::Skipped, None, ""));
    }
    let removed = std::sync::Mutex::new(Vec::<String>::new());
    let waiter = Waiter {
        what: "the uploader's network interfaces".to_string(),
        step: Step::LambdaEnis,
        target: &["released"],
        pending: &["held"],
        unlisted_for: Duration::ZERO,
        every: ENI_POLL,
        timeout,
        then: "Lambda can take 20 minutes or more after a function leaves the VPC. Run \
               `privbucket down` again later (it resumes here), or give it longer with \
               --eni-timeout",
    };
    let waited = waiter
        .wait(&ctx.progress, || async {
            Ok(Some(release_round(ctx, res, &removed).await?))
        })
        .await;
    if let Err(e) = waited {
        let still: Vec<String> = list(ctx, res)
            .await?
            .iter()
            .filter_map(|e| e.network_interface_id().map(str::to_string))
            .collect();
        return Err(e.context(format!(
            "Lambda has not released network interface(s) {}",
            still.join(", ")
        )));
    }
    let mut removed = removed
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    removed.sort();
    removed.dedup();
    Ok(if removed.is_empty() {
        Outcome::new(Action::Skipped, None, "")
    } else {
        Outcome::new(Action::Deleted, None, removed.join(", "))
    })
}

/// One read of the ENIs: the available ones are deleted at once, each on a task of its own
/// (right after the release EC2 may refuse each delete once, and one after the other they
/// would wait in turn); what Lambda still holds is the wait's state.
async fn release_round(
    ctx: &Arc<Ctx>,
    res: &Resources,
    removed: &std::sync::Mutex<Vec<String>>,
) -> Result<Seen<()>> {
    let mut held = Vec::new();
    let mut deletes = JoinSet::new();
    for eni in list(ctx, res).await? {
        let id = eni.network_interface_id().unwrap_or_default().to_string();
        if eni.status() == Some(&NetworkInterfaceStatus::Available) {
            let ctx = Arc::clone(ctx);
            deletes.spawn(async move {
                let deleted = delete_released(&ctx, &id).await;
                (id, deleted)
            });
        } else {
            let status = eni.status().map(|s| s.as_str()).unwrap_or("unknown");
            held.push(format!("{id} ({status})"));
        }
    }
    while let Some(joined) = deletes.join_next().await {
        let (id, deleted) =
            joined.map_err(|e| anyhow::anyhow!("a network interface's delete panicked: {e}"))?;
        if deleted? {
            removed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(id);
        } else {
            held.push(format!("{id} (available, not yet free)"));
        }
    }
    Ok(if held.is_empty() {
        Seen::new((), "released")
    } else {
        Seen {
            item: (),
            detail: Some(format!(
                "waiting for Lambda to release {} network interface(s): {}",
                held.len(),
                held.join(", ")
            )),
            state: "held".to_string(),
        }
    })
}

/// Not a resource: `down`'s wait for Lambda to release the uploader's network interfaces
/// (`mod.rs` calls [`release`] for it). Going up it does nothing.
#[derive(Debug)]
pub(crate) struct EnisStep;

impl Contract for EnisStep {
    fn find<'a>(&'a self, _ctx: &'a Ctx, _res: &'a Resources) -> Answer<'a, Option<Resource>> {
        done(None)
    }

    fn create<'a>(&'a self, _ctx: &'a Ctx, _res: &'a Resources) -> Answer<'a, Made> {
        Box::pin(async { bail!("internal error: lambda-enis is not created") })
    }

    fn observe<'a>(
        &'a self,
        _ctx: &'a Ctx,
        _res: &'a Resources,
        _known: &'a Resource,
        _read: Option<&'a Ec2Read>,
    ) -> Answer<'a, Live> {
        done(Live::Missing)
    }

    fn fix<'a>(
        &'a self,
        _ctx: &'a Ctx,
        _res: &'a Resources,
        _known: &'a Resource,
        _diffs: &'a [Difference],
    ) -> Answer<'a, ()> {
        done(())
    }

    fn delete<'a>(
        &'a self,
        _ctx: &'a Ctx,
        _known: &'a Resource,
        _down: &'a Teardown,
    ) -> Answer<'a, Action> {
        Box::pin(async { bail!("internal error: lambda-enis is released, not deleted") })
    }
}
