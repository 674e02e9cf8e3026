//! Equal-weight tables: the rank-by-rank walk.

use super::{Ranking, claims_milli};
use crate::score::{BLOCK_RANKS, HubKey, InnerRounds, RankBlock, SLOT_BITS, SLOTS};

/// Equal weights, rank by rank from the top: the first claim to reach a slot has its highest
/// rank, so the slot's owner needs no comparison. Returns each slot's owner and its refined rank
/// there (the low 32 bits of the order key, for [`Group::fill_as_union`](super::Group::fill_as_union)).
///
/// The loop that makes the claims has no data-dependent branch and reads only a bitset of taken
/// slots (128 KiB, within a core's L2 cache) and its own small arrays: each rank's claims of
/// free slots are appended to a list (the cursor moves by the claim's outcome), and only the
/// list writes the working table (a 16-bit member position per slot, 2 MiB; 32-bit from 65,535
/// members on), about once per slot. A hub's ranks go in blocks that share their top half
/// ([`HubKey::rank_block`]), one multiply fewer per claim. Claims of one rank that meet in a
/// free slot (rare) compare their sub-ranks, then the lower position wins. The same claims, and
/// the same table, as the tests' reference builder, which keeps a 64-bit key per slot.
pub(super) fn build_uniform_by_rank(ranking: &Ranking, members: &[u32]) -> (Vec<u32>, Vec<u32>) {
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
pub(super) trait Claim: Copy + Default + Eq {
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
pub(super) fn walk_ranks<C: Claim>(keys: &[HubKey]) -> Vec<C> {
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
