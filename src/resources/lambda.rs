//! The two functions, running the same handler (`lambda/uploader.py`, zipped here): the
//! uploader inside the VPC, and the control function outside it, whose AccessDenied proves
//! the bucket policy (not IAM) stops writes from outside the endpoint.
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Cursor, Write};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use aws_sdk_lambda::client::Waiters;
use aws_sdk_lambda::error::DisplayErrorContext;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{
    Environment, FunctionCode, FunctionConfiguration, LastUpdateStatus, Runtime, State, VpcConfig,
};
use base64::Engine;
use sha2::{Digest, Sha256};

use super::{Ctx, Live, deleted, deletion, need};
use crate::aws::{Backoff, retry};
use crate::error::{Call, CallResultExt, Kind};
use crate::graph::Step;
use crate::run::Action;
use crate::stack::STACK_TAG;
use crate::state::{Resource, Resources};

/// The handler, compiled into the binary so the binary is all a user needs.
pub const HANDLER_SOURCE: &str = include_str!("../../lambda/uploader.py");
pub const HANDLER: &str = "uploader.handler";
pub const RUNTIME: Runtime = Runtime::Python313;
/// IAM propagation to Lambda usually takes seconds; give up after two minutes.
const PROPAGATION_BUDGET: Duration = Duration::from_secs(120);
/// A VPC function may take minutes to become Active while Lambda makes its ENIs.
const STATE_WAIT: Duration = Duration::from_secs(15 * 60);

/// The deployment package: one file, with a fixed timestamp so the same source always gives
/// the same bytes (and the same `CodeSha256`).
pub fn package() -> Result<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    zip.start_file("uploader.py", options)
        .context("packaging the handler")?;
    zip.write_all(HANDLER_SOURCE.as_bytes())
        .context("packaging the handler")?;
    Ok(zip.finish().context("packaging the handler")?.into_inner())
}

/// `CodeSha256` as Lambda reports it: base64 of the SHA-256 of the package.
pub fn code_sha256(package: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(package))
}

fn role_step(step: Step) -> Step {
    match step {
        Step::UploaderFunction => Step::UploaderRole,
        _ => Step::ControlRole,
    }
}

fn role_arn(res: &Resources, step: Step) -> Result<&str> {
    let role = res
        .get(&role_step(step))
        .ok_or_else(|| anyhow!("internal error: the role of {} is not known", step.key()))?;
    Ok(role.arn.as_deref().unwrap_or(&role.id))
}

fn vpc_config(step: Step, res: &Resources) -> Result<VpcConfig> {
    Ok(match step {
        Step::UploaderFunction => VpcConfig::builder()
            .subnet_ids(need(res, Step::SubnetA)?)
            .subnet_ids(need(res, Step::SubnetB)?)
            .security_group_ids(need(res, Step::SecurityGroup)?)
            .build(),
        // Outside any VPC: empty lists, so an update also takes a function out of a VPC.
        _ => VpcConfig::builder()
            .set_subnet_ids(Some(Vec::new()))
            .set_security_group_ids(Some(Vec::new()))
            .build(),
    })
}

fn environment(ctx: &Ctx) -> Environment {
    Environment::builder()
        .variables("PRIVATE_BUCKET", ctx.stack.bucket())
        .build()
}

fn description(ctx: &Ctx, step: Step) -> String {
    match step {
        Step::UploaderFunction => format!(
            "privbucket {}: writes to {} from inside the VPC, through the S3 endpoint",
            ctx.stack.name,
            ctx.stack.bucket()
        ),
        _ => format!(
            "privbucket {}: the same code outside the VPC; its writes to {} are denied",
            ctx.stack.name,
            ctx.stack.bucket()
        ),
    }
}

pub async fn find(step: Step, ctx: &Ctx) -> Result<Option<Resource>> {
    let name = ctx.stack.function_name(step);
    let Some(out) = ctx
        .aws
        .lambda
        .get_function()
        .function_name(&name)
        .send()
        .await
        .call("GetFunction", &name)
        .found()?
    else {
        return Ok(None);
    };
    let ours = out
        .tags()
        .and_then(|t| t.get(STACK_TAG))
        .is_some_and(|v| v == ctx.stack.name.as_str());
    if !ours {
        bail!(
            "Lambda function {name} exists but is not tagged {STACK_TAG}={}; privbucket will \
             not take over a function it did not make. Delete or rename it, or choose another \
             --name",
            ctx.stack.name
        );
    }
    let arn = out
        .configuration()
        .and_then(|c| c.function_arn())
        .unwrap_or_default();
    Ok(Some(Resource::new(&name).with_arn(arn)))
}

pub async fn create(step: Step, ctx: &Ctx, res: &Resources) -> Result<Resource> {
    let name = ctx.stack.function_name(step);
    let zip = package()?;
    let role = role_arn(res, step)?.to_string();
    let tags: BTreeMap<String, String> = ctx.stack.tags(step).into_iter().collect();
    let vpc = vpc_config(step, res)?;
    let lambda = &ctx.aws.lambda;
    let out = retry(
        PROPAGATION_BUDGET,
        Backoff {
            first: Duration::from_secs(1),
            cap: Duration::from_secs(10),
        },
        |e| e.is(Kind::Propagating),
        |e, d| {
            ctx.progress.wait(
                step,
                &format!(
                    "IAM role not yet usable by Lambda ({}); trying again in {}",
                    e.message.as_deref().unwrap_or("propagating"),
                    humantime::format_duration(d)
                ),
            )
        },
        || async {
            lambda
                .create_function()
                .function_name(&name)
                .runtime(RUNTIME)
                .role(&role)
                .handler(HANDLER)
                .code(
                    FunctionCode::builder()
                        .zip_file(Blob::new(zip.clone()))
                        .build(),
                )
                .description(description(ctx, step))
                .timeout(15)
                .memory_size(128)
                .environment(environment(ctx))
                .vpc_config(vpc.clone())
                .set_tags(Some(tags.clone().into_iter().collect()))
                .send()
                .await
                .call("CreateFunction", &name)
        },
    )
    .await;
    let mut active = false;
    let arn = match out {
        Ok(out) => {
            active = out.state() == Some(&State::Active);
            out.function_arn().unwrap_or_default().to_string()
        }
        // A lost response to an earlier attempt made it; the names are ours alone.
        Err(e) if e.code.as_deref() == Some("ResourceConflictException") => {
            match find(step, ctx).await? {
                Some(r) => r.arn.unwrap_or_default(),
                None => return Err(e.into()),
            }
        }
        Err(e) if e.is(Kind::Propagating) => {
            return Err(anyhow::Error::new(e).context(format!(
                "IAM role {role} was still not usable by Lambda after {}; run `privbucket up` \
                 again in a minute",
                humantime::format_duration(PROPAGATION_BUDGET)
            )));
        }
        Err(e) => return Err(e.into()),
    };
    // A function outside a VPC may be Active at once; a VPC one is Pending while Lambda makes
    // its network interfaces.
    if !active {
        wait_active(step, ctx, &name).await?;
    }
    Ok(Resource::new(name).with_arn(arn))
}

async fn wait_active(step: Step, ctx: &Ctx, name: &str) -> Result<()> {
    ctx.progress
        .wait(step, &format!("waiting for {name} to become Active"));
    ctx.aws
        .lambda
        .wait_until_function_active_v2()
        .function_name(name)
        .wait(STATE_WAIT)
        .await
        .map_err(|e| {
            anyhow!(
                "Lambda function {name} did not become Active: {}; see its state with \
                 `aws lambda get-function --function-name {name}`, then run `privbucket up` again",
                DisplayErrorContext(&e)
            )
        })?;
    Ok(())
}

async fn wait_updated(step: Step, ctx: &Ctx, name: &str) -> Result<()> {
    ctx.progress
        .wait(step, &format!("waiting for the update of {name} to finish"));
    ctx.aws
        .lambda
        .wait_until_function_updated_v2()
        .function_name(name)
        .wait(STATE_WAIT)
        .await
        .map_err(|e| {
            anyhow!(
                "the update of Lambda function {name} did not succeed: {}; run the same \
                 command again",
                DisplayErrorContext(&e)
            )
        })?;
    Ok(())
}

/// A function's configuration; `None` when there is no such function.
pub async fn configuration(ctx: &Ctx, name: &str) -> Result<Option<FunctionConfiguration>> {
    let out = ctx
        .aws
        .lambda
        .get_function()
        .function_name(name)
        .send()
        .await
        .call("GetFunction", name)
        .found()?;
    Ok(out.and_then(|o| o.configuration().cloned()))
}

fn set(items: &[String]) -> BTreeSet<&str> {
    items.iter().map(String::as_str).collect()
}

pub async fn observe(step: Step, ctx: &Ctx, res: &Resources, known: &Resource) -> Result<Live> {
    let Some(c) = configuration(ctx, &known.id).await? else {
        return Ok(Live::Missing);
    };
    let mut diffs = Vec::new();
    if c.runtime() != Some(&RUNTIME) {
        diffs.push(format!(
            "runtime is {}, expected {}",
            c.runtime().map(|r| r.as_str()).unwrap_or("none"),
            RUNTIME.as_str()
        ));
    }
    if c.handler() != Some(HANDLER) {
        diffs.push(format!(
            "handler is {}, expected {HANDLER}",
            c.handler().unwrap_or("none")
        ));
    }
    if let Ok(role) = role_arn(res, step)
        && c.role() != Some(role)
    {
        diffs.push(format!(
            "role is {}, expected {role}",
            c.role().unwrap_or("none")
        ));
    }
    let bucket = c
        .environment()
        .and_then(|e| e.variables())
        .and_then(|v| v.get("PRIVATE_BUCKET"));
    if bucket.map(String::as_str) != Some(ctx.stack.bucket()) {
        diffs.push(format!(
            "PRIVATE_BUCKET is {}, expected {}",
            bucket.map(String::as_str).unwrap_or("unset"),
            ctx.stack.bucket()
        ));
    }
    let (subnets, groups) = c
        .vpc_config()
        .map(|v| (set(v.subnet_ids()), set(v.security_group_ids())))
        .unwrap_or_default();
    match step {
        Step::UploaderFunction => {
            let want_subnets: BTreeSet<&str> = [Step::SubnetA, Step::SubnetB]
                .iter()
                .filter_map(|s| res.get(s).map(|r| r.id.as_str()))
                .collect();
            let want_groups: BTreeSet<&str> = res
                .get(&Step::SecurityGroup)
                .map(|r| r.id.as_str())
                .into_iter()
                .collect();
            if subnets != want_subnets || groups != want_groups {
                diffs.push(format!(
                    "VPC config is subnets [{}] security groups [{}], expected [{}] [{}]",
                    join(&subnets),
                    join(&groups),
                    join(&want_subnets),
                    join(&want_groups)
                ));
            }
        }
        _ => {
            if !subnets.is_empty() || !groups.is_empty() {
                diffs.push(format!(
                    "runs in a VPC (subnets [{}]), expected none",
                    join(&subnets)
                ));
            }
        }
    }
    if let Ok(zip) = package()
        && c.code_sha256() != Some(code_sha256(&zip).as_str())
    {
        diffs.push("code differs from this privbucket's handler".to_string());
    }
    match c.state() {
        Some(State::Active) | None => {}
        Some(s) => diffs.push(format!(
            "state is {}{}",
            s.as_str(),
            c.state_reason()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        )),
    }
    if c.last_update_status() == Some(&LastUpdateStatus::Failed) {
        diffs.push(format!(
            "last update failed{}",
            c.last_update_status_reason()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
    }
    let arn = c.function_arn().unwrap_or_default();
    Ok(Live::Present(Resource::new(&known.id).with_arn(arn), diffs))
}

fn join(s: &BTreeSet<&str>) -> String {
    s.iter().copied().collect::<Vec<_>>().join(", ")
}

/// Waits out a pending state or update, then puts configuration and code right.
pub async fn fix(step: Step, ctx: &Ctx, res: &Resources, known: &Resource) -> Result<()> {
    let name = &known.id;
    let Some(c) = configuration(ctx, name).await? else {
        bail!("Lambda function {name} disappeared while privbucket repaired it");
    };
    if c.state() == Some(&State::Pending) {
        wait_active(step, ctx, name).await?;
    }
    if c.last_update_status() == Some(&LastUpdateStatus::InProgress) {
        wait_updated(step, ctx, name).await?;
    }
    ctx.aws
        .lambda
        .update_function_configuration()
        .function_name(name)
        .runtime(RUNTIME)
        .handler(HANDLER)
        .role(role_arn(res, step)?)
        .description(description(ctx, step))
        .environment(environment(ctx))
        .vpc_config(vpc_config(step, res)?)
        .send()
        .await
        .call("UpdateFunctionConfiguration", name)?;
    wait_updated(step, ctx, name).await?;
    let zip = package()?;
    if c.code_sha256() != Some(code_sha256(&zip).as_str()) {
        ctx.aws
            .lambda
            .update_function_code()
            .function_name(name)
            .zip_file(Blob::new(zip))
            .send()
            .await
            .call("UpdateFunctionCode", name)?;
        wait_updated(step, ctx, name).await?;
    }
    Ok(())
}

/// The uploader is first taken out of the VPC and the update waited for: Lambda then starts
/// releasing its network interfaces at once, instead of up to 20 minutes after the delete.
pub async fn delete(step: Step, ctx: &Ctx, name: &str) -> Result<Action> {
    let Some(c) = configuration(ctx, name).await? else {
        return Ok(deleted(false));
    };
    let in_vpc = c
        .vpc_config()
        .is_some_and(|v| !v.subnet_ids().is_empty() || !v.security_group_ids().is_empty());
    if step == Step::UploaderFunction && in_vpc {
        if c.state() == Some(&State::Pending) {
            wait_active(step, ctx, name).await?;
        }
        if c.last_update_status() == Some(&LastUpdateStatus::InProgress) {
            wait_updated(step, ctx, name).await?;
        }
        ctx.progress
            .wait(step, &format!("detaching {name} from the VPC"));
        ctx.aws
            .lambda
            .update_function_configuration()
            .function_name(name)
            .vpc_config(
                VpcConfig::builder()
                    .set_subnet_ids(Some(Vec::new()))
                    .set_security_group_ids(Some(Vec::new()))
                    .build(),
            )
            .send()
            .await
            .call("UpdateFunctionConfiguration", name)
            .gone()?;
        wait_updated(step, ctx, name).await?;
    }
    deletion(
        ctx.aws
            .lambda
            .delete_function()
            .function_name(name)
            .send()
            .await
            .call("DeleteFunction", name),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_package_is_deterministic_and_holds_the_handler() {
        let a = package().unwrap();
        assert_eq!(a, package().unwrap());
        let mut zip = zip::ZipArchive::new(Cursor::new(a.clone())).unwrap();
        let mut f = zip.by_name("uploader.py").unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut f, &mut text).unwrap();
        assert!(text.contains("def handler"));
        assert_eq!(code_sha256(&a).len(), 44);
    }
}
