//! The signature of a webhook delivery: HMAC-SHA256 (ring) over
//! `<timestamp>.<body>` with the endpoint's secret, sent as
//! `X-Nagare-Signature: sha256=<hex>` next to `X-Nagare-Timestamp: <unix seconds>`.
//!
//! The timestamp is inside the signed text so that a receiver can refuse an old
//! delivery replayed by someone who recorded it ([`verify`] with a tolerance).

use ring::hmac;

/// Header with the unix time (seconds) the delivery was signed at.
pub const TIMESTAMP_HEADER: &str = "x-nagare-timestamp";
/// Header with `sha256=<hex of HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "x-nagare-signature";
/// Header with the event type (`task_opened`, ..., or `lagged`).
pub const EVENT_HEADER: &str = "x-nagare-event";
/// Header with the delivery id: the same on every attempt of one event, so that a
/// receiver can drop a repeat (a retry whose first attempt did arrive).
pub const DELIVERY_HEADER: &str = "x-nagare-delivery";

/// The `X-Nagare-Signature` value of `body` signed at `timestamp`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let tag = hmac::sign(&key, &signed_text(timestamp, body));
    format!("sha256={}", hex(tag.as_ref()))
}

/// Whether `header` is the signature of `body` at `timestamp` (compared in
/// constant time), and `timestamp` is within `tolerance_secs` of `now`. What a
/// receiver does; nagare uses it in its tests.
pub fn verify(secret: &[u8], timestamp: u64, body: &[u8], header: &str, now: u64, tolerance_secs: u64) -> bool {
    let Some(tag) = header.strip_prefix("sha256=").and_then(unhex) else { return false };
    let fresh = now.abs_diff(timestamp) <= tolerance_secs;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    fresh && hmac::verify(&key, &signed_text(timestamp, body), &tag).is_ok()
}

fn signed_text(timestamp: u64, body: &[u8]) -> Vec<u8> {
    let mut text = format!("{timestamp}.").into_bytes();
    text.extend_from_slice(body);
    text
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2 ("Jefe"), so the construction is HMAC-SHA256 and not
    /// something that merely round-trips.
    #[test]
    fn hmac_is_rfc_4231() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        let tag = hmac::sign(&key, b"what do ya want for nothing?");
        assert_eq!(hex(tag.as_ref()), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn a_signature_verifies_only_for_its_body_secret_and_time() {
        let sig = signature(b"0123456789abcdef", 1_700_000_000, b"{\"a\":1}");
        assert!(verify(b"0123456789abcdef", 1_700_000_000, b"{\"a\":1}", &sig, 1_700_000_010, 300));
        assert!(!verify(b"0123456789abcdef", 1_700_000_000, b"{\"a\":2}", &sig, 1_700_000_010, 300));
        assert!(!verify(b"another-secret!!", 1_700_000_000, b"{\"a\":1}", &sig, 1_700_000_010, 300));
        assert!(!verify(b"0123456789abcdef", 1_700_000_001, b"{\"a\":1}", &sig, 1_700_000_010, 300));
        assert!(!verify(b"0123456789abcdef", 1_700_000_000, b"{\"a\":1}", &sig, 1_700_001_000, 300), "too old");
        assert!(!verify(b"0123456789abcdef", 1_700_000_000, b"{\"a\":1}", "sha256=zz", 1_700_000_000, 300));
    }
}
