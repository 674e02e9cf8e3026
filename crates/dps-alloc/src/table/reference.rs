//! The straightforward builders the fast ones must equal, for tests: every claim updates its
//! slot's best key in a table of 64-bit keys.

use super::weighted::{IDX_BITS, Q_SHIFT, TIE, weighted_owners, weighted_theta};
use super::{Ranking, claims_milli};
use crate::score::{SLOT_BITS, SLOTS};

/// The reference for `uniform::build_uniform_by_rank`, in tests: the same claims, each kept if it beats
/// the slot's best so far.
///
/// Equal weights: the order is the higher refined rank `x`, then the lower index, packed as
/// `!x << 32 | index` (lower wins). Each hub claims its `t` best ranks; a slot whose best
/// claim has rank `>= M - t` is settled, since every pair at or above that rank was claimed.
pub(super) fn build_uniform(ranking: &Ranking, members: &[u32]) -> Vec<u32> {
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
#[inline(always)]
fn claim(best: &mut [u64], first: u32, claim: impl Fn(u32) -> (u32, u64)) {
    claim_with(best, first, claim, u64::min);
}

/// [`claim`] with `merge(old, new)` instead of the minimum.
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

/// The reference for `weighted::build_weighted`, in tests: every claim updates its slot.
///
/// Different weights: claims are the pairs whose weighted score is at most `theta`; a hub of
/// weight `w` has a fraction `1 - 2^(-theta w / 2^58)`, about `theta w ln2 / 2^58`, of them.
///
/// The full order key is 128 bits; a table of those would double the memory traffic, so claims
/// are packed in 64 bits as `q >> 21` (43 bits), a tie flag and the index (20 bits), lower
/// wins. A strictly lower `q >> 21` means a strictly lower score, so a slot's minimum is exact
/// unless two claims share its `q >> 21`; that raises the flag, and such slots (very rare) are
/// scored directly, like the unsettled ones.
pub(super) fn build_weighted_reference(ranking: &Ranking, members: &[u32]) -> Vec<u32> {
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
    weighted_owners(ranking, members, &best, settled >> Q_SHIFT).0
}
