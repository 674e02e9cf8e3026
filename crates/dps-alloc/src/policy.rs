//! The policy trait and the built-in policies.

use std::fmt;

use dps_types::AllocationPolicy;

use crate::latency::{self, Route};
use crate::set::Named;
use crate::{AllocError, Hub, HubSet, Request};

/// An allocation policy: picks the hub for one registration from a prepared [`HubSet`].
///
/// The built-ins are [`Hashed`], [`LowestLatency`] and [`Static`]; [`HubSet::allocate_with`]
/// dispatches to them by [`Request::policy`]. Their configuration ([`HashedConfig`],
/// [`LowestLatencyConfig`](crate::LowestLatencyConfig)) is given once to
/// [`HubSet::builder`], which precomputes what they need, so the built-ins themselves are
/// stateless handles.
///
/// Embedders plug in their own policy for [`AllocationPolicy::Custom`] with
/// [`HubSetBuilder::custom`](crate::HubSetBuilder::custom). An implementation must be pure
/// and fast (it runs on the registration path; do I/O elsewhere and hand the results in through
/// its own state), must return one of `hubs`' hubs (the lifetime ties the answer to the set,
/// and [`HubSet::allocate_with`] refuses any other), and can build on the built-ins, e.g. narrow the candidates and let [`Hashed`] or
/// [`HubSet::hashed_among`] pick consistently among them:
///
/// ```
/// use dps_alloc::{AllocError, Allocator, Hashed, Hub, HubSet, Request};
///
/// /// Sends ids starting with `lab-` to hubs whose name contains "lab", hashing among them.
/// #[derive(Debug)]
/// struct LabFirst;
///
/// impl Allocator for LabFirst {
///     fn allocate<'h>(&self, hubs: &'h HubSet, req: &Request<'_>) -> Result<&'h Hub, AllocError> {
///         if req.registration_id.starts_with("lab-") {
///             return hubs
///                 .hashed_among(req.registration_id, |h| h.host.as_str().contains("lab"))
///                 .ok_or(AllocError::NoEligibleHub);
///         }
///         Hashed.allocate(hubs, req)
///     }
/// }
/// # use dps_types::{AllocationPolicy, HubHostName};
/// # let hub = |n| Hub::new(HubHostName::new(n).unwrap(), 1, true);
/// # let hubs = HubSet::builder(vec![hub("lab-1"), hub("prod-1"), hub("prod-2")])
/// #     .custom(std::sync::Arc::new(LabFirst))
/// #     .build();
/// # let req = Request::new(AllocationPolicy::Custom, "lab-7");
/// # assert_eq!(hubs.allocate_with(&req).unwrap().host.as_str(), "lab-1");
/// ```
pub trait Allocator: fmt::Debug + Send + Sync {
    /// Picks the hub for `request` among `hubs`.
    fn allocate<'h>(&self, hubs: &'h HubSet, request: &Request<'_>) -> Result<&'h Hub, AllocError>;
}

/// Configuration of weighted hashing ([`Hashed`]), and of the hashing that breaks ties for
/// [`LowestLatency`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HashedConfig {
    /// Mixed into every hash. 0 (the default) gives the documented, seedless mapping that every
    /// deployment shares; any other value gives a different mapping with the same guarantees,
    /// e.g. to stop someone who can choose registration IDs from predicting their hub. Every
    /// node serving a scope must use the same seed.
    pub seed: u64,
    /// Groups of at most this many participating hubs are scored directly on every lookup
    /// instead of through a lookup table (2 MiB, built when the set is prepared). `None` (the
    /// default) means 8 hubs when all weights are equal and 4 otherwise. Only speed and memory
    /// depend on it, never the result.
    pub direct_max: Option<usize>,
}

impl HashedConfig {
    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the largest group scored without a table.
    pub fn with_direct_max(mut self, hubs: usize) -> Self {
        self.direct_max = Some(hubs);
        self
    }
}

/// Evenly weighted distribution (`hashed`): consistent weighted hashing of the case-folded
/// registration ID over the participating hubs (or the enrollment's subset of them).
///
/// See the [crate documentation](crate#weighted-hashing) for the algorithm and its guarantees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hashed;

impl Allocator for Hashed {
    fn allocate<'h>(&self, hubs: &'h HubSet, req: &Request<'_>) -> Result<&'h Hub, AllocError> {
        let slot = hubs.slot(req.registration_id);
        let chosen = if req.named.is_empty() {
            hubs.pick_hashed(None, slot)
        } else {
            hubs.pick_hashed(Some(hubs.resolve_named(req.named)?.as_slice()), slot)
        };
        chosen.ok_or(AllocError::NoEligibleHub)
    }
}

/// Lowest latency (`geoLatency`): the hubs whose latency from the request's source region is
/// within the tolerance of the lowest form the tie set, and weighted hashing picks among them.
///
/// Hubs with unknown latency rank last (they are used only when no candidate's latency is
/// known); with no region information at all this is [`Hashed`]. See
/// [`LowestLatencyConfig`](crate::LowestLatencyConfig).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LowestLatency;

impl Allocator for LowestLatency {
    fn allocate<'h>(&self, hubs: &'h HubSet, req: &Request<'_>) -> Result<&'h Hub, AllocError> {
        let named = if req.named.is_empty() {
            None
        } else {
            Some(hubs.resolve_named(req.named)?)
        };
        let subset = named.as_ref().map(Named::as_slice);
        let slot = hubs.slot(req.registration_id);
        let ranking = hubs.ranking();
        let global = hubs.global();
        let chosen = match hubs
            .plans()
            .map(|p| p.route(req.source_region, subset.is_some()))
        {
            None | Some(Route::Hashed) => {
                return hubs
                    .pick_hashed(subset, slot)
                    .ok_or(AllocError::NoEligibleHub);
            }
            Some(Route::Tie(plans, tie, in_tie)) => {
                plans.pick_tie(ranking, global, tie, in_tie, slot)
            }
            Some(Route::Latency(plans, latency)) => latency::pick_ranked_subset(
                plans,
                latency,
                ranking,
                global,
                subset.unwrap_or_default(),
                slot,
            ),
        };
        chosen
            .map(|i| hubs.by_canonical(i))
            .ok_or(AllocError::NoEligibleHub)
    }
}

/// Static configuration (`static`): the single hub the enrollment names (`iotHubs`, or the
/// legacy `iotHubHostName`), whether or not it takes part in hashed allocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Static;

impl Allocator for Static {
    fn allocate<'h>(&self, hubs: &'h HubSet, req: &Request<'_>) -> Result<&'h Hub, AllocError> {
        hubs.resolve_named(req.named)?;
        match req.named {
            [one] => hubs.find(one).ok_or(AllocError::NoEligibleHub),
            _ => Err(AllocError::StaticNeedsOneHub),
        }
    }
}

/// The built-in (or installed custom) allocator for `policy`.
pub(crate) fn dispatch<'h>(hubs: &'h HubSet, request: &Request<'_>) -> Result<&'h Hub, AllocError> {
    match request.policy {
        AllocationPolicy::Hashed => Hashed.allocate(hubs, request),
        AllocationPolicy::GeoLatency => LowestLatency.allocate(hubs, request),
        AllocationPolicy::Static => Static.allocate(hubs, request),
        AllocationPolicy::Custom => match hubs.custom() {
            Some(custom) => {
                hubs.resolve_named(request.named)?;
                custom.allocate(hubs, request)
            }
            None => Hashed.allocate(hubs, request),
        },
    }
}
