//! Ready-made nodes for a [`super::Net`]: the service as `switchboard serve --data none` assembles
//! it, and a softphone as `softphone` configures it. Both are plain configs and parts, so a test
//! changes the fields it cares about before it builds the node.

use crate::auth::DigestServer;
use crate::b2bua::{B2bua, B2buaConfig};
use crate::call::{MediaConfig, MediaPrefs};
use crate::endpoint::{Endpoint, EndpointConfig, ALLOW};
use crate::proxy::token::RouteKey;
use crate::proxy::{Proxy, ProxyConfig};
use crate::records::UserRecord;
use crate::registrar::{Registrar, RegistrarConfig};
use crate::relay::RelayConfig;
use crate::service::admit::Admission;
use crate::service::app::ServiceParts;
use crate::service::guard::GuardConfig;
use crate::service::routes::StaticRoutes;
use crate::transaction::Config;
use crate::transport::rate_limit::{RateLimit, DEFAULT_RATE};
use crate::ua::echo::{EchoConfig, EchoUas};
use crate::ua::media::CallMediaConfig;
use crate::ua::phone::{PhoneConfig, SourceSpec};
use crate::ua::register::RegisterConfig;
use std::net::SocketAddr;
use std::time::Duration;

/// The realm of [`service_parts`]' digest authentication.
pub const REALM: &str = "switchboard";

/// The service's endpoint: default timers (T1 500 ms), REGISTER allowed, the default per-source
/// rate limit.
pub fn service_endpoint() -> Endpoint {
    Endpoint::new(EndpointConfig {
        allow: format!("{ALLOW}, REGISTER"),
        rate_limit: RateLimit::per_second(DEFAULT_RATE),
        ..EndpointConfig::default()
    })
}

/// The parts of a service at `local` in B2BUA mode with the relay (set `b2bua` to `None` for proxy
/// mode), digest authentication for `users` (name, password) in realm [`REALM`], no store, no
/// inactivity timeouts, media ports 30000-39999, no trusted peers, every generator and key derived
/// from `seed`. Defaults are those of `switchboard serve`.
pub fn service_parts(local: SocketAddr, users: &[(&str, &str)], seed: u64) -> ServiceParts {
    let t1 = Duration::from_millis(500);
    let t2 = Config::default().t2;
    let ports = 30000..=39999;
    // The deployment secret: the nonces' key and, derived from it, the Record-Route tokens' key.
    let secret = [seed as u8; 32];
    let route_key = RouteKey::derive(&secret);
    let session = MediaConfig { cname: format!("echo@{}", local.ip()), seed, ..MediaConfig::default() };
    let media = CallMediaConfig { ip: local.ip(), ports: ports.clone(), prefs: MediaPrefs::default(), session };
    let echo_config = EchoConfig { local, answer_delay: Duration::ZERO, t1, t2, media, max_calls_per_source: 10, port_share: 25 };
    let users: Vec<UserRecord> = users
        .iter()
        .map(|(name, password)| {
            let u = crate::auth::UserRecord::new(*name, REALM, password);
            UserRecord { name: u.name, realm: u.realm, ha1_md5: u.ha1_md5, ha1_sha256: u.ha1_sha256 }
        })
        .collect();
    let b2bua = B2bua::new(B2buaConfig {
        local,
        t1,
        t2,
        media_ip: local.ip(),
        rtp_ports: ports,
        relay: RelayConfig { inactivity: None, ..RelayConfig::default() },
        relay_media: true,
        no_answer: Duration::from_secs(10),
        seed: seed ^ 1,
    });
    ServiceParts {
        local,
        echo: EchoUas::new(echo_config, seed ^ 2),
        registrar: Registrar::new(RegistrarConfig::default()),
        auth: Some(DigestServer::new(REALM, secret, Duration::from_secs(300))),
        users,
        proxy: Proxy::new(ProxyConfig {
            local,
            branch_timeout: Duration::from_secs(10),
            ringing_timeout: Duration::from_secs(181),
            seed: seed ^ 3,
            realm: Some(REALM.to_owned()),
            route_key: route_key.clone(),
        }),
        store: None,
        b2bua: Some(b2bua),
        recovered: Vec::new(),
        routes: StaticRoutes::default(),
        admission: Admission::new(local, route_key, Vec::new()),
        guard: GuardConfig::default(),
    }
}

/// A softphone's settings: `user` with `password` at `local`, registered with the service at
/// `registrar` (which is also its outbound proxy), sending silence from media ports
/// 20000-29999 of its own address, staying in a call until the peer hangs up, ringing until told
/// to answer. Set `duration`, `auto_answer`, `source`, ... for the scenario.
pub fn phone_config(user: &str, password: &str, local: SocketAddr, registrar: SocketAddr, seed: u64) -> PhoneConfig {
    let session = MediaConfig { cname: format!("{user}@{}", local.ip()), seed, ..MediaConfig::default() };
    PhoneConfig {
        user: user.to_owned(),
        domain: None,
        realm: None,
        local,
        media: CallMediaConfig { ip: local.ip(), ports: 20000..=29999, prefs: MediaPrefs::default(), session },
        source: SourceSpec::Silence,
        duration: None,
        auto_answer: None,
        max_calls: None,
        dtmf: None,
        seed,
        t1: std::time::Duration::from_millis(500),
        rel100: crate::dialog::Rel100::default(),
        register: Some(RegisterConfig {
            registrar_uri: format!("sip:{registrar}"),
            registrar,
            aor: format!("sip:{user}@{}", registrar.ip()),
            contact: format!("sip:{user}@{local}"),
            expires: 3600,
            local,
            realm: None,
        }),
        credentials: Some((user.to_owned(), password.to_owned())),
        move_after: None,
    }
}
