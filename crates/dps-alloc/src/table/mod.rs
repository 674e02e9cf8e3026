//! The weighted-rendezvous engine: the ranking of the participating hubs, groups of them with
//! an optional slot table, and the exact direct evaluation the tables cache.
//!
//! A group's choice for slot `s` is the member with the lowest [`Ranking::key`]. Small groups
//! evaluate that directly per lookup; larger ones precompute it for every slot into a table of
//! `2^SLOT_BITS` entries. The table is built without scoring every (slot, hub) pair: each hub's
//! ranks are a permutation of the slots, so it can walk its best ranks through the inverse
//! permutation and claim only the slots where it scores above a threshold. That settles almost
//! every slot; the few slots nobody claimed are scored directly. The table is the same either
//! way, and the same as scoring every pair. The builders: `uniform.rs` (equal weights, rank by
//! rank), `weighted.rs` (levels of rising score) and, for tests, `reference.rs`.

use std::sync::Arc;

use crate::score::{HubKey, SLOTS, order_key};

mod owners;
mod patch;
#[cfg(test)]
mod reference;
mod uniform;
mod weighted;

use owners::Table;
use uniform::build_uniform_by_rank;
use weighted::build_weighted;

/// Groups of at most this many hubs of equal weight are scored directly instead of through a
/// table (unless configured otherwise): about 4 ns per hub against one table read.
pub(crate) const DIRECT_MAX_EQUAL: usize = 8;
/// The same for hubs of different weights, whose scores also take a logarithm (about 7 ns).
pub(crate) const DIRECT_MAX_WEIGHTED: usize = 4;

/// Expected claims per slot when building a table, in thousandths, for `n` members: about
/// `ln n`. Fewer leave more slots to score directly (each costs `n` scores); more cost
/// claims that lose. Only speed depends on it, never the result.
fn claims_milli(n: usize) -> u64 {
    (693 * u64::from(usize::BITS - 1 - n.max(2).leading_zeros())).max(1000)
}

/// The participating hubs in canonical order, and how to compare them for a slot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Ranking {
    keys: Vec<HubKey>,
    /// Every hub has the same weight: the weighted score is then left out of the order key,
    /// which does not change the order (it never rises with the refined rank).
    uniform: bool,
    /// Groups of at most this many members get no table.
    direct_max: usize,
}

impl Ranking {
    /// The ranking of `keys` (in canonical order); groups of at most `direct_max` members
    /// (default: by weights) are scored directly.
    pub(crate) fn new(keys: Vec<HubKey>, direct_max: Option<usize>) -> Self {
        let uniform = keys.windows(2).all(|w| w[0].weight == w[1].weight);
        let direct_max = direct_max.unwrap_or(if uniform {
            DIRECT_MAX_EQUAL
        } else {
            DIRECT_MAX_WEIGHTED
        });
        Self {
            keys,
            uniform,
            direct_max,
        }
    }

    /// The hub keys in canonical order.
    pub(crate) fn keys(&self) -> &[HubKey] {
        &self.keys
    }

    /// Whether both rank the hubs they share alike and build tables for the same group sizes.
    pub(crate) fn same_rules(&self, other: &Ranking) -> bool {
        self.uniform == other.uniform && self.direct_max == other.direct_max
    }

    /// Groups of at most this many members get no table.
    pub(crate) fn direct_max(&self) -> usize {
        self.direct_max
    }

    /// The number of hubs.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The order key of hub `i` for `slot`: lower wins.
    #[inline(always)]
    pub(crate) fn key(&self, i: u32, slot: u32) -> u128 {
        self.key_at(i, self.keys[i as usize].x_of_slot(slot))
    }

    /// The order key of hub `i` where its refined rank is `x`.
    #[inline(always)]
    pub(crate) fn key_at(&self, i: u32, x: u64) -> u128 {
        let q = if self.uniform {
            0
        } else {
            self.keys[i as usize].weighted(x)
        };
        order_key(q, x, i)
    }

    /// The best order key for `slot` among `candidates` (canonical indices, any order, repeats
    /// allowed).
    #[inline]
    pub(crate) fn best(
        &self,
        candidates: impl IntoIterator<Item = u32>,
        slot: u32,
    ) -> Option<u128> {
        if self.uniform {
            // The low half of the order key alone: `!x << 32 | index`.
            candidates
                .into_iter()
                .map(|i| {
                    let k = &self.keys[i as usize];
                    (u64::from(!(k.x_of_slot(slot) as u32)) << 32) | u64::from(i)
                })
                .min()
                .map(u128::from)
        } else {
            candidates.into_iter().map(|i| self.key(i, slot)).min()
        }
    }

    /// The choice for `slot` among `candidates`.
    #[inline]
    pub(crate) fn pick(&self, candidates: impl IntoIterator<Item = u32>, slot: u32) -> Option<u32> {
        let mut it = candidates.into_iter();
        let first = it.next()?;
        match it.next() {
            // One candidate: nothing to compare.
            None => Some(first),
            Some(second) => self
                .best([first, second].into_iter().chain(it), slot)
                .map(index_of),
        }
    }
}

/// The canonical index inside an order key.
#[inline(always)]
pub(crate) fn index_of(key: u128) -> u32 {
    key as u32
}

/// The prepared choice over one group of hubs.
#[derive(Clone, Default)]
pub(crate) struct Group {
    /// Canonical indices of the members, ascending.
    members: Box<[u32]>,
    /// Shared, so that a set prepared again with the same hubs reuses it.
    table: Option<Arc<Table>>,
    /// The group wants a table that [`fill_tables`] has yet to make (build, patch or rewrite).
    pending: bool,
    /// Set on a group carried over from an earlier ranking whose table is still in that
    /// ranking's canonical indices: `map[old] = new`. Such a group is only ever a candidate for
    /// [`Group::planned`], and a `base`.
    remap: Option<Arc<[u32]>>,
    /// Each slot's refined rank for its owner, kept from building an equal-weight table when
    /// [`fill_tables`] was asked to, until [`Group::fill_as_union`] has read it.
    refined: Option<Arc<[u32]>>,
    /// Members of the earlier group this one was carried over from that are gone from the
    /// ranking: such a group's table misses their slots' owners, so it only serves as a
    /// `base` to patch.
    lost: u32,
    /// The earlier group, of nearly the same members, whose table a pending table is patched
    /// from instead of built (see `patch.rs`).
    base: Option<Box<Group>>,
}

impl Group {
    /// Prepares the group `members` (ascending canonical indices), with a table when it has
    /// more members than the ranking scores directly.
    #[cfg(test)]
    pub(crate) fn new(ranking: &Ranking, members: Vec<u32>) -> Self {
        Self::with_direct_max(ranking, members, ranking.direct_max)
    }

    /// The group `members` with a table above `direct_max` members.
    #[cfg(test)]
    pub(crate) fn with_direct_max(ranking: &Ranking, members: Vec<u32>, direct_max: usize) -> Self {
        debug_assert!(members.windows(2).all(|w| w[0] < w[1]));
        let table = (members.len() > direct_max).then(|| Arc::new(build(ranking, &members).0));
        Self {
            members: members.into_boxed_slice(),
            table,
            ..Self::default()
        }
    }

    /// The group `members` with a table above `direct_max` members: the table of the first of
    /// `previous` with the same members (shared when of the same ranking; rewritten in the new
    /// canonical indices otherwise), else one that [`fill_tables`] makes: patched from the table
    /// of the one of `previous` that differs by the fewest hubs, when few enough differ; built
    /// otherwise. Rewriting and patching wait for [`fill_tables`] too, to run in parallel.
    pub(crate) fn planned(members: Vec<u32>, direct_max: usize, previous: &[&Group]) -> Self {
        let wants_table = members.len() > direct_max;
        let same = previous
            .iter()
            .find(|g| g.lost == 0 && *g.members == *members && g.has_table() == wants_table);
        if let Some(g) = same.filter(|g| g.remap.is_none()) {
            return (*g).clone();
        }
        let base = same
            .or_else(|| {
                previous
                    .iter()
                    .filter(|g| wants_table && g.has_table())
                    .filter_map(|g| Some((patch::cost_milli(&members, g)?, g)))
                    .min_by_key(|(cost, _)| *cost)
                    .map(|(_, g)| g)
            })
            .map(|g| Box::new((*g).clone()));
        Self {
            members: members.into_boxed_slice(),
            pending: wants_table,
            base,
            ..Self::default()
        }
    }

    /// This group of an earlier ranking in terms of a new one: `map[old]` is the new canonical
    /// index of each old hub (`u32::MAX` for a hub no longer present). When members are gone,
    /// the group can only be patched (`None` when all are, or when it has no table). The table
    /// is rewritten, not rebuilt: the order of two hubs for a slot depends only on their keys and
    /// on which has the lower canonical index, and canonical order is by hub seed, which adding
    /// or removing other hubs does not change.
    pub(crate) fn remapped(&self, map: &Arc<[u32]>) -> Option<Group> {
        let members: Box<[u32]> = self
            .members
            .iter()
            .filter_map(|&m| map.get(m as usize).copied().filter(|&n| n != u32::MAX))
            .collect();
        let lost = (self.members.len() - members.len()) as u32;
        if members.is_empty() || (lost > 0 && self.table.is_none()) {
            return None;
        }
        // The table is rewritten only if [`Group::planned`] takes the group.
        Some(Self {
            members,
            table: self.table.clone(),
            remap: self.table.as_ref().map(|_| map.clone()),
            lost: self.lost + lost,
            ..Self::default()
        })
    }

    /// The group `members` without a table (evaluated directly whatever its size).
    pub(crate) fn without_table(members: Vec<u32>) -> Self {
        Self {
            members: members.into_boxed_slice(),
            ..Self::default()
        }
    }

    /// Whether both groups use the very same table.
    #[cfg(test)]
    pub(crate) fn shares_table(&self, other: &Group) -> bool {
        matches!((&self.table, &other.table), (Some(a), Some(b)) if Arc::ptr_eq(a, b))
    }

    /// Whether the group's table (if any) names every slot's owner: false for a group carried
    /// over whose members are not all still there.
    #[cfg(test)]
    pub(crate) fn complete(&self) -> bool {
        self.lost == 0
    }

    /// Whether the group has a table.
    pub(crate) fn has_table(&self) -> bool {
        self.table.is_some()
    }

    /// The table's answer for `slot`, if the group has a table.
    #[inline(always)]
    pub(crate) fn table_pick(&self, slot: u32) -> Option<u32> {
        self.table.as_deref().map(|t| t.owner(slot))
    }

    /// The member chosen for `slot`.
    #[inline]
    pub(crate) fn pick(&self, ranking: &Ranking, slot: u32) -> Option<u32> {
        match self.table_pick(slot) {
            Some(i) => Some(i),
            None => ranking.pick(self.members.iter().copied(), slot),
        }
    }

    /// The order key of the member chosen for `slot`, to merge the picks of several groups.
    #[inline]
    pub(crate) fn best(&self, ranking: &Ranking, slot: u32) -> Option<u128> {
        match self.table_pick(slot) {
            Some(i) => Some(ranking.key(i, slot)),
            None => ranking.best(self.members.iter().copied(), slot),
        }
    }
}

/// Makes the tables [`Group::planned`] left pending, the builds first and the largest first,
/// then the patches, on up to `threads` threads (scoped: they end before this returns). The
/// tables are the same whatever the number of threads. With `for_union`, the groups built keep
/// what [`Group::fill_as_union`] can use (until [`Group::forget_refined`]).
pub(crate) fn fill_tables<'a>(
    ranking: &Ranking,
    groups: impl IntoIterator<Item = &'a mut Group>,
    threads: usize,
    for_union: bool,
) {
    let mut pending: Vec<&mut Group> = groups.into_iter().filter(|g| g.pending).collect();
    pending.sort_by_key(|g| (g.base.is_some(), std::cmp::Reverse(g.members.len())));
    let jobs: Vec<(&[u32], Option<&Group>)> = pending
        .iter()
        .map(|g| (&*g.members, g.base.as_deref()))
        .collect();
    let tables = map_on_threads(jobs.len(), threads, |i| match jobs[i] {
        (members, Some(base)) => (patch::patch(ranking, members, base), None),
        (members, None) => build(ranking, members),
    });
    for (g, (t, refined)) in pending.into_iter().zip(tables) {
        g.table = Some(Arc::new(t));
        g.refined = refined.filter(|_| for_union).map(Arc::from);
        g.pending = false;
        g.base = None;
    }
}

/// Parts with at most this many members and no table may take part in
/// [`Group::fill_as_union`] (scored directly per slot).
const UNION_DIRECT_MAX: usize = 8;

impl Group {
    /// Whether this group's pending table can be derived from `parts` (which partition its
    /// members) once their own pending tables are built: it is not to be patched, and each part
    /// has or will have a table, or is small.
    pub(crate) fn union_possible(&self, parts: &[&Group]) -> bool {
        self.pending
            && self.base.is_none()
            && parts.iter().map(|p| p.members.len()).sum::<usize>() == self.members.len()
            && parts
                .iter()
                .all(|p| p.table.is_some() || p.pending || p.members.len() <= UNION_DIRECT_MAX)
    }

    /// Builds this pending group's table from the tables of `parts`, which partition its
    /// members: a slot's winner is the best of the parts' winners, one comparison per part
    /// instead of `ln n` claims per slot. The same table as building it directly.
    /// On up to `threads` threads, each taking a range of slots. A part whose refined ranks
    /// were kept ([`fill_tables`] `for_union`) is compared without scoring its winner again.
    pub(crate) fn fill_as_union(&mut self, ranking: &Ranking, parts: &[&Group], threads: usize) {
        let best = |p: &Group, s: u32| match (p.table_pick(s), p.refined.as_deref()) {
            // Kept only for equal weights, where the weighted score is left out of the key.
            (Some(i), Some(x)) => Some(order_key(0, u64::from(x[s as usize]), i)),
            _ => p.best(ranking, s),
        };
        // Each slot's winner, and the weakest winner's key.
        let winners = |slots: std::ops::Range<u32>| -> (Vec<u32>, u128) {
            let mut worst = 0;
            let owner = slots
                .map(|s| {
                    let key = parts.iter().filter_map(|p| best(p, s)).min();
                    worst = worst.max(key.unwrap_or(u128::MAX));
                    key.map_or(u32::MAX, index_of)
                })
                .collect();
            (owner, worst)
        };
        // One contiguous range of slots per thread, concatenated in order.
        let chunks = threads.clamp(1, 16) as u32;
        let step = (SLOTS as u32).div_ceil(chunks);
        let ranges = map_on_threads(chunks as usize, threads, |t| {
            winners(t as u32 * step..((t as u32 + 1) * step).min(SLOTS as u32))
        });
        let worst = ranges.iter().map(|(_, w)| *w).max().unwrap_or(u128::MAX);
        let owner: Vec<u32> = ranges.into_iter().flat_map(|(o, _)| o).collect();
        let table = Table::of_owners(owner, &self.members, worst);
        self.table = Some(Arc::new(table));
        self.pending = false;
    }

    /// Drops what [`fill_tables`] kept for [`Group::fill_as_union`] (4 MiB a table).
    pub(crate) fn forget_refined(&mut self) {
        self.refined = None;
    }
}

/// A group's table, and each slot's refined rank when the builder has it at no extra cost.
fn build(ranking: &Ranking, members: &[u32]) -> (Table, Option<Vec<u32>>) {
    if ranking.uniform {
        let (owner, refined) = build_uniform_by_rank(ranking, members);
        // The weakest owner: equal weights order by the refined rank alone.
        let weakest = refined.iter().min().map_or(0, |&x| u64::from(x));
        let table = Table::of_owners(owner, members, order_key(0, weakest, 0));
        (table, Some(refined))
    } else {
        let (owner, worst) = build_weighted(ranking, members);
        (Table::of_owners(owner, members, worst), None)
    }
}

/// `(0..jobs).map(f)` on up to `threads` scoped threads (each taking the next job until none is
/// left), in job order. The threads end before this returns.
fn map_on_threads<T: Send>(jobs: usize, threads: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = threads.clamp(1, jobs.max(1));
    if threads == 1 {
        return (0..jobs).map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, T)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= jobs {
                            break out;
                        }
                        out.push((i, f(i)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            // A worker only panics if `f` does, which is a bug: pass it on.
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, t)| t).collect()
}

#[cfg(test)]
mod tests {
    use super::reference::{build_uniform, build_weighted_reference};
    use super::uniform::walk_ranks;
    use super::weighted::Q_SHIFT;
    use super::*;
    use crate::score::SLOTS;

    pub(crate) fn ranking(n: usize, weight: impl Fn(usize) -> u32) -> Ranking {
        let mut k: Vec<HubKey> = (0..n)
            .map(|i| HubKey::new(0, &format!("hub-{i}.example.net"), weight(i)))
            .collect();
        k.sort_by_key(|k| k.seed);
        Ranking::new(k, None)
    }

    #[test]
    fn tables_equal_direct_evaluation() {
        for (n, weights) in [
            (9usize, [1, 1, 1, 1]),
            (9, [1, 7, 1000, 3]),
            (23, [5, 5, 5, 5]),
        ] {
            let r = ranking(n, |i| weights[i % 4]);
            assert_eq!(r.uniform, weights[0] == weights[1]);
            let g = Group::new(&r, (0..n as u32).collect());
            assert!(g.has_table());
            for s in (0..SLOTS as u32).step_by(61) {
                assert_eq!(g.table_pick(s), r.pick(0..n as u32, s), "n={n} slot={s}");
            }
        }
    }

    #[test]
    fn building_rank_by_rank_gives_the_same_table() {
        for n in [9usize, 300, 2_000] {
            let r = ranking(n, |_| 1);
            // Every other hub, so positions and canonical indices differ.
            let members: Vec<u32> = (0..n as u32).step_by(2).collect();
            let (by_rank, refined) = build_uniform_by_rank(&r, &members);
            assert_eq!(by_rank, build_uniform(&r, &members), "n={n}");
            for s in (0..SLOTS as u32).step_by(997) {
                assert_eq!(
                    Some(by_rank[s as usize]),
                    r.pick(members.iter().copied(), s),
                    "n={n} slot={s}"
                );
            }
            // The refined rank kept for every slot is its owner's.
            for (s, (&o, &x)) in by_rank.iter().zip(&refined).enumerate() {
                assert_eq!(
                    u64::from(x),
                    r.keys[o as usize].x_of_slot(s as u32),
                    "n={n} slot={s}"
                );
            }
        }
    }

    #[test]
    fn weighted_tables_by_level_are_the_reference() {
        for (n, step) in [(5usize, 1usize), (40, 1), (900, 2)] {
            let r = ranking(n, |i| 1 + (i as u32 * 7) % 10);
            let members: Vec<u32> = (0..n as u32).step_by(step).collect();
            let (by_level, worst) = build_weighted(&r, &members);
            assert_eq!(by_level, build_weighted_reference(&r, &members), "n={n}");
            // The bound holds for every owner, and is tight enough to be of use.
            let weakest = (0..SLOTS as u32)
                .map(|s| r.key(by_level[s as usize], s))
                .max()
                .unwrap_or(0);
            assert!(weakest <= worst, "n={n}");
            assert!((worst >> 64) - (weakest >> 64) <= 1 << Q_SHIFT, "n={n}");
        }
    }

    #[test]
    fn claims_are_the_same_in_16_and_32_bits() {
        let r = ranking(600, |_| 1);
        let keys: Vec<HubKey> = r.keys.iter().step_by(3).copied().collect();
        let narrow: Vec<u16> = walk_ranks(&keys);
        let wide: Vec<u32> = walk_ranks(&keys);
        assert!(narrow.iter().any(|&c| c != 0));
        assert!(narrow.iter().zip(&wide).all(|(&n, &w)| u32::from(n) == w));
    }

    #[test]
    fn canonical_indices_beyond_16_bits_get_a_wide_table() {
        let r = ranking(70_000, |_| 1);
        let members: Vec<u32> = (0..70_000u32).step_by(70).collect();
        let g = Group::new(&r, members.clone());
        assert!(g.table.as_deref().is_some_and(Table::is_wide));
        for s in (0..SLOTS as u32).step_by(4_099) {
            assert_eq!(
                g.table_pick(s),
                r.pick(members.iter().copied(), s),
                "slot {s}"
            );
        }
    }

    #[test]
    fn equal_weights_order_as_the_weighted_score() {
        // The uniform shortcut leaves the score out; with it, the order must be the same.
        let r = ranking(6, |_| 7);
        let mut weighted = r.clone();
        weighted.uniform = false;
        for s in (0..SLOTS as u32).step_by(101) {
            assert_eq!(r.pick(0..6, s), weighted.pick(0..6, s));
        }
    }
}
