//! OAuth 1.0 PLAINTEXT, the way MAAS signs API calls.
//!
//! The API key is `consumer_key:token_key:token_secret`; the consumer secret is always
//! empty, so the signature is `&<token_secret>`. Every request carries a fresh nonce and
//! the current time, because MAAS refuses a reused nonce. The key never leaves this type
//! in printable form: `Debug` and `Display` mask it.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::Rng;

/// RFC 5849 unreserved characters stay as they are; everything else is encoded.
const OAUTH_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encode a value as the OAuth header carries it.
pub(super) fn oauth_encode(v: &str) -> String {
    utf8_percent_encode(v, OAUTH_ENCODE).to_string()
}

/// A MAAS API key, split into its three parts.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    consumer_key: String,
    token_key: String,
    token_secret: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApiKeyError {
    #[error("expected three parts `consumer_key:token_key:token_secret`, found {0}")]
    Parts(usize),
    #[error("part {0} of the key is empty")]
    EmptyPart(usize),
    #[error("the key contains whitespace or control characters")]
    BadCharacters,
}

impl ApiKey {
    pub fn parse(key: &str) -> Result<Self, ApiKeyError> {
        let key = key.trim();
        let parts: Vec<&str> = key.split(':').collect();
        if parts.len() != 3 {
            return Err(ApiKeyError::Parts(parts.len()));
        }
        if let Some(i) = parts.iter().position(|p| p.is_empty()) {
            return Err(ApiKeyError::EmptyPart(i + 1));
        }
        if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ApiKeyError::BadCharacters);
        }
        Ok(ApiKey {
            consumer_key: parts[0].to_string(),
            token_key: parts[1].to_string(),
            token_secret: parts[2].to_string(),
        })
    }

    pub fn consumer_key(&self) -> &str {
        &self.consumer_key
    }

    pub fn token_key(&self) -> &str {
        &self.token_key
    }

    /// The secret itself, only for [`super::redact::Redactor`] to search answers for it.
    pub(super) fn token_secret(&self) -> &str {
        &self.token_secret
    }

    /// Whether `secret` is this key's token secret (the simulator's check).
    pub fn secret_matches(&self, secret: &str) -> bool {
        self.token_secret == secret
    }

    /// The full key as MAAS shows it; only for handing to a child or a simulator.
    pub fn expose(&self) -> String {
        format!(
            "{}:{}:{}",
            self.consumer_key, self.token_key, self.token_secret
        )
    }

    /// The `Authorization` header value for one request, with a fresh nonce.
    pub fn authorization(&self) -> String {
        let nonce: u64 = rand::thread_rng().gen();
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.authorization_with(&format!("{nonce:016x}"), ts)
    }

    pub fn authorization_with(&self, nonce: &str, timestamp: u64) -> String {
        let enc = oauth_encode;
        format!(
            "OAuth realm=\"\", oauth_version=\"1.0\", oauth_signature_method=\"PLAINTEXT\", \
             oauth_consumer_key=\"{}\", oauth_token=\"{}\", oauth_signature=\"{}\", \
             oauth_timestamp=\"{}\", oauth_nonce=\"{}\"",
            enc(&self.consumer_key),
            enc(&self.token_key),
            enc(&format!("&{}", self.token_secret)),
            timestamp,
            enc(nonce),
        )
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***:***:***")
    }
}

/// Parse an `Authorization: OAuth k="v", ...` header into decoded pairs.
pub fn parse_oauth_header(value: &str) -> Option<Vec<(String, String)>> {
    let rest = value.trim().strip_prefix("OAuth")?.trim_start();
    let mut out = Vec::new();
    for part in rest.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (k, v) = part.split_once('=')?;
        let v = v.trim().trim_matches('"');
        let v = percent_encoding::percent_decode_str(v)
            .decode_utf8()
            .ok()?
            .into_owned();
        out.push((k.trim().to_string(), v));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_must_have_three_non_empty_parts() {
        assert_eq!(ApiKey::parse("a:b"), Err(ApiKeyError::Parts(2)));
        assert_eq!(ApiKey::parse("a:b:c:d"), Err(ApiKeyError::Parts(4)));
        assert_eq!(ApiKey::parse("a::c"), Err(ApiKeyError::EmptyPart(2)));
        assert_eq!(ApiKey::parse("a:b c:d"), Err(ApiKeyError::BadCharacters));
        assert!(ApiKey::parse(" ck:tk:ts\n").is_ok());
    }

    #[test]
    fn header_is_plaintext_signed_and_masks_in_debug() {
        let k = ApiKey::parse("ck:tk:s3cret").unwrap();
        let h = k.authorization_with("n1", 1700000000);
        let pairs = parse_oauth_header(&h).unwrap();
        let get = |n: &str| pairs.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("oauth_signature"), Some("&s3cret"));
        assert!(h.contains("oauth_signature=\"%26s3cret\""));
        assert_eq!(get("oauth_consumer_key"), Some("ck"));
        assert_eq!(get("oauth_token"), Some("tk"));
        assert_eq!(get("oauth_signature_method"), Some("PLAINTEXT"));
        assert_eq!(get("oauth_timestamp"), Some("1700000000"));
        assert_eq!(get("oauth_nonce"), Some("n1"));
        assert!(!format!("{k:?} {k}").contains("s3cret"));
    }

    #[test]
    fn every_request_gets_a_fresh_nonce() {
        let k = ApiKey::parse("ck:tk:ts").unwrap();
        assert_ne!(k.authorization(), k.authorization());
    }
}
