//! Static routes (`[[route]]` in the config): send calls for users with no live registration, or
//! for every user matching a pattern, to a fixed SIP next hop such as a trunk or a gateway.
//!
//! ```toml
//! [[route]]
//! user = "1*"                      # glob on the Request-URI's user part: `*` any run, `?` one character
//! target = "sip:192.0.2.10:5080"   # next hop: sip:IP[:PORT] (no DNS; default port 5060)
//! rewrite_host = false             # true: Request-URI becomes sip:USER@IP:PORT (default: kept as sent)
//! override = false                 # true: applies even when the user has live registrations
//!
//! [[route]]
//! user = "*"                       # everything else that no phone answers goes to the trunk
//! target = "sip:192.0.2.20"
//! ```
//!
//! Rules:
//! - The first route whose pattern matches the user part wins, in file order. Later routes are not
//!   consulted, even when the first match does not apply because the user is registered.
//! - A matching route without `override` applies only when the user has no live binding: registered
//!   phones win. With `override = true` the route is taken before the registrar is asked.
//! - The pattern is matched against the user part as written in the Request-URI (still escaped),
//!   case-sensitively (RFC 3261 §19.1.4). A Request-URI with no user part (or not `sip:`) matches
//!   no route.
//! - The target is a next hop, not a new destination: by default the Request-URI is forwarded
//!   unchanged, as an outbound proxy would (Kamailio's `$du`). `rewrite_host = true` replaces it
//!   with `sip:USER@IP:PORT`, for gateways that insist on seeing their own address.
//!
//! The module is pure: [`StaticRoutes::from_config`] checks every entry and [`StaticRoutes::lookup`]
//! answers without I/O.

use crate::message::Uri;
use crate::service::config::RouteConfig;
use std::fmt;
use std::net::SocketAddr;

/// Default SIP port for a target written without one.
const DEFAULT_PORT: u16 = 5060;

/// One checked route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The glob on the user part, as configured.
    pub pattern: String,
    /// The target as configured (`sip:IP[:PORT]`).
    pub uri: String,
    /// Where the request is sent.
    pub dest: SocketAddr,
    /// Whether the Request-URI is rewritten to `sip:USER@dest`.
    pub rewrite_host: bool,
    /// Whether the route is taken even when the user has live bindings.
    pub overrides: bool,
}

impl Route {
    /// The Request-URI of the forwarded request: `original` unchanged, or with `rewrite_host`
    /// `sip:USER@IP:PORT` (`user` is the Request-URI's user part).
    pub fn request_uri(&self, original: &str, user: Option<&str>) -> String {
        match (self.rewrite_host, user) {
            (true, Some(u)) => format!("sip:{u}@{}", self.dest),
            _ => original.to_owned(),
        }
    }
}

/// The routes of the config, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticRoutes {
    routes: Vec<Route>,
}

/// A route entry that cannot be used; its `Display` is one line naming the entry and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError {
    /// 1-based position of the `[[route]]` entry in the file.
    pub index: usize,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[[route]] #{}: {}", self.index, self.problem)
    }
}

impl std::error::Error for RouteError {}

impl StaticRoutes {
    /// Checks every entry: the pattern is non-empty printable ASCII with no spaces, the target is
    /// `sip:IP[:PORT]` (an IP literal, IPv6 in brackets; no user part, no `sips:`, no host names,
    /// port not 0).
    pub fn from_config(entries: &[RouteConfig]) -> Result<StaticRoutes, RouteError> {
        let routes = entries
            .iter()
            .enumerate()
            .map(|(i, e)| route(e).map_err(|problem| RouteError { index: i + 1, problem }))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StaticRoutes { routes })
    }

    /// The first route whose pattern matches `user` (the Request-URI's user part), if any.
    pub fn lookup(&self, user: Option<&str>) -> Option<&Route> {
        let user = user?;
        self.routes.iter().find(|r| glob(r.pattern.as_bytes(), user.as_bytes()))
    }

    /// Whether there are no routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// How many routes there are.
    pub fn len(&self) -> usize {
        self.routes.len()
    }
}

fn route(e: &RouteConfig) -> Result<Route, String> {
    let pattern = e.user.as_str();
    if pattern.is_empty() {
        return Err("user pattern is empty (use \"*\" for every user)".into());
    }
    if let Some(c) = pattern.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!("user pattern {pattern:?} has the character {c:?} (printable ASCII only, no spaces)"));
    }
    let target = e.target.trim();
    let bad = |why: &str| format!("target {:?} {why}; write sip:IP[:PORT], e.g. \"sip:192.0.2.10:5060\"", e.target);
    let uri = Uri::parse(target).map_err(|_| bad("is not a SIP URI"))?;
    let Uri::Sip(sip) = uri else { return Err(bad("is not a sip: URI")) };
    if sip.secure {
        return Err(bad("uses sips: (UDP only)"));
    }
    if sip.user.is_some() {
        return Err(bad("has a user part (the caller's user part is kept)"));
    }
    if sip.headers.is_some() {
        return Err(bad("has URI headers"));
    }
    let ip = sip.host.ip().ok_or_else(|| bad("has a host name (no DNS: use an IP address)"))?;
    let port = sip.port.unwrap_or(DEFAULT_PORT);
    if port == 0 {
        return Err(bad("has port 0"));
    }
    Ok(Route {
        pattern: pattern.to_owned(),
        uri: target.to_owned(),
        dest: SocketAddr::new(ip, port),
        rewrite_host: e.rewrite_host.unwrap_or(false),
        overrides: e.overrides.unwrap_or(false),
    })
}

/// Glob match: `*` any run of bytes (empty included), `?` exactly one byte, anything else itself.
/// Iterative with one backtrack point, so linear-ish and never recursive on hostile input.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rc(user: &str, target: &str) -> RouteConfig {
        RouteConfig { user: user.into(), target: target.into(), rewrite_host: None, overrides: None }
    }

    #[test]
    fn glob_matches_prefix_exact_any_and_single() {
        assert!(glob(b"*", b"alice"));
        assert!(glob(b"*", b""));
        assert!(glob(b"1*", b"1234"));
        assert!(glob(b"1*", b"1"));
        assert!(!glob(b"1*", b"21"));
        assert!(glob(b"alice", b"alice"));
        assert!(!glob(b"alice", b"Alice"));
        assert!(!glob(b"alice", b"alice2"));
        assert!(!glob(b"alice", b"alic"));
        assert!(glob(b"+49*", b"+4930123"));
        assert!(glob(b"*00", b"1200"));
        assert!(!glob(b"*00", b"1201"));
        assert!(glob(b"1??4", b"1234"));
        assert!(!glob(b"1??4", b"12345"));
        assert!(glob(b"a*b*c", b"axxbyyc"));
        assert!(!glob(b"a*b*c", b"axxbyy"));
        assert!(glob(b"**", b"x"));
    }

    #[test]
    fn glob_survives_hostile_patterns() {
        let text = vec![b'a'; 4096];
        assert!(!glob(b"*a*a*a*a*a*a*a*b", &text));
        assert!(glob(b"*a*a*a*a*a*a*a*", &text));
    }

    #[test]
    fn first_match_wins_in_file_order() {
        let r =
            StaticRoutes::from_config(&[rc("1*", "sip:127.0.0.1:5080"), rc("*", "sip:127.0.0.1:5090"), rc("12*", "sip:10.0.0.1")]).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r.lookup(Some("1234")).map(|r| r.dest), "127.0.0.1:5080".parse().ok());
        assert_eq!(r.lookup(Some("bob")).map(|r| r.dest), "127.0.0.1:5090".parse().ok());
        assert_eq!(r.lookup(None), None, "no user part, no route");
        let none = StaticRoutes::from_config(&[]).unwrap();
        assert!(none.is_empty());
        assert_eq!(none.lookup(Some("1234")), None);
    }

    #[test]
    fn target_forms() {
        let r = StaticRoutes::from_config(&[
            rc("a", "sip:192.0.2.1"),
            rc("b", " sip:[::1]:5070;transport=udp "),
            RouteConfig { user: "c".into(), target: "SIP:10.1.2.3:5999".into(), rewrite_host: Some(true), overrides: Some(true) },
        ])
        .unwrap();
        let a = r.lookup(Some("a")).unwrap();
        assert_eq!(a.dest, "192.0.2.1:5060".parse().unwrap());
        assert!(!a.rewrite_host && !a.overrides);
        assert_eq!(r.lookup(Some("b")).unwrap().dest, "[::1]:5070".parse().unwrap());
        assert_eq!(r.lookup(Some("b")).unwrap().uri, "sip:[::1]:5070;transport=udp");
        let c = r.lookup(Some("c")).unwrap();
        assert!(c.rewrite_host && c.overrides);
    }

    #[test]
    fn request_uri_is_kept_or_rewritten() {
        let r = StaticRoutes::from_config(&[
            rc("keep", "sip:127.0.0.1:5080"),
            RouteConfig { user: "*".into(), target: "sip:[::1]:5080".into(), rewrite_host: Some(true), overrides: None },
        ])
        .unwrap();
        let keep = r.lookup(Some("keep")).unwrap();
        assert_eq!(keep.request_uri("sip:keep@192.0.2.5:5060;user=phone", Some("keep")), "sip:keep@192.0.2.5:5060;user=phone");
        let rw = r.lookup(Some("1234")).unwrap();
        assert_eq!(rw.request_uri("sip:1234@192.0.2.5:5060", Some("1234")), "sip:1234@[::1]:5080");
        assert_eq!(rw.request_uri("sip:192.0.2.5", None), "sip:192.0.2.5");
    }

    #[test]
    fn bad_entries_give_one_line_errors_naming_the_entry() {
        let cases: &[(&str, &str, &str)] = &[
            ("", "sip:127.0.0.1", "user pattern is empty"),
            ("a b", "sip:127.0.0.1", "no spaces"),
            ("*", "gw.example.com:5060", "not a sip: URI"),
            ("*", "127.0.0.1:5060", "not a SIP URI"),
            ("*", "tel:+123", "not a sip: URI"),
            ("*", "sips:127.0.0.1", "sips"),
            ("*", "sip:gw@127.0.0.1", "user part"),
            ("*", "sip:gw.example.com", "host name"),
            ("*", "sip:127.0.0.1:0", "port 0"),
            ("*", "sip:127.0.0.1:99999", "not a SIP URI"),
            ("*", "sip:127.0.0.1?x=y", "headers"),
            ("*", "", "not a SIP URI"),
        ];
        for (user, target, needle) in cases {
            let e = StaticRoutes::from_config(&[rc("ok", "sip:127.0.0.1"), rc(user, target)]).unwrap_err();
            assert_eq!(e.index, 2);
            let line = e.to_string();
            assert!(line.starts_with("[[route]] #2: "), "{line}");
            assert!(line.contains(needle), "{user:?} {target:?}: {line}");
            assert!(!line.contains('\n'), "{line}");
        }
    }
}
