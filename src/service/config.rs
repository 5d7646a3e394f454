//! The service's configuration: a TOML file (`--config`) whose every key a command-line flag can
//! override. Unknown keys are errors, so a typo never silently falls back to a default.
//!
//! ```toml
//! listen = "127.0.0.1:5060"
//! domain = "example.com"          # accept REGISTER/INVITE for this domain only (default: any)
//! auth = "digest"                 # or "none" (lab use)
//! mode = "b2bua"                  # how calls between users are routed: b2bua (default) or proxy
//! data_dir = "/var/lib/switchboard"
//! # store = "redis://127.0.0.1:6379/0"   # share the state in Redis instead of data_dir's SQLite
//! rtp_ports = "30000-39999"
//! rtp_timeout_secs = 30
//! answer_delay_secs = 0
//! t1_ms = 500
//! min_expires = 60
//! max_expires = 3600
//! nonce_lifetime_secs = 300
//! branch_timeout_secs = 10
//! auth_algorithms = "md5"          # or "sha-256,md5" (RFC 8760 order) for clients that handle it
//! # caps on state the network can create (issue 14 point 5)
//! max_contacts = 10               # contacts per address-of-record (503 beyond)
//! max_bindings = 100000           # bindings in all (503 beyond)
//! max_transactions = 100000       # live SIP transactions (stateless 503 beyond)
//! max_echo_calls_per_source = 10  # concurrent calls to echo from one IP (486 beyond; 0: no limit)
//! unauth_port_share = 25          # percent of rtp_ports that echo calls may hold (503 beyond)
//! realm = "example.com"           # digest realm (default: domain, else "switchboard")
//!
//! # media latching (issue 14): the relay ranks RTP sources against the SDP for this long before
//! # one that does not match latches, and a latched source that sent within it cannot be replaced
//! rtp_learning_ms = 3000
//! trusted = ["192.0.2.10/32"]     # peers that do not do digest (gateways, static-route targets)
//! # limits (issue 14 point 4)
//! rate_limit = 200                # requests/s per source IP, burst twice that; 0 turns it off
//! auth_backoff_secs = 60          # 403 unchecked after 10 failed logins in 60 s (per IP+user, per IP)
//!
//! [[route]]                       # static routes, first match wins (see `service::routes`)
//! user = "1*"                     # glob on the Request-URI user part
//! target = "sip:192.0.2.10:5080"  # next hop, sip:IP[:PORT]
//! rewrite_host = false            # true: Request-URI becomes sip:USER@IP:PORT
//! override = false                # true: route even when the user is registered
//! ```

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// How requests are authenticated (RFC 3261 §22).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Digest (MD5 and SHA-256) for REGISTER and INVITE; calls to `echo` need none.
    Digest,
    /// No authentication (lab use; a warning is printed).
    None,
}

/// How calls between users are routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Back-to-back user agent: two dialogs per call and an RTP relay between them (the default).
    B2bua,
    /// Stateful proxy (RFC 3261 §16) with Record-Route; media flows between the phones.
    Proxy,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::B2bua => "b2bua",
            Mode::Proxy => "proxy",
        })
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "b2bua" => Ok(Mode::B2bua),
            "proxy" => Ok(Mode::Proxy),
            other => Err(format!("unknown mode {other:?} (b2bua, proxy)")),
        }
    }
}

/// The file's contents; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// UDP listen address.
    pub listen: Option<SocketAddr>,
    /// Our domain.
    pub domain: Option<String>,
    /// Authentication.
    pub auth: Option<AuthMode>,
    /// Routing mode.
    pub mode: Option<Mode>,
    /// B2BUA mode: relay the media through the service (default true); false passes SDP through.
    pub relay: Option<bool>,
    /// Where the store lives.
    pub data_dir: Option<PathBuf>,
    /// A shared store instead of the data directory's SQLite file: `redis://HOST:PORT/DB`.
    pub store: Option<String>,
    /// This instance's member URI in the cluster (`sip:IP:PORT`, as the dispatcher's backend list
    /// names it); default `sip:` + the listen address.
    pub member: Option<String>,
    /// RTP port range `FROM-TO`.
    pub rtp_ports: Option<String>,
    /// RTP inactivity timeout.
    pub rtp_timeout_secs: Option<f64>,
    /// Ringing time of the echo user.
    pub answer_delay_secs: Option<f64>,
    /// In a cluster, how long SIGTERM waits for every call to end (`serve --drain-secs`).
    pub drain_secs: Option<f64>,
    /// RFC 3261 T1.
    pub t1_ms: Option<u64>,
    /// Registrar minimum expiry.
    pub min_expires: Option<u32>,
    /// Registrar maximum expiry.
    pub max_expires: Option<u32>,
    /// Digest nonce lifetime.
    pub nonce_lifetime_secs: Option<u64>,
    /// Proxy: a branch with no response ends as 408 after this.
    pub branch_timeout_secs: Option<f64>,
    /// Digest algorithms challenged with, in order: `"md5"`, `"sha-256"` or both, e.g.
    /// `"sha-256,md5"`.
    pub auth_algorithms: Option<String>,
    // ----- caps on state the network can create (issue 14 point 5; helper "caps") -----
    /// Contacts per address-of-record; a REGISTER adding one more gets 503.
    pub max_contacts: Option<usize>,
    /// Bindings across all AORs; a REGISTER adding one more gets 503.
    pub max_bindings: Option<usize>,
    /// Live transactions; a new request beyond gets a stateless 503.
    pub max_transactions: Option<usize>,
    /// Concurrent calls to `echo` from one source IP (0: no limit); one more gets 486.
    pub max_echo_calls_per_source: Option<usize>,
    /// Percent of the RTP port range that unauthenticated (echo) calls may hold; beyond, 503.
    pub unauth_port_share: Option<u8>,
    // ----- end of caps -----
    // --- users (issue 14 point 11) ---
    /// The digest realm to challenge with, when it is not the domain (default: the domain, else
    /// `switchboard`). Stored users of another realm refuse `serve` unless this names theirs.
    pub realm: Option<String>,
    // --- end users ---
    // ----- media latching (issue 14) -----
    /// The relay's learning window in milliseconds (see `relay`), default 3000.
    pub rtp_learning_ms: Option<u64>,
    // ----- end media latching -----
    // ----- trust (issue 14: in-dialog trust, authenticated identity) -----
    /// Peers whose requests are not challenged, `IP` or `IP/BITS` (gateways and static-route
    /// targets, which do not do digest); their `P-Asserted-Identity` is passed on.
    pub trusted: Option<Vec<String>>,
    // ----- end trust -----
    // ----- limits (issue 14 point 4) -----
    /// Requests per second per source IP (burst twice that); 0 turns the limit off.
    pub rate_limit: Option<u32>,
    /// Seconds a (source IP, user) pair or a source IP is refused after 10 failed
    /// authentications in 60 s; 0 only logs the failures.
    pub auth_backoff_secs: Option<u64>,
    // ----- end limits -----
    /// Static routes (`[[route]]` tables), in file order.
    #[serde(default)]
    pub route: Vec<RouteConfig>,
}

/// One `[[route]]` table as written; checked by [`crate::service::routes::StaticRoutes::from_config`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Glob on the Request-URI's user part: `*` any run, `?` one character, else exact.
    pub user: String,
    /// Next hop, `sip:IP[:PORT]`.
    pub target: String,
    /// Rewrite the Request-URI to `sip:USER@IP:PORT` (default: forward it unchanged).
    pub rewrite_host: Option<bool>,
    /// Take the route even when the user has live bindings (default: registered phones win).
    #[serde(rename = "override")]
    pub overrides: Option<bool>,
}

/// Parses the text of the TOML config file `path` (read by the binary: `cli::load_config`); the
/// error names the file and the problem in one line.
pub fn parse(text: &str, path: &Path) -> Result<FileConfig, String> {
    let file: FileConfig =
        toml::from_str(text).map_err(|e| format!("config {}: {}{}", path.display(), at(text, e.span()), one_line(e.message())))?;
    crate::service::routes::StaticRoutes::from_config(&file.route).map_err(|e| format!("config {}: {e}", path.display()))?;
    Ok(file)
}

/// `line N (KEY): ` for the line a TOML error points at, so a bad value names its key.
fn at(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(start) = span.map(|r| r.start).filter(|&s| s <= text.len() && text.is_char_boundary(s)) else { return String::new() };
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("");
    match line.split_once('=') {
        Some((key, _)) if !key.trim().is_empty() => format!("line {line_no} ({}): ", key.trim()),
        _ => format!("line {line_no}: "),
    }
}

/// Joins a multi-line message into one line (errors are printed as a single line).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses `FROM-TO` with 1024 ≤ FROM < TO.
pub fn port_range(s: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let bad = || format!("RTP port range must be FROM-TO with 1024 <= FROM < TO <= 65535, got {s}");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (u16, u16) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
    if a < 1024 || a >= b {
        return Err(bad());
    }
    Ok(a..=b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_key_and_refuses_unknown_ones() {
        let c: FileConfig = toml::from_str(
            "listen = \"127.0.0.1:5070\"\ndomain = \"example.com\"\nauth = \"none\"\nmode = \"proxy\"\ndata_dir = \"/tmp/x\"\nrtp_ports = \"30000-30100\"\nrtp_timeout_secs = 10\nanswer_delay_secs = 1.5\nt1_ms = 250\nmin_expires = 30\nmax_expires = 600\nnonce_lifetime_secs = 60\nbranch_timeout_secs = 5\nrtp_learning_ms = 200\nrate_limit = 0\nauth_backoff_secs = 30\n",
        )
        .unwrap();
        assert_eq!(c.auth, Some(AuthMode::None));
        assert_eq!(c.rtp_learning_ms, Some(200));
        assert_eq!((c.rate_limit, c.auth_backoff_secs), (Some(0), Some(30)));
        assert_eq!(c.listen, "127.0.0.1:5070".parse().ok());
        assert!(toml::from_str::<FileConfig>("lisen = \"x\"").is_err());
        let caps: FileConfig = toml::from_str(
            "max_contacts = 3\nmax_bindings = 50\nmax_transactions = 1000\nmax_echo_calls_per_source = 0\nunauth_port_share = 40\n",
        )
        .unwrap();
        assert_eq!((caps.max_contacts, caps.max_bindings, caps.max_transactions), (Some(3), Some(50), Some(1000)));
        assert_eq!((caps.max_echo_calls_per_source, caps.unauth_port_share), (Some(0), Some(40)));
        assert_eq!(port_range("30000-30100").unwrap(), 30000..=30100);
        assert!(port_range("10-20").is_err());
        assert!(c.route.is_empty());
        let t: FileConfig = toml::from_str("trusted = [\"192.0.2.10/32\", \"10.0.0.0/8\"]\n").unwrap();
        assert_eq!(t.trusted.unwrap(), ["192.0.2.10/32", "10.0.0.0/8"]);
        let r: FileConfig = toml::from_str("store = \"redis://127.0.0.1:6379/2\"\n").unwrap();
        assert_eq!(r.store.as_deref(), Some("redis://127.0.0.1:6379/2"));
    }

    #[test]
    fn parses_route_tables_and_refuses_unknown_route_keys() {
        let c: FileConfig = toml::from_str(
            "[[route]]\nuser = \"1*\"\ntarget = \"sip:127.0.0.1:5080\"\n\n[[route]]\nuser = \"*\"\ntarget = \"sip:10.0.0.1\"\nrewrite_host = true\noverride = true\n",
        )
        .unwrap();
        assert_eq!(c.route.len(), 2);
        assert_eq!(c.route[0], RouteConfig { user: "1*".into(), target: "sip:127.0.0.1:5080".into(), rewrite_host: None, overrides: None });
        assert_eq!(c.route[1].rewrite_host, Some(true));
        assert_eq!(c.route[1].overrides, Some(true));
        assert!(toml::from_str::<FileConfig>("[[route]]\nuser = \"*\"\ntarget = \"sip:127.0.0.1\"\nrewrite = true\n").is_err());
        assert!(toml::from_str::<FileConfig>("[[route]]\nuser = \"*\"\n").is_err(), "target is required");
    }

    #[test]
    fn parse_checks_routes_and_errors_in_one_line() {
        let good = "[[route]]\nuser = \"*\"\ntarget = \"sip:127.0.0.1:5080\"\n";
        assert_eq!(parse(good, Path::new("good.toml")).unwrap().route.len(), 1);
        let bad = "[[route]]\nuser = \"*\"\ntarget = \"sip:trunk.example.com\"\n";
        let e = parse(bad, Path::new("bad.toml")).unwrap_err();
        assert!(e.contains("bad.toml") && e.contains("[[route]] #1") && e.contains("host name") && !e.contains('\n'), "{e}");
        let typo = "[[route]]\nuser = \"*\"\ntarget = \"sip:127.0.0.1\"\nrewrite = true\n";
        let e = parse(typo, Path::new("typo.toml")).unwrap_err();
        assert!(e.contains("rewrite") && !e.contains('\n'), "{e}");
    }
}
