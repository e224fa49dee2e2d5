//! Request verification for the interactions endpoint: serenity's Ed25519
//! check over `timestamp ‖ body`, plus the age check serenity leaves out.

use serenity::interactions_endpoint::Verifier;

/// Requests older (or further in the future) than this are refused, so a
/// captured request cannot be replayed later.
pub const MAX_AGE_SECS: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("missing signature headers")]
    MissingHeaders,
    #[error("bad signature")]
    BadSignature,
    #[error("timestamp is not a number")]
    BadTimestamp,
    #[error("timestamp is {0} s away from now")]
    Stale(i64),
}

#[derive(Clone)]
pub struct RequestVerifier {
    verifier: Verifier,
}

impl RequestVerifier {
    /// From the application's public key (64 hex digits, from the developer portal).
    pub fn new(public_key_hex: &str) -> anyhow::Result<RequestVerifier> {
        let bytes: [u8; 32] = hex::decode(public_key_hex.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| anyhow::anyhow!("WORDUP_DISCORD_PUBLIC_KEY must be 64 hex digits"))?;
        Ok(RequestVerifier {
            verifier: Verifier::try_new(bytes)?,
        })
    }

    /// Checks the signature first (so forged requests learn nothing about
    /// our clock), then the age against `now` (Unix seconds).
    pub fn verify(
        &self,
        signature: Option<&str>,
        timestamp: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), Refusal> {
        let (Some(signature), Some(timestamp)) = (signature, timestamp) else {
            return Err(Refusal::MissingHeaders);
        };
        self.verifier
            .verify(signature, timestamp, body)
            .map_err(|()| Refusal::BadSignature)?;
        let sent: i64 = timestamp.parse().map_err(|_| Refusal::BadTimestamp)?;
        let skew = now - sent;
        if skew.abs() > MAX_AGE_SECS {
            return Err(Refusal::Stale(skew));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;

    #[test]
    fn accepts_fresh_signed_requests_only() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let verifier = RequestVerifier::new(&hex::encode(key.verifying_key().to_bytes())).unwrap();
        let body = br#"{"type":1}"#;
        let sign = |ts: &str, body: &[u8]| {
            hex::encode(key.sign(&[ts.as_bytes(), body].concat()).to_bytes())
        };
        let now = 1_780_000_000;
        let ts = now.to_string();
        let good = sign(&ts, body);
        for (signature, timestamp, body, expected) in [
            (Some(good.as_str()), Some(ts.as_str()), &body[..], Ok(())),
            (
                None,
                Some(ts.as_str()),
                &body[..],
                Err(Refusal::MissingHeaders),
            ),
            (
                Some(good.as_str()),
                None,
                &body[..],
                Err(Refusal::MissingHeaders),
            ),
            (
                Some(good.as_str()),
                Some(ts.as_str()),
                &br#"{"type":2}"#[..],
                Err(Refusal::BadSignature),
            ),
            (
                Some("zz"),
                Some(ts.as_str()),
                &body[..],
                Err(Refusal::BadSignature),
            ),
        ] {
            assert_eq!(verifier.verify(signature, timestamp, body, now), expected);
        }
        for (offset, expected) in [
            (-300, Ok(())),
            (-301, Err(Refusal::Stale(301))),
            (301, Err(Refusal::Stale(-301))),
        ] {
            let ts = (now + offset).to_string();
            let signature = sign(&ts, body);
            assert_eq!(
                verifier.verify(Some(&signature), Some(&ts), body, now),
                expected,
                "{offset}"
            );
        }
        assert!(RequestVerifier::new("abc").is_err());
    }
}
