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

/// Appends the lower-case hex of `bytes` to `out` (no allocation per byte: IDs and etags are
/// made on every registration).
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

/// Hex of `n` random bytes.
pub(crate) fn random_hex(e: &dyn Entropy, n: usize) -> String {
    let mut b = vec![0u8; n];
    e.fill(&mut b);
    let mut out = String::with_capacity(2 * n);
    push_hex(&mut out, &b);
    out
}

/// A GUID-shaped random string (`8-4-4-4-12` hex), as Azure uses for etags and IDs.
pub(crate) fn random_guid(e: &dyn Entropy) -> String {
    let mut b = [0u8; 16];
    e.fill(&mut b);
    let mut out = String::with_capacity(36);
    for (i, part) in [&b[0..4], &b[4..6], &b[6..8], &b[8..10], &b[10..16]]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            out.push('-');
        }
        push_hex(&mut out, part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Entropy, random_guid, random_hex};

    /// Bytes 0x00, 0x11, 0x22, … on every fill.
    struct Counting;

    impl Entropy for Counting {
        fn fill(&self, buf: &mut [u8]) {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = u8::try_from(i * 17 % 256).unwrap_or(0);
            }
        }
    }

    #[test]
    fn ids_are_lower_hex_in_guid_shape() {
        assert_eq!(random_hex(&Counting, 4), "00112233");
        assert_eq!(
            random_guid(&Counting),
            "00112233-4455-6677-8899-aabbccddeeff"
        );
    }
}
