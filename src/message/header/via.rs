//! `Via` (RFC 3261 §20.42, §18.2.1; `received`/`rport` RFC 3581).
//!
//! ```text
//! via-parm     = sent-protocol LWS sent-by *( SEMI via-params )
//! sent-protocol = protocol-name SLASH protocol-version SLASH transport
//! sent-by      = host [ COLON port ]
//! ```

use crate::message::error::ValueError;
use crate::message::lex::{is_lws, is_token_char};
use crate::message::params::{ParamSyntax, Params};
use crate::message::uri::{hostport, Host};
use std::fmt;

/// The magic cookie that marks an RFC 3261 branch (§8.1.1.7).
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// One `via-parm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// `protocol-name`, normally `SIP`.
    pub protocol: &'a str,
    /// `protocol-version`, normally `2.0`.
    pub version: &'a str,
    /// `transport`: UDP, TCP, TLS, SCTP or any other token (RFC 4475 §3.1.1.10).
    pub transport: &'a str,
    /// `sent-by` host.
    pub host: Host<'a>,
    /// `sent-by` port.
    pub port: Option<u16>,
    /// `via-params` (branch, received, rport, maddr, ttl, extensions).
    pub params: Params<'a>,
}

fn skip_lws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_lws(b[i]) {
        i += 1;
    }
    i
}

fn token_at(s: &str, i: usize) -> Result<(&str, usize), ValueError> {
    let b = s.as_bytes();
    let mut j = i;
    while j < b.len() && is_token_char(b[j]) {
        j += 1;
    }
    if j == i {
        return Err(ValueError::at(i));
    }
    Ok((&s[i..j], j))
}

/// `SLASH = SWS "/" SWS`.
fn slash_at(s: &str, i: usize) -> Result<usize, ValueError> {
    let b = s.as_bytes();
    let i = skip_lws(b, i);
    if b.get(i) != Some(&b'/') {
        return Err(ValueError::at(i));
    }
    Ok(skip_lws(b, i + 1))
}

// ===== impl Via =====

impl<'a> Via<'a> {
    /// Parses one `via-parm` (one element of the comma-separated list). `s` holds exactly that element.
    pub fn parse(s: &'a str) -> Result<Via<'a>, ValueError> {
        let b = s.as_bytes();
        let (protocol, i) = token_at(s, skip_lws(b, 0))?;
        let i = slash_at(s, i)?;
        let (version, i) = token_at(s, i)?;
        let i = slash_at(s, i)?;
        let (transport, i) = token_at(s, i)?;
        let j = skip_lws(b, i);
        if j == i {
            return Err(ValueError::at(i));
        }
        let (rest, (host, port)) = hostport(&s[j..]).map_err(|_| ValueError::at(j))?;
        let off = s.len() - rest.len();
        let (params, rest) = Params::parse(rest, ParamSyntax::Header).map_err(|e| ValueError::at(off + e.offset))?;
        if !rest.bytes().all(is_lws) {
            return Err(ValueError::at(s.len() - rest.len()));
        }
        Ok(Via { protocol, version, transport, host, port, params })
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&'a str> {
        self.params.value("branch")
    }

    /// True when the branch starts with the RFC 3261 magic cookie and has something after it
    /// (RFC 4475 §3.2.1: a bare cookie is not a usable branch).
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.len() > BRANCH_COOKIE.len() && b.starts_with(BRANCH_COOKIE))
    }

    /// The `received` parameter (RFC 3261 §18.2.1), brackets of an IPv6 value removed.
    pub fn received(&self) -> Option<&'a str> {
        self.params.value("received").map(|r| r.trim_start_matches('[').trim_end_matches(']'))
    }

    /// The `rport` parameter (RFC 3581): `None` if absent, `Some(None)` when present without a value.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params.get("rport").map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// The `maddr` parameter.
    pub fn maddr(&self) -> Option<&'a str> {
        self.params.value("maddr")
    }
}

impl fmt::Display for Via<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{} {}", self.protocol, self.version, self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        self.params.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_folded() {
        let v = Via::parse("SIP/2.0/UDP pc33.example.com:5060;branch=z9hG4bK776asdhds;rport").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, Host::Domain("pc33.example.com"));
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(v.rport(), Some(None));
        assert!(v.has_rfc3261_branch());
        let w = Via::parse("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(w.host, Host::Ipv4("192.0.2.2"));
        assert!(!w.has_rfc3261_branch());
    }

    #[test]
    fn ipv6_received() {
        let v = Via::parse("SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKas3-111").unwrap();
        assert_eq!(v.received(), Some("2001:db8::9:255"));
        assert_eq!(v.branch(), Some("z9hG4bKas3-111"));
    }

    #[test]
    fn round_trip() {
        for s in ["SIP/2.0/TCP h.example.com:5061;branch=z9hG4bKx;received=192.0.2.1;rport=5060", "SIP/2.0/UDP [::1];branch=z9hG4bKy"] {
            let v = Via::parse(s).unwrap();
            assert_eq!(v.to_string(), s);
            assert_eq!(Via::parse(&v.to_string()).unwrap(), v);
        }
    }

    #[test]
    fn bad() {
        for s in ["SIP/2.0/UDP", "SIP/2.0 UDP host", "SIP/2.0/UDP 192.0.2.15;;", "SIP/2.0/UDPhost", "SIP/2.0/UDP host junk"] {
            assert!(Via::parse(s).is_err(), "{s}");
        }
    }
}
