//! Record-Route tokens: proof that an in-dialog request follows a route this deployment inserted
//! (RFC 3261 §16.6 step 4 lets a proxy put whatever it needs into its Record-Route URI; §16.4 has it
//! find that URI again as the top Route of the dialog's later requests).
//!
//! Without a token, any request carrying `Route: <sip:US;lr>` and a To tag looks like an in-dialog
//! request we record-routed, and the proxy would send it on to whatever its next hop names: an open
//! relay. With one, the Record-Route of a forwarded INVITE is
//!
//! ```text
//!   Record-Route: <sip:IP:PORT;lr;sbt=TOKEN>     TOKEN = hex(HMAC-SHA-256(key, Call-ID, from-tag))[..32]
//! ```
//!
//! and an in-dialog request is forwarded only when its top Route carries a token minted for its
//! Call-ID and one of its two tags (the caller's tag is the From tag of requests from the caller,
//! the To tag of requests from the callee). The key is derived from the deployment's secret, so
//! every instance of a cluster accepts the others' tokens and a restart keeps dialogs alive.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The URI parameter that carries the token.
pub const PARAM: &str = "sbt";

/// Bytes of the MAC kept in a token (128 bits, 32 hex digits).
const LEN: usize = 16;

/// Mints and checks Record-Route tokens.
#[derive(Clone)]
pub struct RouteKey {
    mac: HmacSha256,
}

impl std::fmt::Debug for RouteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key material.
        f.debug_struct("RouteKey").finish_non_exhaustive()
    }
}

// ===== impl RouteKey =====

impl RouteKey {
    /// The key of a deployment, derived from its secret (the `nonce-secret` of the data directory)
    /// under its own label, so a token never doubles as a nonce MAC.
    pub fn derive(secret: &[u8]) -> RouteKey {
        // Invariant: HMAC accepts a key of any length, so neither call can fail.
        let mut kdf = <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC accepts keys of any length");
        kdf.update(b"switchboard record-route token v1");
        let key = kdf.finalize().into_bytes();
        RouteKey { mac: <HmacSha256 as Mac>::new_from_slice(&key).expect("HMAC accepts keys of any length") }
    }

    fn mac_of(&self, call_id: &str, tag: &str) -> HmacSha256 {
        let mut mac = self.mac.clone();
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        mac.update(&(call_id.len() as u64).to_be_bytes());
        mac.update(call_id.as_bytes());
        mac.update(tag.as_bytes());
        mac
    }

    /// The token for the dialog of an INVITE with this Call-ID and From tag.
    pub fn mint(&self, call_id: &str, from_tag: &str) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let tag = self.mac_of(call_id, from_tag).finalize().into_bytes();
        // One allocation (a `format!` per byte cost ~10,000 instructions per INVITE).
        let mut out = String::with_capacity(2 * LEN);
        for b in &tag[..LEN] {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        out
    }

    /// Whether `token` was minted for `call_id` and one of `tags` (compared in constant time).
    pub fn verify(&self, call_id: &str, tags: &[&str], token: &str) -> bool {
        let Some(bytes) = unhex(token) else { return false };
        tags.iter().any(|t| self.mac_of(call_id, t).verify_truncated_left(&bytes).is_ok())
    }
}

/// Decodes exactly `LEN` bytes of lowercase or uppercase hex.
fn unhex(s: &str) -> Option<[u8; LEN]> {
    let s = s.as_bytes();
    if s.len() != 2 * LEN {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; LEN];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_checks_for_its_dialog_only() {
        let key = RouteKey::derive(&[7u8; 32]);
        let t = key.mint("call-1", "alice-tag");
        assert_eq!(t.len(), 32);
        assert!(key.verify("call-1", &["bob-tag", "alice-tag"], &t), "either tag may be the caller's");
        assert!(!key.verify("call-2", &["alice-tag"], &t));
        assert!(!key.verify("call-1", &["other"], &t));
        assert!(!key.verify("call-1", &["alice-tag"], &t[..30]));
        assert!(!key.verify("call-1", &["alice-tag"], "zz"));
        assert!(!RouteKey::derive(&[8u8; 32]).verify("call-1", &["alice-tag"], &t), "another deployment's key");
        assert!(!key.verify("call-1a", &["lice-tag"], &key.mint("call-1", "alice-tag")));
    }
}
