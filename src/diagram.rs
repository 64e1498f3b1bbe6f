//! A picture of the live stack: nodes and labelled edges, written as Mermaid (which GitHub and
//! GitLab draw from Markdown as it is) or as Graphviz DOT. Pure text from a graph built by
//! `commands::diagram`; no crate: both formats are a handful of escaping rules.
use std::fmt::Write as _;

/// How the diagram is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum Format {
    /// Mermaid `flowchart`: drawn by GitHub and GitLab in Markdown.
    #[default]
    Mermaid,
    /// Graphviz DOT: `dot -Tsvg`.
    Dot,
}

/// What `status` would say of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    Ok,
    Missing,
    Changed,
}

/// One box: a resource (its AWS ID first), or an actor (the internet).
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// The AWS ID (or the actor's name): what tells the nodes apart.
    pub(crate) id: String,
    /// The lines under the ID: kind, zone, CIDR, encryption, …
    pub(crate) lines: Vec<String>,
    pub(crate) mark: Mark,
    /// The user's, not the stack's (`up --vpc --subnets`).
    pub(crate) borrowed: bool,
    /// Drawn inside the VPC.
    pub(crate) in_vpc: bool,
}

impl Node {
    pub(crate) fn new(id: impl Into<String>, lines: Vec<String>) -> Node {
        Node {
            id: id.into(),
            lines,
            mark: Mark::Ok,
            borrowed: false,
            in_vpc: false,
        }
    }

    fn text(&self) -> Vec<String> {
        let mut lines = vec![self.id.clone()];
        lines.extend(self.lines.iter().cloned());
        if self.borrowed {
            lines.push("borrowed".to_string());
        }
        match self.mark {
            Mark::Ok => {}
            Mark::Missing => lines.push("MISSING".to_string()),
            Mark::Changed => lines.push("CHANGED".to_string()),
        }
        lines
    }
}

/// How an edge is drawn: what the policies allow, what they deny, or how things hang together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Line {
    Plain,
    Allowed,
    Denied,
}

#[derive(Debug, Clone)]
pub(crate) struct Edge {
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) label: String,
    pub(crate) line: Line,
}

/// The stack as a graph; the VPC, when there is one, as a box around what is in it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Diagram {
    /// The VPC's ID and its lines (CIDR, borrowed), when the stack has one.
    pub(crate) vpc: Option<Node>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) edges: Vec<Edge>,
}

impl Diagram {
    pub(crate) fn render(&self, format: Format) -> String {
        match format {
            Format::Mermaid => self.mermaid(),
            Format::Dot => self.dot(),
        }
    }

    /// Nodes are `n0`, `n1`, … in the text, labelled with their IDs.
    fn index(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    pub(crate) fn mermaid(&self) -> String {
        let label = |lines: Vec<String>| {
            lines
                .iter()
                .map(|l| l.replace('"', "#quot;"))
                .collect::<Vec<_>>()
                .join("<br/>")
        };
        let mut out = String::from("flowchart LR\n");
        let node = |out: &mut String, i: usize, n: &Node, indent: &str| {
            let _ = writeln!(out, "{indent}n{i}[\"{}\"]", label(n.text()));
        };
        if let Some(vpc) = &self.vpc {
            let _ = writeln!(out, "  subgraph vpc[\"{}\"]", label(vpc.text()));
            for (i, n) in self.nodes.iter().enumerate().filter(|(_, n)| n.in_vpc) {
                node(&mut out, i, n, "    ");
            }
            out.push_str("  end\n");
        }
        for (i, n) in self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.in_vpc || self.vpc.is_none())
        {
            node(&mut out, i, n, "  ");
        }
        for e in &self.edges {
            let (Some(a), Some(b)) = (self.index(&e.from), self.index(&e.to)) else {
                continue;
            };
            let arrow = match e.line {
                Line::Plain | Line::Allowed => "-->",
                Line::Denied => "-.->",
            };
            let _ = writeln!(
                out,
                "  n{a} {arrow}|\"{}\"| n{b}",
                e.label.replace('"', "#quot;")
            );
        }
        out.push_str("  classDef missing stroke:#c00,stroke-width:3px,stroke-dasharray:6 4\n");
        out.push_str("  classDef changed stroke:#d80,stroke-width:3px\n");
        out.push_str("  classDef borrowed fill:#eeeeee,stroke-dasharray:3 3\n");
        for (i, n) in self.nodes.iter().enumerate() {
            for (class, yes) in [
                ("missing", n.mark == Mark::Missing),
                ("changed", n.mark == Mark::Changed),
                ("borrowed", n.borrowed),
            ] {
                if yes {
                    let _ = writeln!(out, "  class n{i} {class}");
                }
            }
        }
        out
    }

    pub(crate) fn dot(&self) -> String {
        let escape = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let quote = |s: &str| format!("\"{}\"", escape(s));
        // Lines are joined with DOT's own `\n` (a centred line break).
        let lines = |l: Vec<String>| {
            let escaped: Vec<String> = l.iter().map(|x| escape(x)).collect();
            format!("\"{}\"", escaped.join("\\n"))
        };
        let attrs = |n: &Node| {
            let text = lines(n.text());
            let mut style = vec!["rounded"];
            let mut extra = String::new();
            if n.borrowed {
                style.extend(["dashed", "filled"]);
                extra.push_str(", fillcolor=\"#eeeeee\"");
            }
            match n.mark {
                Mark::Ok => {}
                Mark::Missing => {
                    style.push("bold");
                    extra.push_str(", color=\"#cc0000\"");
                }
                Mark::Changed => {
                    style.push("bold");
                    extra.push_str(", color=\"#dd8800\"");
                }
            }
            format!(
                "label={text}, shape=box, style={}{extra}",
                quote(&style.join(","))
            )
        };
        let mut out =
            String::from("digraph privbucket {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n");
        if let Some(vpc) = &self.vpc {
            let _ = writeln!(
                out,
                "  subgraph cluster_vpc {{\n    label={};\n    style={};",
                lines(vpc.text()),
                quote(if vpc.borrowed { "dashed" } else { "solid" })
            );
            for (i, n) in self.nodes.iter().enumerate().filter(|(_, n)| n.in_vpc) {
                let _ = writeln!(out, "    n{i} [{}];", attrs(n));
            }
            out.push_str("  }\n");
        }
        for (i, n) in self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.in_vpc || self.vpc.is_none())
        {
            let _ = writeln!(out, "  n{i} [{}];", attrs(n));
        }
        for e in &self.edges {
            let (Some(a), Some(b)) = (self.index(&e.from), self.index(&e.to)) else {
                continue;
            };
            let style = match e.line {
                Line::Plain => "color=\"#555555\"",
                Line::Allowed => "color=\"#008800\", penwidth=2",
                Line::Denied => "color=\"#cc0000\", style=dashed",
            };
            let _ = writeln!(out, "  n{a} -> n{b} [label={}, {style}];", quote(&e.label));
        }
        out.push_str("}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Diagram {
        let mut vpc = Node::new("vpc-1", vec!["10.16.0.0/16".into()]);
        vpc.borrowed = true;
        let mut subnet = Node::new("subnet-1", vec!["us-east-1a".into()]);
        subnet.in_vpc = true;
        let mut bucket = Node::new("my \"bucket\"", vec!["SSE-S3".into()]);
        bucket.mark = Mark::Missing;
        Diagram {
            vpc: Some(vpc),
            nodes: vec![subnet, bucket, Node::new("internet", vec![])],
            edges: vec![
                Edge {
                    from: "internet".into(),
                    to: "my \"bucket\"".into(),
                    label: "PutObject: denied".into(),
                    line: Line::Denied,
                },
                Edge {
                    from: "subnet-1".into(),
                    to: "nowhere".into(),
                    label: "dropped".into(),
                    line: Line::Plain,
                },
            ],
        }
    }

    #[test]
    fn mermaid_escapes_quotes_and_marks_what_is_missing() {
        let m = sample().mermaid();
        assert!(m.starts_with("flowchart LR\n"), "{m}");
        assert!(
            m.contains("subgraph vpc[\"vpc-1<br/>10.16.0.0/16<br/>borrowed\"]"),
            "{m}"
        );
        assert!(
            m.contains("n1[\"my #quot;bucket#quot;<br/>SSE-S3<br/>MISSING\"]"),
            "{m}"
        );
        assert!(m.contains("n2 -.->|\"PutObject: denied\"| n1"), "{m}");
        assert!(m.contains("class n1 missing"), "{m}");
        assert!(
            !m.contains("dropped"),
            "an edge to no node is left out: {m}"
        );
    }

    #[test]
    fn dot_escapes_quotes_and_clusters_the_vpc() {
        let d = sample().dot();
        assert!(d.contains("subgraph cluster_vpc {"), "{d}");
        assert!(
            d.contains("label=\"my \\\"bucket\\\"\\nSSE-S3\\nMISSING\""),
            "{d}"
        );
        assert!(d.contains("n2 -> n1 [label=\"PutObject: denied\""), "{d}");
        assert!(d.ends_with("}\n"));
    }
}
