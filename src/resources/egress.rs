//! A security group's egress rules, flattened into a set so that what a group has and what it
//! should have compare as values (a permission with two destinations is two rules).
use std::collections::BTreeSet;
use std::fmt;

use aws_sdk_ec2::types::{
    IpPermission, IpRange, Ipv6Range, PrefixListId, SecurityGroup, UserIdGroupPair,
};

/// Where an egress rule sends traffic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Destination {
    Cidr(String),
    Ipv6(String),
    PrefixList(String),
    Group(String),
}

/// One egress rule, flattened: a permission with two destinations is two rules.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Rule {
    protocol: String,
    ports: Option<(i32, i32)>,
    to: Destination,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.protocol.as_str(), self.ports) {
            ("-1", _) => write!(f, "all traffic")?,
            (p, Some((a, b))) if a == b => write!(f, "{p}/{a}")?,
            (p, Some((a, b))) => write!(f, "{p}/{a}-{b}")?,
            (p, None) => write!(f, "{p}")?,
        }
        let (Destination::Cidr(d)
        | Destination::Ipv6(d)
        | Destination::PrefixList(d)
        | Destination::Group(d)) = &self.to;
        write!(f, " to {d}")
    }
}

impl Rule {
    pub(crate) fn https_to(prefix_list: &str) -> Rule {
        Rule {
            protocol: "tcp".into(),
            ports: Some((443, 443)),
            to: Destination::PrefixList(prefix_list.into()),
        }
    }

    /// EC2's default egress rule, the one `--no-egress-limit` keeps.
    pub(crate) fn is_allow_all(&self) -> bool {
        *self == Rule::allow_all()
    }

    pub(crate) fn allow_all() -> Rule {
        Rule {
            protocol: "-1".into(),
            ports: None,
            to: Destination::Cidr("0.0.0.0/0".into()),
        }
    }

    pub(crate) fn permission(&self) -> IpPermission {
        let p = IpPermission::builder().ip_protocol(&self.protocol);
        let p = match self.ports {
            Some((a, b)) if self.protocol != "-1" => p.from_port(a).to_port(b),
            _ => p,
        };
        match &self.to {
            Destination::Cidr(c) => p.ip_ranges(IpRange::builder().cidr_ip(c).build()),
            Destination::Ipv6(c) => p.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(c).build()),
            Destination::PrefixList(id) => {
                p.prefix_list_ids(PrefixListId::builder().prefix_list_id(id).build())
            }
            Destination::Group(g) => {
                p.user_id_group_pairs(UserIdGroupPair::builder().group_id(g).build())
            }
        }
        .build()
    }
}

/// A group's egress rules as a set.
pub(crate) fn egress(group: &SecurityGroup) -> BTreeSet<Rule> {
    let mut out = BTreeSet::new();
    for p in group.ip_permissions_egress() {
        let protocol = p.ip_protocol().unwrap_or("-1").to_string();
        let ports = match (protocol.as_str(), p.from_port(), p.to_port()) {
            ("-1", _, _) => None,
            (_, Some(a), Some(b)) => Some((a, b)),
            _ => None,
        };
        let rule = |to| Rule {
            protocol: protocol.clone(),
            ports,
            to,
        };
        for r in p.ip_ranges() {
            out.extend(r.cidr_ip().map(|c| rule(Destination::Cidr(c.into()))));
        }
        for r in p.ipv6_ranges() {
            out.extend(r.cidr_ipv6().map(|c| rule(Destination::Ipv6(c.into()))));
        }
        for r in p.prefix_list_ids() {
            out.extend(
                r.prefix_list_id()
                    .map(|c| rule(Destination::PrefixList(c.into()))),
            );
        }
        for r in p.user_id_group_pairs() {
            out.extend(r.group_id().map(|c| rule(Destination::Group(c.into()))));
        }
    }
    out
}
