//! `privbucket diagram`: the live stack as a graph (Mermaid or DOT), read from the account:
//! the state file says which resources are the stack's, and everything drawn (CIDRs, zones,
//! routes, egress, where the uploader runs, the encryption, what the bucket policy lets
//! through) is read live. A resource `status` calls missing or changed is marked.
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;

use super::connect;
use crate::config::Global;
use crate::diagram::{Diagram, Edge, Format, Line, Mark, Node};
use crate::graph::{Function, Step};
use crate::policy_cases::{policy_cases, write_denied};
use crate::progress::Progress;
use crate::resources::{Ctx, Live, bucket, egress, function, network, read, read_all, route_table};
use crate::stack::Stack;
use crate::state::{Facts, Ownership, Resources};

const INTERNET: &str = "internet";

pub(crate) async fn run(g: &Global, format: Format) -> Result<ExitCode> {
    let Some(st) = crate::commands::open_store(g).await?.load().await? else {
        return crate::error::input(format!(
            "nothing to draw: there is no state file at {}; run `privbucket up` first",
            g.state
        ));
    };
    let session = connect(g, Some(&st), None).await?;
    let stack = Stack::from_state(&st, &session.caller_arn);
    let ctx = Arc::new(Ctx::new(session.clients, stack, Progress::silent()));
    let drawn = read(&ctx, &st.resources).await?;
    print!("{}", drawn.diagram.render(format));
    Ok(ExitCode::SUCCESS)
}

/// What each recorded step reads as, as `status` would mark it.
fn marks(seen: Vec<(Step, Live)>) -> BTreeMap<Step, Mark> {
    seen.into_iter()
        .map(|(step, live)| {
            let mark = match live {
                Live::Missing => Mark::Missing,
                Live::Present(_, d) if d.is_empty() => Mark::Ok,
                Live::Present(..) => Mark::Changed,
            };
            (step, mark)
        })
        .collect()
}

/// What the diagram is drawn from, read in one round.
struct Seen {
    marks: BTreeMap<Step, Mark>,
    vpc: Option<read::VpcRead>,
    subnets: Vec<aws_sdk_ec2::types::Subnet>,
    tables: Vec<aws_sdk_ec2::types::RouteTable>,
    endpoints: Vec<aws_sdk_ec2::types::VpcEndpoint>,
    group: Option<aws_sdk_ec2::types::SecurityGroup>,
    uploader: Option<aws_sdk_lambda::types::FunctionConfiguration>,
    encryption: Option<String>,
    policy: Option<String>,
    prefix_list: String,
}

impl Seen {
    fn mark(&self, step: Step) -> Mark {
        self.marks.get(&step).copied().unwrap_or(Mark::Missing)
    }
}

fn vpc_of(res: &Resources) -> String {
    res.get(&Step::Vpc)
        .map(|v| v.id.clone())
        .unwrap_or_default()
}

async fn read_live(ctx: &Arc<Ctx>, res: &Arc<Resources>) -> Result<Seen> {
    let ec2 = &ctx.aws.ec2;
    let vpc_id = vpc_of(res);
    let subnet_ids = network::subnet_ids(res);
    let endpoint_ids = network::endpoint_ids(res);
    let group_id = res.get(&Step::SecurityGroup).map(|g| g.id.clone());
    let uploader = ctx.stack.function_name(Function::Uploader);
    let (seen, vpc, subnets, tables, endpoints, group, config, encryption, policy, pl) = tokio::join!(
        read_all(ctx.clone(), res),
        async {
            if vpc_id.is_empty() {
                return Ok(None);
            }
            read::vpc(ec2, &vpc_id).await
        },
        async {
            if subnet_ids.is_empty() {
                return Ok(Vec::new());
            }
            let ids = vec![crate::resources::ec2::filter_any("subnet-id", &subnet_ids)];
            read::subnets(ec2, ids, &vpc_id).await
        },
        route_table::in_vpc(ctx, &vpc_id),
        read::endpoints_by_id(ec2, &endpoint_ids),
        async {
            match &group_id {
                Some(id) => read::security_group(ec2, id).await,
                None => Ok(None),
            }
        },
        function::configuration(ctx, &uploader),
        bucket::encryption(ctx),
        bucket::policy(ctx),
        read::s3_prefix_list(ctx),
    );
    Ok(Seen {
        marks: marks(seen?),
        vpc: vpc?,
        subnets: subnets?,
        tables: tables?,
        endpoints: endpoints?,
        group: group?,
        uploader: config?,
        encryption: encryption?,
        policy: policy?,
        prefix_list: pl.map(str::to_string).unwrap_or_default(),
    })
}

/// The drawing, and the live policies it was drawn from (`verify --report` prints them).
pub(crate) struct Drawn {
    pub(crate) diagram: Diagram,
    /// The bucket policy, then each endpoint's: what it is, and the document as AWS holds it
    /// (`None`: there is none).
    pub(crate) policies: Vec<(String, Option<String>)>,
}

/// Reads the stack and draws it.
pub(crate) async fn read(ctx: &Arc<Ctx>, recorded: &Resources) -> Result<Drawn> {
    let res = Arc::new(recorded.clone());
    let seen = read_live(ctx, &res).await?;
    let stack = &ctx.stack;
    let mut d = Diagram::default();
    let vpc_id = vpc_of(&res);
    if !vpc_id.is_empty() {
        let cidr = seen.vpc.as_ref().and_then(|v| v.vpc.cidr_block());
        let mut n = Node::new(
            &vpc_id,
            vec![format!("VPC {}", cidr.unwrap_or("CIDR unknown"))],
        );
        n.mark = seen.mark(Step::Vpc);
        n.borrowed = borrowed(&res, Step::Vpc);
        d.vpc = Some(n);
    }
    subnets_and_tables(&mut d, &res, &seen);
    endpoints_and_group(&mut d, &res, &seen);
    functions_and_roles(&mut d, &res, &seen.marks, seen.uploader.as_ref());
    let encryption = seen.encryption.clone().unwrap_or_else(|| "none".into());
    let mut b = Node::new(
        stack.bucket(),
        vec!["S3 bucket".to_string(), format!("encryption {encryption}")],
    );
    b.mark = match (seen.mark(Step::Bucket), seen.mark(Step::BucketPolicy)) {
        (Mark::Missing, _) => Mark::Missing,
        (Mark::Ok, Mark::Ok) => Mark::Ok,
        _ => Mark::Changed,
    };
    d.nodes.push(b);
    if let Some(key) = res.get(&Step::Key) {
        let what = if key.ownership == Ownership::Borrowed {
            "KMS key (borrowed)".to_string()
        } else {
            format!("KMS key {}", crate::resources::key::alias(ctx))
        };
        let mut k = Node::new(&key.id, vec![what]);
        k.mark = seen.mark(Step::Key);
        k.borrowed = borrowed(&res, Step::Key);
        d.nodes.push(k);
        d.edges
            .push(plain(&key.id, stack.bucket(), "encrypts (SSE-KMS)"));
    }
    d.nodes
        .push(Node::new(INTERNET, vec!["anyone outside".to_string()]));
    let endpoint_ids = network::endpoint_ids(&res);
    policy_edges(&mut d, stack, &endpoint_ids, seen.policy.as_deref());
    let mut policies = vec![(
        format!("Bucket policy of {}", stack.bucket()),
        seen.policy.clone(),
    )];
    for id in endpoint_ids {
        let doc = seen
            .endpoints
            .iter()
            .find(|e| e.vpc_endpoint_id() == Some(id.as_str()))
            .and_then(|e| e.policy_document().map(str::to_string));
        policies.push((format!("Endpoint policy of {id}"), doc));
    }
    // The key's policy, when the stack has a key and the caller may read it.
    if let Some(key) = res.get(&Step::Key) {
        let arn = key.arn_or_id();
        let doc = crate::resources::key::key_policy_of(ctx, arn).await?;
        policies.push((format!("Key policy of {arn}"), doc.map(|d| d.to_string())));
    }
    Ok(Drawn {
        diagram: d,
        policies,
    })
}

fn borrowed(res: &Resources, step: Step) -> bool {
    res.get(&step)
        .is_some_and(|r| r.ownership == Ownership::Borrowed)
}

fn inside(mut n: Node) -> Node {
    n.in_vpc = true;
    n
}

/// The subnets, each with the route table AWS applies to it and where that sends S3.
fn subnets_and_tables(d: &mut Diagram, res: &Resources, seen: &Seen) {
    let lent = borrowed(res, Step::Vpc);
    for id in &network::subnet_ids(res) {
        let live = seen
            .subnets
            .iter()
            .find(|s| s.subnet_id() == Some(id.as_str()));
        let zone = live.and_then(|s| s.availability_zone()).unwrap_or("");
        let mut n = inside(Node::new(id, vec![format!("subnet {zone}")]));
        n.borrowed = lent;
        n.mark = match live {
            None => Mark::Missing,
            Some(_) => [Step::SubnetA, Step::SubnetB]
                .into_iter()
                .find(|s| res.get(s).is_some_and(|r| &r.id == id))
                .map_or(Mark::Ok, |s| seen.mark(s)),
        };
        d.nodes.push(n);
        let Some((rt, main)) = network::table_of(&seen.tables, id) else {
            continue;
        };
        if !d.nodes.iter().any(|n| n.id == rt) {
            let what = if main {
                "main route table"
            } else {
                "route table"
            };
            let mut n = inside(Node::new(&rt, vec![what.to_string()]));
            n.borrowed = lent;
            n.mark = [Step::RouteTableA, Step::RouteTableB]
                .into_iter()
                .find(|s| res.get(s).is_some_and(|r| r.id == rt))
                .map_or(Mark::Ok, |s| seen.mark(s));
            d.nodes.push(n);
            let table = seen
                .tables
                .iter()
                .find(|t| t.route_table_id() == Some(rt.as_str()));
            if let Some(table) = table {
                for to in route_table::s3_route_targets(table, &seen.prefix_list) {
                    d.edges.push(plain(&rt, &to, "S3 prefix list"));
                }
                for gw in route_table::internet_routes(table) {
                    d.edges
                        .push(plain(&rt, INTERNET, &format!("default route via {gw}")));
                }
            }
        }
        // The stack's own association, by its ID; a borrowed subnet's is the user's.
        let association = [Step::AssociationA, Step::AssociationB]
            .iter()
            .filter_map(|s| res.get(s))
            .find(|a| matches!(&a.facts, Some(Facts::Association { subnet, .. }) if subnet == id));
        let how = match (association, main) {
            (Some(a), _) => format!("routes with (association {})", a.id),
            (None, true) => "routes with (the VPC's main table)".to_string(),
            (None, false) => "routes with".to_string(),
        };
        d.edges.push(plain(id, &rt, &how));
    }
}

/// The endpoint(s) serving the subnets, and the uploader's security group with its egress.
fn endpoints_and_group(d: &mut Diagram, res: &Resources, seen: &Seen) {
    for (i, id) in network::endpoint_ids(res).iter().enumerate() {
        let live = seen
            .endpoints
            .iter()
            .find(|e| e.vpc_endpoint_id() == Some(id.as_str()));
        let mut n = inside(Node::new(id, vec!["S3 Gateway endpoint".to_string()]));
        n.mark = match (i, live) {
            (_, None) => Mark::Missing,
            (0, Some(_)) => seen.mark(Step::Endpoint),
            (_, Some(_)) => Mark::Ok,
        };
        n.borrowed = i > 0 || borrowed(res, Step::Endpoint);
        d.nodes.push(n);
    }
    if let Some(g) = res.get(&Step::SecurityGroup) {
        let rules: Vec<String> = seen
            .group
            .as_ref()
            .map(|g| {
                egress::egress(g)
                    .iter()
                    .map(|r| format!("egress {r}"))
                    .collect()
            })
            .unwrap_or_default();
        let lines = [vec!["security group".to_string()], rules].concat();
        let mut n = inside(Node::new(&g.id, lines));
        n.mark = seen.mark(Step::SecurityGroup);
        d.nodes.push(n);
    }
}

fn plain(from: &str, to: &str, label: &str) -> Edge {
    Edge {
        from: from.to_string(),
        to: to.to_string(),
        label: label.to_string(),
        line: Line::Plain,
    }
}

/// The functions (the uploader in its subnets and group), and the roles they run as.
fn functions_and_roles(
    d: &mut Diagram,
    res: &Resources,
    marks: &BTreeMap<Step, Mark>,
    uploader: Option<&aws_sdk_lambda::types::FunctionConfiguration>,
) {
    for f in Function::BOTH {
        let (Some(fr), Some(role)) = (res.get(&f.step()), res.get(&f.role())) else {
            continue;
        };
        let mut n = Node::new(&fr.id, vec![format!("Lambda function ({})", f.word())]);
        n.mark = marks.get(&f.step()).copied().unwrap_or(Mark::Missing);
        n.in_vpc = f == Function::Uploader;
        d.nodes.push(n);
        let mut r = Node::new(&role.id, vec!["IAM role".to_string()]);
        r.mark = marks.get(&f.role()).copied().unwrap_or(Mark::Missing);
        d.nodes.push(r);
        d.edges.push(plain(&fr.id, &role.id, "runs as"));
    }
    let Some(up) = res.get(&Step::UploaderFunction) else {
        return;
    };
    let placed = uploader.and_then(|c| c.vpc_config());
    for subnet in placed.map(|v| v.subnet_ids().to_vec()).unwrap_or_default() {
        d.edges.push(plain(&up.id, &subnet, "runs in"));
    }
    for group in placed
        .map(|v| v.security_group_ids().to_vec())
        .unwrap_or_default()
    {
        d.edges.push(plain(&up.id, &group, "ENIs in"));
    }
}

/// What the live bucket policy lets through, as the evaluator of `verify` reads it: the
/// uploader through the endpoint, the control function and anyone outside, each writing an
/// object.
fn policy_edges(d: &mut Diagram, stack: &Stack, endpoints: &[String], policy: Option<&str>) {
    let bucket = stack.bucket().to_string();
    let doc = policy.and_then(crate::policy::parse);
    let cases = policy_cases(stack, endpoints, None);
    let verdict = |who: &str| doc.as_ref().and_then(|doc| write_denied(doc, &cases, who));
    let edge = |from: &str, to: &str, denied: Option<bool>, must_deny: bool| {
        let (label, line) = match denied {
            Some(true) => ("PutObject: denied", Line::Denied),
            Some(false) if must_deny => ("PutObject: NOT denied", Line::Allowed),
            Some(false) => ("PutObject: allowed", Line::Allowed),
            None => (
                "PutObject: no bucket policy, or one beyond the evaluator",
                Line::Plain,
            ),
        };
        Edge {
            from: from.to_string(),
            to: to.to_string(),
            label: label.to_string(),
            line,
        }
    };
    let uploader = stack.function_name(Function::Uploader);
    if let Some(endpoint) = endpoints.first() {
        d.edges.push(plain(&uploader, endpoint, "S3 traffic"));
        d.edges.push(edge(
            endpoint,
            &bucket,
            verdict("the uploader through the endpoint"),
            false,
        ));
    }
    d.edges.push(edge(
        &stack.function_name(Function::Control),
        &bucket,
        verdict("the control function"),
        true,
    ));
    d.edges.push(edge(
        INTERNET,
        &bucket,
        verdict("an anonymous caller"),
        true,
    ));
}
