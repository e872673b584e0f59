//! Round committees by hash lottery: who may vote on a round's submissions.
//!
//! On the DHT every validator must decide, from nothing but the vote's
//! author, its round and the DNA properties, whether the author was on that
//! round's committee. A roster would have to be agreed on and stored; a
//! lottery over a hash needs neither:
//!
//! ```text
//! ticket(seed, round, key) = first 8 bytes, big-endian, of
//!                            SHA-256(seed || round as u64 big-endian || key)
//! member  <=>  ticket < rate * 2^64
//! ```
//!
//! `seed` is the DNA's `committee_seed` (its UTF-8 bytes), `key` the 32-byte
//! Ed25519 public key of the agent, `rate` the probability that an agent is
//! on a round's committee (`committee_rate`, in [0, 1]). Every key is drawn
//! independently, so the committee size is Binomial(agents, rate).
//!
//! Properties and limits:
//! - Deterministic: the same inputs give the same answer on every machine
//!   (SHA-256 and one float-to-integer conversion, both exact).
//! - Unbiasable by the round's content: nothing an agent submits in the round
//!   changes who is on its committee.
//! - Not predictable ahead of the round on a closed network: there the seed
//!   of round r is [`round_seed`]`(committee_seed, beacon_r)`, where the
//!   *beacon* `beacon_r` is the admission key's Ed25519 signature over
//!   [`beacon_message`]`(committee_seed, r)`. The federation releases
//!   beacons round by round; a node key is registered once, before the
//!   beacons of later rounds exist, so it cannot be ground for them.
//!   Validators check a vote's beacon against the admission key in the DNA
//!   properties (no fetch). Ed25519 signing is deterministic (RFC 8032), so
//!   an honest key holder has one beacon per round; the holder is trusted
//!   anyway (it decides who joins). On an open network (no admission key)
//!   the seed is `committee_seed` itself, fixed and known to all: a key can
//!   be ground for many rounds there, which is why open is for tests and
//!   demos. Membership is public once the beacon is (a VRF would keep it
//!   secret until the vote is cast).
//! - Unweighted: the Python pipeline weights its committee draw by
//!   reputation; this rule does not, because a reputation record is a
//!   claim by its author, not a fact every validator agrees on.

use sha2::{Digest, Sha256};

/// 2^64 as a float, the ticket space.
const TICKET_SPACE: f64 = 18_446_744_073_709_551_616.0;

/// The lottery ticket of `key` for `round`: the first 8 bytes of
/// SHA-256(seed || round (u64 big-endian) || key), read big-endian.
pub fn committee_ticket(seed: &[u8], round: u64, key: &[u8]) -> u64 {
    let mut h = Sha256::new();
    h.update(seed);
    h.update(round.to_be_bytes());
    h.update(key);
    let digest: [u8; 32] = h.finalize().into();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Whether `key` is on the committee of `round`: its ticket is below
/// `rate * 2^64`. A rate outside [0, 1] (or NaN) is clamped: NaN and
/// negatives elect nobody, rates >= 1 elect everybody. Callers validate the
/// rate first (see [`check_committee_rate`]).
pub fn is_committee_member(seed: &[u8], round: u64, key: &[u8], rate: f64) -> bool {
    let rate = if rate.is_nan() { 0.0 } else { rate.clamp(0.0, 1.0) };
    // rate * 2^64 is exact in f64 (a power-of-two scaling), and the cast to
    // u128 is exact for every value in [0, 2^64].
    let threshold = (rate * TICKET_SPACE) as u128;
    u128::from(committee_ticket(seed, round, key)) < threshold
}

/// Domain tag at the start of a beacon message.
pub const BEACON_DOMAIN: &[u8] = b"zerotrustml/committee-beacon/v1";
/// Bytes of a beacon (an Ed25519 signature).
pub const BEACON_BYTES: usize = 64;

fn lp(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The bytes a round's beacon signs: `lp(BEACON_DOMAIN) || lp(committee_seed)
/// || round (u64 big-endian)`, `lp(x)` = u32 big-endian length || x.
pub fn beacon_message(committee_seed: &[u8], round: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + BEACON_DOMAIN.len() + committee_seed.len());
    lp(&mut out, BEACON_DOMAIN);
    lp(&mut out, committee_seed);
    out.extend_from_slice(&round.to_be_bytes());
    out
}

/// The lottery seed of a round: `committee_seed` when there is no beacon (an
/// open network), else SHA-256(lp(committee_seed) || lp(beacon)).
pub fn round_seed(committee_seed: &[u8], beacon: &[u8]) -> Vec<u8> {
    if beacon.is_empty() {
        return committee_seed.to_vec();
    }
    let mut buf = Vec::with_capacity(8 + committee_seed.len() + beacon.len());
    lp(&mut buf, committee_seed);
    lp(&mut buf, beacon);
    Sha256::digest(&buf).to_vec()
}

/// A committee rate must be a probability.
pub fn check_committee_rate(rate: f64) -> Result<(), String> {
    if rate.is_finite() && (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(format!("must be a probability in [0, 1], got {rate}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beacons_change_the_seed_and_nothing_else() {
        // Python: len-prefixed parts, then the round as 8 big-endian bytes.
        let m = beacon_message(b"s", 3);
        let mut want = (BEACON_DOMAIN.len() as u32).to_be_bytes().to_vec();
        want.extend_from_slice(BEACON_DOMAIN);
        want.extend_from_slice(&[0, 0, 0, 1, b's', 0, 0, 0, 0, 0, 0, 0, 3]);
        assert_eq!(m, want);
        assert_eq!(round_seed(b"s", &[]), b"s".to_vec());
        let a = round_seed(b"s", &[1; 64]);
        assert_eq!(a.len(), 32);
        assert_ne!(a, round_seed(b"s", &[2; 64]));
        assert_ne!(a, round_seed(b"t", &[1; 64]));
        // Length prefixes: moving a byte from the seed to the beacon changes the result.
        assert_ne!(round_seed(b"ab", b"c"), round_seed(b"a", b"bc"));
    }

    #[test]
    fn ticket_is_sha256_prefix() {
        // Python: int.from_bytes(hashlib.sha256(b"s" + (3).to_bytes(8, "big")
        //         + bytes(32)).digest()[:8], "big")
        let mut h = Sha256::new();
        h.update(b"s");
        h.update([0, 0, 0, 0, 0, 0, 0, 3]);
        h.update([0u8; 32]);
        let d: [u8; 32] = h.finalize().into();
        let want = u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
        assert_eq!(committee_ticket(b"s", 3, &[0u8; 32]), want);
    }

    #[test]
    fn rate_bounds() {
        let key = [7u8; 32];
        for round in 0..200 {
            assert!(!is_committee_member(b"seed", round, &key, 0.0));
            assert!(is_committee_member(b"seed", round, &key, 1.0));
            assert!(!is_committee_member(b"seed", round, &key, f64::NAN));
        }
    }

    #[test]
    fn membership_is_monotone_in_rate_and_near_the_rate() {
        let mut members = 0;
        for i in 0..4000u32 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            let low = is_committee_member(b"seed", 5, &key, 0.25);
            let high = is_committee_member(b"seed", 5, &key, 0.5);
            assert!(!low || high, "a member at rate 0.25 must be one at 0.5");
            members += usize::from(high);
        }
        // Binomial(4000, 0.5): 2000 +- 5 sigma (sigma ~ 31.6).
        assert!((1842..=2158).contains(&members), "{members}");
    }

    #[test]
    fn depends_on_seed_round_and_key() {
        let key = [1u8; 32];
        let base: Vec<bool> = (0..64).map(|r| is_committee_member(b"a", r, &key, 0.5)).collect();
        let other_seed: Vec<bool> = (0..64).map(|r| is_committee_member(b"b", r, &key, 0.5)).collect();
        let other_key: Vec<bool> = (0..64).map(|r| is_committee_member(b"a", r, &[2u8; 32], 0.5)).collect();
        assert_ne!(base, other_seed);
        assert_ne!(base, other_key);
        assert!(base.iter().any(|m| *m) && base.iter().any(|m| !*m));
    }

    #[test]
    fn rate_check() {
        assert!(check_committee_rate(0.5).is_ok());
        assert!(check_committee_rate(1.0).is_ok());
        for bad in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
            assert!(check_committee_rate(bad).is_err());
        }
    }
}
