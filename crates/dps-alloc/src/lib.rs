//! Allocation policies of dps-rs: which linked hub a device lands on.
//!
//! This crate owns the decision and nothing around it: it is pure and deterministic (no I/O,
//! no clock, no randomness, no floating point), so every dpsd node that is given the same hubs
//! and configuration makes the same choice for the same registration ID. It does not call the
//! custom-allocation webhook (dps-connect does, behind dps-service's `CustomAllocator`), measure
//! latency (the caller hands in a [`LatencyMap`], configured or probed, and re-prepares the set
//! with [`HubSetBuilder::reusing`] when it changes), or resolve the enrollment-over-scope policy
//! precedence (the caller passes the effective policy). It does provide the table that maps a
//! client address to its source region ([`SourceRegions`], longest CIDR prefix wins).
//!
//! Start from [`HubSet`]: prepare one per configuration change from the scope's linked hubs
//! ([`HubSet::new`], or [`HubSet::builder`] for policy configuration), then call
//! [`HubSet::allocate_with`] per registration:
//!
//! ```
//! use dps_alloc::{Hub, HubSet, LatencyMap, LowestLatencyConfig, Request, Tolerance};
//! use dps_types::{AllocationPolicy, HubHostName};
//!
//! let hub = |name: &str, weight, region: &str| {
//!     Hub::new(HubHostName::new(name).unwrap(), weight, true).with_region(region)
//! };
//! let latency = LatencyMap::new()
//!     .with("westeurope", "westeurope", 2_000)
//!     .with("westeurope", "northeurope", 2_100)
//!     .with("westeurope", "eastus", 80_000);
//! let hubs = HubSet::builder(vec![
//!     hub("hub-we.azure-devices.net", 1, "westeurope"),
//!     hub("hub-ne.azure-devices.net", 3, "northeurope"),
//!     hub("hub-us.azure-devices.net", 1, "eastus"),
//! ])
//! .lowest_latency(LowestLatencyConfig::new(latency).with_tolerance(Tolerance::percent(10)))
//! .build();
//!
//! // Weighted hashing: stable per registration ID, whatever its case.
//! let a = hubs.allocate_with(&Request::new(AllocationPolicy::Hashed, "dev-1")).unwrap();
//! let b = hubs.allocate_with(&Request::new(AllocationPolicy::Hashed, "DEV-1")).unwrap();
//! assert_eq!(a, b);
//!
//! // Lowest latency from westeurope: the two European hubs tie (within 10 %), hashing decides.
//! let req = Request::new(AllocationPolicy::GeoLatency, "dev-1").with_source_region(Some("westeurope"));
//! assert_ne!(hubs.allocate_with(&req).unwrap().host.as_str(), "hub-us.azure-devices.net");
//!
//! // Static: the enrollment names the hub.
//! let named = ["hub-us.azure-devices.net"];
//! let req = Request::new(AllocationPolicy::Static, "dev-1").with_named(&named);
//! assert_eq!(hubs.allocate_with(&req).unwrap().host.as_str(), named[0]);
//! ```
//!
//! # Policies
//!
//! Each policy is an [`Allocator`] (the plug-in point) with its own configuration, evaluated
//! over the prepared, immutable [`HubSet`]:
//!
//! | Policy | Type | Configuration | Chooses |
//! |---|---|---|---|
//! | `hashed` | [`Hashed`] | [`HashedConfig`] | weighted consistent hashing of the registration ID |
//! | `geoLatency` | [`LowestLatency`] | [`LowestLatencyConfig`] | the closest hubs, hashing among equals |
//! | `static` | [`Static`] | none | the one hub the enrollment names |
//! | `custom` | yours | yours | whatever your [`Allocator`] decides ([`HubSetBuilder::custom`]) |
//!
//! Every policy first checks that each hub the enrollment names is linked
//! ([`AllocError::HubNotLinked`]). Hashed and lowest latency then consider only hubs with
//! `apply_allocation_policy` (restricted to the enrollment's hubs when it names any);
//! static may name any linked hub. Without an installed custom allocator, `custom` requests
//! are hashed (the service is expected to run the webhook before it asks this crate).
//!
//! # Weighted hashing
//!
//! **What it guarantees.**
//! - *Deterministic and history-free*: the choice is a function of the seed, the case-folded
//!   registration ID and the set of participating (host name, weight) pairs, nothing else: not
//!   their order, not earlier configurations, not the node. Nodes rebuild it from configuration.
//! - *Minimal disruption, exactly*: adding a hub moves devices only to that hub; removing one
//!   moves only its devices (any hub, in any order); changing one hub's weight moves devices only
//!   to it (heavier) or only off it (lighter). The amount moved is the new hub's share:
//!   `w / (W + w)` of the key space in expectation (`1/(n+1)` for equal weights).
//! - *Restriction*: the choice among any subset of the hubs (an enrollment's `iotHubs`, a
//!   lowest-latency tie set, a custom filter through [`HubSet::hashed_among`]) is the full set's
//!   choice whenever that is in the subset, and is exactly what a set holding only the subset
//!   would choose. (The guarantees above are this property seen from both sides.)
//! - *Weights*: a hub of weight `w` gets `w / W` of the key space in expectation. The key space
//!   is cut into 2^20 slots, so each hub's share deviates from that by the granularity of its
//!   slot count: measured over all slots, an rms of 0.28 % of the share at 10 equal hubs,
//!   0.57 % at 50, 2.2 % at 1,000 and 6.9 % at 10,000 (about 0.7 of a binomial sample of 2^20,
//!   because each hub's ranks are a permutation). Over 1,000,000 registration IDs the sampling
//!   noise of the IDs themselves is of the same size.
//! - *Portable*: integer arithmetic only (wrapping `u64`/`u128`, little-endian reads, a
//!   logarithm table computed at compile time), the same on every platform; pinned by tests. It
//!   is not Azure's hash (which is undocumented): a device may land on a different hub than it
//!   would on Azure.
//!
//! **How.** The key is a 64-bit hash of the ASCII-lower-cased registration ID; its top 20 bits
//! are the slot. Every hub has a keyed permutation of the slots (a 3-round Feistel network with
//! strongly universal round functions, keyed by a hash of its host name): its rank for the slot,
//! refined by 12 more keyed bits, is a uniform `X`, and its score is
//! `-log2((2X + 1) / 2^33) / weight` in 48-bit fixed point: the exponential race of weighted
//! rendezvous hashing (HRW), which the lowest score wins (ties: higher `X`, then the hub with
//! the lower name hash). So each slot ranks all hubs, independently of which are present, and
//! the choice is the best-ranked hub present — which is where the guarantees come from.
//!
//! Scoring every hub per lookup is plain HRW, O(n): fine for a handful of hubs, 4-7 µs at
//! 1,000. A set with more than 8 hubs of equal weight (4 of different weights; see
//! [`HashedConfig::direct_max`]) therefore precomputes the winner of every slot into a table
//! (2 bytes per slot, 2 MiB), and a lookup is one hash and one read. The table is built without
//! scoring every (slot, hub) pair: because a hub's ranks are a permutation, it can walk its best
//! ranks backwards through its permutation and claim only the slots where it scores well; about
//! `ln n` claims per slot settle almost every slot, and the few left are scored directly, so
//! building costs about `2^20 * (ln n + 1)` scores whatever n is. A subset lookup reads the table
//! and, when the full set's choice is outside the subset, scores the subset directly (subsets
//! are small).
//!
//! **Why this and not …** Exact minimal disruption under arbitrary removals, without history,
//! forces the restriction property, and a choice function with that property is a ranking of
//! the hubs per key: a rendezvous scheme. The usual fast alternatives give up something:
//! Maglev balances its table exactly but moves 1.5x to 4.4x the minimum; jump hash only removes
//! the last bucket; ring hashing needs thousands of virtual nodes per hub for this balance;
//! AnchorHash and DxHash are minimal and O(1) but their mapping depends on the order of past
//! removals (AnchorHash) or on bucket positions and capacity that a node rebuilding from
//! configuration cannot reproduce (DxHash), so that state would have to live in the store.
//! Per-slot HRW keeps every guarantee exactly and pays for speed with memory and the slot
//! granularity of the weights: with 2^20 slots, adding a hub to 1,000 moves at most 1.1x the
//! minimum with overwhelming probability, while at 10,000 hubs (about 100 slots each) the share
//! of a single hub, and so the amount one addition moves, varies by about ±7 %.
//!
//! # Lowest latency
//!
//! [`LowestLatency`] reads the latency from the request's source region
//! ([`Request::source_region`], else [`LowestLatencyConfig::local_region`]) to each candidate
//! hub's region in the configured [`LatencyMap`]. The candidates within the [`Tolerance`] of the
//! lowest form the tie set and weighted hashing picks among them (consistently with the full set,
//! see *Restriction*). Hubs whose latency is unknown rank last: they are chosen only when no
//! candidate's latency is known, and then plain hashing decides, as it does when the source
//! region is unknown. A region is 0 µs from itself unless the map says otherwise.
//!
//! Preparing the set computes the tie set of every known source region (tie sets are unions of
//! regions, since latency is per region) and a table for every region that has more than half
//! as many hubs as are scored directly and is in the tie set of a source region requests are
//! expected from (all of them, unless [`LowestLatencyConfig::with_sources`] names them; others
//! get the same answers, scored directly). A lookup with one tie region reads that
//! region's table (or scores its few hubs); with several, it reads the full set's table and,
//! when that choice is not in the tie set, each tie region's. Enrollment subsets are ranked on
//! the fly. Without a [`LowestLatencyConfig`] ([`HubSetBuilder::lowest_latency`]), lowest
//! latency is plain hashing and costs nothing to prepare.
//!
//! # Costs
//!
//! Measured with `benches/benches/alloc.rs` on the 2-core development VM (nothing else
//! running: load average 1.4-2.8), in the same run as one SHA-256 of a registration ID (59 ns),
//! which the registration path already pays per device. Lookups cycle through 4,096 IDs; hubs
//! are spread over 8 regions, and lowest latency ties the hubs of the nearest region (n/8 of
//! them).
//!
//! | Lookup, n hubs | 1 | 10 | 50 | 1,000 | 10,000 |
//! |---|---|---|---|---|---|
//! | hashed, equal weights | 12 ns | 14 ns | 14 ns | 15 ns | 17 ns |
//! | hashed, weights 1-10 | 12 ns | 14 ns | 13 ns | 14 ns | 16 ns |
//! | lowest latency | 16 ns | 34 ns | 19 ns | 19 ns | 22 ns |
//! | ratio to SHA-256 | 0.21-0.27 | 0.23-0.57 | 0.23-0.32 | 0.24-0.32 | 0.27-0.37 |
//!
//! Below the table threshold a lookup scores each candidate, about 4 ns per hub of equal weight
//! and 7 ns with weights, after the 15 ns of hashing the ID; with a table it is one read of a
//! 2 MiB table. An enrollment naming 3 of 10,000 hubs costs 87 ns (three name look-ups and three
//! scores when the full set's choice is not among them). A lookup allocates nothing.
//!
//! Preparing 10,000 hubs took 62 ms with equal weights and 85 ms with weights 1-10 (the
//! scores take a logarithm) on the quiet VM with earlier builders; 1,000 hubs 35 ms / 75 ms; a
//! set at the threshold about 20 ms. The current builders take 38-53 ms and 75-107 ms in
//! runs under load (see the table below).
//! Equal-weight tables are built rank by rank from the top, so the first claim of a slot owns
//! it: whether a slot is taken lives in a 128 KiB bitset that stays in a core's L2 cache, the
//! loop that makes the claims has no data-dependent branch, and only the winning claims (about
//! one per slot) write the working table. Weighted tables keep a 64-bit key per slot (8 MiB);
//! their claims go in 16 levels of rising score, and a slot is settled in a bitset once no
//! later claim can beat it (as the claim updates the table: each level's bound is known before
//! its claims), so most claims never touch the table. Both are bound by random
//! memory accesses more than by arithmetic, and slow down the most when other work competes
//! for memory.
//!
//! With lowest latency configured, every region some expected source region ties to gets its
//! own table (at more than half the threshold). Each needs about `2^20 * ln m` claims for its
//! m hubs, so eight tables of 1,250 hubs are eight times the work of one of 10,000, whatever
//! the algorithm that claims; the full set's table is then derived from them (the best of the
//! regions' winners per slot, compared by the ranks their builds kept) instead of being built
//! from scratch. [`HubSetBuilder::threads`] builds tables in parallel (dpsd uses one thread
//! per CPU). Only the source regions requests can carry need tables:
//! [`LowestLatencyConfig::with_sources`] declares them (dpsd declares those of its
//! client-address table, besides its own region). [`HubSetBuilder::build_in_stages`] prepares
//! a set that serves at once with the full set's table and the local region's (answers for
//! other source regions are the same, scored directly: 7.8 µs for a region of 1,250 hubs
//! against 27-62 ns with its table), and a builder that adds the other
//! tables, reusing the first set's; dpsd runs it on a background thread and swaps the result in.
//!
//! Tables depend only on which hubs are in a group, not on latency, and a set prepared again
//! with [`HubSetBuilder::reusing`] takes them over: shared when the group is unchanged,
//! rewritten into the new canonical indices when hubs were added or removed elsewhere, and
//! patched when a few hubs joined or left the group. A patch scores again only the slots whose
//! owner left (over all the members), and lets each newcomer walk its ranks from the top only
//! while it still scores above the weakest owner of any slot, a bound every table keeps (for
//! one newcomer among 1,250 hubs, about 12,000 of its ranks instead of every slot). The result
//! is the table a build gives.
//!
//! Preparing 10,000 hubs in 8 regions, this code against the previous one (which rebuilt a
//! changed group's table, read the weighted table again to settle slots, and had no stages) in
//! one run of the same command on the same VM, under some load (one SHA-256 71-80 ns instead
//! of 59):
//!
//! | Preparing 10,000 hubs | previous | this | ratio |
//! |---|---|---|---|
//! | hashed, equal weights | 38 ms | 39 ms | 1.02 |
//! | hashed, weights 1-10 | 123 ms | 75 ms | 0.61 |
//! | lowest latency from 8 source regions at once, 1 thread | 291 ms | 300 ms | 1.03 |
//! | the same, 2 threads | 207 ms | 181 ms | 0.88 |
//! | first stage: hashing and the local region, 2 threads | | 43 ms | |
//! | second stage: the other 7 regions, 2 threads | | 138 ms | |
//! | again after a latency change (dpsd's probes) | 3.6 ms | 3.5 ms | 0.98 |
//! | again after adding a hub to one region, 2 threads | 90 ms | 12 ms | 0.13 |
//! | again after removing a hub from one region, 2 threads | | 25 ms | |
//!
//! Lookups measured the same in both (hashed 18-28 ns, lowest latency 23-32 ns at 10 to
//! 10,000 hubs).
//!
//! So at 10,000 hubs a set serves a new configuration in under 100 ms in every case measured
//! (75 ms at most, hashing with weights); only the tables of a node that serves many source
//! regions follow later, once, after a cold start (a hub change patches, a latency change
//! reuses). Earlier runs of the builders against their predecessors
//! (the bitset rank walk, weighted levels) measured 0.43-0.60 of the time before them. Each
//! table is 2 MiB (4 MiB beyond 65,536 hubs); small sets have none.
//!
//! # Static and custom
//!
//! [`Static`] returns the single named hub ([`AllocError::StaticNeedsOneHub`] otherwise), whether
//! or not it takes part in hashing; it costs one name look-up. dps-service refuses, when an
//! enrollment is written, hubs that are not linked and a static policy without exactly one hub.
//!
//! Custom allocation as Azure defines it (a webhook that may also return an initial twin and a
//! payload, and may take seconds) is asynchronous and lives in dps-service
//! (`CustomAllocator`, with dps-connect's webhook client). A synchronous policy that only picks a
//! hub can instead implement this crate's [`Allocator`] and be installed with
//! [`HubSetBuilder::custom`]; see its docs. Both see only linked hubs, and can stay consistent
//! with hashing through [`HubSet::hashed_among`].

mod cidr;
mod latency;
mod policy;
mod score;
mod set;
mod table;

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use dps_types::{AllocationPolicy, HubHostName};

pub use cidr::{Cidr, CidrError, SourceRegions};
pub use latency::{LatencyMap, LowestLatencyConfig, Tolerance};
pub use policy::{Allocator, Hashed, HashedConfig, LowestLatency, Static};
pub use set::{HubSet, HubSetBuilder};

/// A linked hub as allocation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hub {
    /// Host name.
    pub host: HubHostName,
    /// Relative weight, 1-1000 (clamped when a [`HubSet`] is prepared).
    pub weight: u32,
    /// Whether the hub takes part in hashed / lowest-latency allocation. A hub that does not
    /// can still be named by an enrollment with the static policy.
    pub apply_allocation_policy: bool,
    /// The hub's region (for lowest latency), e.g. `westeurope`; `None` if unknown.
    pub region: Option<String>,
}

impl Hub {
    /// A hub without a region; the weight is clamped to 1-1000.
    pub fn new(host: HubHostName, weight: u32, apply_allocation_policy: bool) -> Self {
        Self {
            host,
            weight: weight.clamp(1, score::MAX_WEIGHT),
            apply_allocation_policy,
            region: None,
        }
    }

    /// Sets the hub's region.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }
}

/// One allocation request: the effective policy (the enrollment's, else the scope's), the
/// enrollment's hub subset, the registration ID and, for lowest latency, the source region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Request<'a> {
    /// The effective policy.
    pub policy: AllocationPolicy,
    /// The enrollment's hubs (`iotHubs`, or the legacy `iotHubHostName`); empty means every
    /// linked hub.
    pub named: &'a [&'a str],
    /// The registration ID (case-folded before hashing).
    pub registration_id: &'a str,
    /// The region the request comes from, for lowest latency; `None` means this node's region
    /// ([`LowestLatencyConfig::local_region`]).
    pub source_region: Option<&'a str>,
}

impl<'a> Request<'a> {
    /// A request under `policy` for `registration_id`, over every linked hub.
    pub fn new(policy: AllocationPolicy, registration_id: &'a str) -> Self {
        Self {
            policy,
            named: &[],
            registration_id,
            source_region: None,
        }
    }

    /// Restricts the request to the enrollment's hubs.
    pub fn with_named(mut self, named: &'a [&'a str]) -> Self {
        self.named = named;
        self
    }

    /// Sets the source region.
    pub fn with_source_region(mut self, region: Option<&'a str>) -> Self {
        self.source_region = region;
        self
    }
}

/// Why no hub could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AllocError {
    /// No linked hub is eligible.
    #[error("no linked IoT hub is eligible for allocation")]
    NoEligibleHub,
    /// The enrollment names a hub that is not linked.
    #[error("IoT hub {0} is not linked to this scope")]
    HubNotLinked(String),
    /// A static policy without exactly one named hub.
    #[error("a static allocation policy needs exactly one IoT hub on the enrollment")]
    StaticNeedsOneHub,
    /// A custom allocator failed.
    #[error("custom allocation failed")]
    Custom(#[source] CustomError),
}

/// The error of a custom [`Allocator`], kept as the source of [`AllocError::Custom`].
#[derive(Clone)]
pub struct CustomError(Arc<dyn StdError + Send + Sync>);

impl CustomError {
    /// Wraps an embedder's error.
    pub fn new(error: impl StdError + Send + Sync + 'static) -> Self {
        Self(Arc::new(error))
    }
}

impl fmt::Debug for CustomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for CustomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl StdError for CustomError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

/// Two custom errors are equal when they share the same underlying error.
impl PartialEq for CustomError {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for CustomError {}
