//! Partition assignors: which member of a consumer group consumes which partitions.
//!
//! Pure functions of the members' subscriptions, the topics' partition counts and (for `Sticky`)
//! the previous assignment, modelled on Kafka's `RangeAssignor`, `RoundRobinAssignor` and
//! `StickyAssignor`. Every assignor gives each partition of a topic with at least one subscriber
//! to exactly one member subscribed to that topic, and the same inputs always give the same output.
//!
//! Internally the problem is restated in indices (members and topics in sorted order) and an
//! assignor computes the owner of every partition; only the final step builds the string-keyed
//! [`Assignment`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

/// A partition of a topic. Ordered by topic, then partition.
// Invariant: none of its own; a live partition has `partition` < its topic's partition count.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: u32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: u32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

/// Member id → partitions.
pub type Assignment = BTreeMap<String, BTreeSet<TopicPartition>>;

/// A partition assignment strategy.
// Invariant: `name` and `parse` are inverse over `ALL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Assignor {
    /// Per topic, contiguous ranges of partitions to the subscribers in id order.
    Range,
    /// All partitions in order, dealt to the members in id order, skipping non-subscribers.
    RoundRobin,
    /// Balanced, moving as few partitions as possible from the previous assignment.
    #[default]
    Sticky,
}

impl Assignor {
    /// Every assignor, in a fixed order.
    pub const ALL: [Assignor; 3] = [Assignor::Range, Assignor::RoundRobin, Assignor::Sticky];

    /// The protocol name: "range", "roundrobin" or "sticky".
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
            Assignor::Sticky => "sticky",
        }
    }

    /// The assignor with exactly this [`name`](Self::name).
    pub fn parse(name: &str) -> Option<Assignor> {
        Assignor::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The target assignment. `members`: member id → subscribed topic names. `partitions`: topic →
    /// partition count (topics missing here don't exist: their subscribers get nothing of them).
    /// `current`: the previous target assignment (only `Sticky` uses it; it may name members that
    /// left, topics that were deleted or partitions that no longer exist — those are ignored).
    ///
    /// The result has an entry (possibly empty) for every member in `members` and no other keys.
    pub fn assign(
        self,
        members: &BTreeMap<String, BTreeSet<String>>,
        partitions: &BTreeMap<String, u32>,
        current: &Assignment,
    ) -> Assignment {
        let problem = Problem::new(members, partitions);
        let owners = match self {
            Assignor::Range => range(&problem),
            Assignor::RoundRobin => round_robin(&problem),
            Assignor::Sticky => sticky(&problem, current),
        };
        problem.to_assignment(&owners)
    }
}

/// The owner (member index) of every partition: `owners[topic][partition]`.
type Owners = Vec<Vec<usize>>;

/// The assignment problem in indices. Invariant: `members` and `topics` are sorted and unique;
/// every topic exists, has at least one partition and at least one subscriber; `subscribers` and
/// `subscriptions` describe the same relation, each list ascending.
struct Problem<'a> {
    /// Member ids; a member's index is its position here.
    members: Vec<&'a str>,
    /// The topics to assign; a topic's index is its position here.
    topics: Vec<&'a str>,
    /// Partition count per topic.
    counts: Vec<u32>,
    /// Per topic: the members subscribed to it.
    subscribers: Vec<Vec<usize>>,
    /// Per member: the topics (of `topics`) it subscribes to.
    subscriptions: Vec<Vec<usize>>,
}

impl<'a> Problem<'a> {
    fn new(
        members: &'a BTreeMap<String, BTreeSet<String>>,
        partitions: &'a BTreeMap<String, u32>,
    ) -> Problem<'a> {
        let subscribed: BTreeSet<&str> = members.values().flatten().map(String::as_str).collect();
        let (topics, counts): (Vec<&str>, Vec<u32>) = partitions
            .iter()
            .filter(|(topic, &count)| count > 0 && subscribed.contains(topic.as_str()))
            .map(|(topic, &count)| (topic.as_str(), count))
            .unzip();
        let mut subscribers = vec![Vec::new(); topics.len()];
        let subscriptions = members
            .values()
            .enumerate()
            .map(|(m, subscription)| {
                // Both sorted the same way, so the indices come out ascending.
                let indices: Vec<usize> = subscription
                    .iter()
                    .filter_map(|name| topics.binary_search(&name.as_str()).ok())
                    .collect();
                for &t in &indices {
                    subscribers[t].push(m);
                }
                indices
            })
            .collect();
        let problem = Problem {
            members: members.keys().map(String::as_str).collect(),
            topics,
            counts,
            subscribers,
            subscriptions,
        };
        debug_assert!(problem.subscribers.iter().all(|s| !s.is_empty()));
        problem
    }

    fn topic_index(&self, name: &str) -> Option<usize> {
        self.topics.binary_search(&name).ok()
    }

    fn subscribes(&self, member: usize, topic: usize) -> bool {
        self.subscriptions[member].binary_search(&topic).is_ok()
    }

    /// Total partitions of the topics `member` subscribes to.
    fn reachable(&self, member: usize) -> usize {
        self.subscriptions[member]
            .iter()
            .map(|&t| self.counts[t] as usize)
            .sum()
    }

    /// The string-keyed assignment of `owners`, with an entry for every member.
    fn to_assignment(&self, owners: &Owners) -> Assignment {
        let mut assignment: Assignment = self
            .members
            .iter()
            .map(|&id| (id.to_owned(), BTreeSet::new()))
            .collect();
        for (t, partition_owners) in owners.iter().enumerate() {
            debug_assert_eq!(partition_owners.len(), self.counts[t] as usize);
            for (p, &m) in partition_owners.iter().enumerate() {
                debug_assert!(self.subscribes(m, t));
                let tp = TopicPartition::new(self.topics[t], p as u32);
                assignment.get_mut(self.members[m]).unwrap().insert(tp);
            }
        }
        assignment
    }
}

/// Kafka's range assignor: per topic, the subscribers in id order get contiguous ranges of
/// partitions, the first `count % subscribers` of them one extra.
fn range(problem: &Problem) -> Owners {
    problem
        .subscribers
        .iter()
        .zip(&problem.counts)
        .map(|(subscribers, &count)| {
            let (per_member, extra) = (
                count as usize / subscribers.len(),
                count as usize % subscribers.len(),
            );
            let mut owners = Vec::with_capacity(count as usize);
            for (i, &m) in subscribers.iter().enumerate() {
                owners.extend(std::iter::repeat_n(m, per_member + usize::from(i < extra)));
            }
            owners
        })
        .collect()
}

/// Kafka's round-robin assignor: all partitions in (topic, partition) order, each to the next
/// member in circular id order that subscribes to its topic.
fn round_robin(problem: &Problem) -> Owners {
    let member_count = problem.members.len();
    let mut next = 0;
    let mut owners = Vec::with_capacity(problem.topics.len());
    for (subscribers, &count) in problem.subscribers.iter().zip(&problem.counts) {
        let mut eligible = vec![false; member_count];
        for &m in subscribers {
            eligible[m] = true;
        }
        let mut topic_owners = Vec::with_capacity(count as usize);
        for _ in 0..count {
            // Terminates: the topic has a subscriber.
            while !eligible[next] {
                next = (next + 1) % member_count;
            }
            topic_owners.push(next);
            next = (next + 1) % member_count;
        }
        owners.push(topic_owners);
    }
    owners
}

/// The sticky assignor. Four steps:
/// 1. keep: each member (in id order) keeps the partitions of `current` that are still valid — it
///    subscribes to the topic, the partition exists and no earlier member claimed it;
/// 2. trim: a member holding more than its [quota](quotas) releases the excess;
/// 3. place: every unowned partition goes to the least loaded subscriber of its topic (topics
///    with fewer subscribers first, ties by member id);
/// 4. rebalance: while some member holds a partition whose topic has a subscriber holding at least
///    2 fewer partitions, one such partition of the most loaded such member moves to the least
///    loaded such subscriber.
fn sticky(problem: &Problem, current: &Assignment) -> Owners {
    let groups = SubscriberGroups::new(problem);
    let mut holdings = Holdings::new(problem);
    holdings.keep(problem, current);
    for (m, quota) in quotas(problem, &groups).into_iter().enumerate() {
        holdings.trim(problem, m, quota);
    }
    let mut balancer = Balancer::new(problem, &groups, holdings);
    balancer.place_unowned();
    balancer.rebalance();
    balancer.into_owners()
}

/// The topics grouped by identical subscriber sets, so a member's load is indexed once per group
/// rather than once per topic. Invariant: `members[g]` is the (ascending) subscriber list of every
/// topic `t` with `of_topic[t] == g`; `of_member[m]` lists, ascending, the groups `m` belongs to.
struct SubscriberGroups {
    /// Per topic: its group.
    of_topic: Vec<usize>,
    /// Per group: the subscribers of its topics.
    members: Vec<Vec<usize>>,
    /// Per member: the groups it is in.
    of_member: Vec<Vec<usize>>,
}

impl SubscriberGroups {
    fn new(problem: &Problem) -> SubscriberGroups {
        let mut index: BTreeMap<&[usize], usize> = BTreeMap::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        let of_topic = problem
            .subscribers
            .iter()
            .map(|subscribers| {
                *index.entry(subscribers).or_insert_with(|| {
                    members.push(subscribers.clone());
                    members.len() - 1
                })
            })
            .collect();
        let mut of_member = vec![Vec::new(); problem.members.len()];
        for (g, group_members) in members.iter().enumerate() {
            for &m in group_members {
                of_member[m].push(g);
            }
        }
        SubscriberGroups {
            of_topic,
            members,
            of_member,
        }
    }
}

/// The most partitions each member can hold in any sticky result, so trimming to it never moves a
/// partition that the result would keep in place (which makes the assignor idempotent).
///
/// In a result, a member holding `c` partitions of topic `t` has every other subscriber of `t`
/// holding at least `c - 1` (or rebalancing would move one); together those `s` subscribers hold
/// at most the `n` partitions of all topics any of them subscribes to, so `c ≤ ceil(n / s)`. The
/// quota is the largest such bound over the member's topics, capped by what it can reach at all.
/// With identical subscriptions it is `ceil(partitions / members)`.
fn quotas(problem: &Problem, groups: &SubscriberGroups) -> Vec<usize> {
    // `seen[t] == g`: topic `t` was already counted for group `g`.
    let mut seen = vec![usize::MAX; problem.topics.len()];
    let group_bound: Vec<usize> = groups
        .members
        .iter()
        .enumerate()
        .map(|(g, group_members)| {
            let mut reach = 0;
            for &m in group_members {
                for &t in &problem.subscriptions[m] {
                    if seen[t] != g {
                        seen[t] = g;
                        reach += problem.counts[t] as usize;
                    }
                }
            }
            reach.div_ceil(group_members.len())
        })
        .collect();
    (0..problem.members.len())
        .map(|m| {
            let bound = groups.of_member[m].iter().map(|&g| group_bound[g]).max();
            problem.reachable(m).min(bound.unwrap_or(0))
        })
        .collect()
}

/// Who owns what. Invariant: `owner[t][p] == Some(m)` exactly when `held[m][t]` contains `p`;
/// `held` has no empty sets; `load[m]` is the number of partitions `m` holds.
struct Holdings {
    /// Per topic, per partition: its owner, if any.
    owner: Vec<Vec<Option<usize>>>,
    /// Per member: topic → the partitions of it the member holds.
    held: Vec<BTreeMap<usize, BTreeSet<u32>>>,
    /// Per member: how many partitions it holds.
    load: Vec<usize>,
}

impl Holdings {
    /// Nobody owns anything.
    fn new(problem: &Problem) -> Holdings {
        Holdings {
            owner: problem
                .counts
                .iter()
                .map(|&count| vec![None; count as usize])
                .collect(),
            held: vec![BTreeMap::new(); problem.members.len()],
            load: vec![0; problem.members.len()],
        }
    }

    fn add(&mut self, member: usize, topic: usize, partition: u32) {
        debug_assert!(self.owner[topic][partition as usize].is_none());
        self.owner[topic][partition as usize] = Some(member);
        self.held[member]
            .entry(topic)
            .or_default()
            .insert(partition);
        self.load[member] += 1;
    }

    fn remove(&mut self, member: usize, topic: usize, partition: u32) {
        debug_assert_eq!(self.owner[topic][partition as usize], Some(member));
        self.owner[topic][partition as usize] = None;
        let partitions = self.held[member].get_mut(&topic).unwrap();
        partitions.remove(&partition);
        if partitions.is_empty() {
            self.held[member].remove(&topic);
        }
        self.load[member] -= 1;
    }

    /// Step 1: each member, in id order, claims its still valid partitions of `current`.
    fn keep(&mut self, problem: &Problem, current: &Assignment) {
        for (m, id) in problem.members.iter().enumerate() {
            for tp in current.get(*id).into_iter().flatten() {
                if let Some(t) = self.claimable(problem, m, tp) {
                    self.add(m, t, tp.partition);
                }
            }
        }
    }

    /// The topic index of `tp` if `member` may keep it: it subscribes to the topic, the partition
    /// exists and nobody owns it yet.
    fn claimable(&self, problem: &Problem, member: usize, tp: &TopicPartition) -> Option<usize> {
        let t = problem.topic_index(&tp.topic)?;
        let owner = self.owner[t].get(tp.partition as usize)?;
        (owner.is_none() && problem.subscribes(member, t)).then_some(t)
    }

    /// Step 2: `member` releases partitions beyond `quota`, those of the most widely subscribed
    /// topics (the easiest to place elsewhere) first, then the highest.
    fn trim(&mut self, problem: &Problem, member: usize, quota: usize) {
        let excess = self.load[member].saturating_sub(quota);
        if excess == 0 {
            return;
        }
        let mut held: Vec<(usize, u32)> = self.held[member]
            .iter()
            .flat_map(|(&t, partitions)| partitions.iter().map(move |&p| (t, p)))
            .collect();
        held.sort_unstable_by_key(|&(t, p)| Reverse((problem.subscribers[t].len(), t, p)));
        for &(t, p) in &held[..excess] {
            self.remove(member, t, p);
        }
    }
}

/// Places and moves partitions by load. Invariant: `by_load[g]` holds exactly `(load[m], m)` for
/// each member `m` of group `g`, so its first entry is the group's least loaded member.
struct Balancer<'p, 'a> {
    problem: &'p Problem<'a>,
    groups: &'p SubscriberGroups,
    holdings: Holdings,
    /// Per group: its members by (load, id).
    by_load: Vec<BTreeSet<(usize, usize)>>,
}

impl<'p, 'a> Balancer<'p, 'a> {
    fn new(
        problem: &'p Problem<'a>,
        groups: &'p SubscriberGroups,
        holdings: Holdings,
    ) -> Balancer<'p, 'a> {
        let by_load = groups
            .members
            .iter()
            .map(|members| members.iter().map(|&m| (holdings.load[m], m)).collect())
            .collect();
        Balancer {
            problem,
            groups,
            holdings,
            by_load,
        }
    }

    /// The least loaded subscriber of `topic` (lowest id among equals), with its load.
    fn least_loaded(&self, topic: usize) -> (usize, usize) {
        *self.by_load[self.groups.of_topic[topic]]
            .first()
            .expect("every topic has a subscriber")
    }

    /// Gives `partition` of `topic` to `to`, taking it from its owner if it has one.
    fn transfer(&mut self, topic: usize, partition: u32, to: usize) {
        if let Some(from) = self.holdings.owner[topic][partition as usize] {
            let old_load = self.holdings.load[from];
            self.holdings.remove(from, topic, partition);
            self.reindex(from, old_load);
        }
        let old_load = self.holdings.load[to];
        self.holdings.add(to, topic, partition);
        self.reindex(to, old_load);
    }

    /// Restores the `by_load` invariant after `member`'s load changed from `old_load`.
    fn reindex(&mut self, member: usize, old_load: usize) {
        let load = self.holdings.load[member];
        for &g in &self.groups.of_member[member] {
            let present = self.by_load[g].remove(&(old_load, member));
            debug_assert!(present);
            self.by_load[g].insert((load, member));
        }
    }

    /// Step 3: every unowned partition to the least loaded subscriber of its topic, topics with
    /// fewer subscribers first (they have fewer places to go).
    fn place_unowned(&mut self) {
        let mut topics: Vec<usize> = (0..self.problem.topics.len()).collect();
        topics.sort_unstable_by_key(|&t| (self.problem.subscribers[t].len(), t));
        for t in topics {
            for p in 0..self.problem.counts[t] {
                if self.holdings.owner[t][p as usize].is_none() {
                    let (_, member) = self.least_loaded(t);
                    self.transfer(t, p, member);
                }
            }
        }
    }

    /// Step 4: one move at a time, always from the most loaded member that has an improving move
    /// (ties by member id), to the least loaded subscriber of one of its topics; done when no
    /// member has one. Letting one donor shed all it can instead would drop it below members that
    /// still have to shed, and it would then receive their partitions. With identical
    /// subscriptions a member that sheds never receives: it sheds at the maximum load `l`, the
    /// maximum never rises, and a receiver holds at most the maximum minus 2, so at most `l - 2`.
    /// Terminates: every move lowers the sum of the squared loads by at least 2.
    fn rebalance(&mut self) {
        let mut donors: BTreeSet<(Reverse<usize>, usize)> = (0..self.problem.members.len())
            .map(|m| (Reverse(self.holdings.load[m]), m))
            .collect();
        loop {
            // A member holding fewer than the least loaded member plus 2 has no improving move,
            // nor has anyone after it.
            let Some(&(Reverse(min_load), _)) = donors.last() else {
                return;
            };
            let next = donors
                .iter()
                .take_while(|&&(Reverse(load), _)| load >= min_load + 2)
                .find_map(|&(_, donor)| Some((donor, self.improving_move(donor)?)));
            let Some((donor, (topic, partition, receiver))) = next else {
                return;
            };
            for m in [donor, receiver] {
                donors.remove(&(Reverse(self.holdings.load[m]), m));
            }
            self.transfer(topic, partition, receiver);
            for m in [donor, receiver] {
                donors.insert((Reverse(self.holdings.load[m]), m));
            }
        }
    }

    /// The move `(topic, partition, receiver)` of one of `donor`'s partitions to the least loaded
    /// subscriber of its topic, if that subscriber holds at least 2 fewer partitions (the least
    /// loaded over all of `donor`'s topics, ties by member id then topic; the topic's highest
    /// partition moves).
    fn improving_move(&self, donor: usize) -> Option<(usize, u32, usize)> {
        let load = self.holdings.load[donor];
        let ((receiver_load, receiver), topic) = self.holdings.held[donor]
            .keys()
            .map(|&t| (self.least_loaded(t), t))
            .min()?;
        if load < receiver_load + 2 {
            return None;
        }
        let partition = *self.holdings.held[donor][&topic].last().unwrap();
        Some((topic, partition, receiver))
    }

    /// The owner of every partition; all are owned once placed.
    fn into_owners(self) -> Owners {
        self.holdings
            .owner
            .into_iter()
            .map(|owners| {
                owners
                    .into_iter()
                    .map(|o| o.expect("every partition is placed"))
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use proptest::collection::{btree_map, btree_set, vec};
    use proptest::prelude::*;

    use super::*;

    /// Topics that may exist in generated cases.
    const TOPICS: [&str; 4] = ["a", "b", "c", "d"];
    /// A topic that never exists but may be subscribed to or named in a previous assignment.
    const GHOST_TOPIC: &str = "gone";
    /// Member ids are drawn from `m00..m{MEMBER_ID_POOL - 1}`.
    const MEMBER_ID_POOL: u32 = 40;
    /// Generated groups have fewer members than this.
    const MAX_MEMBERS: usize = 20;
    /// Generated topics have fewer partitions than this.
    const MAX_PARTITIONS: u32 = 8;

    fn tp(topic: &str, partition: u32) -> TopicPartition {
        TopicPartition::new(topic, partition)
    }

    fn group(spec: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        spec.iter()
            .map(|(id, topics)| {
                let topics = topics.iter().map(|t| t.to_string()).collect();
                (id.to_string(), topics)
            })
            .collect()
    }

    fn counts(spec: &[(&str, u32)]) -> BTreeMap<String, u32> {
        spec.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn assignment(spec: &[(&str, &[(&str, u32)])]) -> Assignment {
        spec.iter()
            .map(|(id, tps)| (id.to_string(), tps.iter().map(|(t, p)| tp(t, *p)).collect()))
            .collect()
    }

    /// Every member with the same subscription.
    fn uniform(
        ids: &BTreeSet<String>,
        topics: &BTreeSet<String>,
    ) -> BTreeMap<String, BTreeSet<String>> {
        ids.iter().map(|id| (id.clone(), topics.clone())).collect()
    }

    /// Partition → owner.
    fn owners(a: &Assignment) -> BTreeMap<&TopicPartition, &str> {
        a.iter()
            .flat_map(|(id, tps)| tps.iter().map(move |tp| (tp, id.as_str())))
            .collect()
    }

    /// Max − min of the members' partition counts (0 without members).
    fn spread(a: &Assignment) -> usize {
        let loads = a.values().map(BTreeSet::len);
        loads.clone().max().unwrap_or(0) - loads.min().unwrap_or(0)
    }

    /// The partitions that must be assigned: every partition of every subscribed, existing topic.
    fn expected_partitions(
        members: &BTreeMap<String, BTreeSet<String>>,
        partitions: &BTreeMap<String, u32>,
    ) -> BTreeSet<TopicPartition> {
        let subscribed: BTreeSet<&String> = members.values().flatten().collect();
        partitions
            .iter()
            .filter(|(t, _)| subscribed.contains(t))
            .flat_map(|(t, &n)| (0..n).map(move |p| tp(t, p)))
            .collect()
    }

    /// The assignment covers exactly the expected partitions, each once, each to a subscriber of
    /// its topic, and has exactly the members as keys.
    fn check_valid(
        members: &BTreeMap<String, BTreeSet<String>>,
        partitions: &BTreeMap<String, u32>,
        a: &Assignment,
    ) -> Result<(), String> {
        if !a.keys().eq(members.keys()) {
            return Err(format!(
                "keys {:?} != members {:?}",
                a.keys(),
                members.keys()
            ));
        }
        let mut seen = BTreeSet::new();
        for (id, tps) in a {
            for tp in tps {
                if !members[id].contains(&tp.topic) {
                    return Err(format!("{tp:?} given to {id}, not subscribed"));
                }
                if !seen.insert(tp.clone()) {
                    return Err(format!("{tp:?} assigned twice"));
                }
            }
        }
        let expected = expected_partitions(members, partitions);
        if seen != expected {
            return Err(format!("assigned {seen:?}, expected {expected:?}"));
        }
        Ok(())
    }

    /// Some member of `a` holds a partition of a topic that a member holding at least 2 fewer
    /// subscribes to.
    fn improving_move(
        members: &BTreeMap<String, BTreeSet<String>>,
        a: &Assignment,
    ) -> Option<String> {
        for (donor, tps) in a {
            for (receiver, theirs) in a {
                if tps.len() < theirs.len() + 2 {
                    continue;
                }
                if let Some(tp) = tps.iter().find(|tp| members[receiver].contains(&tp.topic)) {
                    return Some(format!("{tp:?} could move from {donor} to {receiver}"));
                }
            }
        }
        None
    }

    fn member_id() -> impl Strategy<Value = String> {
        (0..MEMBER_ID_POOL).prop_map(|i| format!("m{i:02}"))
    }

    fn topic_name() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(TOPICS.to_vec()).prop_map(String::from),
            1 => Just(GHOST_TOPIC.to_string()),
        ]
    }

    fn subscription() -> impl Strategy<Value = BTreeSet<String>> {
        btree_set(topic_name(), 0..=TOPICS.len())
    }

    fn members() -> impl Strategy<Value = BTreeMap<String, BTreeSet<String>>> {
        btree_map(member_id(), subscription(), 0..MAX_MEMBERS)
    }

    /// Each of `TOPICS` missing or with 0..MAX_PARTITIONS partitions.
    fn partitions() -> impl Strategy<Value = BTreeMap<String, u32>> {
        vec(prop::option::of(0..MAX_PARTITIONS), TOPICS.len()).prop_map(|counts| {
            TOPICS
                .iter()
                .zip(counts)
                .filter_map(|(t, n)| Some((t.to_string(), n?)))
                .collect()
        })
    }

    /// A random previous assignment: departed members, deleted topics, partitions out of range
    /// and partitions held twice included.
    fn previous() -> impl Strategy<Value = Assignment> {
        let partition = (topic_name(), 0..MAX_PARTITIONS + 2).prop_map(|(t, p)| tp(&t, p));
        btree_map(member_id(), btree_set(partition, 0..12), 0..MAX_MEMBERS)
    }

    fn member_ids(min: usize) -> impl Strategy<Value = BTreeSet<String>> {
        btree_set(member_id(), min..MAX_MEMBERS)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn every_partition_goes_to_exactly_one_subscriber(
            members in members(),
            partitions in partitions(),
            current in previous(),
        ) {
            for assignor in Assignor::ALL {
                let a = assignor.assign(&members, &partitions, &current);
                prop_assert_eq!(check_valid(&members, &partitions, &a), Ok(()), "{:?}", assignor);
            }
        }

        #[test]
        fn identical_subscriptions_are_balanced(
            ids in member_ids(0),
            topics in subscription(),
            partitions in partitions(),
            current in previous(),
        ) {
            let members = uniform(&ids, &topics);
            for assignor in [Assignor::RoundRobin, Assignor::Sticky] {
                let a = assignor.assign(&members, &partitions, &current);
                prop_assert!(spread(&a) <= 1, "{:?}: {:?}", assignor, a);
            }
        }

        #[test]
        fn one_shared_topic_is_balanced_by_every_assignor(
            ids in member_ids(0),
            topic in topic_name(),
            partitions in partitions(),
            current in previous(),
        ) {
            let members = uniform(&ids, &BTreeSet::from([topic]));
            for assignor in Assignor::ALL {
                let a = assignor.assign(&members, &partitions, &current);
                prop_assert!(spread(&a) <= 1, "{:?}: {:?}", assignor, a);
            }
        }

        #[test]
        fn sticky_adding_a_member_moves_only_its_share(
            ids in member_ids(1),
            topics in subscription(),
            partitions in partitions(),
            current in previous(),
            newcomer in member_id(),
        ) {
            prop_assume!(!ids.contains(&newcomer));
            let before = Assignor::Sticky.assign(&uniform(&ids, &topics), &partitions, &current);
            let mut grown = ids.clone();
            grown.insert(newcomer.clone());
            let members = uniform(&grown, &topics);
            let after = Assignor::Sticky.assign(&members, &partitions, &before);
            prop_assert!(spread(&after) <= 1);
            for id in &ids {
                prop_assert!(after[id].is_subset(&before[id]), "{} gained partitions", id);
            }
            let moved: usize = ids.iter().map(|id| before[id].len() - after[id].len()).sum();
            let total = expected_partitions(&members, &partitions).len();
            prop_assert_eq!(moved, after[&newcomer].len());
            prop_assert_eq!(moved, total / grown.len());
        }

        #[test]
        fn sticky_removing_a_member_moves_only_its_partitions(
            ids in member_ids(1),
            topics in subscription(),
            partitions in partitions(),
            current in previous(),
            leaver in any::<prop::sample::Index>(),
        ) {
            let before = Assignor::Sticky.assign(&uniform(&ids, &topics), &partitions, &current);
            let leaver = leaver.get(&ids.iter().collect::<Vec<_>>()).to_string();
            let mut shrunk = ids.clone();
            shrunk.remove(&leaver);
            let after = Assignor::Sticky.assign(&uniform(&shrunk, &topics), &partitions, &before);
            prop_assert!(spread(&after) <= 1);
            let after_owners = owners(&after);
            for (tp, owner) in owners(&before) {
                if owner != leaver {
                    prop_assert_eq!(after_owners.get(tp), Some(&owner), "{:?} moved", tp);
                }
            }
        }

        #[test]
        fn sticky_is_idempotent(
            members in members(),
            partitions in partitions(),
            current in previous(),
        ) {
            let first = Assignor::Sticky.assign(&members, &partitions, &current);
            let second = Assignor::Sticky.assign(&members, &partitions, &first);
            prop_assert_eq!(first, second);
        }

        #[test]
        fn sticky_leaves_no_improving_move(
            members in members(),
            partitions in partitions(),
            current in previous(),
        ) {
            let a = Assignor::Sticky.assign(&members, &partitions, &current);
            prop_assert_eq!(improving_move(&members, &a), None);
        }

        #[test]
        fn assignors_are_deterministic(
            members in members(),
            partitions in partitions(),
            current in previous(),
        ) {
            for assignor in Assignor::ALL {
                let a = assignor.assign(&members, &partitions, &current);
                prop_assert_eq!(&a, &assignor.assign(&members, &partitions, &current));
                if assignor != Assignor::Sticky {
                    let fresh = assignor.assign(&members, &partitions, &Assignment::new());
                    prop_assert_eq!(&a, &fresh, "{:?} depends on the current assignment", assignor);
                }
            }
        }
    }

    /// A proptest failure: 5 members, 19 partitions, then "m03" joins; only the newcomer may gain.
    #[test]
    fn sticky_adding_a_member_regression() {
        let topics: BTreeSet<String> = ["a", "b", "d"].iter().map(|t| t.to_string()).collect();
        let partitions = counts(&[("a", 7), ("b", 6), ("d", 6)]);
        let ids: BTreeSet<String> = ["m00", "m01", "m02", "m08", "m09"]
            .iter()
            .map(|id| id.to_string())
            .collect();
        let before =
            Assignor::Sticky.assign(&uniform(&ids, &topics), &partitions, &Assignment::new());
        let mut grown = ids.clone();
        grown.insert("m03".to_string());
        let after = Assignor::Sticky.assign(&uniform(&grown, &topics), &partitions, &before);
        assert!(spread(&after) <= 1, "{after:?}");
        for id in &ids {
            assert!(
                after[id].is_subset(&before[id]),
                "{id} gained partitions: {after:?}"
            );
        }
        let moved: usize = ids
            .iter()
            .map(|id| before[id].len() - after[id].len())
            .sum();
        assert_eq!(moved, after["m03"].len());
        assert_eq!(moved, 19 / grown.len());
    }

    #[test]
    fn names_round_trip_and_sticky_is_the_default() {
        for assignor in Assignor::ALL {
            assert_eq!(Assignor::parse(assignor.name()), Some(assignor));
        }
        assert_eq!(Assignor::parse("Range"), None);
        assert_eq!(Assignor::parse("round-robin"), None);
        assert_eq!(Assignor::parse(""), None);
        assert_eq!(Assignor::default(), Assignor::Sticky);
    }

    /// Kafka's `RangeAssignor` doc: 2 members, 2 topics of 3 partitions.
    #[test]
    fn range_kafka_example() {
        let members = group(&[("C0", &["t0", "t1"]), ("C1", &["t0", "t1"])]);
        let partitions = counts(&[("t0", 3), ("t1", 3)]);
        let a = Assignor::Range.assign(&members, &partitions, &Assignment::new());
        let expected = assignment(&[
            ("C0", &[("t0", 0), ("t0", 1), ("t1", 0), ("t1", 1)]),
            ("C1", &[("t0", 2), ("t1", 2)]),
        ]);
        assert_eq!(a, expected);
    }

    #[test]
    fn range_splits_each_topic_among_its_own_subscribers() {
        let members = group(&[("a", &["x"]), ("b", &["x", "y"]), ("c", &["y", "z"])]);
        let partitions = counts(&[("x", 5), ("y", 1), ("z", 2), ("unsubscribed", 4)]);
        let a = Assignor::Range.assign(&members, &partitions, &Assignment::new());
        let expected = assignment(&[
            ("a", &[("x", 0), ("x", 1), ("x", 2)]),
            ("b", &[("x", 3), ("x", 4), ("y", 0)]),
            ("c", &[("z", 0), ("z", 1)]),
        ]);
        assert_eq!(a, expected);
    }

    /// Kafka's `RoundRobinAssignor` doc, identical subscriptions.
    #[test]
    fn round_robin_kafka_example_identical() {
        let members = group(&[("C0", &["t0", "t1"]), ("C1", &["t0", "t1"])]);
        let partitions = counts(&[("t0", 3), ("t1", 3)]);
        let a = Assignor::RoundRobin.assign(&members, &partitions, &Assignment::new());
        let expected = assignment(&[
            ("C0", &[("t0", 0), ("t0", 2), ("t1", 1)]),
            ("C1", &[("t0", 1), ("t1", 0), ("t1", 2)]),
        ]);
        assert_eq!(a, expected);
    }

    /// Kafka's `RoundRobinAssignor` doc, mixed subscriptions.
    #[test]
    fn round_robin_kafka_example_mixed() {
        let members = group(&[
            ("C0", &["t0"]),
            ("C1", &["t0", "t1"]),
            ("C2", &["t0", "t1", "t2"]),
        ]);
        let partitions = counts(&[("t0", 1), ("t1", 2), ("t2", 3)]);
        let a = Assignor::RoundRobin.assign(&members, &partitions, &Assignment::new());
        let expected = assignment(&[
            ("C0", &[("t0", 0)]),
            ("C1", &[("t1", 0)]),
            ("C2", &[("t1", 1), ("t2", 0), ("t2", 1), ("t2", 2)]),
        ]);
        assert_eq!(a, expected);
    }

    /// Kafka's `StickyAssignor` doc, first example: 3 members, 4 topics of 2, then C1 leaves.
    #[test]
    fn sticky_kafka_example_identical() {
        let all: &[&str] = &["t0", "t1", "t2", "t3"];
        let partitions = counts(&[("t0", 2), ("t1", 2), ("t2", 2), ("t3", 2)]);
        let members = group(&[("C0", all), ("C1", all), ("C2", all)]);
        let first = Assignor::Sticky.assign(&members, &partitions, &Assignment::new());
        let expected = assignment(&[
            ("C0", &[("t0", 0), ("t1", 1), ("t3", 0)]),
            ("C1", &[("t0", 1), ("t2", 0), ("t3", 1)]),
            ("C2", &[("t1", 0), ("t2", 1)]),
        ]);
        assert_eq!(first, expected);

        let members = group(&[("C0", all), ("C2", all)]);
        let second = Assignor::Sticky.assign(&members, &partitions, &first);
        let expected = assignment(&[
            ("C0", &[("t0", 0), ("t1", 1), ("t3", 0), ("t2", 0)]),
            ("C2", &[("t1", 0), ("t2", 1), ("t0", 1), ("t3", 1)]),
        ]);
        assert_eq!(second, expected);
    }

    /// Kafka's `StickyAssignor` doc, second example: mixed subscriptions, then C0 leaves.
    #[test]
    fn sticky_kafka_example_mixed() {
        let partitions = counts(&[("t0", 1), ("t1", 2), ("t2", 3)]);
        let members = group(&[
            ("C0", &["t0"]),
            ("C1", &["t0", "t1"]),
            ("C2", &["t0", "t1", "t2"]),
        ]);
        let first = Assignor::Sticky.assign(&members, &partitions, &Assignment::new());
        let expected = assignment(&[
            ("C0", &[("t0", 0)]),
            ("C1", &[("t1", 0), ("t1", 1)]),
            ("C2", &[("t2", 0), ("t2", 1), ("t2", 2)]),
        ]);
        assert_eq!(first, expected);

        let members = group(&[("C1", &["t0", "t1"]), ("C2", &["t0", "t1", "t2"])]);
        let second = Assignor::Sticky.assign(&members, &partitions, &first);
        let expected = assignment(&[
            ("C1", &[("t0", 0), ("t1", 0), ("t1", 1)]),
            ("C2", &[("t2", 0), ("t2", 1), ("t2", 2)]),
        ]);
        assert_eq!(second, expected);
    }

    #[test]
    fn sticky_drops_what_is_no_longer_valid() {
        let members = group(&[("a", &["x", "y"]), ("b", &["x"])]);
        let partitions = counts(&[("x", 2), ("y", 1)]);
        let current = assignment(&[
            ("a", &[("x", 0), ("gone", 0), ("y", 5)]),
            ("b", &[("x", 0), ("y", 0)]),
            ("left", &[("x", 1)]),
        ]);
        let a = Assignor::Sticky.assign(&members, &partitions, &current);
        let expected = assignment(&[("a", &[("x", 0), ("y", 0)]), ("b", &[("x", 1)])]);
        assert_eq!(a, expected);
    }

    #[test]
    fn members_without_partitions_still_get_an_entry() {
        let members = group(&[("a", &[]), ("b", &["missing"]), ("c", &["x"])]);
        let partitions = counts(&[("x", 1)]);
        for assignor in Assignor::ALL {
            let a = assignor.assign(&members, &partitions, &Assignment::new());
            let expected = assignment(&[("a", &[]), ("b", &[]), ("c", &[("x", 0)])]);
            assert_eq!(a, expected, "{assignor:?}");
        }
        for assignor in Assignor::ALL {
            let a = assignor.assign(&BTreeMap::new(), &partitions, &Assignment::new());
            assert!(a.is_empty());
        }
    }

    /// Members in the large check.
    const LARGE_MEMBERS: usize = 100;
    /// Topics in the large check.
    const LARGE_TOPICS: usize = 10;
    /// Partitions per topic in the large check.
    const LARGE_PARTITIONS_PER_TOPIC: u32 = 100;

    /// 100 members × 1,000 partitions completes and stays valid (prints timings; asserts none).
    #[test]
    fn large_group_completes() {
        let topics: BTreeSet<String> = (0..LARGE_TOPICS).map(|t| format!("topic-{t}")).collect();
        let partitions: BTreeMap<String, u32> = topics
            .iter()
            .map(|t| (t.clone(), LARGE_PARTITIONS_PER_TOPIC))
            .collect();
        let ids: BTreeSet<String> = (0..LARGE_MEMBERS)
            .map(|m| format!("member-{m:03}"))
            .collect();
        let members = uniform(&ids, &topics);
        // Half the members subscribe to only half the topics.
        let half: BTreeSet<String> = topics.iter().take(LARGE_TOPICS / 2).cloned().collect();
        let mixed: BTreeMap<String, BTreeSet<String>> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let subscription = if i % 2 == 0 { &topics } else { &half };
                (id.clone(), subscription.clone())
            })
            .collect();

        let timed = |label: &str,
                     members: &BTreeMap<String, BTreeSet<String>>,
                     assignor: Assignor,
                     current: &Assignment| {
            let start = Instant::now();
            let a = assignor.assign(members, &partitions, current);
            println!("{label}: {:?}", start.elapsed());
            assert_eq!(check_valid(members, &partitions, &a), Ok(()));
            a
        };
        timed("range", &members, Assignor::Range, &Assignment::new());
        timed(
            "roundrobin",
            &members,
            Assignor::RoundRobin,
            &Assignment::new(),
        );
        let fresh = timed(
            "sticky, from nothing",
            &members,
            Assignor::Sticky,
            &Assignment::new(),
        );
        timed("sticky, unchanged", &members, Assignor::Sticky, &fresh);
        let mut fewer = members.clone();
        fewer.pop_first();
        timed("sticky, one member left", &fewer, Assignor::Sticky, &fresh);
        let mut more = members.clone();
        more.insert("member-new".to_string(), topics.clone());
        timed("sticky, one member joined", &more, Assignor::Sticky, &fresh);
        timed(
            "sticky, all to one before",
            &members,
            Assignor::Sticky,
            &BTreeMap::from([(
                "member-000".to_string(),
                expected_partitions(&members, &partitions),
            )]),
        );
        let mixed_fresh = timed(
            "sticky, mixed subscriptions",
            &mixed,
            Assignor::Sticky,
            &Assignment::new(),
        );
        timed(
            "sticky, mixed, from identical",
            &mixed,
            Assignor::Sticky,
            &fresh,
        );
        timed(
            "sticky, mixed, unchanged",
            &mixed,
            Assignor::Sticky,
            &mixed_fresh,
        );
    }
}
