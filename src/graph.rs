//! The steps of the stack and what each needs: one table a reader can check against the
//! architecture. `up` walks it forwards, `down` the same graph reversed, and the ready-queue
//! here decides which steps may run; `run` drives it.
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One resource (or, for `LambdaEnis`, one piece of work) of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Step {
    Vpc,
    SubnetA,
    SubnetB,
    RouteTableA,
    RouteTableB,
    AssociationA,
    AssociationB,
    Endpoint,
    SecurityGroup,
    /// The bucket's KMS key (`--kms-key`): made, or the user's own, borrowed. Without the
    /// flag the step is not in the graph.
    #[serde(rename = "kms-key")]
    Key,
    UploaderRole,
    ControlRole,
    Bucket,
    BucketPolicy,
    UploaderFunction,
    ControlFunction,
    /// Not a resource of ours: the network interfaces Lambda makes for the uploader. The
    /// function "needs" them and they need the subnets, security group and role, so `down`
    /// deletes the function, then waits for the ENIs' release, then deletes what they held.
    /// Going up, the step does nothing.
    LambdaEnis,
}

use Step::*;

/// Every step with the steps it needs. Functions come last, once the bucket is private.
pub(crate) const GRAPH: &[(Step, &[Step])] = &[
    (Vpc, &[]),
    (SubnetA, &[Vpc]),
    (SubnetB, &[Vpc]),
    (RouteTableA, &[Vpc]),
    (RouteTableB, &[Vpc]),
    (AssociationA, &[RouteTableA, SubnetA]),
    (AssociationB, &[RouteTableB, SubnetB]),
    (Endpoint, &[RouteTableA, RouteTableB]),
    (SecurityGroup, &[Vpc]),
    (Key, &[]),
    // The uploader may use the key (its inline policy names it); the bucket encrypts with it.
    (UploaderRole, &[Key]),
    (ControlRole, &[]),
    (Bucket, &[Key]),
    (BucketPolicy, &[Bucket, Endpoint]),
    (LambdaEnis, &[UploaderRole, SubnetA, SubnetB, SecurityGroup]),
    (
        UploaderFunction,
        &[LambdaEnis, BucketPolicy, AssociationA, AssociationB],
    ),
    (ControlFunction, &[ControlRole, BucketPolicy]),
];

/// Where `down` departs from the graph reversed: a step and every step it waits for before
/// its delete. (The rest wait, as the graph says, for every step that needs them.)
/// - The endpoint goes first. The bucket policy denies every object write that does not come
///   through it, so once it is gone nothing can write to the bucket, whatever runs.
/// - So the bucket policy's delete, which keeps the policy when the bucket holds objects, waits
///   for the endpoint instead of the uploader: its object count is final. It waits for the
///   control function too, whose role may write once the policy is gone.
pub(crate) const DOWN_ORDER: &[(Step, &[Step])] = &[
    (Endpoint, &[]),
    (BucketPolicy, &[Endpoint, ControlFunction]),
];

/// What a step needs besides [`GRAPH`] in a borrowed network (`up --vpc --subnets`), where
/// privbucket stacks share the VPC's S3 endpoint and the route tables privbucket added to it.
/// - Going up, the security group is made once the endpoint step has recorded the tables it
///   shares: the group carries them as its tags (`endpoint::shared`), which is how the other
///   stacks in the VPC know that privbucket added them, and that this stack needs them.
/// - Going down, the endpoint therefore waits for the group: a stack decides whether another
///   still needs what privbucket made or added for the stacks together only once its own
///   group, its mark of being there, is gone. Of stacks going down at once, the last to delete
///   its group sees no other, and removes it.
pub(crate) const IN_A_BORROWED_NETWORK: &[(Step, &[Step])] = &[(SecurityGroup, &[Endpoint])];

impl Step {
    /// The key in the state file and the `privbucket:resource` tag.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Vpc => "vpc",
            SubnetA => "subnet-a",
            SubnetB => "subnet-b",
            RouteTableA => "route-table-a",
            RouteTableB => "route-table-b",
            AssociationA => "association-a",
            AssociationB => "association-b",
            Endpoint => "endpoint",
            SecurityGroup => "security-group",
            Key => "kms-key",
            UploaderRole => "uploader-role",
            ControlRole => "control-role",
            Bucket => "bucket",
            BucketPolicy => "bucket-policy",
            UploaderFunction => "uploader-function",
            ControlFunction => "control-function",
            LambdaEnis => "lambda-enis",
        }
    }

    /// The step a state key or `privbucket:resource` tag names.
    pub(crate) fn from_key(key: &str) -> Option<Step> {
        GRAPH.iter().map(|(s, _)| *s).find(|s| s.key() == key)
    }

    /// The kind of resource the step stands for.
    pub(crate) fn resource_kind(self) -> ResourceKind {
        match self {
            Vpc => ResourceKind::Vpc,
            SubnetA | SubnetB => ResourceKind::Subnet,
            RouteTableA | RouteTableB => ResourceKind::RouteTable,
            AssociationA | AssociationB => ResourceKind::Association,
            Endpoint => ResourceKind::Endpoint,
            SecurityGroup => ResourceKind::SecurityGroup,
            Key => ResourceKind::Key,
            UploaderRole | ControlRole => ResourceKind::Role,
            Bucket => ResourceKind::Bucket,
            BucketPolicy => ResourceKind::BucketPolicy,
            UploaderFunction | ControlFunction => ResourceKind::Function,
            LambdaEnis => ResourceKind::LambdaEnis,
        }
    }

    /// The AWS kind, as a user would name it.
    pub(crate) fn kind(self) -> &'static str {
        self.resource_kind().word()
    }

    pub(crate) fn deps(self) -> &'static [Step] {
        GRAPH
            .iter()
            .find(|(s, _)| *s == self)
            .map(|(_, d)| *d)
            .unwrap_or(&[])
    }

    /// Steps whose resource lives in EC2.
    pub(crate) fn is_ec2(self) -> bool {
        self.resource_kind().is_ec2()
    }

    /// The control function and its role, which `--no-control-function` leaves out.
    fn is_control(self) -> bool {
        match self {
            ControlRole | ControlFunction => true,
            Vpc | SubnetA | SubnetB | RouteTableA | RouteTableB | AssociationA | AssociationB
            | Endpoint | SecurityGroup | Key | UploaderRole | Bucket | BucketPolicy
            | UploaderFunction | LambdaEnis => false,
        }
    }

    /// The subnets, route tables and associations privbucket makes for a VPC of its own; in
    /// a borrowed network (`up --vpc --subnets`) they are the user's and have no step.
    fn is_made_network(self) -> bool {
        match self {
            SubnetA | SubnetB | RouteTableA | RouteTableB | AssociationA | AssociationB => true,
            Vpc | Endpoint | SecurityGroup | Key | UploaderRole | ControlRole | Bucket
            | BucketPolicy | UploaderFunction | ControlFunction | LambdaEnis => false,
        }
    }

    /// Steps that stand for a resource recorded in the state file.
    pub(crate) fn is_resource(self) -> bool {
        self.resource_kind().traits().recorded
    }

    /// The bucket's KMS key, which only `--kms-key` puts in the graph.
    fn is_key(self) -> bool {
        self.resource_kind().traits().only_with_kms_key
    }
}

/// What a step stands for, whichever of a pair it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResourceKind {
    Vpc,
    Subnet,
    RouteTable,
    Association,
    Endpoint,
    SecurityGroup,
    Key,
    Role,
    Bucket,
    BucketPolicy,
    Function,
    /// Not a resource: Lambda's network interfaces, waited for by `down`.
    LambdaEnis,
}

/// What the program asks of a kind, answered for every kind in one exhaustive table
/// ([`ResourceKind::traits`]): a new kind does not compile until it answers each.
#[derive(Debug, Clone, Copy)]
struct Traits {
    /// As a user would name it.
    word: &'static str,
    /// Lives in EC2 (read in one snapshot by `status`).
    ec2: bool,
    /// Recorded in the state file (not a piece of work, as Lambda's ENIs are).
    recorded: bool,
    /// Holds the stack's data: `down` says how many objects before it asks.
    holds_objects: bool,
    /// In the graph only with `--kms-key`.
    only_with_kms_key: bool,
}

impl Traits {
    const fn of(word: &'static str) -> Traits {
        Traits {
            word,
            ec2: false,
            recorded: true,
            holds_objects: false,
            only_with_kms_key: false,
        }
    }

    const fn in_ec2(word: &'static str) -> Traits {
        Traits {
            ec2: true,
            ..Traits::of(word)
        }
    }
}

impl ResourceKind {
    fn traits(self) -> Traits {
        match self {
            ResourceKind::Vpc => Traits::in_ec2("vpc"),
            ResourceKind::Subnet => Traits::in_ec2("subnet"),
            ResourceKind::RouteTable => Traits::in_ec2("route-table"),
            ResourceKind::Association => Traits::in_ec2("route-table-association"),
            ResourceKind::Endpoint => Traits::in_ec2("vpc-endpoint"),
            ResourceKind::SecurityGroup => Traits::in_ec2("security-group"),
            ResourceKind::Key => Traits {
                only_with_kms_key: true,
                ..Traits::of("kms-key")
            },
            ResourceKind::Role => Traits::of("iam-role"),
            ResourceKind::Bucket => Traits {
                holds_objects: true,
                ..Traits::of("s3-bucket")
            },
            ResourceKind::BucketPolicy => Traits::of("bucket-policy"),
            ResourceKind::Function => Traits::of("lambda-function"),
            ResourceKind::LambdaEnis => Traits {
                recorded: false,
                ..Traits::of("lambda-enis")
            },
        }
    }

    /// As a user would name it.
    pub(crate) fn word(self) -> &'static str {
        self.traits().word
    }

    /// Kinds that hold the stack's data: `down` says how many objects before it asks.
    pub(crate) fn holds_objects(self) -> bool {
        self.traits().holds_objects
    }

    /// Kinds that live in EC2 (read in one snapshot by `status`).
    pub(crate) fn is_ec2(self) -> bool {
        self.traits().ec2
    }
}

/// One of the two subnets, each in its own zone, with its route table and association.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    A,
    B,
}

impl Side {
    pub(crate) const BOTH: [Side; 2] = [Side::A, Side::B];

    /// The position in `subnet_cidrs` and in the list of zones.
    pub(crate) fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }

    pub(crate) fn subnet(self) -> Step {
        match self {
            Side::A => SubnetA,
            Side::B => SubnetB,
        }
    }

    pub(crate) fn route_table(self) -> Step {
        match self {
            Side::A => RouteTableA,
            Side::B => RouteTableB,
        }
    }

    pub(crate) fn association(self) -> Step {
        match self {
            Side::A => AssociationA,
            Side::B => AssociationB,
        }
    }
}

/// The uploader (in the VPC, allowed to write) or the control function (outside it, denied).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Function {
    Uploader,
    Control,
}

impl Function {
    pub(crate) const BOTH: [Function; 2] = [Function::Uploader, Function::Control];

    /// The position in lists kept per function.
    pub(crate) fn index(self) -> usize {
        match self {
            Function::Uploader => 0,
            Function::Control => 1,
        }
    }

    pub(crate) fn word(self) -> &'static str {
        match self {
            Function::Uploader => "uploader",
            Function::Control => "control",
        }
    }

    pub(crate) fn role(self) -> Step {
        match self {
            Function::Uploader => UploaderRole,
            Function::Control => ControlRole,
        }
    }

    pub(crate) fn step(self) -> Step {
        match self {
            Function::Uploader => UploaderFunction,
            Function::Control => ControlFunction,
        }
    }
}

/// The steps of a stack, with or without the control function, a network of its own and a
/// KMS key.
pub(crate) fn steps(control_function: bool, borrowed_network: bool, key: bool) -> Vec<Step> {
    GRAPH
        .iter()
        .map(|(s, _)| *s)
        .filter(|s| control_function || !s.is_control())
        .filter(|s| !borrowed_network || !s.is_made_network())
        .filter(|s| key || !s.is_key())
        .collect()
}

/// Every step a stack may have: what `down` removes, whatever the settings.
pub(crate) fn all_steps() -> Vec<Step> {
    steps(true, false, true)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Create: a step waits for the steps it needs.
    Up,
    /// Delete: a step waits for the steps that need it.
    Down,
}

/// A ready-queue over the graph (after cargo's `DependencyQueue`): pure, synchronous, and
/// driven by an async loop elsewhere. A step that fails is simply never finished, so what
/// waits on it never becomes ready.
#[derive(Debug)]
pub(crate) struct Queue {
    waiting: BTreeMap<Step, BTreeSet<Step>>,
}

impl Queue {
    #[expect(
        clippy::expect_used,
        reason = "`waiting` has a key for every step of `set`, and only those are looked up"
    )]
    pub(crate) fn new(steps: &[Step], direction: Direction, borrowed_network: bool) -> Self {
        let set: BTreeSet<Step> = steps.iter().copied().collect();
        let mut waiting: BTreeMap<Step, BTreeSet<Step>> =
            set.iter().map(|s| (*s, BTreeSet::new())).collect();
        // `s` needs `d`: going up `s` waits for `d`, going down `d` waits for `s`.
        let need = |waiting: &mut BTreeMap<Step, BTreeSet<Step>>, s: Step, d: Step| {
            if set.contains(&s) && set.contains(&d) {
                match direction {
                    Direction::Up => waiting.get_mut(&s).expect("listed").insert(d),
                    Direction::Down => waiting.get_mut(&d).expect("listed").insert(s),
                };
            }
        };
        for &s in &set {
            for &d in s.deps() {
                need(&mut waiting, s, d);
            }
        }
        if direction == Direction::Down {
            for (s, waits) in DOWN_ORDER.iter().filter(|(s, _)| set.contains(s)) {
                *waiting.get_mut(s).expect("listed") =
                    waits.iter().copied().filter(|w| set.contains(w)).collect();
            }
        }
        // After `DOWN_ORDER`, which would otherwise send the endpoint first.
        if borrowed_network {
            for (s, deps) in IN_A_BORROWED_NETWORK {
                for &d in *deps {
                    need(&mut waiting, *s, d);
                }
            }
        }
        Queue { waiting }
    }

    /// Takes every step whose prerequisites are finished, in graph order.
    pub(crate) fn take_ready(&mut self) -> Vec<Step> {
        let ready: Vec<Step> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.is_empty())
            .map(|(s, _)| *s)
            .collect();
        for s in &ready {
            self.waiting.remove(s);
        }
        ready
    }

    /// Marks a step done: the steps waiting for it may become ready.
    pub(crate) fn finish(&mut self, step: Step) {
        for w in self.waiting.values_mut() {
            w.remove(&step);
        }
    }

    /// Steps that never became ready (something they wait for failed or was kept).
    pub(crate) fn blocked(&self) -> Vec<Step> {
        self.waiting.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(mut q: Queue) -> Vec<Vec<Step>> {
        let mut waves = Vec::new();
        loop {
            let ready = q.take_ready();
            if ready.is_empty() {
                break;
            }
            for s in &ready {
                q.finish(*s);
            }
            waves.push(ready);
        }
        waves
    }

    #[test]
    fn every_dependency_is_a_step_listed_earlier() {
        for (i, (s, deps)) in GRAPH.iter().enumerate() {
            for d in *deps {
                let j = GRAPH.iter().position(|(x, _)| x == d).expect("listed");
                assert!(j < i, "{s:?} needs {d:?}, listed later");
            }
        }
    }

    #[test]
    fn up_starts_independent_steps_at_once() {
        let waves = drain(Queue::new(&steps(true, false, false), Direction::Up, false));
        assert_eq!(waves[0], vec![Vpc, UploaderRole, ControlRole, Bucket]);
        assert!(waves[1].contains(&SubnetA) && waves[1].contains(&SecurityGroup));
        let all: Vec<Step> = waves.concat();
        assert_eq!(all.len(), steps(true, false, false).len());
        let pos = |s| all.iter().position(|x| *x == s).unwrap();
        for (s, deps) in GRAPH.iter().filter(|(s, _)| *s != Key) {
            for d in deps.iter().filter(|d| **d != Key) {
                assert!(pos(*d) < pos(*s));
            }
        }
    }

    #[test]
    fn a_kms_key_comes_before_the_bucket_and_the_uploaders_role_and_goes_after() {
        let up: Vec<Step> =
            drain(Queue::new(&steps(true, false, true), Direction::Up, false)).concat();
        let pos = |all: &[Step], s| all.iter().position(|x| *x == s).unwrap();
        assert!(pos(&up, Key) < pos(&up, Bucket) && pos(&up, Key) < pos(&up, UploaderRole));
        let down = drain(Queue::new(&all_steps(), Direction::Down, false)).concat();
        assert!(pos(&down, Bucket) < pos(&down, Key));
        assert!(pos(&down, UploaderRole) < pos(&down, Key));
    }

    #[test]
    fn down_is_the_reverse_and_roles_wait_for_enis() {
        let waves = drain(Queue::new(
            &steps(true, false, false),
            Direction::Down,
            false,
        ));
        let all: Vec<Step> = waves.concat();
        let pos = |s| all.iter().position(|x| *x == s).unwrap();
        assert!(pos(UploaderFunction) < pos(LambdaEnis));
        assert!(pos(LambdaEnis) < pos(UploaderRole));
        assert!(pos(LambdaEnis) < pos(SubnetA) && pos(LambdaEnis) < pos(SecurityGroup));
        assert!(pos(BucketPolicy) < pos(Bucket) && pos(Endpoint) < pos(RouteTableA));
        assert_eq!(*all.last().unwrap(), Vpc);
        // The endpoint goes at once; the bucket policy after it and the control function.
        assert!(waves[0].contains(&Endpoint) && waves[0].contains(&UploaderFunction));
        assert!(pos(Endpoint) < pos(BucketPolicy) && pos(ControlFunction) < pos(BucketPolicy));
    }

    #[test]
    fn in_a_borrowed_network_the_group_follows_the_endpoint_up_and_precedes_it_down() {
        let borrowed = steps(true, true, false);
        let up: Vec<Step> = drain(Queue::new(&borrowed, Direction::Up, true)).concat();
        let pos = |all: &[Step], s| all.iter().position(|x| *x == s).unwrap();
        assert!(pos(&up, Endpoint) < pos(&up, SecurityGroup));
        let down: Vec<Step> = drain(Queue::new(&all_steps(), Direction::Down, true)).concat();
        assert!(pos(&down, LambdaEnis) < pos(&down, SecurityGroup));
        assert!(pos(&down, SecurityGroup) < pos(&down, Endpoint));
        assert!(pos(&down, Endpoint) < pos(&down, BucketPolicy));
        // In a VPC of privbucket's own the endpoint still goes first.
        let made = drain(Queue::new(&all_steps(), Direction::Down, false));
        assert!(made[0].contains(&Endpoint));
    }

    #[test]
    fn down_order_names_steps_of_the_graph_and_never_a_step_itself() {
        for (s, waits) in DOWN_ORDER {
            assert!(GRAPH.iter().any(|(g, _)| g == s));
            assert!(!waits.contains(s));
        }
    }

    #[test]
    fn a_step_never_finished_blocks_what_waits_on_it() {
        let mut q = Queue::new(&steps(false, false, false), Direction::Down, false);
        let mut done = Vec::new();
        loop {
            let ready = q.take_ready();
            if ready.is_empty() {
                break;
            }
            for s in ready {
                if s != BucketPolicy {
                    q.finish(s);
                    done.push(s);
                }
            }
        }
        // Only the bucket waits for its policy: the endpoint went first.
        assert_eq!(q.blocked(), vec![Bucket]);
        assert!(done.contains(&Endpoint) && done.contains(&Vpc));
        assert!(done.contains(&SubnetA) && done.contains(&UploaderRole));
        assert!(
            !done.contains(&ControlRole),
            "no control function in this stack"
        );
    }
}
