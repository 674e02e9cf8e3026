//! The service's view of the outside world that is not storage: the clock and randomness.
//! Both are traits so tests and simulations run in fake time with fixed seeds.

use dps_types::Timestamp;

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Now, in UTC.
    fn now(&self) -> Timestamp;
}

/// A source of random bytes (operation IDs, etags, generated keys).
pub trait Entropy: Send + Sync + 'static {
    /// Fills `buf` with random bytes. Keys are generated from this: production entropy must be
    /// cryptographically secure.
    fn fill(&self, buf: &mut [u8]);
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::new(time::OffsetDateTime::now_utc())
    }
}

/// The operating system's CSPRNG (through `rand`'s thread-local generator, seeded from the OS).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&self, buf: &mut [u8]) {
        rand::fill(buf);
    }
}

/// Hex of `n` random bytes.
pub(crate) fn random_hex(e: &dyn Entropy, n: usize) -> String {
    let mut b = vec![0u8; n];
    e.fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A GUID-shaped random string (`8-4-4-4-12` hex), as Azure uses for etags and IDs.
pub(crate) fn random_guid(e: &dyn Entropy) -> String {
    let h = random_hex(e, 16);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
