//! A group's table: the owner of every slot, and a bound on how well the owners score.

use crate::score::SLOTS;

/// The owner (canonical index) of every slot, 16 bits an entry when every member's index fits.
#[derive(Clone)]
pub(super) struct Table {
    owners: Owners,
    /// An order key that no slot's owner's key exceeds, its index bits all set (so that it
    /// holds whatever the canonical indices): a newcomer can only win the slots where it scores
    /// at least this well. Every builder has it for next to nothing.
    worst: u128,
}

#[derive(Clone)]
enum Owners {
    Narrow(Box<[u16]>),
    Wide(Box<[u32]>),
}

/// `key` with its index bits set: the bound for every index with the same score.
#[inline(always)]
pub(super) fn any_index(key: u128) -> u128 {
    key | u128::from(u32::MAX)
}

impl Table {
    /// The table of `owner` (a canonical index per slot) for a group of `members`, whose
    /// owners' order keys are at most `worst`.
    pub(super) fn of_owners(owner: Vec<u32>, members: &[u32], worst: u128) -> Self {
        Self::collect(owner.into_iter(), members, worst)
    }

    /// The same from an iterator over the slots.
    fn collect(owner: impl Iterator<Item = u32>, members: &[u32], worst: u128) -> Self {
        let owners = if members.last().is_none_or(|&m| m <= u32::from(u16::MAX)) {
            Owners::Narrow(owner.map(|i| i as u16).collect())
        } else {
            Owners::Wide(owner.collect())
        };
        debug_assert_eq!(owners.len(), SLOTS);
        Self {
            owners,
            worst: any_index(worst),
        }
    }

    /// The canonical index of the owner of `slot`.
    #[inline(always)]
    pub(super) fn owner(&self, slot: u32) -> u32 {
        match &self.owners {
            Owners::Narrow(t) => u32::from(t[slot as usize]),
            Owners::Wide(t) => t[slot as usize],
        }
    }

    /// The table with every owner renamed by `map` (old canonical index -> new) for a group of
    /// `members` (the new indices); the bound on the keys still holds.
    pub(super) fn mapped(&self, map: &[u32], members: &[u32]) -> Self {
        let now = |old: u32| map.get(old as usize).copied().unwrap_or(u32::MAX);
        Self::collect(
            (0..SLOTS as u32).map(|s| now(self.owner(s))),
            members,
            self.worst,
        )
    }

    /// The bound on the owners' order keys (index bits set).
    pub(super) fn worst(&self) -> u128 {
        self.worst
    }

    /// Whether entries are 32 bits wide.
    #[cfg(test)]
    pub(super) fn is_wide(&self) -> bool {
        matches!(self.owners, Owners::Wide(_))
    }
}

impl Owners {
    fn len(&self) -> usize {
        match self {
            Self::Narrow(t) => t.len(),
            Self::Wide(t) => t.len(),
        }
    }
}
