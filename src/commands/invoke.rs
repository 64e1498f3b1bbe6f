//! `privbucket invoke`: runs a function of the stack once, synchronously, and prints what it
//! returned. With `up --code`, the everyday loop is: change the code, `up`, `invoke`.
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use super::connect;
use crate::config::{Global, InvokeArgs, Output};
use crate::error::input;
use crate::progress::Progress;
use crate::resources::{Ctx, function};
use crate::stack::Stack;

#[derive(Debug, Serialize)]
struct InvokeReport {
    function: String,
    /// What the function returned: JSON when it is, else the text.
    result: serde_json::Value,
    /// Lambda's `FunctionError` (`Unhandled`) when the function raised.
    error: Option<String>,
    log: Option<String>,
}

pub(crate) async fn run(g: &Global, args: &InvokeArgs) -> Result<ExitCode> {
    let Some(st) = super::open_store(g).await?.load().await? else {
        return input(format!(
            "nothing deployed: there is no state file at {}; run `privbucket up` first",
            g.state
        ));
    };
    let step = args.function.step();
    if !st.resources.contains_key(&step) {
        return input(format!(
            "stack {} has no {} function in its state file {}; run `privbucket up`{}",
            st.stack,
            args.function.word(),
            g.state,
            if st.settings.control_function {
                ""
            } else {
                " (this stack was made with --no-control-function)"
            }
        ));
    }
    let session = connect(g, Some(&st), None).await?;
    let stack = Stack::from_state(&st, &session.caller_arn);
    let name = stack.function_name(args.function);
    let ctx = Ctx::new(session.clients, stack, Progress::silent());
    let out = function::invoke(&ctx, args.function, &args.payload, args.log).await?;
    let result = out
        .payload
        .clone()
        .unwrap_or_else(|| serde_json::Value::String(String::from_utf8_lossy(&out.raw).into()));
    match g.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&InvokeReport {
                function: name.clone(),
                result: result.clone(),
                error: out.function_error.clone(),
                log: out.log.clone(),
            })?
        ),
        Output::Text => {
            if let Some(log) = &out.log {
                eprintln!("--- log of {name} (tail) ---\n{}", log.trim_end());
                eprintln!("---");
            }
            if !out.raised() {
                match &out.payload {
                    Some(v) => println!("{}", serde_json::to_string_pretty(v)?),
                    None => println!("{}", String::from_utf8_lossy(&out.raw)),
                }
            }
        }
    }
    if out.raised() {
        // The payload of a raised function is Lambda's error document.
        let message = result
            .get("errorMessage")
            .and_then(|m| m.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| result.to_string());
        let kind = result
            .get("errorType")
            .and_then(|m| m.as_str())
            .unwrap_or("error");
        if g.output == Output::Text {
            eprintln!(
                "error: {name} raised {kind}: {message} (Lambda: {}); see the log with \
                 `privbucket invoke --log`",
                out.function_error.as_deref().unwrap_or("Unhandled")
            );
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
