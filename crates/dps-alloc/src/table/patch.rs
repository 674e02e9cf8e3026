//! Tables patched from an earlier table of nearly the same members.
//!
//! A group's choice for a slot is its best member there, so when a few hubs join or leave, the
//! earlier table says almost everything: a slot whose owner stayed keeps it unless a newcomer
//! beats it (one comparison per newcomer), and only the slots whose owner left are scored
//! again over every member. Adding a hub to a group of `m` then costs about two scores per
//! slot and removing one about one, against about `ln m` claims per slot for a build. The
//! result is the table a build gives, exactly (a test compares the two).

use super::owners::{Table, any_index};
use super::{Group, Ranking, claims_milli, index_of};
use crate::score::SLOTS;

/// What patching `base` into a table for `members` costs, in thousandths of a score per slot:
/// one for the lookup of the earlier owner, one per newcomer, and `m` for the share of slots
/// whose owner left. `None` when that is no cheaper than building (about `ln m` claims a slot).
pub(super) fn cost_milli(members: &[u32], base: &Group) -> Option<u64> {
    let (added, removed) = difference(members, &base.members);
    let removed = removed + base.lost as usize;
    let before = (base.members.len() + base.lost as usize).max(1) as u64;
    let cost =
        1000 * (1 + added.len() as u64) + 1000 * removed as u64 * members.len() as u64 / before;
    (cost < claims_milli(members.len())).then_some(cost)
}

/// The members of `now` missing from `before` (both ascending), and how many of `before` are
/// missing from `now`.
fn difference(now: &[u32], before: &[u32]) -> (Vec<u32>, usize) {
    let (mut added, mut removed) = (Vec::new(), 0);
    let (mut i, mut j) = (0, 0);
    while i < now.len() || j < before.len() {
        match (now.get(i), before.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), b) if b.is_none_or(|b| a < b) => {
                added.push(*a);
                i += 1;
            }
            _ => {
                removed += 1;
                j += 1;
            }
        }
    }
    (added, removed)
}

/// The table of `members` (ascending canonical indices), from the table of `base` (in the same
/// ranking, or carried over from an earlier one with its map).
///
/// First every slot whose owner left is scored over all the members. Then each newcomer walks
/// its ranks from its best down, as in a build, and takes the slots where it beats the owner;
/// its scores fall with its rank, so the walk stops at the first one below the weakest owner of
/// any slot ([`Table::worst`]), after about `2^20 * ln(2^20) / m` of its ranks, not all of them.
pub(super) fn patch(ranking: &Ranking, members: &[u32], base: &Group) -> Table {
    let Some(table) = base.table.as_deref() else {
        // Not a base (planned only takes groups with a table): build.
        return super::build(ranking, members).0;
    };
    let (added, removed) = difference(members, &base.members);
    if let Some(map) = base.remap.as_deref()
        && added.is_empty()
        && removed == 0
        && base.lost == 0
    {
        // The same members in new canonical indices: only the names change.
        return table.mapped(map, members);
    }
    let mut member = vec![false; ranking.len()];
    for &m in members {
        member[m as usize] = true;
    }
    let map = base.remap.as_deref();
    let now = |old: u32| match map {
        Some(map) => map.get(old as usize).copied().unwrap_or(u32::MAX),
        None => old,
    };
    let stays = |o: u32| member.get(o as usize).copied().unwrap_or(false);
    // The earlier table's bound holds for the owners that stay; the rescored slots raise it.
    let mut worst = table.worst();
    let mut owner: Vec<u32> = (0..SLOTS as u32)
        .map(|s| {
            let o = now(table.owner(s));
            if stays(o) {
                return o;
            }
            let best = ranking
                .best(members.iter().copied(), s)
                .unwrap_or(u128::MAX);
            worst = worst.max(any_index(best));
            index_of(best)
        })
        .collect();
    for &a in &added {
        let key = &ranking.keys()[a as usize];
        for rank in (0..SLOTS as u32).rev() {
            let (s, x) = key.slot_of_rank(rank);
            let mine = ranking.key_at(a, x);
            if mine > worst {
                break;
            }
            let o = &mut owner[s as usize];
            if mine < ranking.key(*o, s) {
                *o = a;
            }
        }
    }
    // Owners only improved: the bound still holds.
    Table::of_owners(owner, members, worst)
}

#[cfg(test)]
mod tests {
    use super::super::tests::ranking;
    use super::*;

    #[test]
    fn difference_counts_both_ways() {
        assert_eq!(difference(&[1, 3, 5], &[1, 3, 5]), (vec![], 0));
        assert_eq!(difference(&[1, 2, 3, 5, 9], &[1, 3, 5]), (vec![2, 9], 0));
        assert_eq!(difference(&[3], &[1, 3, 5]), (vec![], 2));
        assert_eq!(difference(&[0, 4], &[1, 3]), (vec![0, 4], 2));
        assert_eq!(difference(&[], &[]), (vec![], 0));
    }

    #[test]
    fn patched_tables_are_built_tables() {
        for weighted in [false, true] {
            let r = ranking(400, |i| if weighted { 1 + (i as u32 % 7) } else { 1 });
            let before: Vec<u32> = (0..400).filter(|i| i % 4 != 1).collect();
            let base = Group::new(&r, before.clone());
            // Hubs joining, hubs leaving, and both.
            let joined: Vec<u32> = (0..400).filter(|i| i % 4 != 1 || *i < 9).collect();
            let left: Vec<u32> = before.iter().copied().filter(|i| i % 50 != 0).collect();
            let both: Vec<u32> = joined.iter().copied().filter(|i| i % 50 != 0).collect();
            for members in [joined, left, both] {
                let built = Group::new(&r, members.clone());
                let patched = patch(&r, &members, &base);
                for s in 0..SLOTS as u32 {
                    assert_eq!(
                        Some(patched.owner(s)),
                        built.table_pick(s),
                        "weighted {weighted}, {} members, slot {s}",
                        members.len()
                    );
                }
            }
        }
    }

    #[test]
    fn a_patched_table_bounds_its_new_owners() {
        // Nearly all hubs leave: the slots scored again get far weaker owners than the earlier
        // table's bound. A hub that joins next must still find every slot it wins.
        for weighted in [false, true] {
            let r = ranking(400, |i| if weighted { 1 + (i as u32 % 7) } else { 1 });
            let base = Group::new(&r, (0..400).filter(|i| i % 4 != 1).collect());
            let few: Vec<u32> = base.members[..12].to_vec();
            let shrunk = Group {
                members: few.clone().into_boxed_slice(),
                table: Some(std::sync::Arc::new(patch(&r, &few, &base))),
                ..Group::default()
            };
            let mut grown = few;
            grown.push(1);
            grown.sort_unstable();
            let patched = patch(&r, &grown, &shrunk);
            let built = Group::new(&r, grown.clone());
            for s in 0..SLOTS as u32 {
                assert_eq!(
                    Some(patched.owner(s)),
                    built.table_pick(s),
                    "weighted {weighted}, slot {s}"
                );
            }
        }
    }

    #[test]
    fn only_small_changes_are_patched() {
        let base = Group::without_table((0..1_000).collect());
        let one_more: Vec<u32> = (0..1_001).collect();
        let one_fewer: Vec<u32> = (1..1_000).collect();
        let half: Vec<u32> = (0..500).collect();
        assert_eq!(cost_milli(&one_more, &base), Some(2_000));
        assert_eq!(cost_milli(&one_fewer, &base), Some(1_999));
        assert_eq!(cost_milli(&half, &base), None);
        let many_more: Vec<u32> = (0..1_020).collect();
        assert_eq!(cost_milli(&many_more, &base), None);
    }
}
