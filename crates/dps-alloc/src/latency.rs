//! Lowest latency (`geoLatency`): configuration and the per-source-region plans prepared from it.

use std::collections::BTreeMap;

use crate::table::{Group, Ranking, index_of};

/// Configured latency between regions, in microseconds.
///
/// Regions are names such as `westeurope`, compared ASCII case-insensitively. A pair that was
/// never inserted is unknown, except a region to itself, which is 0 µs unless inserted. Where
/// the numbers come from (static configuration, periodic probes) is the caller's business: this
/// crate only reads them, when a [`HubSet`](crate::HubSet) is prepared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyMap {
    entries: BTreeMap<(String, String), u32>,
}

impl LatencyMap {
    /// An empty map (every pair between different regions unknown).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the latency from `from` to `to`.
    pub fn with(mut self, from: &str, to: &str, micros: u32) -> Self {
        self.insert(from, to, micros);
        self
    }

    /// Adds (or replaces) the latency from `from` to `to`.
    pub fn insert(&mut self, from: &str, to: &str, micros: u32) {
        self.entries
            .insert((from.to_ascii_lowercase(), to.to_ascii_lowercase()), micros);
    }

    /// Adds (or replaces) the latency between `a` and `b` in both directions.
    pub fn insert_symmetric(&mut self, a: &str, b: &str, micros: u32) {
        self.insert(a, b, micros);
        self.insert(b, a, micros);
    }

    /// The latency from `from` to `to`, if known.
    pub fn latency(&self, from: &str, to: &str) -> Option<u32> {
        let key = (from.to_ascii_lowercase(), to.to_ascii_lowercase());
        match self.entries.get(&key) {
            Some(&us) => Some(us),
            None if key.0 == key.1 => Some(0),
            None => None,
        }
    }

    /// Every region the map mentions, lower-cased, sorted, without duplicates.
    pub fn regions(&self) -> Vec<&str> {
        let mut r: Vec<&str> = self
            .entries
            .keys()
            .flat_map(|(a, b)| [a.as_str(), b.as_str()])
            .collect();
        r.sort_unstable();
        r.dedup();
        r
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// How far above the lowest latency a hub may be and still count as equally close.
///
/// A hub whose latency is at most `best + max(best * percent / 100, micros)` joins the tie set;
/// weighted hashing then picks among the tie set. Integer arithmetic only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tolerance {
    percent: u32,
    micros: u32,
}

impl Tolerance {
    /// Only hubs exactly as close as the closest one tie.
    pub const EXACT: Self = Self {
        percent: 0,
        micros: 0,
    };

    /// A relative tolerance: `percent` of the lowest latency.
    pub const fn percent(percent: u32) -> Self {
        Self { percent, micros: 0 }
    }

    /// An absolute tolerance in microseconds.
    pub const fn micros(micros: u32) -> Self {
        Self { percent: 0, micros }
    }

    /// This tolerance, but at least `micros` microseconds.
    pub const fn at_least_micros(self, micros: u32) -> Self {
        Self {
            percent: self.percent,
            micros,
        }
    }

    /// The highest latency that ties with `best`.
    pub fn limit(&self, best: u32) -> u64 {
        let best = u64::from(best);
        best + (best * u64::from(self.percent) / 100).max(u64::from(self.micros))
    }
}

impl Default for Tolerance {
    /// 10 % of the lowest latency.
    fn default() -> Self {
        Self::percent(10)
    }
}

/// Configuration of the lowest-latency policy ([`LowestLatency`](crate::LowestLatency)).
///
/// The source region of a request is the one it carries
/// ([`Request::with_source_region`](crate::Request::with_source_region), e.g. mapped from the
/// client address by the caller), else `local_region` (the region of this dpsd node). Hub
/// regions are set with [`Hub::with_region`](crate::Hub::with_region).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LowestLatencyConfig {
    /// Latency between regions.
    pub latency: LatencyMap,
    /// Which hubs count as equally close.
    pub tolerance: Tolerance,
    /// The region of this node, used when a request carries no source region.
    pub local_region: Option<String>,
    /// The source regions requests can carry besides the local region, when the caller knows
    /// them all (dpsd does: its client-address table). `None`: any region may be a source.
    /// Only these sources' tie groups get tables; a request from another source region gets the
    /// same answer, by scoring its tie groups directly (microseconds, not nanoseconds).
    pub sources: Option<Vec<String>>,
}

impl LowestLatencyConfig {
    /// A configuration over `latency` with the default tolerance and no local region.
    pub fn new(latency: LatencyMap) -> Self {
        Self {
            latency,
            ..Self::default()
        }
    }

    /// Sets the tolerance.
    pub fn with_tolerance(mut self, tolerance: Tolerance) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Sets the region of this node.
    pub fn with_local_region(mut self, region: impl Into<String>) -> Self {
        self.local_region = Some(region.into());
        self
    }

    /// Declares every source region requests can carry besides the local region (see
    /// [`LowestLatencyConfig::sources`]): preparing a set then builds tables only for theirs.
    pub fn with_sources<S: Into<String>>(mut self, regions: impl IntoIterator<Item = S>) -> Self {
        self.sources = Some(regions.into_iter().map(Into::into).collect());
        self
    }

    /// Whether requests from `region` (lower-cased) are expected.
    fn expects(&self, region: &str) -> bool {
        match &self.sources {
            None => true,
            Some(sources) => {
                sources.iter().any(|r| r.eq_ignore_ascii_case(region)) || self.is_local(region)
            }
        }
    }

    /// Whether `region` is this node's.
    fn is_local(&self, region: &str) -> bool {
        self.local_region
            .as_ref()
            .is_some_and(|r| r.eq_ignore_ascii_case(region))
    }
}

/// The lowest-latency configuration prepared for one hub set.
#[derive(Clone)]
pub(crate) struct Plans {
    config: LowestLatencyConfig,
    /// Every region name known (map regions and hub regions), lower-cased, sorted.
    regions: Vec<String>,
    /// Hub groups by region: region index, or `None` for hubs without a region.
    groups: Vec<(Option<u32>, Group)>,
    /// The group of each canonical hub.
    group_of: Vec<u32>,
    /// One plan per region of `regions`, as a source.
    by_source: Vec<Plan>,
    /// The plan for requests without a source region.
    local: Option<u32>,
    /// Some expected source's tie groups were left without a table (`local_only`).
    deferred: bool,
}

#[derive(Clone)]
enum Plan {
    /// Nothing is known, or every hub ties: plain hashing over all hubs.
    All,
    /// Latency of each group (by group index), and the groups that tie.
    Tie {
        latency: Box<[Option<u32>]>,
        tie: Box<[u32]>,
        in_tie: Box<[bool]>,
    },
}

/// Where a lowest-latency lookup goes.
pub(crate) enum Route<'a> {
    /// No latency information: plain hashing over the candidates.
    Hashed,
    /// Pick among these groups (precomputed for the whole set).
    Tie(&'a Plans, &'a [u32], &'a [bool]),
    /// Latency of each group for the candidates to be ranked on the fly.
    Latency(&'a Plans, &'a [Option<u32>]),
}

impl Plans {
    /// Prepares the plans for the participating hubs of `ranking` with regions `hub_regions`
    /// (by canonical index). `None` when there is no region information at all.
    /// Groups of `previous` (same ranking) with the same members lend their tables. With
    /// `local_only`, only the local region's tie groups get tables, whatever the sources.
    pub(crate) fn new(
        config: &LowestLatencyConfig,
        ranking: &Ranking,
        hub_regions: &[Option<&str>],
        previous: &[&Group],
        local_only: bool,
    ) -> Option<Self> {
        let mut regions: Vec<String> = config
            .latency
            .regions()
            .into_iter()
            .map(str::to_owned)
            .chain(hub_regions.iter().flatten().map(|r| r.to_ascii_lowercase()))
            .chain(config.local_region.iter().map(|r| r.to_ascii_lowercase()))
            .collect();
        regions.sort_unstable();
        regions.dedup();
        if regions.is_empty() {
            return None;
        }
        let region_index = |r: &str| {
            regions
                .binary_search(&r.to_ascii_lowercase())
                .ok()
                .map(|i| i as u32)
        };

        // Group hubs by region (canonical indices stay ascending inside each group).
        let mut by_region: BTreeMap<Option<u32>, Vec<u32>> = BTreeMap::new();
        for (i, r) in hub_regions.iter().enumerate() {
            by_region
                .entry(r.and_then(region_index))
                .or_default()
                .push(i as u32);
        }
        let group_regions: Vec<(Option<u32>, Vec<u32>)> = by_region.into_iter().collect();
        let mut group_of = vec![0u32; ranking.len()];
        for (g, (_, members)) in group_regions.iter().enumerate() {
            for &m in members {
                group_of[m as usize] = g as u32;
            }
        }

        let by_source: Vec<Plan> = regions
            .iter()
            .map(|source| {
                let latency: Box<[Option<u32>]> = group_regions
                    .iter()
                    .map(|(r, _)| {
                        r.and_then(|r| config.latency.latency(source, &regions[r as usize]))
                    })
                    .collect();
                let Some(best) = latency.iter().flatten().min().copied() else {
                    return Plan::All;
                };
                let limit = config.tolerance.limit(best);
                let in_tie: Box<[bool]> = latency
                    .iter()
                    .map(|l| l.is_some_and(|l| u64::from(l) <= limit))
                    .collect();
                if in_tie.iter().all(|&t| t) {
                    return Plan::All;
                }
                let tie = (0..in_tie.len() as u32)
                    .filter(|&g| in_tie[g as usize])
                    .collect();
                Plan::Tie {
                    latency,
                    tie,
                    in_tie,
                }
            })
            .collect();

        // Only groups some expected source's plan picks among need a table; with `local_only`,
        // the others are left for later.
        let mut needed = vec![false; group_regions.len()];
        let mut later = vec![false; group_regions.len()];
        for (p, source) in by_source.iter().zip(&regions) {
            if !config.expects(source) {
                continue;
            }
            if let Plan::Tie { tie, .. } = p {
                let wanted = if local_only && !config.is_local(source) {
                    &mut later
                } else {
                    &mut needed
                };
                for &g in tie.iter() {
                    wanted[g as usize] = true;
                }
            }
        }
        let deferred = later.iter().zip(&needed).any(|(&l, &n)| l && !n);
        let groups = group_regions
            .into_iter()
            .zip(needed)
            .map(|((r, members), needed)| {
                // A lowest-latency lookup has more to do than a hashed one, so its groups
                // get tables at half the size.
                let group = if needed {
                    Group::planned(members, ranking.direct_max() / 2, previous)
                } else {
                    Group::without_table(members)
                };
                (r, group)
            })
            .collect();
        let local = config.local_region.as_deref().and_then(region_index);
        Some(Self {
            config: config.clone(),
            regions,
            groups,
            group_of,
            by_source,
            local,
            deferred,
        })
    }

    /// Whether tables some expected source needs were left for a later stage.
    pub(crate) fn deferred(&self) -> bool {
        self.deferred
    }

    /// The prepared groups, to lend their tables to a set prepared again.
    pub(crate) fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.iter().map(|(_, g)| g)
    }

    /// The groups, to build the tables they still lack.
    pub(crate) fn groups_mut(&mut self) -> impl Iterator<Item = &mut Group> {
        self.groups.iter_mut().map(|(_, g)| g)
    }

    /// The configuration these plans were prepared from.
    pub(crate) fn config(&self) -> &LowestLatencyConfig {
        &self.config
    }

    /// How to serve a request from `source` (else the local region), with or without an
    /// enrollment's hub subset.
    pub(crate) fn route(&self, source: Option<&str>, subset: bool) -> Route<'_> {
        let source = match source {
            Some(s) => self
                .regions
                .binary_search_by(|r| r.bytes().cmp(s.bytes().map(|b| b.to_ascii_lowercase())))
                .ok()
                .map(|i| i as u32),
            None => self.local,
        };
        let Some(source) = source else {
            return Route::Hashed;
        };
        match &self.by_source[source as usize] {
            // Nothing is known from this source, or every group ties; then every subset ties too
            // (its best latency is no lower, so its limit is no lower).
            Plan::All => Route::Hashed,
            Plan::Tie {
                latency,
                tie,
                in_tie,
            } => {
                if subset {
                    Route::Latency(self, latency)
                } else {
                    Route::Tie(self, tie, in_tie)
                }
            }
        }
    }

    /// The group of canonical hub `i`.
    #[inline]
    pub(crate) fn group_of(&self, i: u32) -> u32 {
        self.group_of[i as usize]
    }

    /// The choice for `slot` among the tie groups: the global winner when it ties, else the
    /// best of each tie group's own choice.
    #[inline]
    pub(crate) fn pick_tie(
        &self,
        ranking: &Ranking,
        global: &Group,
        tie: &[u32],
        in_tie: &[bool],
        slot: u32,
    ) -> Option<u32> {
        if let [g] = tie {
            // One tie group: its own choice is the answer (it agrees with the full set's
            // whenever that is in the group).
            return self.groups[*g as usize].1.pick(ranking, slot);
        }
        if let Some(w) = global.table_pick(slot)
            && in_tie[self.group_of(w) as usize]
        {
            return Some(w);
        }
        tie.iter()
            .filter_map(|&g| self.groups[g as usize].1.best(ranking, slot))
            .min()
            .map(index_of)
    }
}

/// The latency-ranked choice among `candidates` (canonical indices) for `slot`, given each
/// group's latency: hubs with unknown latency rank last; those within the tolerance of the
/// best form the tie set, and the consistent hash picks among them.
pub(crate) fn pick_ranked_subset(
    plans: &Plans,
    latency: &[Option<u32>],
    ranking: &Ranking,
    global: &Group,
    candidates: &[u32],
    slot: u32,
) -> Option<u32> {
    let lat = |i: u32| latency[plans.group_of(i) as usize];
    let best = candidates.iter().filter_map(|&i| lat(i)).min();
    let ties = move |i: u32| match best {
        Some(best) => lat(i).is_some_and(|l| u64::from(l) <= plans.config.tolerance.limit(best)),
        None => true,
    };
    if let Some(w) = global.table_pick(slot)
        && candidates.contains(&w)
        && ties(w)
    {
        return Some(w);
    }
    ranking.pick(candidates.iter().copied().filter(|&i| ties(i)), slot)
}
