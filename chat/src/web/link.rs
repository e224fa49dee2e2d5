//! Signed board links: a channel and an expiry, signed with HMAC-SHA256
//! under the server's secret. A link shows one channel's board, read-only,
//! until it expires; rotating the secret revokes every link.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What a link grants: one channel's board until `expires`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardGrant {
    pub platform: String,
    pub channel_id: String,
    /// Whose link it is: "mine" on the board means this user's results.
    pub user_id: String,
    pub expires: DateTime<Utc>,
}

/// Makes board links: the server's secret, the public address of its
/// pages, and how long a link works.
#[derive(Clone)]
pub struct BoardLinks {
    pub secret: std::sync::Arc<Vec<u8>>,
    /// The address board pages are served at (`WORDUP_PUBLIC_URL`).
    pub base_url: String,
    pub lifetime: chrono::Duration,
}

impl std::fmt::Debug for BoardLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoardLinks")
            .field("base_url", &self.base_url)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl BoardLinks {
    /// A link to `channel`'s board for `user`, valid from `now` for the lifetime.
    pub fn link(&self, platform: &str, channel: &str, user: &str, now: DateTime<Utc>) -> String {
        let grant = BoardGrant {
            platform: platform.to_owned(),
            channel_id: channel.to_owned(),
            user_id: user.to_owned(),
            expires: now + self.lifetime,
        };
        format!(
            "{}/board/{}",
            self.base_url.trim_end_matches('/'),
            sign(&grant, &self.secret)
        )
    }

    /// What /board answers: the link, privately, and how long it works.
    pub fn answer(&self, platform: &str, channel: &str, user: &str) -> String {
        let link = self.link(platform, channel, user, Utc::now());
        let days = self.lifetime.num_hours() as f64 / 24.0;
        format!(
            "This channel's board (every result, votes, downloads), for you alone: {link}\nThe link works for {days:.0} days; anyone who has it can see the board until then."
        )
    }
}

/// Why a link was refused (the page says only that it is not valid).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link is malformed")]
    Malformed,
    #[error("the link's signature does not match")]
    Forged,
    #[error("the link expired")]
    Expired,
}

/// The link's token: the grant's fields, hex-encoded so that any id is
/// safe in a path, then its signature.
pub fn sign(grant: &BoardGrant, secret: &[u8]) -> String {
    let payload = payload(grant);
    format!(
        "{}.{}",
        hex::encode(&payload),
        hex::encode(mac(secret, &payload))
    )
}

/// The grant a token carries, if its signature holds and it has not expired at `now`.
pub fn verify(token: &str, secret: &[u8], now: DateTime<Utc>) -> Result<BoardGrant, LinkError> {
    let (payload, signature) = token.split_once('.').ok_or(LinkError::Malformed)?;
    let payload = String::from_utf8(hex::decode(payload).map_err(|_| LinkError::Malformed)?)
        .map_err(|_| LinkError::Malformed)?;
    let signature = hex::decode(signature).map_err(|_| LinkError::Malformed)?;
    let mut check = HmacSha256::new_from_slice(secret).map_err(|_| LinkError::Forged)?;
    check.update(payload.as_bytes());
    // Constant-time comparison.
    check
        .verify_slice(&signature)
        .map_err(|_| LinkError::Forged)?;
    let mut fields = payload.split('\n');
    let (Some(platform), Some(channel_id), Some(user_id), Some(expires), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(LinkError::Malformed);
    };
    let expires = expires
        .parse::<i64>()
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .ok_or(LinkError::Malformed)?;
    if now >= expires {
        return Err(LinkError::Expired);
    }
    Ok(BoardGrant {
        platform: platform.to_owned(),
        channel_id: channel_id.to_owned(),
        user_id: user_id.to_owned(),
        expires,
    })
}

fn payload(grant: &BoardGrant) -> String {
    format!(
        "{}\n{}\n{}\n{}",
        grant.platform,
        grant.channel_id,
        grant.user_id,
        grant.expires.timestamp()
    )
}

fn mac(secret: &[u8], payload: &str) -> Vec<u8> {
    // HMAC takes a key of any length.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(payload.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn grant(expires: DateTime<Utc>) -> BoardGrant {
        BoardGrant {
            platform: "discord".into(),
            channel_id: "1100000000000000002".into(),
            user_id: "U1".into(),
            expires,
        }
    }

    #[test]
    fn a_signed_link_verifies_until_it_expires() {
        let now = DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        let expires = now + Duration::days(7);
        let token = sign(&grant(expires), b"secret");
        assert_eq!(verify(&token, b"secret", now), Ok(grant(expires)));
        assert_eq!(verify(&token, b"secret", expires), Err(LinkError::Expired));
    }

    #[test]
    fn forged_altered_and_revoked_links_are_refused() {
        let now = DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        let token = sign(&grant(now + Duration::days(1)), b"secret");
        // Another secret: rotating it revokes every link.
        assert_eq!(verify(&token, b"rotated", now), Err(LinkError::Forged));
        // Another channel under the same signature.
        let (_, signature) = token.split_once('.').unwrap();
        let other = BoardGrant {
            channel_id: "999".into(),
            ..grant(now + Duration::days(1))
        };
        let altered = format!("{}.{signature}", hex::encode(payload(&other)));
        assert_eq!(verify(&altered, b"secret", now), Err(LinkError::Forged));
        // A later expiry under the same signature.
        let later = format!(
            "{}.{signature}",
            hex::encode(payload(&grant(now + Duration::days(365))))
        );
        assert_eq!(verify(&later, b"secret", now), Err(LinkError::Forged));
        for malformed in ["", "abc", "zz.zz", "0.00"] {
            assert_eq!(
                verify(malformed, b"secret", now),
                Err(LinkError::Malformed),
                "{malformed:?}"
            );
        }
    }
}
