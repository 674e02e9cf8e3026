//! The integer arithmetic every node must agree on, bit for bit: the key hash of a registration
//! ID, the per-hub slot permutation, and the weighted rendezvous score.
//!
//! Everything here is a pure function of its inputs built from wrapping integer operations on
//! fixed-width types (`u64`/`u128`), little-endian byte order and a `const`-computed logarithm
//! table, so the results are identical on every platform and compiler. Changing any constant
//! changes where devices land: treat this file as a wire format ("allocation hash v1").

/// Bits of a slot number: the key space is cut into `2^SLOT_BITS` slots.
pub(crate) const SLOT_BITS: u32 = 20;
/// Number of slots.
pub(crate) const SLOTS: usize = 1 << SLOT_BITS;
const HALF: u32 = SLOT_BITS / 2;
const HALF_MASK: u64 = (1 << HALF) - 1;
/// Extra low-order bits that refine a rank so that two hubs rarely share a score.
const SUB_BITS: u32 = 12;
const SUB_MASK: u64 = (1 << SUB_BITS) - 1;
/// Rounds of the Feistel network that permutes the slots for each hub.
const ROUNDS: usize = 3;
/// Bits of a refined rank `X = rank << SUB_BITS | sub`.
const X_BITS: u32 = SLOT_BITS + SUB_BITS;
/// Fractional bits of the fixed-point logarithm.
const FRAC: u32 = 48;
/// Scale of weights inside a score (`q ~ e * 2^WEIGHT_SHIFT / w`), >= log2 of the maximum weight.
const WEIGHT_SHIFT: u32 = 10;
/// The maximum weight.
pub(crate) const MAX_WEIGHT: u32 = 1000;

const P0: u64 = 0x9e37_79b9_7f4a_7c15;
const P1: u64 = 0xbf58_476d_1ce4_e5b9;
const P2: u64 = 0x94d0_49bb_1331_11eb;
const P3: u64 = 0xa076_1d64_78bd_642f;
const P4: u64 = 0xe703_7ed1_a0b4_28db;
/// Domain separation between registration-ID keys and hub-name seeds.
const HUB_DOMAIN: u64 = 0x6875_622d_7365_6564; // "hub-seed"

/// The splitmix64 finaliser: a bijective 64-bit mixer.
const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(P1);
    z = (z ^ (z >> 27)).wrapping_mul(P2);
    z ^ (z >> 31)
}

/// Multiply and fold the 128-bit product.
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// ASCII-lowercases 8 bytes at once (bytes outside `A-Z` are unchanged).
#[inline(always)]
fn lower8(x: u64) -> u64 {
    const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HI: u64 = 0x8080_8080_8080_8080;
    let b = x & LO7;
    // High bit of each byte set when the byte (without its top bit) is >= 'A' / > 'Z'.
    let ge_a = b + 0x3f3f_3f3f_3f3f_3f3f; // 0x80 - b'A'
    let gt_z = b + 0x2525_2525_2525_2525; // 0x80 - b'Z' - 1
    let upper = ge_a & !gt_z & !x & HI;
    x | (upper >> 2)
}

/// Hashes `bytes` (ASCII case-folded when `fold_case`) into 64 bits under `seed`: one
/// 64x64->128-bit multiply per 16 bytes (the wyhash construction), one for the tail and the
/// length, one to finish. Words are read little-endian; the tail (0-15 bytes) is read as
/// overlapping words, never through a byte buffer.
#[inline]
fn hash_bytes(seed: u64, bytes: &[u8], fold_case: bool) -> u64 {
    let lower = |w: u64| if fold_case { lower8(w) } else { w };
    let mut h = seed ^ P0;
    let mut chunks = bytes.chunks_exact(16);
    for c in &mut chunks {
        h = fold(lower(read8(c, 0)) ^ P3 ^ h, lower(read8(c, 8)) ^ P4);
    }
    let rest = chunks.remainder();
    let r = rest.len();
    let (a, b) = if r > 8 {
        (read8(rest, 0), read8(rest, r - 8))
    } else if r >= 4 {
        ((read4(rest, 0) << 32) | read4(rest, r - 4), 0)
    } else if r > 0 {
        let byte = |i: usize| u64::from(rest[i]);
        ((byte(0) << 16) | (byte(r / 2) << 8) | byte(r - 1), 0)
    } else {
        (0, 0)
    };
    h = fold(lower(a) ^ P3 ^ h, lower(b) ^ P4 ^ (bytes.len() as u64));
    fold(h ^ P1, P2)
}

#[inline(always)]
fn read8(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

#[inline(always)]
fn read4(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u64::from(u32::from_le_bytes(w))
}

/// The 64-bit key of a registration ID: ASCII case-folded, hashed under the configured seed.
#[inline]
pub(crate) fn key_hash(seed: u64, registration_id: &str) -> u64 {
    hash_bytes(seed, registration_id.as_bytes(), true)
}

/// A hash of a (case-folded) hub host name, for the name index. Not part of the mapping.
#[inline]
pub(crate) fn name_hash(name: &str) -> u64 {
    hash_bytes(HUB_DOMAIN ^ P4, name.as_bytes(), true)
}

/// The slot of a key: its top `SLOT_BITS` bits.
#[inline(always)]
pub(crate) fn slot_of(key: u64) -> u32 {
    (key >> (64 - SLOT_BITS)) as u32
}

/// What a hub contributes to every score: its permutation keys and its weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HubKey {
    /// Per-round multipliers (odd) and addends of the Feistel round functions.
    a: [u64; ROUNDS],
    b: [u64; ROUNDS],
    /// `u64::MAX / weight`.
    recip: u64,
    /// The weight, 1-1000.
    pub(crate) weight: u32,
    /// The hub's seed (hash of its case-folded host name); orders hubs canonically.
    pub(crate) seed: u64,
}

impl HubKey {
    /// The key of the hub named `host` (case-folded) with `weight` (clamped to 1-1000).
    pub(crate) fn new(seed: u64, host: &str, weight: u32) -> Self {
        let hub_seed = hash_bytes(seed ^ HUB_DOMAIN, host.as_bytes(), true);
        let mut state = hub_seed;
        let mut next = || {
            state = state.wrapping_add(P0);
            mix(state)
        };
        let mut a = [0; ROUNDS];
        let mut b = [0; ROUNDS];
        for i in 0..ROUNDS {
            a[i] = next() | 1;
            b[i] = next();
        }
        let weight = weight.clamp(1, MAX_WEIGHT);
        Self {
            a,
            b,
            recip: u64::MAX / u64::from(weight),
            weight,
            seed: hub_seed,
        }
    }

    /// Round `i` of the Feistel network on a half: `a * half + b` (a strongly universal hash),
    /// whose top `HALF` bits are the round value and next `SUB_BITS` bits the sub-rank.
    #[inline(always)]
    fn round(&self, i: usize, half: u64) -> u64 {
        self.a[i].wrapping_mul(half).wrapping_add(self.b[i])
    }

    /// This hub's refined rank `X` of `slot`: the rank (a keyed 3-round Feistel permutation of
    /// the slots), followed by `SUB_BITS` keyed bits of the last round so that two hubs rarely
    /// tie. Higher is better.
    #[inline(always)]
    pub(crate) fn x_of_slot(&self, slot: u32) -> u64 {
        let (mut l, mut r) = (u64::from(slot) >> HALF, u64::from(slot) & HALF_MASK);
        let mut t = 0;
        for i in 0..ROUNDS {
            t = self.round(i, r);
            (l, r) = (r, l ^ (t >> (64 - HALF)));
        }
        (((l << HALF) | r) << SUB_BITS) | ((t >> (64 - HALF - SUB_BITS)) & SUB_MASK)
    }

    /// The slot this hub ranks `rank`, and the refined rank there: the inverse of
    /// [`HubKey::x_of_slot`].
    #[inline(always)]
    pub(crate) fn slot_of_rank(&self, rank: u32) -> (u32, u64) {
        let block = self.rank_block(rank >> HALF);
        let low = rank & HALF_MASK as u32;
        (self.inner().slot(&block, low), block.x(low))
    }

    /// What [`HubKey::slot_of_rank`] computes once for the `2^HALF` ranks that share their top
    /// half `top`: the first inverse round and the sub-rank.
    #[inline(always)]
    pub(crate) fn rank_block(&self, top: u32) -> RankBlock {
        let t = self.round(ROUNDS - 1, u64::from(top));
        RankBlock {
            top: u64::from(top),
            mask: t >> (64 - HALF),
            sub: (t >> (64 - HALF - SUB_BITS)) & SUB_MASK,
        }
    }

    /// What [`HubKey::slot_of_rank`] needs after [`HubKey::rank_block`]: the last two rounds.
    #[inline(always)]
    pub(crate) fn inner(&self) -> InnerRounds {
        InnerRounds {
            a1: self.a[1],
            b1: self.b[1],
            a0: self.a[0],
            b0: self.b[0],
        }
    }

    /// The weighted score of a refined rank: `-log2(u) / weight` in fixed point, where
    /// `u = (2X + 1) / 2^(X_BITS + 1)` is uniform in (0, 1). Lower is better; it never rises as
    /// `X` grows (the logarithm is non-decreasing and the division monotone).
    #[inline(always)]
    pub(crate) fn weighted(&self, x: u64) -> u64 {
        let e = (u64::from(X_BITS + 1) << FRAC) - log2_fixed(2 * x + 1);
        ((u128::from(e << WEIGHT_SHIFT) * u128::from(self.recip)) >> 64) as u64
    }

    /// The lowest rank whose weighted score can be `<= theta` (every rank below it scores above
    /// `theta`), and the score below which every (slot, this hub) pair has at least that rank.
    pub(crate) fn threshold(&self, theta: u64) -> (u32, u64) {
        // Scores fall as the refined rank grows; `rank << SUB_BITS | max` is the best a rank can do.
        let best_of =
            |rank: u32| self.weighted((u64::from(rank) << SUB_BITS) | ((1 << SUB_BITS) - 1));
        let (mut lo, mut hi) = (0u32, SLOTS as u32);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if best_of(mid) <= theta {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        (lo, self.floor_below(lo))
    }

    /// A score that no (slot, this hub) pair of a rank below `rank` beats (goes below).
    pub(crate) fn floor_below(&self, rank: u32) -> u64 {
        if rank < SLOTS as u32 {
            self.weighted(u64::from(rank) << SUB_BITS)
        } else {
            self.weighted((1 << X_BITS) - 1)
        }
    }
}

/// The last two rounds of one hub's permutation, inverted: see [`HubKey::inner`]. Half the size
/// of a [`HubKey`], so that a table builder's working set stays in cache.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InnerRounds {
    a1: u64,
    b1: u64,
    a0: u64,
    b0: u64,
}

// [`InnerRounds::slot`] is written out for the three rounds.
const _: () = assert!(ROUNDS == 3);

impl InnerRounds {
    /// The slot of rank `block.top << HALF | low`: [`HubKey::slot_of_rank`] after
    /// [`HubKey::rank_block`], one multiply fewer. Its refined rank is
    /// [`RankBlock::x`]`(low)`.
    #[inline(always)]
    pub(crate) fn slot(&self, block: &RankBlock, low: u32) -> u32 {
        let u = u64::from(low) ^ block.mask;
        let v = block.top ^ (self.a1.wrapping_mul(u).wrapping_add(self.b1) >> (64 - HALF));
        let w = u ^ (self.a0.wrapping_mul(v).wrapping_add(self.b0) >> (64 - HALF));
        ((w << HALF) | v) as u32
    }
}

/// One hub's ranks `top << HALF ..` (`2^HALF` of them) in the middle of inverting its
/// permutation: see [`HubKey::rank_block`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RankBlock {
    top: u64,
    mask: u64,
    sub: u64,
}

impl RankBlock {
    /// The refined rank `X` of rank `top << HALF | low`.
    #[inline(always)]
    pub(crate) fn x(&self, low: u32) -> u64 {
        (((self.top << HALF) | u64::from(low)) << SUB_BITS) | self.sub
    }
}

/// Ranks per [`RankBlock`].
pub(crate) const BLOCK_RANKS: u32 = 1 << HALF;

/// The total order of candidates for one slot, as one integer (lower wins): the weighted score
/// `q` (0 for all when every hub of the set has the same weight: the order is then the same),
/// then the higher refined rank `x`, then the lower canonical index.
#[inline(always)]
pub(crate) fn order_key(q: u64, x: u64, index: u32) -> u128 {
    (u128::from(q) << 64) | (u128::from(!(x as u32)) << 32) | u128::from(index)
}

/// `log2(1 + i / 4096)` in Q48 for `i` in `0..=4096`, computed at compile time by integer
/// repeated squaring (so it is the same table everywhere).
static LOG2_TABLE: [u64; 4097] = log2_table();

const fn log2_table() -> [u64; 4097] {
    let mut t = [0u64; 4097];
    let mut i = 0;
    while i < 4096 {
        // y in Q62, in [1, 2).
        let mut y: u128 = ((4096 + i) as u128) << 50;
        let mut r: u64 = 0;
        let mut bit: u64 = 1 << (FRAC - 1);
        while bit > 0 {
            y = (y * y) >> 62;
            if y >= (2u128 << 62) {
                y >>= 1;
                r |= bit;
            }
            bit >>= 1;
        }
        t[i as usize] = r;
        i += 1;
    }
    t[4096] = 1 << FRAC;
    t
}

/// `log2(x)` in Q48 for `1 <= x < 2^63`: table lookup on the top 12 mantissa bits, linear
/// interpolation on the next 26. Non-decreasing; strictly increasing on the odd inputs below
/// 2^33 used here.
#[inline(always)]
fn log2_fixed(x: u64) -> u64 {
    let msb = 63 - x.leading_zeros();
    let m = x << (63 - msb);
    let idx = ((m >> 51) & 0xfff) as usize;
    let frac = m & ((1 << 51) - 1);
    let lo = LOG2_TABLE[idx];
    let hi = LOG2_TABLE[idx + 1];
    // hi - lo < 2^37 and frac >> 25 < 2^26: the product fits in 64 bits.
    (u64::from(msb) << FRAC) + lo + (((hi - lo) * (frac >> 25)) >> 26)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercasing_is_ascii_only() {
        let s = b"AZaz09@[`{\x80\xc3\x9f-Q";
        for chunk in s.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            let got = lower8(u64::from_le_bytes(w)).to_le_bytes();
            let want: Vec<u8> = w.iter().map(u8::to_ascii_lowercase).collect();
            assert_eq!(&got[..], &want[..]);
        }
        // Exhaustive over single bytes in every lane.
        for b in 0..=255u8 {
            for lane in 0..8 {
                let mut w = [b'x'; 8];
                w[lane] = b;
                let got = lower8(u64::from_le_bytes(w)).to_le_bytes();
                assert_eq!(got[lane], b.to_ascii_lowercase(), "byte {b:#x} lane {lane}");
            }
        }
    }

    /// The mapping is a wire format: every node must compute these exact values. A change here
    /// moves devices between hubs on upgrade, and must be deliberate.
    #[test]
    fn the_mapping_is_pinned() {
        assert_eq!(key_hash(0, "dev-1"), 0x658c_979d_5ac0_497c);
        assert_eq!(key_hash(0, "Device-000123"), 0x88e2_97e4_660b_5ab0);
        assert_eq!(key_hash(0, "a"), 0xe866_612f_0816_dfe7);
        assert_eq!(key_hash(0, ""), 0xfeb9_26ee_ac5e_c1a4);
        assert_eq!(key_hash(0, "0123456789abcdef0123"), 0x0a69_6883_97b9_75df);
        let k = HubKey::new(0, "hub-a.example.net", 3);
        assert_eq!(k.seed, 0x0f05_6909_b5b7_8a6d);
        for (slot, x, q) in [
            (0, 0x7487_39b4, 0x0183_9264_3a17_8fff),
            (1, 0x9ad6_a9d3, 0x00f7_989c_7690_8955),
            (12345, 0xd5dc_0c00, 0x0058_91b8_2b46_72aa),
            (SLOTS as u32 - 1, 0xd3a1_fcef, 0x005d_b93c_a362_7fff),
        ] {
            assert_eq!(k.x_of_slot(slot), x, "slot {slot}");
            assert_eq!(k.weighted(x), q, "slot {slot}");
        }
    }

    #[test]
    fn key_hash_folds_case() {
        assert_eq!(key_hash(0, "Dev-1"), key_hash(0, "dev-1"));
        assert_ne!(key_hash(0, "dev-1"), key_hash(1, "dev-1"));
        assert_ne!(key_hash(0, "dev-1"), key_hash(0, "dev-1\0"));
        assert_ne!(key_hash(0, ""), key_hash(0, "\0"));
    }

    #[test]
    fn slots_of_similar_ids_are_uniform() {
        // Sequential IDs of several lengths over 256 slot buckets: chi-square with 255 degrees
        // of freedom stays far below 400 (p < 1e-7) for a uniform hash.
        for (fmt, n) in [(0, 200_000u32), (1, 200_000), (2, 100_000)] {
            let mut bins = [0u32; 256];
            for i in 0..n {
                let id = match fmt {
                    0 => format!("{i}"),
                    1 => format!("device-{i:08}"),
                    _ => format!("Sensor-{i}-building-7-floor-3"),
                };
                bins[(slot_of(key_hash(0, &id)) >> (SLOT_BITS - 8)) as usize] += 1;
            }
            let e = f64::from(n) / 256.0;
            let chi: f64 = bins.iter().map(|&c| (f64::from(c) - e).powi(2) / e).sum();
            assert!(chi < 400.0, "format {fmt}: chi-square {chi}");
        }
    }

    #[test]
    fn log2_is_accurate_and_monotone() {
        let mut prev = 0;
        for x in (1u64..1 << 20).chain((1u64 << 33) - (1 << 20)..1 << 33) {
            let v = log2_fixed(x);
            assert!(x == 1 || v > prev, "not increasing at {x}");
            prev = v;
        }
        // Spot values.
        assert_eq!(log2_fixed(1), 0);
        assert_eq!(log2_fixed(1 << 20), 20 << FRAC);
        let three = log2_fixed(3) as f64 / (1u64 << FRAC) as f64;
        assert!((three - 3f64.log2()).abs() < 1e-9, "{three}");
    }

    #[test]
    fn weighted_score_never_rises_with_the_rank() {
        for w in [1, 2, 3, 999, 1000] {
            let k = HubKey::new(0, "hub", w);
            let mut prev = u64::MAX;
            for x in (0..1u64 << 18).chain((1u64 << 32) - (1 << 18)..1 << 32) {
                let q = k.weighted(x);
                assert!(q <= prev, "w={w} x={x}");
                prev = q;
            }
        }
    }

    #[test]
    fn rank_blocks_invert_like_slot_of_rank() {
        for host in ["hub-a.example.net", "hub-b.example.net"] {
            let k = HubKey::new(7, host, 1);
            for top in [0, 1, 511, BLOCK_RANKS - 1] {
                let block = k.rank_block(top);
                for low in 0..BLOCK_RANKS {
                    let rank = (top << HALF) | low;
                    let (s, x) = k.slot_of_rank(rank);
                    assert_eq!((k.inner().slot(&block, low), block.x(low)), (s, x));
                    // The blocks invert the forward permutation.
                    assert_eq!(k.x_of_slot(s), x);
                }
            }
        }
    }

    #[test]
    fn feistel_is_a_permutation() {
        let k = HubKey::new(0, "hub-a.example.net", 1);
        let mut seen = vec![false; SLOTS];
        for s in 0..SLOTS as u32 {
            let x = k.x_of_slot(s);
            let r = (x >> SUB_BITS) as u32;
            assert_eq!(k.slot_of_rank(r), (s, x));
            assert!(!std::mem::replace(&mut seen[r as usize], true));
        }
    }

    #[test]
    fn threshold_bounds_the_enumeration() {
        let k = HubKey::new(7, "hub-b", 3);
        let score = |r: u32| k.weighted(k.slot_of_rank(r).1);
        let theta = score((SLOTS as u32) - 5000);
        let (rmin, safe) = k.threshold(theta);
        assert!(rmin <= (SLOTS as u32) - 5000);
        for r in 0..rmin {
            assert!(score(r) > theta);
            assert!(score(r) >= safe);
        }
        assert!(k.weighted((u64::from(rmin) << SUB_BITS) | 4095) <= theta);
    }
}
