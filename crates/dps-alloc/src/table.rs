//! The weighted-rendezvous engine: the ranking of the participating hubs, groups of them with
//! an optional slot table, and the exact direct evaluation the tables cache.
//!
//! A group's choice for slot `s` is the member with the lowest [`Ranking::key`]. Small groups
//! evaluate that directly per lookup; larger ones precompute it for every slot into a table of
//! `2^SLOT_BITS` entries. The table is built without scoring every (slot, hub) pair: each hub's
//! ranks are a permutation of the slots, so it can walk its best ranks through the inverse
//! permutation and claim only the slots where it scores above a threshold. That settles almost
//! every slot; the few slots nobody claimed are scored directly. The table is the same either
//! way, and the same as scoring every pair.

use std::sync::Arc;

use crate::score::{BLOCK_RANKS, HubKey, InnerRounds, RankBlock, SLOT_BITS, SLOTS, order_key};

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
        let k = &self.keys[i as usize];
        let x = k.x_of_slot(slot);
        let q = if self.uniform { 0 } else { k.weighted(x) };
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
    /// The group wants a table that [`fill_tables`] has yet to build.
    pending: bool,
    /// Set on a group carried over from an earlier ranking whose table is still in that
    /// ranking's canonical indices: `map[old] = new`. Only [`Group::planned`] sees such groups.
    remap: Option<Arc<[u32]>>,
    /// Each slot's refined rank for its owner, kept from building an equal-weight table when
    /// [`fill_tables`] was asked to, until [`Group::fill_as_union`] has read it.
    refined: Option<Arc<[u32]>>,
}

#[derive(Clone)]
enum Table {
    Narrow(Box<[u16]>),
    Wide(Box<[u32]>),
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
            pending: false,
            remap: None,
            refined: None,
        }
    }

    /// The group `members` with a table above `direct_max` members: the table of the first of
    /// `previous` with the same members (of the same ranking), else one that [`fill_tables`]
    /// builds (with the others, possibly in parallel).
    pub(crate) fn planned(members: Vec<u32>, direct_max: usize, previous: &[&Group]) -> Self {
        let wants_table = members.len() > direct_max;
        match previous
            .iter()
            .find(|g| *g.members == *members && g.has_table() == wants_table)
        {
            Some(g) => g.materialized(),
            None => Self {
                members: members.into_boxed_slice(),
                table: None,
                pending: wants_table,
                remap: None,
                refined: None,
            },
        }
    }

    /// This group of an earlier ranking in terms of a new one: `map[old]` is the new canonical
    /// index of each old hub (`u32::MAX` for a hub no longer present). `None` when a member is
    /// gone. The table is rewritten, not rebuilt: the order of two hubs for a slot depends only
    /// on their keys and on which has the lower canonical index, and canonical order is by hub
    /// seed, which adding or removing other hubs does not change.
    pub(crate) fn remapped(&self, map: &Arc<[u32]>) -> Option<Group> {
        let members: Box<[u32]> = self
            .members
            .iter()
            .map(|&m| map.get(m as usize).copied().filter(|&n| n != u32::MAX))
            .collect::<Option<_>>()?;
        // The table is rewritten only if [`Group::planned`] takes the group.
        Some(Self {
            members,
            table: self.table.clone(),
            pending: false,
            remap: self.table.as_ref().map(|_| map.clone()),
            refined: None,
        })
    }

    /// This group with its table in the new canonical indices (see [`Group::remapped`]).
    fn materialized(&self) -> Group {
        let (Some(t), Some(map)) = (self.table.as_deref(), self.remap.as_deref()) else {
            return self.clone();
        };
        let owner = |old: u32| map.get(old as usize).copied().unwrap_or(u32::MAX);
        let owners: Vec<u32> = match t {
            Table::Narrow(t) => t.iter().map(|&o| owner(u32::from(o))).collect(),
            Table::Wide(t) => t.iter().map(|&o| owner(o)).collect(),
        };
        let table = Table::of_owners(owners, &self.members);
        Self {
            members: self.members.clone(),
            table: Some(Arc::new(table)),
            pending: false,
            remap: None,
            refined: None,
        }
    }

    /// The group `members` without a table (evaluated directly whatever its size).
    pub(crate) fn without_table(members: Vec<u32>) -> Self {
        Self {
            members: members.into_boxed_slice(),
            table: None,
            pending: false,
            remap: None,
            refined: None,
        }
    }

    /// Whether both groups use the very same table.
    #[cfg(test)]
    pub(crate) fn shares_table(&self, other: &Group) -> bool {
        matches!((&self.table, &other.table), (Some(a), Some(b)) if Arc::ptr_eq(a, b))
    }

    /// Whether the group has a table.
    pub(crate) fn has_table(&self) -> bool {
        self.table.is_some()
    }

    /// The table's answer for `slot`, if the group has a table.
    #[inline(always)]
    pub(crate) fn table_pick(&self, slot: u32) -> Option<u32> {
        match self.table.as_deref() {
            Some(Table::Narrow(t)) => Some(u32::from(t[slot as usize])),
            Some(Table::Wide(t)) => Some(t[slot as usize]),
            None => None,
        }
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

/// Builds the tables [`Group::planned`] left pending, the largest first, on up to `threads`
/// threads (scoped: they end before this returns). The tables are the same whatever the
/// number of threads. With `for_union`, the groups keep what [`Group::fill_as_union`] can use
/// (until [`Group::forget_refined`]).
pub(crate) fn fill_tables<'a>(
    ranking: &Ranking,
    groups: impl IntoIterator<Item = &'a mut Group>,
    threads: usize,
    for_union: bool,
) {
    let mut pending: Vec<&mut Group> = groups.into_iter().filter(|g| g.pending).collect();
    pending.sort_by_key(|g| std::cmp::Reverse(g.members.len()));
    let jobs: Vec<&[u32]> = pending.iter().map(|g| &*g.members).collect();
    let tables = map_on_threads(jobs.len(), threads, |i| build(ranking, jobs[i]));
    for (g, (t, refined)) in pending.into_iter().zip(tables) {
        g.table = Some(Arc::new(t));
        g.refined = refined.filter(|_| for_union).map(Arc::from);
        g.pending = false;
    }
}

/// Parts with at most this many members and no table may take part in
/// [`Group::fill_as_union`] (scored directly per slot).
const UNION_DIRECT_MAX: usize = 8;

impl Group {
    /// Whether this group's pending table can be derived from `parts` (which partition its
    /// members) once their own pending tables are built: each part has or will have a table,
    /// or is small.
    pub(crate) fn union_possible(&self, parts: &[&Group]) -> bool {
        self.pending
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
        let winners = |slots: std::ops::Range<u32>| -> Vec<u32> {
            slots
                .map(|s| {
                    parts
                        .iter()
                        .filter_map(|p| best(p, s))
                        .min()
                        .map_or(u32::MAX, index_of)
                })
                .collect()
        };
        // One contiguous range of slots per thread, concatenated in order.
        let chunks = threads.clamp(1, 16) as u32;
        let step = (SLOTS as u32).div_ceil(chunks);
        let owner: Vec<u32> = map_on_threads(chunks as usize, threads, |t| {
            winners(t as u32 * step..((t as u32 + 1) * step).min(SLOTS as u32))
        })
        .concat();
        let table = Table::of_owners(owner, &self.members);
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
    let (owner, refined) = if ranking.uniform {
        let (owner, refined) = build_uniform_by_rank(ranking, members);
        (owner, Some(refined))
    } else {
        (build_weighted(ranking, members), None)
    };
    (Table::of_owners(owner, members), refined)
}

impl Table {
    /// The table of `owner` (a canonical index per slot) for a group of `members`: 16 bits an
    /// entry when every member's index fits.
    fn of_owners(owner: Vec<u32>, members: &[u32]) -> Self {
        if members.last().is_none_or(|&m| m <= u32::from(u16::MAX)) {
            Self::Narrow(owner.into_iter().map(|i| i as u16).collect())
        } else {
            Self::Wide(owner.into_boxed_slice())
        }
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

/// Equal weights, rank by rank from the top: the first claim to reach a slot has its highest
/// rank, so the slot's owner needs no comparison. Returns each slot's owner and its refined rank
/// there (the low 32 bits of the order key, for [`Group::fill_as_union`]).
///
/// The loop that makes the claims has no data-dependent branch and reads only a bitset of taken
/// slots (128 KiB, within a core's L2 cache) and its own small arrays: each rank's claims of
/// free slots are appended to a list (the cursor moves by the claim's outcome), and only the
/// list writes the working table (a 16-bit member position per slot, 2 MiB; 32-bit from 65,535
/// members on), about once per slot. A hub's ranks go in blocks that share their top half ([`HubKey::rank_block`]), one
/// multiply fewer per claim. Claims of one rank that meet in a free slot (rare) compare their
/// sub-ranks, then the lower position wins. The same claims as [`build_uniform`], and the same
/// table.
fn build_uniform_by_rank(ranking: &Ranking, members: &[u32]) -> (Vec<u32>, Vec<u32>) {
    let keys: Vec<HubKey> = members.iter().map(|&i| ranking.keys[i as usize]).collect();
    // Positions as narrow as they fit: the claims are the randomly written memory.
    let mut owner = vec![u32::MAX; SLOTS];
    let mut refined = vec![0u32; SLOTS];
    if members.len() < usize::from(u16::MAX) {
        let claim: Vec<u16> = walk_ranks(&keys);
        settle(&claim, &keys, members, &mut owner, &mut refined);
    } else {
        let claim: Vec<u32> = walk_ranks(&keys);
        settle(&claim, &keys, members, &mut owner, &mut refined);
    }
    // The slots nobody claimed: score every member (the highest refined rank, then the lowest
    // position, wins).
    for (s, (o, r)) in owner.iter_mut().zip(refined.iter_mut()).enumerate() {
        if *o == u32::MAX {
            let (mut best, mut at) = (0, 0);
            for (j, k) in keys.iter().enumerate() {
                let x = k.x_of_slot(s as u32);
                if x > best {
                    (best, at) = (x, j);
                }
            }
            *o = members[at];
            *r = best as u32;
        }
    }
    (owner, refined)
}

/// A member position + 1 per slot (0: unclaimed), 16 or 32 bits wide.
trait Claim: Copy + Default + Eq {
    fn of(position: u32) -> Self;
    fn position(self) -> Option<usize>;
}

impl Claim for u16 {
    #[inline(always)]
    fn of(position: u32) -> Self {
        position as u16 + 1
    }
    #[inline(always)]
    fn position(self) -> Option<usize> {
        usize::from(self).checked_sub(1)
    }
}

impl Claim for u32 {
    #[inline(always)]
    fn of(position: u32) -> Self {
        position + 1
    }
    #[inline(always)]
    fn position(self) -> Option<usize> {
        (self as usize).checked_sub(1)
    }
}

/// The walk of [`build_uniform_by_rank`]: each slot's first claim, as a member position.
fn walk_ranks<C: Claim>(keys: &[HubKey]) -> Vec<C> {
    let m = keys.len();
    let per_hub = (claims_milli(m) << SLOT_BITS).div_ceil(1000 * m as u64);
    let first = (SLOTS as u64).saturating_sub(per_hub) as u32;
    let inner: Vec<InnerRounds> = keys.iter().map(HubKey::inner).collect();
    let mut blocks = vec![RankBlock::default(); m];
    let mut taken = vec![0u64; SLOTS / 64];
    let mut slots = vec![0u32; m];
    // The claims of free slots at the rank being walked: slot and member position.
    let mut fresh = vec![(0u32, 0u32); m];
    let mut claim = vec![C::default(); SLOTS];
    for top in (first / BLOCK_RANKS..SLOTS as u32 / BLOCK_RANKS).rev() {
        for (b, k) in blocks.iter_mut().zip(keys) {
            *b = k.rank_block(top);
        }
        let lowest = first.saturating_sub(top * BLOCK_RANKS);
        for low in (lowest..BLOCK_RANKS).rev() {
            for ((s, k), b) in slots.iter_mut().zip(&inner).zip(&blocks) {
                *s = k.slot(b, low);
            }
            let mut claimed = 0;
            for (j, &s) in slots.iter().enumerate() {
                let free = taken[(s >> 6) as usize] & (1u64 << (s & 63)) == 0;
                fresh[claimed] = (s, j as u32);
                claimed += usize::from(free);
            }
            for &(s, p) in &fresh[..claimed] {
                let (word, bit) = ((s >> 6) as usize, 1u64 << (s & 63));
                let c = &mut claim[s as usize];
                if taken[word] & bit == 0 {
                    taken[word] |= bit;
                    *c = C::of(p);
                } else if let Some(q) = c.position()
                    && blocks[p as usize].x(low) > blocks[q].x(low)
                {
                    // A lower position claimed it at this rank with a lower sub-rank.
                    *c = C::of(p);
                }
            }
        }
    }
    claim
}

/// Fills `owner` and `refined` for the claimed slots. The refined ranks are computed again, in
/// slot order, rather than kept per claim: that would more than double the randomly written
/// memory of the walk.
fn settle<C: Claim>(
    claim: &[C],
    keys: &[HubKey],
    members: &[u32],
    owner: &mut [u32],
    refined: &mut [u32],
) {
    for (s, ((o, r), &c)) in owner
        .iter_mut()
        .zip(refined.iter_mut())
        .zip(claim)
        .enumerate()
    {
        if let Some(p) = c.position() {
            *o = members[p];
            *r = keys[p].x_of_slot(s as u32) as u32;
        }
    }
}

/// The reference for [`build_uniform_by_rank`], in tests: the same claims, each kept if it beats
/// the slot's best so far.
///
/// Equal weights: the order is the higher refined rank `x`, then the lower index, packed as
/// `!x << 32 | index` (lower wins). Each hub claims its `t` best ranks; a slot whose best
/// claim has rank `>= M - t` is settled, since every pair at or above that rank was claimed.
#[cfg(test)]
fn build_uniform(ranking: &Ranking, members: &[u32]) -> Vec<u32> {
    let n = members.len() as u64;
    let per_hub = (claims_milli(members.len()) << SLOT_BITS).div_ceil(1000 * n);
    let first = (SLOTS as u64).saturating_sub(per_hub) as u32;
    let mut best = vec![u64::MAX; SLOTS];
    for &i in members {
        let k = &ranking.keys[i as usize];
        claim(&mut best, first, |rank| {
            let (s, x) = k.slot_of_rank(rank);
            (s, (u64::from(!(x as u32)) << 32) | u64::from(i))
        });
    }
    let settled = u64::from(!(first << (32 - SLOT_BITS)));
    best.iter()
        .enumerate()
        .map(|(s, &b)| {
            if b >> 32 <= settled {
                b as u32
            } else {
                ranking
                    .pick(members.iter().copied(), s as u32)
                    .unwrap_or(u32::MAX)
            }
        })
        .collect()
}

/// Lowers `best[slot]` to `key` for every `(slot, key) = claim(rank)`, `rank` from `first` up.
///
/// The updates are random accesses into a table larger than the L2 cache. They go in batches,
/// after the batch's slots are computed, and without a data-dependent branch, so that many cache
/// misses are in flight at once instead of one per mispredicted branch.
#[cfg(test)]
#[inline(always)]
fn claim(best: &mut [u64], first: u32, claim: impl Fn(u32) -> (u32, u64)) {
    claim_with(best, first, claim, u64::min);
}

/// [`claim`] with `merge(old, new)` instead of the minimum.
#[cfg(test)]
#[inline(always)]
fn claim_with(
    best: &mut [u64],
    first: u32,
    claim: impl Fn(u32) -> (u32, u64),
    merge: impl Fn(u64, u64) -> u64,
) {
    const BATCH: u32 = 64;
    let mut slots = [0u32; BATCH as usize];
    let mut keys = [0u64; BATCH as usize];
    let mut start = first;
    while start < SLOTS as u32 {
        let len = BATCH.min(SLOTS as u32 - start) as usize;
        for (j, rank) in (start..).take(len).enumerate() {
            (slots[j], keys[j]) = claim(rank);
        }
        for (&s, &key) in slots[..len].iter().zip(&keys[..len]) {
            let b = &mut best[s as usize];
            *b = merge(*b, key);
        }
        start += len as u32;
    }
}

/// Packing of a weighted claim: `q >> Q_SHIFT` (43 bits), a tie flag and the index (20 bits).
const IDX_BITS: u32 = 20;
const TIE: u64 = 1 << IDX_BITS;
const Q_SHIFT: u32 = IDX_BITS + 1;
/// Score levels of the weighted walk.
const LEVELS: u64 = 16;

/// Different weights: claims are the pairs whose weighted score is at most `theta`; a hub of
/// weight `w` has a fraction `1 - 2^(-theta w / 2^58)`, about `theta w ln2 / 2^58`, of them.
///
/// The full order key is 128 bits; a table of those would double the memory traffic, so claims
/// are packed in 64 bits as `q >> 21` (43 bits), a tie flag and the index (20 bits), lower
/// wins. A strictly lower `q >> 21` means a strictly lower score, so a slot's minimum is exact
/// unless two claims share its `q >> 21`; that raises the flag, and such slots (very rare) are
/// scored directly, like the unsettled ones.
///
/// The claims go in [`LEVELS`] levels of rising score: each hub's rank range is cut in equal
/// parts (scores are nearly linear in the rank near the top). After a level, every pair scoring
/// below the least of the hubs' bounds for their unclaimed ranks has been claimed, so a slot
/// whose best claim is below it is settled: it goes into a bitset (128 KiB, in a core's L2
/// cache) and later claims of it are dropped before their score is computed or the 8 MiB table
/// is touched. Most claims are such late claims; the others update the table in batches.
fn build_weighted(ranking: &Ranking, members: &[u32]) -> Vec<u32> {
    debug_assert!(members.iter().all(|&i| i < 1 << IDX_BITS));
    let theta = weighted_theta(ranking, members);
    let keys: Vec<HubKey> = members.iter().map(|&i| ranking.keys[i as usize]).collect();
    // Each hub's lowest claimed rank: the rank ranges are cut from here to the top.
    let lowest: Vec<u32> = keys.iter().map(|k| k.threshold(theta).0).collect();
    let mut cut: Vec<u32> = vec![SLOTS as u32; keys.len()];
    let mut best = vec![u64::MAX; SLOTS];
    let mut settled_bits = Bits::new();
    // Slots claimed in earlier levels but not settled, each once (`queued`).
    let (mut open, mut queued) = (Vec::new(), Bits::new());
    // Claims of slots not settled, applied in batches: their loads of `best` are independent,
    // so their cache misses overlap instead of each waiting behind a branch.
    const BATCH: usize = 4096;
    let mut pending: Vec<(u32, u64)> = Vec::with_capacity(BATCH);
    let apply = |pending: &mut Vec<(u32, u64)>, best: &mut [u64], touched: &mut Vec<u32>| {
        for &(s, new) in pending.iter() {
            let b = &mut best[s as usize];
            let tie = u64::from((*b ^ new) >> Q_SHIFT == 0) * TIE;
            *b = (*b).min(new) | tie;
            touched.push(s);
        }
        pending.clear();
    };
    let mut settled = 0;
    for level in 1..=LEVELS {
        let mut touched: Vec<u32> = Vec::new();
        // Every pair scoring below `settled` has been claimed once this level is done.
        settled = u64::MAX;
        for (((k, &i), c), &low) in keys.iter().zip(members).zip(cut.iter_mut()).zip(&lowest) {
            let span = u64::from(SLOTS as u32 - low);
            let next = SLOTS as u32 - (span * level).div_ceil(LEVELS) as u32;
            for rank in next..*c {
                let (s, x) = k.slot_of_rank(rank);
                if !settled_bits.get(s) {
                    pending.push((s, ((k.weighted(x) >> Q_SHIFT) << Q_SHIFT) | u64::from(i)));
                    if pending.len() == BATCH {
                        apply(&mut pending, &mut best, &mut touched);
                    }
                }
            }
            *c = next;
            settled = settled.min(k.floor_below(next));
        }
        apply(&mut pending, &mut best, &mut touched);
        // Settle what is now below the bound; keep the rest open, once each.
        let bound = settled >> Q_SHIFT;
        for &s in &open {
            queued.clear(s);
        }
        let mut still_open = Vec::new();
        for &s in open.iter().chain(&touched) {
            if settled_bits.get(s) || queued.get(s) {
                continue;
            }
            if best[s as usize] >> Q_SHIFT < bound {
                settled_bits.set(s);
            } else {
                queued.set(s);
                still_open.push(s);
            }
        }
        open = still_open;
    }
    weighted_owners(ranking, members, &best, settled >> Q_SHIFT)
}

/// The score bound of a weighted build: about `ln n` claims per slot.
fn weighted_theta(ranking: &Ranking, members: &[u32]) -> u64 {
    let total_weight: u64 = members
        .iter()
        .map(|&i| u64::from(ranking.keys[i as usize].weight))
        .sum();
    ((u128::from(claims_milli(members.len())) << 58) / (u128::from(total_weight) * 693))
        .min(u128::from(u64::MAX)) as u64
}

/// Each slot's owner from its packed best claim: exact below `settled` (coarse) without a tie,
/// else scored directly.
fn weighted_owners(ranking: &Ranking, members: &[u32], best: &[u64], settled: u64) -> Vec<u32> {
    best.iter()
        .enumerate()
        .map(|(s, &b)| {
            if b >> Q_SHIFT < settled && b & TIE == 0 {
                (b & (TIE - 1)) as u32
            } else {
                ranking
                    .pick(members.iter().copied(), s as u32)
                    .unwrap_or(u32::MAX)
            }
        })
        .collect()
}

/// One bit per slot (128 KiB).
struct Bits(Vec<u64>);

impl Bits {
    fn new() -> Self {
        Self(vec![0; SLOTS / 64])
    }
    #[inline(always)]
    fn get(&self, s: u32) -> bool {
        self.0[(s >> 6) as usize] & (1 << (s & 63)) != 0
    }
    #[inline(always)]
    fn set(&mut self, s: u32) {
        self.0[(s >> 6) as usize] |= 1 << (s & 63);
    }
    #[inline(always)]
    fn clear(&mut self, s: u32) {
        self.0[(s >> 6) as usize] &= !(1 << (s & 63));
    }
}

/// The reference for [`build_weighted`], in tests: every claim updates its slot.
///
/// Different weights: claims are the pairs whose weighted score is at most `theta`; a hub of
/// weight `w` has a fraction `1 - 2^(-theta w / 2^58)`, about `theta w ln2 / 2^58`, of them.
///
/// The full order key is 128 bits; a table of those would double the memory traffic, so claims
/// are packed in 64 bits as `q >> 21` (43 bits), a tie flag and the index (20 bits), lower
/// wins. A strictly lower `q >> 21` means a strictly lower score, so a slot's minimum is exact
/// unless two claims share its `q >> 21`; that raises the flag, and such slots (very rare) are
/// scored directly, like the unsettled ones.
#[cfg(test)]
fn build_weighted_reference(ranking: &Ranking, members: &[u32]) -> Vec<u32> {
    debug_assert!(members.iter().all(|&i| i < 1 << IDX_BITS));
    let theta = weighted_theta(ranking, members);
    let mut best = vec![u64::MAX; SLOTS];
    // Every pair scoring below `settled` was claimed.
    let mut settled = u64::MAX;
    for &i in members {
        let k = &ranking.keys[i as usize];
        let (first, safe) = k.threshold(theta);
        settled = settled.min(safe);
        claim_with(
            &mut best,
            first,
            |rank| {
                let (s, x) = k.slot_of_rank(rank);
                (s, ((k.weighted(x) >> Q_SHIFT) << Q_SHIFT) | u64::from(i))
            },
            |old, new| {
                let tie = u64::from((old ^ new) >> Q_SHIFT == 0) * TIE;
                old.min(new) | tie
            },
        );
    }
    weighted_owners(ranking, members, &best, settled >> Q_SHIFT)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let by_level = build_weighted(&r, &members);
            assert_eq!(by_level, build_weighted_reference(&r, &members), "n={n}");
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
        assert!(matches!(g.table.as_deref(), Some(Table::Wide(_))));
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
