//! `switchboard serve`: the service on a UDP socket.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use switchboard::call::{MediaConfig, MediaPrefs};
use switchboard::endpoint::{Endpoint, EndpointConfig};
use switchboard::transaction::Config;
use switchboard::transport::udp::UdpTransport;
use switchboard::ua::echo::{EchoConfig, EchoUas};
use switchboard::ua::media::CallMediaConfig;

/// Options of `switchboard serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// UDP address to listen on (IPv4 or [IPv6]:port; port 0 picks a free one and prints it).
    #[arg(long, default_value = "127.0.0.1:5060", value_name = "ADDR")]
    listen: SocketAddr,
    /// Seconds the echo user rings (180 Ringing) before it answers; 0 answers at once.
    #[arg(long, default_value_t = 0.0, value_name = "SECS")]
    answer_delay: f64,
    /// RFC 3261 timer T1 in milliseconds (round-trip estimate; retransmissions start at T1).
    #[arg(long, default_value_t = 500, value_name = "MS")]
    t1_ms: u64,
    /// RTP port range for calls the service answers: even ports RTP, the next odd one RTCP.
    #[arg(long, default_value = "30000-39999", value_name = "FROM-TO")]
    rtp_ports: String,
    /// End a call with BYE when no RTP or RTCP arrives for this many seconds (0: never).
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    rtp_timeout: f64,
}

fn port_range(s: &str) -> Option<std::ops::RangeInclusive<u16>> {
    let (a, b) = s.split_once('-')?;
    let (a, b): (u16, u16) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a >= 1024 && a < b).then_some(a..=b)
}

/// Runs the service until Ctrl-C.
pub(crate) fn run(args: ServeArgs) -> ExitCode {
    if !(0.0..=3600.0).contains(&args.answer_delay) {
        eprintln!("switchboard: --answer-delay must be between 0 and 3600 seconds");
        return ExitCode::from(2);
    }
    if args.t1_ms == 0 || args.t1_ms > 10_000 {
        eprintln!("switchboard: --t1-ms must be between 1 and 10000");
        return ExitCode::from(2);
    }
    let Some(ports) = port_range(&args.rtp_ports) else {
        eprintln!("switchboard: --rtp-ports must be FROM-TO with 1024 <= FROM < TO <= 65535, got {}", args.rtp_ports);
        return ExitCode::from(2);
    };
    if !(args.rtp_timeout.is_finite() && (0.0..=86_400.0).contains(&args.rtp_timeout)) {
        eprintln!("switchboard: --rtp-timeout must be between 0 and 86400 seconds");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchboard: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let transport = match UdpTransport::bind(args.listen).await {
            Ok(t) => t,
            Err(e) => {
                eprintln!("switchboard: cannot listen on {}: {e}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        let local = transport.local_addr();
        let t1 = Duration::from_millis(args.t1_ms);
        let timers = Config { t1, ..Config::default() };
        let endpoint = Endpoint::new(EndpointConfig { timers, ..EndpointConfig::default() });
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        let rtp_timeout = Duration::from_secs_f64(args.rtp_timeout);
        let session = MediaConfig {
            inactivity_timeout: (!rtp_timeout.is_zero()).then_some(rtp_timeout),
            cname: format!("echo@{}", local.ip()),
            seed,
            ..MediaConfig::default()
        };
        let media = CallMediaConfig { ip: local.ip(), ports, prefs: MediaPrefs::default(), session };
        let app =
            EchoUas::new(EchoConfig { local, answer_delay: Duration::from_secs_f64(args.answer_delay), t1, t2: timers.t2, media }, seed);
        // The listening line goes to stdout so scripts (and tests) can read the chosen port.
        println!("switchboard listening on udp {local}; call sip:echo@{local}");
        tracing::info!(%local, "listening");
        switchboard::driver::run(transport, endpoint, app, switchboard::driver::interrupted()).await;
        ExitCode::SUCCESS
    })
}
