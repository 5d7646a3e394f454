//! SRTP and SRTCP (RFC 3711) for one call, suite AES_CM_128_HMAC_SHA1_80 (§4.1.1 AES counter
//! mode, §4.2.1 HMAC-SHA1 tag truncated to 80 bits), through the `webrtc-srtp` crate (pure Rust,
//! RustCrypto ciphers; feature `srtp`).
//!
//! Keys come from SDES (RFC 4568, see [`crate::call::sdes`]): each side draws its own master key
//! and salt and sends them in its `a=crypto` line, so a call has two keys: ours protects what we
//! send, the peer's unprotects what we receive (RFC 4568 §6.1). The protection happens between the
//! media session and the sockets: [`SrtpSession::protect`] on every datagram the session sends,
//! [`SrtpSession::unprotect`] on every datagram that arrives, before the session sees it.
//!
//! Received packets are checked against a replay window of 64 (RFC 3711 §3.3.2); a packet that
//! fails authentication or replays is dropped and counted, never passed on.

use bytes::Bytes;
use std::fmt;

/// Length of the master key of AES_CM_128_HMAC_SHA1_80 (RFC 4568 §6.2.1): 128 bits.
pub const MASTER_KEY_LEN: usize = 16;
/// Length of its master salt: 112 bits.
pub const MASTER_SALT_LEN: usize = 14;
/// Key and salt as they travel in `inline:` (RFC 4568 §6.1: key || salt, base64).
pub const KEY_SALT_LEN: usize = MASTER_KEY_LEN + MASTER_SALT_LEN;

/// Replay window for SRTP and SRTCP (RFC 3711 §3.3.2: at least 64).
#[cfg_attr(not(feature = "srtp"), allow(dead_code))]
const REPLAY_WINDOW: usize = 64;

/// A master key and salt (RFC 3711 §8.1). Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; KEY_SALT_LEN]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A fresh key and salt straight from the OS CSPRNG (RFC 4568 §6.1: each offer and answer
    /// carries its own key; RFC 3711 §9.2: a key is never shared between sessions).
    pub fn generate() -> Result<MasterKey, SrtpError> {
        let mut b = [0u8; KEY_SALT_LEN];
        crate::dialog::IdGen::os_fill(&mut b).map_err(|_| SrtpError::NoRandom)?;
        Ok(MasterKey(b))
    }

    /// A key from its 30 bytes (key || salt).
    pub fn from_bytes(bytes: &[u8]) -> Option<MasterKey> {
        Some(MasterKey(bytes.try_into().ok()?))
    }

    /// The 128-bit master key.
    pub fn key(&self) -> &[u8] {
        &self.0[..MASTER_KEY_LEN]
    }

    /// The 112-bit master salt.
    pub fn salt(&self) -> &[u8] {
        &self.0[MASTER_KEY_LEN..]
    }

    /// Key and salt in base64, as `inline:` carries them (RFC 4568 §6.1, RFC 4648 §4).
    pub fn to_base64(&self) -> String {
        base64_encode(&self.0)
    }

    /// Key and salt from the base64 of `inline:`; `None` unless it decodes to exactly 30 bytes.
    pub fn from_base64(text: &str) -> Option<MasterKey> {
        MasterKey::from_bytes(&base64_decode(text)?)
    }
}

/// Why SRTP could not be set up or a packet could not be protected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SrtpError {
    /// The OS random source failed: no key can be drawn.
    NoRandom,
    /// The library was built without the `srtp` feature.
    Unsupported,
    /// The SRTP library refused the key or a packet.
    Crypto(String),
}

impl fmt::Display for SrtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SrtpError::NoRandom => f.write_str("no random bytes for an SRTP key"),
            SrtpError::Unsupported => f.write_str("built without SRTP (feature srtp)"),
            SrtpError::Crypto(e) => write!(f, "SRTP: {e}"),
        }
    }
}

impl std::error::Error for SrtpError {}

/// The SRTP state of one call: a sending context under our key, a receiving one under the peer's.
pub struct SrtpSession {
    #[cfg(feature = "srtp")]
    tx: webrtc_srtp::context::Context,
    #[cfg(feature = "srtp")]
    rx: webrtc_srtp::context::Context,
    peer_key: MasterKey,
    dropped: u64,
}

impl fmt::Debug for SrtpSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpSession").field("dropped", &self.dropped).finish_non_exhaustive()
    }
}

/// RTCP on an RTP port (RFC 5761 §4): the second octet is an RTCP packet type, 192-223 (RTP payload
/// types 64-95 are kept out of use for that reason).
#[cfg_attr(not(feature = "srtp"), allow(dead_code))]
fn looks_like_rtcp(datagram: &[u8]) -> bool {
    datagram.get(1).is_some_and(|b| (192..=223).contains(b))
}

/// Version 2 in the first two bits: RTP or RTCP (RFC 3550 §5.1); STUN and the rest are not.
fn is_rtp_version(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| b >> 6 == 2)
}

/// SRTCP trailer: the E flag and 31-bit index (RFC 3711 §3.4), then the 80-bit tag.
const SRTCP_TRAILER: usize = 4 + 10;

/// An SRTCP packet long enough for the RTCP header and sender SSRC plus the trailer, with the E
/// flag set. Checked before the crate sees the bytes: it slices the trailer without a length
/// check (a short datagram would panic), and it hands back a packet with E clear without checking
/// its tag, where RFC 3711 §3.4 authenticates every SRTCP packet. Our peers encrypt all SRTCP (the
/// default of RFC 3711 and of libsrtp), so an unencrypted one is dropped rather than trusted.
#[cfg_attr(not(feature = "srtp"), allow(dead_code))]
fn is_encrypted_srtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 8 + SRTCP_TRAILER && datagram[datagram.len() - SRTCP_TRAILER] & 0x80 != 0
}

impl SrtpSession {
    /// Contexts for `ours` (what we send) and `theirs` (what the peer sends).
    pub fn new(ours: &MasterKey, theirs: &MasterKey) -> Result<SrtpSession, SrtpError> {
        #[cfg(feature = "srtp")]
        {
            use webrtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
            use webrtc_srtp::protection_profile::ProtectionProfile::Aes128CmHmacSha1_80 as Profile;
            let crypto = |e: webrtc_srtp::Error| SrtpError::Crypto(e.to_string());
            let tx = webrtc_srtp::context::Context::new(ours.key(), ours.salt(), Profile, None, None).map_err(crypto)?;
            let rx = webrtc_srtp::context::Context::new(
                theirs.key(),
                theirs.salt(),
                Profile,
                Some(srtp_replay_protection(REPLAY_WINDOW)),
                Some(srtcp_replay_protection(REPLAY_WINDOW)),
            )
            .map_err(crypto)?;
            Ok(SrtpSession { tx, rx, peer_key: theirs.clone(), dropped: 0 })
        }
        #[cfg(not(feature = "srtp"))]
        {
            let _ = (ours, theirs);
            Err(SrtpError::Unsupported)
        }
    }

    /// The peer's key these contexts were made with (a re-offer with a new key needs new ones).
    pub fn peer_key(&self) -> &MasterKey {
        &self.peer_key
    }

    /// Received datagrams dropped: not authentic, replayed, or not RTP/RTCP at all.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Protects one datagram the media session sends on its RTP port, or on its RTCP port when
    /// `rtcp_port` (RTCP is recognised on the RTP port too, RFC 5761). `None` if the packet cannot be protected (malformed, or the key is worn out
    /// after 2^48 packets, RFC 3711 §9.2): it is not sent.
    pub fn protect(&mut self, rtcp_port: bool, datagram: &[u8]) -> Option<Bytes> {
        #[cfg(feature = "srtp")]
        {
            let out = if rtcp_port || looks_like_rtcp(datagram) { self.tx.encrypt_rtcp(datagram) } else { self.tx.encrypt_rtp(datagram) };
            match out {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!(error = %e, "SRTP: packet not protected, not sent");
                    None
                }
            }
        }
        #[cfg(not(feature = "srtp"))]
        {
            let _ = (rtcp_port, datagram);
            None
        }
    }

    /// Authenticates and decrypts one datagram that arrived on the RTP port (or the RTCP port when
    /// `rtcp_port`). `None` (and counted in
    /// [`SrtpSession::dropped`]) when it is not SRTP/SRTCP under the peer's key: forged, replayed,
    /// plain RTP, truncated, STUN or garbage.
    pub fn unprotect(&mut self, rtcp_port: bool, datagram: &[u8]) -> Option<Bytes> {
        if !is_rtp_version(datagram) {
            self.dropped += 1;
            return None;
        }
        #[cfg(feature = "srtp")]
        {
            let rtcp = rtcp_port || looks_like_rtcp(datagram);
            if rtcp && !is_encrypted_srtcp(datagram) {
                self.dropped += 1;
                return None;
            }
            let out = if rtcp { self.rx.decrypt_rtcp(datagram) } else { self.rx.decrypt_rtp(datagram) };
            match out {
                Ok(b) => Some(b),
                Err(e) => {
                    self.dropped += 1;
                    tracing::debug!(error = %e, "SRTP: datagram dropped");
                    None
                }
            }
        }
        #[cfg(not(feature = "srtp"))]
        {
            let _ = rtcp_port;
            self.dropped += 1;
            None
        }
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 with padding (RFC 4648 §4), the encoding of `inline:` keys.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes base64 (RFC 4648 §4); padding optional, anything outside the alphabet fails.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let body = text.trim_end_matches('=');
    if text.len() - body.len() > 2 || body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in body.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 160, 0x11, 0x22, 0x33, 0x44];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn base64_round_trips_and_rejects_garbage() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 5) as u8).collect();
            assert_eq!(base64_decode(&base64_encode(&bytes)).as_deref(), Some(&bytes[..]), "len {len}");
        }
        // RFC 4648 §10 test vectors.
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_decode("Zm8="), Some(b"fo".to_vec()));
        assert_eq!(base64_decode("Zm8"), Some(b"fo".to_vec()));
        assert_eq!(base64_decode("Z"), None);
        assert_eq!(base64_decode("Zm8*"), None);
        assert_eq!(base64_decode("Zg==="), None);
        let key = MasterKey::generate().unwrap();
        assert_eq!(MasterKey::from_base64(&key.to_base64()), Some(key.clone()));
        assert_eq!(key.to_base64().len(), 40);
        assert_eq!(MasterKey::from_base64("Zm9vYmFy"), None, "6 bytes is no key");
        assert_eq!(format!("{key:?}"), "MasterKey(..)");
    }

    #[cfg(feature = "srtp")]
    #[test]
    fn protects_both_ways_and_drops_forgeries_replays_and_plain_rtp() {
        let (a, b) = (MasterKey::generate().unwrap(), MasterKey::generate().unwrap());
        let mut alice = SrtpSession::new(&a, &b).unwrap();
        let mut bob = SrtpSession::new(&b, &a).unwrap();
        let payload = [0x55u8; 160];
        let plain = rtp(1, &payload);
        let sent = alice.protect(false, &plain).unwrap();
        assert_eq!(sent.len(), plain.len() + 10, "80-bit tag");
        assert_eq!(sent[..12], plain[..12], "the header stays in clear");
        assert_ne!(sent[12..172], payload[..], "the payload is encrypted");
        assert_eq!(bob.unprotect(false, &sent).as_deref(), Some(&plain[..]));
        assert_eq!(bob.unprotect(false, &sent), None, "replay");
        let mut forged = alice.protect(false, &rtp(2, &payload)).unwrap().to_vec();
        forged[20] ^= 1;
        assert_eq!(bob.unprotect(false, &forged), None, "tag check");
        assert_eq!(bob.unprotect(false, &rtp(3, &payload)), None, "plain RTP");
        assert_eq!(bob.unprotect(false, &[0, 1, 0, 0]), None, "STUN-like");
        assert_eq!(bob.dropped(), 4);

        // RTCP (an RR), on its own port and multiplexed on the RTP port.
        let rr = [0x80, 201, 0, 1, 0x11, 0x22, 0x33, 0x44];
        let srtcp = bob.protect(true, &rr).unwrap();
        assert_ne!(srtcp[..], rr[..]);
        assert_eq!(alice.unprotect(true, &srtcp).as_deref(), Some(&rr[..]));
        let muxed = bob.protect(false, &rr).unwrap();
        assert_eq!(alice.unprotect(false, &muxed).as_deref(), Some(&rr[..]));
        // Bob answers; Alice reads it.
        let back = bob.protect(false, &rtp(9, &payload)).unwrap();
        assert_eq!(alice.unprotect(false, &back).as_deref(), Some(&rtp(9, &payload)[..]));
    }

    #[cfg(feature = "srtp")]
    #[test]
    fn arbitrary_bytes_never_panic() {
        let k = MasterKey::generate().unwrap();
        let mut s = SrtpSession::new(&k, &k).unwrap();
        let mut seed = 0x1234_5678_u32;
        for len in 0..200usize {
            for _ in 0..20 {
                let bytes: Vec<u8> = (0..len)
                    .map(|i| {
                        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        if i == 0 {
                            0x80 | (seed >> 24) as u8 & 0x3f
                        } else {
                            (seed >> 16) as u8
                        }
                    })
                    .collect();
                let _ = s.unprotect(false, &bytes);
                let _ = s.unprotect(true, &bytes);
                let _ = s.protect(false, &bytes);
                let _ = s.protect(true, &bytes);
            }
        }
    }
}
