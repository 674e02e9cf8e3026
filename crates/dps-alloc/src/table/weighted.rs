//! Tables for hubs of different weights: claims in levels of rising score.

use super::{Ranking, claims_milli, index_of};
use crate::score::order_key;
use crate::score::{HubKey, SLOTS};

/// Packing of a weighted claim: `q >> Q_SHIFT` (43 bits), a tie flag and the index (20 bits).
pub(super) const IDX_BITS: u32 = 20;
pub(super) const TIE: u64 = 1 << IDX_BITS;
pub(super) const Q_SHIFT: u32 = IDX_BITS + 1;
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
/// parts (scores are nearly linear in the rank near the top). Once a level's claims are made,
/// every pair scoring below the least of the hubs' bounds for their unclaimed ranks has been
/// claimed, so a slot whose best claim is below it is settled: it goes into a bitset (128 KiB,
/// in a core's L2 cache) and later levels drop its claims before their score is computed or
/// the 8 MiB table is touched. Most claims are such late claims; the others update the table
/// in batches ([`Applied::apply`]). The level's bound is known before its claims, so a claim
/// that lands below it settles its slot as it updates the table; only the slots left above it
/// are read again at the end of the level.
pub(super) fn build_weighted(ranking: &Ranking, members: &[u32]) -> (Vec<u32>, u128) {
    debug_assert!(members.iter().all(|&i| i < 1 << IDX_BITS));
    let theta = weighted_theta(ranking, members);
    let keys: Vec<HubKey> = members.iter().map(|&i| ranking.keys[i as usize]).collect();
    // Each hub's lowest claimed rank: the rank ranges are cut from here to the top.
    let lowest: Vec<u32> = keys.iter().map(|k| k.threshold(theta).0).collect();
    let mut cut: Vec<u32> = vec![SLOTS as u32; keys.len()];
    let mut best = vec![u64::MAX; SLOTS];
    // Slots settled in earlier levels (their claims are dropped), and in this one.
    let (mut settled_bits, mut newly) = (Bits::new(), Bits::new());
    // Slots claimed but not settled, each once (`queued`).
    let (mut open, mut queued) = (Vec::new(), Bits::new());
    // Claims of slots not settled, applied in batches.
    let mut pending: Vec<(u32, u64)> = Vec::with_capacity(BATCH);
    let mut settled = 0;
    for level in 1..=LEVELS {
        let next: Vec<u32> = lowest
            .iter()
            .map(|&low| {
                let span = u64::from(SLOTS as u32 - low);
                SLOTS as u32 - (span * level).div_ceil(LEVELS) as u32
            })
            .collect();
        // Every pair scoring below `settled` has been claimed once this level is done.
        settled = keys
            .iter()
            .zip(&next)
            .map(|(k, &n)| k.floor_below(n))
            .min()
            .unwrap_or(u64::MAX);
        let bound = settled >> Q_SHIFT;
        let mut applied = Applied {
            newly: &mut newly,
            open: &mut open,
            queued: &mut queued,
            bound,
        };
        for (((k, &i), c), &next) in keys.iter().zip(members).zip(cut.iter_mut()).zip(&next) {
            for rank in next..*c {
                let (s, x) = k.slot_of_rank(rank);
                if !settled_bits.get(s) {
                    pending.push((s, ((k.weighted(x) >> Q_SHIFT) << Q_SHIFT) | u64::from(i)));
                    if pending.len() == BATCH {
                        applied.apply(&mut pending, &mut best);
                    }
                }
            }
            *c = next;
        }
        applied.apply(&mut pending, &mut best);
        // Settle the open slots (of earlier levels, or whose claim came above the bound) that
        // are now below it; few are open, so this reads little of the table.
        open.retain(|&s| {
            if !newly.get(s) && best[s as usize] >> Q_SHIFT >= bound {
                return true;
            }
            newly.set(s);
            queued.clear(s);
            false
        });
        for (a, b) in settled_bits.0.iter_mut().zip(newly.0.iter_mut()) {
            *a |= std::mem::take(b);
        }
    }
    weighted_owners(ranking, members, &best, settled >> Q_SHIFT)
}

/// Claims per batch.
const BATCH: usize = 4096;

/// Where [`build_weighted`]'s claims of a level go once applied.
struct Applied<'a> {
    /// Slots whose best claim is below the level's bound: settled at its end.
    newly: &'a mut Bits,
    /// Slots claimed and not (yet) settled, each once (`queued`).
    open: &'a mut Vec<u32>,
    queued: &'a mut Bits,
    /// The level's bound, `>> Q_SHIFT`.
    bound: u64,
}

impl Applied<'_> {
    /// Applies `pending` to `best` in two passes, so that no load of `best` waits behind a
    /// branch: update every slot and keep the value it was left with; then settle each slot
    /// below the bound and open the others.
    fn apply(&mut self, pending: &mut Vec<(u32, u64)>, best: &mut [u64]) {
        for (s, new) in pending.iter_mut() {
            let b = &mut best[*s as usize];
            let tie = u64::from((*b ^ *new) >> Q_SHIFT == 0) * TIE;
            *b = (*b).min(*new) | tie;
            *new = *b;
        }
        for &(s, after) in pending.iter() {
            if after >> Q_SHIFT < self.bound {
                self.newly.set(s);
            } else if !self.queued.get(s) {
                self.queued.set(s);
                self.open.push(s);
            }
        }
        pending.clear();
    }
}

/// The score bound of a weighted build: about `ln n` claims per slot.
pub(super) fn weighted_theta(ranking: &Ranking, members: &[u32]) -> u64 {
    let total_weight: u64 = members
        .iter()
        .map(|&i| u64::from(ranking.keys[i as usize].weight))
        .sum();
    ((u128::from(claims_milli(members.len())) << 58) / (u128::from(total_weight) * 693))
        .min(u128::from(u64::MAX)) as u64
}

/// Each slot's owner from its packed best claim: exact below `settled` (coarse) without a tie,
/// else scored directly. Also a bound on the owners' order keys: a packed claim's score is
/// below the next coarse step.
pub(super) fn weighted_owners(
    ranking: &Ranking,
    members: &[u32],
    best: &[u64],
    settled: u64,
) -> (Vec<u32>, u128) {
    // The highest coarse score of a packed owner, and the highest key of one scored directly.
    let (mut coarse_max, mut scored_max) = (None, 0);
    let owners = best
        .iter()
        .enumerate()
        .map(|(s, &b)| {
            let coarse = b >> Q_SHIFT;
            if coarse < settled && b & TIE == 0 {
                coarse_max = coarse_max.max(Some(coarse));
                (b & (TIE - 1)) as u32
            } else {
                let key = ranking
                    .best(members.iter().copied(), s as u32)
                    .unwrap_or(u128::MAX);
                scored_max = scored_max.max(key);
                index_of(key)
            }
        })
        .collect();
    // Below `settled`, which fits the coarse range: the next step does too.
    let packed_max = coarse_max.map_or(0, |c| order_key(((c + 1) << Q_SHIFT) - 1, 0, u32::MAX));
    (owners, packed_max.max(scored_max))
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
