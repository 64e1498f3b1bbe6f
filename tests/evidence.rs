//! Evidence an auditor keeps: `privbucket diagram` (Mermaid and Graphviz DOT) and `verify
//! --report FILE.md`, on a stack deployed on moto, checked against what `status` and `verify
//! --output json` say and against the live policies read through the SDK.
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use crate::common::{World, bucket};

/// Graphviz's `dot`, which `scripts/test.sh` installs (the distribution's package, 2.42 or
/// later); the test fails without it.
fn dot() -> String {
    let dot = std::env::var("PRIVBUCKET_DOT").unwrap_or_else(|_| "dot".to_string());
    let version = Command::new(&dot).arg("-V").output();
    assert!(
        version.is_ok_and(|o| o.status.success()),
        "Graphviz's `{dot}` is missing: scripts/test.sh installs it (or set PRIVBUCKET_DOT)"
    );
    dot
}

/// The text between the first `"` after `from` and the next `"`, unescaped the format's way.
fn quoted(line: &str, from: &str) -> Option<String> {
    let start = line.find(from)? + from.len();
    let rest = &line[start..];
    let rest = rest.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                c => out.push(c),
            },
            '"' => return Some(out),
            c => out.push(c),
        }
    }
    None
}

/// A diagram read back: each node's first line (its ID) and whole label, and each edge as
/// (from ID, to ID, label).
struct Drawn {
    nodes: BTreeMap<String, String>,
    vpc: Option<String>,
    edges: BTreeSet<(String, String, String)>,
}

fn parse_mermaid(text: &str) -> Drawn {
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    let mut vpc = None;
    let mut raw_edges = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(label) = quoted(line, "subgraph vpc[") {
            vpc = Some(label.replace("<br/>", "\n"));
        } else if let Some((node, rest)) = line.split_once("[\"") {
            let label = rest.trim_end_matches("\"]").replace("<br/>", "\n");
            labels.insert(node.to_string(), label.replace("#quot;", "\""));
        } else if let Some((from, rest)) = line.split_once(" -") {
            let label = quoted(rest, "|").unwrap_or_default();
            let to = rest.rsplit(' ').next().unwrap_or_default();
            raw_edges.push((from.to_string(), to.to_string(), label));
        }
    }
    drawn(&labels, vpc, raw_edges)
}

fn parse_dot(text: &str) -> Drawn {
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    let mut vpc = None;
    let mut raw_edges = Vec::new();
    let mut in_cluster = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with("subgraph cluster_vpc") {
            in_cluster = true;
        } else if in_cluster && line.starts_with("label=") {
            vpc = quoted(line, "label=");
            in_cluster = false;
        } else if let Some((from, rest)) = line.split_once(" -> ") {
            let to = rest.split(' ').next().unwrap_or_default();
            let label = quoted(rest, "label=").unwrap_or_default();
            raw_edges.push((from.to_string(), to.to_string(), label));
        } else if let Some((node, rest)) = line.split_once(" [label=") {
            let label = quoted(&format!("x{rest}"), "x").unwrap_or_default();
            labels.insert(node.to_string(), label);
        }
    }
    drawn(&labels, vpc, raw_edges)
}

/// Node names (`n3`) replaced by the IDs on their labels' first line.
fn drawn(
    labels: &BTreeMap<String, String>,
    vpc: Option<String>,
    raw_edges: Vec<(String, String, String)>,
) -> Drawn {
    let id = |n: &str| {
        labels
            .get(n)
            .map(|l| l.lines().next().unwrap_or_default().to_string())
            .unwrap_or_else(|| panic!("edge to an undefined node {n}"))
    };
    Drawn {
        nodes: labels
            .values()
            .map(|l| (l.lines().next().unwrap_or_default().to_string(), l.clone()))
            .collect(),
        vpc: vpc.map(|v| v.lines().next().unwrap_or_default().to_string()),
        edges: raw_edges
            .into_iter()
            .map(|(a, b, l)| (id(&a), id(&b), l))
            .collect(),
    }
}

/// Every resource `status` lists, by ID (the bucket policy's ID is the bucket's).
async fn status_ids(w: &World) -> BTreeSet<String> {
    let status = w.run(&["status", "--output", "json"]).await;
    status.json()["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_diagram_names_every_resource_in_both_formats_and_graphviz_draws_it() {
    let dot = dot();
    let w = World::new().await;
    w.up().await;
    let ids = status_ids(&w).await;
    let mermaid = w.run(&["diagram"]).await;
    mermaid.expect(0);
    let dot_text = w.run(&["diagram", "--format", "dot"]).await;
    dot_text.expect(0);
    let file = w.dir.path().join("stack.dot");
    std::fs::write(&file, &dot_text.stdout).unwrap();
    let svg = Command::new(&dot).arg("-Tsvg").arg(&file).output().unwrap();
    assert!(
        svg.status.success() && String::from_utf8_lossy(&svg.stdout).contains("<svg"),
        "dot -Tsvg refused the diagram: {}\n{}",
        String::from_utf8_lossy(&svg.stderr),
        dot_text.stdout
    );
    let (m, d) = (parse_mermaid(&mermaid.stdout), parse_dot(&dot_text.stdout));
    for drawn in [&m, &d] {
        for id in &ids {
            // A resource is a node (the VPC: the box around the rest), or, for an
            // association, the edge from its subnet to its route table.
            let on_edge = drawn
                .edges
                .iter()
                .any(|(_, _, label)| label.contains(id.as_str()));
            assert!(
                drawn.nodes.contains_key(id) || drawn.vpc.as_ref() == Some(id) || on_edge,
                "{id} is not drawn:\n{}",
                mermaid.stdout
            );
        }
    }
    assert_eq!(
        m.nodes.keys().collect::<Vec<_>>(),
        d.nodes.keys().collect::<Vec<_>>()
    );
    assert_eq!(m.vpc, d.vpc);
    assert_eq!(m.edges, d.edges, "the two formats draw other edges");
    // What the bucket policy lets through, as labelled edges.
    let endpoint = w.id("endpoint");
    let b = bucket();
    for (from, label) in [
        (endpoint.as_str(), "PutObject: allowed"),
        ("privbucket-control", "PutObject: denied"),
        ("internet", "PutObject: denied"),
    ] {
        assert!(
            m.edges
                .contains(&(from.to_string(), b.clone(), label.to_string())),
            "no edge {from} -> {b} {label:?}: {:?}",
            m.edges
        );
    }
    assert!(
        m.edges.contains(&(
            "privbucket-uploader".to_string(),
            endpoint.clone(),
            "S3 traffic".to_string()
        )),
        "{:?}",
        m.edges
    );
    assert!(!mermaid.stdout.contains("MISSING"), "{}", mermaid.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_deleted_behind_privbuckets_back_is_drawn_missing() {
    let w = World::new().await;
    w.up().await;
    w.aws
        .lambda
        .delete_function()
        .function_name("privbucket-control")
        .send()
        .await
        .unwrap();
    for format in ["mermaid", "dot"] {
        let r = w.run(&["diagram", "--format", format]).await;
        r.expect(0);
        let drawn = if format == "dot" {
            parse_dot(&r.stdout)
        } else {
            parse_mermaid(&r.stdout)
        };
        let control = &drawn.nodes["privbucket-control"];
        assert!(control.contains("MISSING"), "{format}: {control}");
        let uploader = &drawn.nodes["privbucket-uploader"];
        assert!(!uploader.contains("MISSING"), "{format}: {uploader}");
    }
}

/// The `## name` sections of a Markdown document, each with its text.
fn sections(doc: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut name = String::new();
    for line in doc.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            name = h.to_string();
            out.insert(name.clone(), String::new());
        } else if let Some(text) = out.get_mut(&name) {
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

/// The fenced blocks of a language in a text.
fn fenced(text: &str, lang: &str) -> Vec<String> {
    let open = format!("```{lang}\n");
    text.split(&open)
        .skip(1)
        .filter_map(|b| b.split("```").next().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_report_holds_the_evidence_and_never_overwrites_without_force() {
    let w = World::new().await;
    w.up().await;
    let json = w.run(&["verify", "--output", "json"]).await;
    json.expect(0);
    let report = w.dir.path().join("evidence.md");
    let path = report.to_str().unwrap();
    let r = w.run(&["verify", "--report", path]).await;
    r.expect(0);
    let doc = std::fs::read_to_string(&report).unwrap();
    let parts = sections(&doc);
    for s in ["Diagram", "Checks", "Live policies", "Inconclusive"] {
        assert!(parts.contains_key(s), "no section {s}:\n{doc}");
    }
    for row in [
        "| when |",
        "| by | `arn:aws:",
        "| account | `123456789012` |",
        "| region | `us-east-1` |",
        "| stack | `privbucket` |",
        "| privbucket | `privbucket ",
    ] {
        assert!(doc.contains(row), "no {row:?}:\n{doc}");
    }
    assert!(fenced(&parts["Diagram"], "mermaid")[0].starts_with("flowchart LR"));
    // Each check's verdict is `verify --output json`'s.
    let checks = json.json()["checks"].as_array().unwrap().clone();
    assert!(!checks.is_empty());
    for c in &checks {
        let name = c["name"].as_str().unwrap();
        let verdict = match c["verdict"].as_str().unwrap() {
            "fail" => "FAIL",
            v => v,
        };
        assert!(
            parts["Checks"].contains(&format!("| {name} | {verdict} |")),
            "{name}: {verdict} not in:\n{}",
            parts["Checks"]
        );
    }
    // The policies in it are the live ones.
    let policies = fenced(&parts["Live policies"], "json");
    let parsed: Vec<serde_json::Value> = policies
        .iter()
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    let live_bucket = w.bucket_policy_of(&bucket()).await;
    let live_endpoint = w.endpoint_policy_of(&w.id("endpoint")).await;
    assert_eq!(parsed, vec![live_bucket, live_endpoint]);

    // An existing file is left as it is without --force.
    std::fs::write(&report, "kept\n").unwrap();
    w.proxy.clear();
    let again = w.run(&["verify", "--report", path]).await;
    again.expect(2);
    assert!(again.stderr.contains("--force"), "{}", again.stderr);
    assert_eq!(std::fs::read_to_string(&report).unwrap(), "kept\n");
    assert!(w.proxy.calls().is_empty(), "{:#?}", w.proxy.calls());
    w.run(&["verify", "--report", path, "--force"])
        .await
        .expect(0);
    assert!(
        std::fs::read_to_string(&report)
            .unwrap()
            .starts_with("# privbucket verify")
    );
}
