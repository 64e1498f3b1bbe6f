//! `verify --report FILE`: the evidence as one self-contained Markdown document an auditor can
//! keep: who verified what, when; the live stack drawn (Mermaid, which GitHub and GitLab draw);
//! every check with its verdict and evidence; the live policies as JSON; what proved nothing.
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{Check, Verdict};
use crate::config::Report;
use crate::error::InputError;

/// Everything the document says, read before it is written.
pub(super) struct Evidence<'a> {
    pub(super) when: String,
    pub(super) caller: &'a str,
    pub(super) account: &'a str,
    pub(super) region: &'a str,
    pub(super) stack: &'a str,
    pub(super) bucket: &'a str,
    pub(super) ok: bool,
    pub(super) checks: &'a [Check],
    pub(super) diagram: String,
    /// Each live policy: what it is (`bucket policy of …`, `endpoint policy of …`) and the
    /// document as AWS holds it (`None`: there is none).
    pub(super) policies: Vec<(String, Option<String>)>,
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Before any call: an existing file stays as it is unless `--force`, and the folder must be
/// there to write into.
pub(super) fn check(report: &Report) -> Result<(), InputError> {
    let path = &report.path;
    if path.exists() && !report.force {
        return Err(InputError(format!(
            "report file {} exists; privbucket leaves it as it is: pass --force to replace it, \
             or name another file",
            path.display()
        )));
    }
    let dir = parent(path);
    if !dir.is_dir() {
        return Err(InputError(format!(
            "cannot write report {}: folder {} does not exist",
            path.display(),
            dir.display()
        )));
    }
    Ok(())
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "FAIL",
        Verdict::Inconclusive => "inconclusive",
    }
}

pub(super) fn markdown(e: &Evidence<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# privbucket verify: stack {}\n", e.stack);
    let summary = if e.ok {
        "the bucket is private: no check failed"
    } else {
        "A CHECK FAILED: the bucket may not be private"
    };
    let _ = writeln!(out, "| | |\n|---|---|");
    for (k, v) in [
        ("when", e.when.as_str()),
        ("by", e.caller),
        ("account", e.account),
        ("region", e.region),
        ("stack", e.stack),
        ("bucket", e.bucket),
        ("privbucket", crate::state::WRITTEN_BY),
        ("verdict", summary),
    ] {
        let _ = writeln!(
            out,
            "| {k} | `{}` |",
            v.replace('|', "\\|").replace('`', "'")
        );
    }
    let _ = writeln!(out, "\n## Diagram\n\n```mermaid\n{}```\n", e.diagram);
    let _ = writeln!(out, "## Checks\n\n| check | verdict |\n|---|---|");
    for c in e.checks {
        let _ = writeln!(out, "| {} | {} |", c.name, verdict_word(c.verdict));
    }
    for c in e.checks {
        let _ = writeln!(out, "\n### {}: {}\n", c.name, verdict_word(c.verdict));
        for line in &c.evidence {
            let _ = writeln!(out, "- {line}");
        }
    }
    let _ = writeln!(out, "\n## Live policies");
    for (what, doc) in &e.policies {
        let _ = writeln!(out, "\n### {what}\n");
        match doc
            .as_deref()
            .map(serde_json::from_str::<serde_json::Value>)
        {
            Some(Ok(v)) => {
                let pretty = serde_json::to_string_pretty(&v).unwrap_or_default();
                let _ = writeln!(out, "```json\n{pretty}\n```");
            }
            Some(Err(_)) => {
                let _ = writeln!(
                    out,
                    "Not JSON, as AWS holds it:\n\n```\n{}\n```",
                    doc.as_deref().unwrap_or_default()
                );
            }
            None => {
                let _ = writeln!(out, "None.");
            }
        }
    }
    let _ = writeln!(out, "\n## Inconclusive\n");
    let open: Vec<&Check> = e
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::Inconclusive)
        .collect();
    if open.is_empty() {
        let _ = writeln!(out, "Nothing: every check came to a verdict.");
    }
    for c in open {
        let _ = writeln!(out, "- {}: {}", c.name, c.evidence.join("; "));
    }
    out
}

/// Writes the document atomically (a temporary file in the same folder, renamed over); without
/// `--force` a file that appeared meanwhile is not replaced.
pub(super) fn write(report: &Report, text: &str) -> Result<()> {
    let path = &report.path;
    let dir = parent(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".privbucket-report-")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    if report.force {
        tmp.persist(path)
            .with_context(|| format!("writing report {}", path.display()))?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| {
            InputError(format!(
                "report file {} could not be written without replacing what is there ({}); \
                 pass --force to replace it",
                path.display(),
                e.error
            ))
        })?;
    }
    Ok(())
}
