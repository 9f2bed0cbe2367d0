//! Keeping the API key out of everything MAAS says back.
//!
//! MAAS can echo credentials in its answers: with a wrong token secret a 3.4 region
//! answers `401 Authorization Error: 'Invalid signature. Expected signature base string:
//! &<the real token secret>'`. That text would otherwise travel into error values, log
//! lines, the status API and the dashboard. Every MAAS answer that is kept as text goes
//! through [`Redactor::redact`] first: it drops the signature base string MAAS printed
//! (which holds the *region's* secret, which we cannot know to search for when ours is
//! wrong) and replaces every part of our own key, in every form it is sent in
//! (plain, `&`-prefixed, percent-encoded), with `***`.

use std::sync::Arc;

use super::auth::{oauth_encode, ApiKey};

/// What MAAS prints before the expected signature when a signature is wrong.
const BASE_STRING: &str = "expected signature base string";

/// Replaces what stands for a withheld value.
const MASK: &str = "***";

/// Strips the parts of one API key from text. Cheap to clone.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, so `&secret` goes before `secret` and nothing is half-masked.
    needles: Arc<Vec<String>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} forms)", self.needles.len())
    }
}

impl Redactor {
    pub fn for_key(key: &ApiKey) -> Self {
        let mut needles = Vec::new();
        let secret = key.token_secret();
        for part in [key.consumer_key(), key.token_key(), secret] {
            needles.push(part.to_string());
            needles.push(oauth_encode(part));
            needles.push(url::form_urlencoded::byte_serialize(part.as_bytes()).collect());
        }
        for signature in [format!("&{secret}"), format!("%26{}", oauth_encode(secret))] {
            needles.push(signature);
        }
        needles.retain(|n| !n.is_empty());
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        needles.dedup();
        Redactor {
            needles: Arc::new(needles),
        }
    }

    /// `text` without the signature base string MAAS printed and without our key.
    pub fn redact(&self, text: &str) -> String {
        let mut out = drop_base_string(text);
        for n in self.needles.iter() {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), MASK);
            }
        }
        out
    }
}

/// Cut `Expected signature base string: ...` up to the closing quote (or the end).
fn drop_base_string(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let Some(at) = lower.find(BASE_STRING) else {
        return text.to_string();
    };
    let rest = &text[at..];
    let end = rest.find(['\'', '"']).map(|i| at + i).unwrap_or(text.len());
    format!(
        "{}(signature base string withheld){}",
        &text[..at],
        &text[end..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_maas_401_body_loses_the_base_string_and_every_key_part() {
        let key = ApiKey::parse("ckey1:tkey2:s3cr/t+x").unwrap();
        let r = Redactor::for_key(&key);
        let body =
            "Authorization Error: 'Invalid signature. Expected signature base string: &s3cr/t+x'";
        let out = r.redact(body);
        assert_eq!(
            out,
            "Authorization Error: 'Invalid signature. (signature base string withheld)'"
        );
        // A region whose secret differs from ours: its secret goes with the base string.
        let other = "Authorization Error: 'Invalid signature. Expected signature base string: &REGIONSECRET'";
        assert!(!r.redact(other).contains("REGIONSECRET"));
        for leak in [
            "token s3cr/t+x",
            "sig &s3cr/t+x",
            "enc %26s3cr%2Ft%2Bx",
            "form s3cr%2Ft%2Bx",
            "ck ckey1 tk tkey2",
        ] {
            let out = r.redact(leak);
            for part in ["s3cr", "ckey1", "tkey2"] {
                assert!(!out.contains(part), "{leak} -> {out}");
            }
        }
        assert_eq!(r.redact("No Machine matches"), "No Machine matches");
    }
}
