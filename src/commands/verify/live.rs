//! The original article's own proof, run for real: the uploader's write lands, the control
//! function's is denied, and so is the operator's own PutObject from here.
use anyhow::Result;

use super::{Check, Verdict};
use crate::error::Kind;
use crate::graph::Function;
use crate::resources::{Ctx, bucket, function};

/// The original article's own proof, run for real: the uploader's write lands, the control
/// function's is denied, and so is the operator's own PutObject from here. Where an answer
/// proves nothing (an emulator that echoes the event instead of running the handler), the
/// part says so and the check is inconclusive, never a pass.
pub(super) async fn live(ctx: &Ctx) -> Result<Check> {
    let (uploader, control, direct) = tokio::join!(
        invoke_uploader(ctx),
        async {
            if ctx.stack.settings.control_function {
                invoke_control(ctx).await.map(Some)
            } else {
                Ok(None)
            }
        },
        direct_put(ctx),
    );
    let parts: Vec<(Verdict, String)> = [Some(uploader?), control?, Some(direct?)]
        .into_iter()
        .flatten()
        .collect();
    let verdict = if parts.iter().any(|(v, _)| *v == Verdict::Fail) {
        Verdict::Fail
    } else if parts.iter().any(|(v, _)| *v == Verdict::Inconclusive) {
        Verdict::Inconclusive
    } else {
        Verdict::Pass
    };
    Ok(Check {
        name: "live",
        verdict,
        evidence: parts
            .into_iter()
            .map(|(v, e)| match v {
                Verdict::Pass => format!("pass: {e}"),
                Verdict::Fail => format!("FAIL: {e}"),
                Verdict::Inconclusive => format!("inconclusive: {e}"),
            })
            .collect(),
        unread: false,
    })
}

fn example_event() -> serde_json::Value {
    serde_json::json!({
        "title": "Harry Potter and the Philosopher's Stone",
        "author": "J. K. Rowling",
        "store": "Queen St",
        "seller": "John Doe"
    })
}

fn echoed(name: &str) -> (Verdict, String) {
    (
        Verdict::Inconclusive,
        format!(
            "{name} answered with the event itself: the handler did not run (an emulator \
             without Lambda execution), so nothing is proven"
        ),
    )
}

async fn invoke_uploader(ctx: &Ctx) -> Result<(Verdict, String)> {
    let name = ctx.stack.function_name(Function::Uploader);
    // Your own code is not run with an event made up here: what it does with one is yours
    // to know (`privbucket invoke` runs it with yours).
    if let Some(own) = &ctx.stack.settings.function {
        return Ok((
            Verdict::Inconclusive,
            format!(
                "{name} runs your code ({}), not the example handler, so it is not invoked                  with the example event; run it with `privbucket invoke`",
                own.code.display()
            ),
        ));
    }
    let out = function::invoke(ctx, Function::Uploader, &example_event(), false).await?;
    let raised = out.raised();
    let payload = out.payload;
    if payload.as_ref() == Some(&example_event()) {
        return Ok(echoed(&name));
    }
    let key = payload.as_ref().and_then(|p| p.as_str());
    let Some(key) = key.filter(|_| !raised) else {
        return Ok((
            Verdict::Fail,
            format!(
                "{name} did not write the object: {}",
                payload
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "no payload".into())
            ),
        ));
    };
    let bucket = ctx.stack.bucket();
    let exists = bucket::object_exists(ctx, key).await?;
    Ok(if exists {
        // The proof leaves no data behind: an object left here would make `down` keep the
        // bucket.
        let after = match bucket::delete_object(ctx, key).await {
            Ok(_) => "deleted again".to_string(),
            Err(e) => format!("left in place, as deleting it failed: {e}; delete it yourself"),
        };
        (
            Verdict::Pass,
            format!("{name} wrote {key} to {bucket} ({after})"),
        )
    } else {
        (
            Verdict::Fail,
            format!("{name} returned {key}, but {bucket} has no such object"),
        )
    })
}

async fn invoke_control(ctx: &Ctx) -> Result<(Verdict, String)> {
    let name = ctx.stack.function_name(Function::Control);
    let out = function::invoke(ctx, Function::Control, &example_event(), false).await?;
    let raised = out.raised();
    let payload = out.payload;
    if payload.as_ref() == Some(&example_event()) {
        return Ok(echoed(&name));
    }
    let text = payload
        .as_ref()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "no payload".into());
    Ok(match (raised, text.contains("AccessDenied")) {
        (true, true) => (
            Verdict::Pass,
            format!("{name} (outside the VPC) was denied: {text}"),
        ),
        (true, false) => (
            Verdict::Inconclusive,
            format!(
                "{name} failed, but not with AccessDenied, so the policy was not shown to deny it: {text}"
            ),
        ),
        (false, _) => (
            Verdict::Fail,
            format!("{name} wrote to the bucket from outside the VPC: {text}"),
        ),
    })
}

/// A PutObject with the operator's own credentials, from outside the VPC. Should it get
/// through, the object is deleted again.
async fn direct_put(ctx: &Ctx) -> Result<(Verdict, String)> {
    let bucket = ctx.stack.bucket();
    let key = format!(
        "privbucket-verify-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default()
    );
    let r = bucket::put_object(ctx, &key, b"privbucket verify").await;
    Ok(match r {
        Err(e) if e.is(Kind::AccessDenied) => (
            Verdict::Pass,
            format!(
                "your own PutObject to {bucket} from here was denied ({})",
                e.code.as_deref().unwrap_or("AccessDenied")
            ),
        ),
        Err(e) => return Err(e.into()),
        Ok(()) => {
            bucket::delete_object(ctx, &key).await?;
            (
                Verdict::Fail,
                format!(
                    "your own PutObject to {bucket} from outside the VPC succeeded (the test \
                     object {key} was deleted again)"
                ),
            )
        }
    })
}
