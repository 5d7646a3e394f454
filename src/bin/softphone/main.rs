//! `softphone`: a command-line SIP phone over UDP with G.711 media.
//!
//! `softphone dial URI` places a call, `softphone answer` answers calls, `softphone send FILE --to
//! HOST:PORT` feeds a raw SIP message to any SIP element; with no command it opens a prompt.

use clap::{Parser, Subcommand, ValueEnum};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use switchboard::call::sdes::SrtpMode;
use switchboard::call::{MediaConfig, MediaPrefs};
use switchboard::endpoint::{Endpoint, EndpointConfig};
use switchboard::media::g711::Codec;
use switchboard::message::Uri;
use switchboard::transport::udp::UdpTransport;
use switchboard::ua::media::CallMediaConfig;
use switchboard::ua::phone::{CallReport, EndState, Phone, PhoneConfig, SourceSpec};
use switchboard::ua::register::RegisterConfig;

mod load;
mod message;
mod prompt;
mod send;

/// A SIP phone for the command line: calls, answers, plays and records G.711 audio over UDP.
///
/// `softphone dial URI` places one call and exits when it ends; `softphone answer` answers
/// incoming calls; `softphone send FILE --to HOST:PORT` sends a raw SIP message and prints the
/// replies; `softphone load URI` places calls at a steady rate. Without a command it opens an
/// interactive prompt (dial, answer, hangup, hold, resume, dtmf, move, status, quit).
///
/// The options below apply to the prompt; they may also be given before a command. Each command's
/// own help (`softphone dial --help`) lists only the options that command takes. Logs go to
/// stderr (RUST_LOG=debug for more); a failure exits non-zero with its reason on one line.
#[derive(Debug, Parser)]
#[command(
    name = "softphone",
    version,
    after_help = "Examples:\n  softphone dial sip:echo@127.0.0.1:5060 --duration 5 --tone 440\n  softphone answer --calls 1 --record in.wav\n  softphone send fixtures/sip/options.sip --to 127.0.0.1:5060"
)]
struct Cli {
    /// Local UDP address for SIP (port 0 picks a free one).
    #[arg(long, global = true, default_value = "127.0.0.1:0", value_name = "ADDR")]
    bind: SocketAddr,
    /// User name for From and Contact.
    #[arg(long, global = true, default_value = "softphone", value_name = "NAME")]
    user: String,
    /// The only codec to offer and accept.
    #[arg(long, global = true, value_enum, value_name = "CODEC")]
    codec: Option<CodecArg>,
    /// Play this WAV file (8 kHz mono 16-bit, or 16-bit PCM that is resampled), looped.
    #[arg(long, global = true, value_name = "FILE.wav", conflicts_with = "tone")]
    play: Option<PathBuf>,
    /// Send a sine tone of this frequency in Hz (default: silence).
    #[arg(long, global = true, value_name = "HZ")]
    tone: Option<f64>,
    /// Record what the other side sends to this WAV file (OUT-2.wav, ... for further calls).
    #[arg(long, global = true, value_name = "OUT.wav")]
    record: Option<PathBuf>,
    /// Print one JSON object per call at exit.
    #[arg(long, global = true, value_name = "FORMAT", value_parser = ["json"])]
    summary: Option<String>,
    /// RTP port range, even ports for RTP and the next odd one for RTCP.
    #[arg(long, global = true, default_value = "20000-29999", value_name = "FROM-TO")]
    rtp_ports: String,
    /// Hang up when no RTP or RTCP arrives for this many seconds (0: never).
    #[arg(long, global = true, default_value_t = 30.0, value_name = "SECS")]
    rtp_timeout: f64,
    /// Send these DTMF digits (0-9 * # A-D) once the call is answered.
    #[arg(long, global = true, value_name = "DIGITS")]
    dtmf: Option<String>,
    /// Register with this registrar (e.g. sip:127.0.0.1:5060) as --user, refresh before expiry,
    /// unregister on exit; calls then go through it (its address is the outbound proxy).
    #[arg(long, global = true, value_name = "URI")]
    register: Option<String>,
    /// File whose first line is the password for digest challenges (REGISTER 401, INVITE 407).
    #[arg(long, global = true, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Our domain: the host of our address-of-record (REGISTER To/From) and of the From of our
    /// calls, when the service has one (`serve --domain`) [default: the --register host].
    #[arg(long, global = true, value_name = "DOMAIN")]
    domain: Option<String>,
    /// Answer digest challenges of this realm only (`serve --realm`, else its domain); a challenge
    /// for another realm fails the request instead of being answered [default: any realm].
    #[arg(long, global = true, value_name = "REALM")]
    realm: Option<String>,
    /// Registration lifetime asked for, in seconds.
    #[arg(long, global = true, default_value_t = 300, value_name = "SECS")]
    expires: u32,
    /// Seconds after the answer before --dtmf digits are sent.
    #[arg(long, global = true, default_value_t = 1.0, value_name = "SECS")]
    dtmf_after: f64,
    /// RFC 3261 T1 in milliseconds: the first retransmission interval; a request with no answer
    /// times out after 64*T1 (32 s at the default). Small values make timeout tests fast.
    #[arg(long, global = true, default_value_t = 500, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=60_000))]
    t1_ms: u64,
    /// Reliable provisional responses (RFC 3262): `supported` says `Supported: 100rel` and PRACKs
    /// reliable 18x; `required` also sends our 18x reliably and refuses (421) a caller without
    /// 100rel; `off` does neither and refuses (420) a caller that requires it.
    #[arg(long = "100rel", global = true, default_value = "supported", value_name = "MODE", value_parser = ["off", "supported", "required"])]
    rel100: String,
    /// SRTP with SDES keys (AES_CM_128_HMAC_SHA1_80): off offers RTP/AVP and refuses RTP/SAVP;
    /// optional offers RTP/AVP with a=crypto (best effort) and protects media when the peer
    /// answers with a key; required offers RTP/SAVP and hangs up on a plain answer (exit 1).
    #[arg(long, global = true, value_enum, default_value = "off", value_name = "MODE")]
    srtp: SrtpArg,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CodecArg {
    /// G.711 µ-law (payload type 0).
    Pcmu,
    /// G.711 A-law (payload type 8).
    Pcma,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SrtpArg {
    /// Plain RTP only.
    Off,
    /// SRTP when the peer has it.
    Optional,
    /// SRTP or no call.
    Required,
}

impl SrtpArg {
    fn mode(self) -> SrtpMode {
        match self {
            SrtpArg::Off => SrtpMode::Off,
            SrtpArg::Optional => SrtpMode::Optional,
            SrtpArg::Required => SrtpMode::Required,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Call URI (e.g. sip:echo@127.0.0.1:5060) and hang up after --duration seconds.
    ///
    /// Exit status 0 when the call was answered and ended cleanly. Ctrl-C cancels a ringing call
    /// or hangs up an answered one.
    Dial {
        /// Who to call: sip:user@host[:port].
        uri: String,
        /// Seconds to stay in the call once answered.
        #[arg(long, default_value_t = 5.0, value_name = "SECS")]
        duration: f64,
        /// Seconds after the answer before moving to --move-to.
        #[arg(long, value_name = "SECS", requires = "move_to")]
        move_after: Option<f64>,
        /// Change network mid-call: rebind SIP and media to this local IP (or IP:PORT), register
        /// the new contact and re-INVITE, --move-after seconds after the answer.
        #[arg(long, value_name = "ADDR", requires = "move_after")]
        move_to: Option<String>,
        /// Send the INVITE without SDP: the callee offers in its 200 and our answer goes in the
        /// ACK (late offer, RFC 3261 §13.2.2.4).
        #[arg(long)]
        late_offer: bool,
    },
    /// Answer incoming calls automatically.
    ///
    /// Exits after --calls calls have ended (default: run until Ctrl-C). Exit status 0 when every
    /// call ended cleanly.
    Answer {
        /// Stop after this many calls.
        #[arg(long, value_name = "N")]
        calls: Option<u32>,
        /// Seconds of ringing (180) before answering.
        #[arg(long, default_value_t = 0.0, value_name = "SECS")]
        after: f64,
        /// Hang up this many seconds after answering (default: wait for the caller's BYE).
        #[arg(long, value_name = "SECS")]
        duration: Option<f64>,
        /// Seconds after the first answer before moving to --move-to.
        #[arg(long, value_name = "SECS", requires = "move_to")]
        move_after: Option<f64>,
        /// Change network mid-call, as `dial --move-to` does, --move-after seconds after the first
        /// answer.
        #[arg(long, value_name = "ADDR", requires = "move_after")]
        move_to: Option<String>,
    },
    /// Send a raw SIP message file over UDP, byte for byte, and print every reply.
    ///
    /// Replies are printed until none arrives for --wait seconds. Exit status 0 when at least one
    /// reply came. Example: softphone send fixtures/sip/options.sip --to 127.0.0.1:5060
    Send {
        /// The message file (wire bytes, e.g. fixtures/sip/options.sip).
        file: PathBuf,
        /// Where to send it: HOST:PORT.
        #[arg(long, value_name = "HOST:PORT")]
        to: String,
        /// Seconds to wait for further replies after the last one.
        #[arg(long, default_value_t = 2.0, value_name = "SECS")]
        wait: f64,
    },
    /// Send one instant message (SIP MESSAGE, RFC 3428) to URI and exit.
    ///
    /// Through the registrar with --register (answering its challenge with --password-file).
    /// Exit status 0 when a 2xx came, 1 with the reason on one line otherwise.
    Message {
        /// Who to send it to: sip:user@host[:port].
        uri: String,
        /// The text (sent as text/plain; charset=UTF-8).
        text: String,
    },
    /// Place calls at a steady rate and report how they went (a SIP load generator).
    ///
    /// Each call is INVITE, 200, ACK, --duration seconds, BYE, 200, on the crate's own transaction
    /// and dialog layers; worker threads (one socket each) share the rate. Progress goes to stderr
    /// once a second, the table to stdout. Exit status 0 when every call succeeded, 1 otherwise.
    /// Example: softphone load sip:echo@127.0.0.1:5060 --rate 200 --calls 400
    Load(load::LoadArgs),
}

/// The global options that the commands which are not calls take; a command not listed here
/// (dial, answer, and any new call command) takes every global option. Every global option is
/// still *accepted* by every command, before or after its name, as it always was (scripts rely on
/// it); this only decides what each command's `--help` shows.
fn global_options_of(command: &str) -> Option<&'static [&'static str]> {
    match command {
        "send" => Some(&["bind"]),
        "load" => Some(&["bind", "user", "password_file", "summary"]),
        "message" => Some(&["bind", "user", "register", "password_file", "domain", "realm"]),
        _ => None,
    }
}

/// The parser: [`Cli`], with each command's help scoped to the global options it takes
/// ([`global_options_of`]). A global option a command does not take gets a hidden local copy
/// under the same id in that command: clap then neither shows the global one in its help nor
/// loses a value given there (it is propagated to the top level like any global's).
fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let globals: Vec<clap::Arg> = cmd.get_arguments().filter(|a| a.is_global_set()).cloned().collect();
    let names: Vec<String> = cmd.get_subcommands().map(|c| c.get_name().to_owned()).collect();
    for name in names {
        let Some(takes) = global_options_of(&name) else { continue };
        for arg in globals.iter().filter(|a| !takes.contains(&a.get_id().as_str())) {
            let hidden = arg.clone().global(false).hide(true);
            cmd = cmd.mut_subcommand(&name, |c| c.arg(hidden));
        }
    }
    cmd
}

/// Parses the command line (exits with clap's message on an error, or after `--help`).
fn parse_cli() -> Cli {
    use clap::FromArgMatches;
    let mut matches = command().get_matches();
    Cli::from_arg_matches_mut(&mut matches).unwrap_or_else(|e| e.exit())
}

/// Resolves the host:port a SIP URI points at.
fn target_of(uri: &str) -> Result<SocketAddr, String> {
    let parsed = Uri::parse(uri).map_err(|_| format!("not a SIP URI: {uri}"))?;
    let Uri::Sip(sip) = parsed else { return Err(format!("not a sip: URI: {uri}")) };
    let port = sip.port.unwrap_or(5060);
    let host = sip.host.as_str();
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("no address for {host}"))
}

/// The address a call to `uri` goes to from our socket at `local`: of the socket's address family
/// (a name with both an IPv4 and an IPv6 address gives the one we can reach). A literal of the
/// other family is refused at once, in one line, rather than after 64*T1 of silent failed sends.
fn target_from(uri: &str, local: SocketAddr) -> Result<SocketAddr, String> {
    let parsed = Uri::parse(uri).map_err(|_| format!("not a SIP URI: {uri}"))?;
    let Uri::Sip(sip) = parsed else { return Err(format!("not a sip: URI: {uri}")) };
    let port = sip.port.unwrap_or(5060);
    let host = sip.host.as_str();
    let all: Vec<SocketAddr> = (host, port).to_socket_addrs().map_err(|e| format!("cannot resolve {host}: {e}"))?.collect();
    let family = |a: &SocketAddr| if a.is_ipv4() { "IPv4" } else { "IPv6" };
    match all.iter().find(|a| a.is_ipv4() == local.is_ipv4()) {
        Some(a) => Ok(*a),
        None => match all.first() {
            Some(a) => Err(format!(
                "cannot call {a} ({}) from {local} (an {} socket); use --bind with an {} address",
                family(a),
                family(&local),
                family(a)
            )),
            None => Err(format!("no address for {host}")),
        },
    }
}

/// `IP` or `IP:PORT` (no port or port 0: a free one), where `--move-to` and the prompt's `move` go.
fn move_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 0)))
        .map_err(|_| format!("the address to move to must be IP or IP:PORT, got {s}"))
}

/// `--move-after SECS --move-to ADDR` (clap makes them come together).
fn move_plan(after: Option<f64>, to: Option<&str>, local: SocketAddr) -> Result<Option<(Duration, SocketAddr)>, String> {
    let (Some(after), Some(to)) = (after, to) else { return Ok(None) };
    let to = move_addr(to).map_err(|e| format!("--move-to: {e}"))?;
    if to.is_ipv4() != local.is_ipv4() {
        return Err(format!("--move-to {to} is not of the same address family as --bind {local}"));
    }
    Ok(Some((seconds("--move-after", after)?, to)))
}

/// `--t1-ms`.
fn t1_of(cli: &Cli) -> Duration {
    Duration::from_millis(cli.t1_ms)
}

/// The endpoint's settings: the transaction timers follow `--t1-ms` (T2 at least T1, §17.1.2.2).
fn endpoint_config(cli: &Cli) -> EndpointConfig {
    let mut config = EndpointConfig::default();
    config.timers.t1 = t1_of(cli);
    config.timers.t2 = config.timers.t2.max(config.timers.t1);
    config
}

fn seconds(name: &str, v: f64) -> Result<Duration, String> {
    if v.is_finite() && (0.0..=86_400.0).contains(&v) {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(format!("{name} must be between 0 and 86400 seconds, got {v}"))
    }
}

fn port_range(s: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let bad = || format!("--rtp-ports must be FROM-TO with 1024 <= FROM < TO <= 65535, got {s}");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (u16, u16) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
    if a < 1024 || a >= b {
        return Err(bad());
    }
    Ok(a..=b)
}

fn source(cli: &Cli) -> Result<SourceSpec, String> {
    if let Some(path) = &cli.play {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let wav = switchboard::media::wav::read_wav(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(SourceSpec::Samples(Arc::from(wav.samples)));
    }
    match cli.tone {
        Some(hz) if hz.is_finite() && hz > 0.0 && hz < 4000.0 => Ok(SourceSpec::Tone(hz)),
        Some(hz) => Err(format!("--tone must be between 0 and 4000 Hz, got {hz}")),
        None => Ok(SourceSpec::Silence),
    }
}

/// Builds the phone's settings from the flags.
fn phone_config(
    cli: &Cli,
    local: SocketAddr,
    duration: Option<Duration>,
    auto_answer: Option<Duration>,
    max_calls: Option<u32>,
) -> Result<PhoneConfig, String> {
    let codecs = match cli.codec {
        Some(CodecArg::Pcmu) => vec![Codec::Pcmu],
        Some(CodecArg::Pcma) => vec![Codec::Pcma],
        None => vec![Codec::Pcmu, Codec::Pcma],
    };
    let rtp_timeout = seconds("--rtp-timeout", cli.rtp_timeout)?;
    if let Some(d) = &cli.dtmf {
        if d.is_empty() || !d.chars().all(|c| c.is_ascii_digit() || "*#ABCDabcd".contains(c)) {
            return Err(format!("--dtmf takes digits 0-9 * # A-D, got {d}"));
        }
    }
    let seed = switchboard::dialog::IdGen::os_seed();
    let session = MediaConfig {
        inactivity_timeout: (!rtp_timeout.is_zero()).then_some(rtp_timeout),
        record: cli.record.is_some(),
        cname: format!("{}@{}", cli.user, local.ip()),
        seed: switchboard::dialog::IdGen::os_seed(),
        ..MediaConfig::default()
    };
    let password = match &cli.password_file {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            Some(text.lines().next().unwrap_or("").to_owned())
                .filter(|p| !p.is_empty())
                .ok_or_else(|| format!("{}: the first line is empty", p.display()))?
                .into()
        }
        None => None,
    };
    let register = match &cli.register {
        Some(uri) => {
            let registrar = target_of(uri)?;
            let Ok(Uri::Sip(u)) = Uri::parse(uri) else { return Err(format!("--register needs a sip: URI, got {uri}")) };
            Some(RegisterConfig {
                // With a domain, the Request-URI names it (RFC 3261 §10.2: the registrar's domain);
                // the REGISTER still goes to the --register address.
                registrar_uri: cli.domain.as_ref().map_or_else(|| uri.clone(), |d| format!("sip:{d}")),
                registrar,
                aor: format!("sip:{}@{}", cli.user, cli.domain.as_deref().map_or_else(|| u.host.to_string(), str::to_owned)),
                contact: format!("sip:{}@{local}", cli.user),
                expires: cli.expires.max(1),
                local,
                realm: cli.realm.clone(),
            })
        }
        None => None,
    };
    if register.is_some() && password.is_none() {
        return Err("--register needs --password-file".into());
    }
    Ok(PhoneConfig {
        register,
        credentials: password.map(|p| (cli.user.clone(), p)),
        user: cli.user.clone(),
        domain: cli.domain.clone(),
        realm: cli.realm.clone(),
        local,
        media: CallMediaConfig {
            ip: local.ip(),
            ports: port_range(&cli.rtp_ports)?,
            prefs: MediaPrefs { codecs, ..MediaPrefs::default() },
            session,
        },
        source: source(cli)?,
        duration,
        auto_answer,
        max_calls,
        dtmf: cli.dtmf.clone().map(|d| (d.to_uppercase(), Duration::from_secs_f64(cli.dtmf_after.clamp(0.0, 3600.0)))),
        seed,
        move_after: None,
        t1: t1_of(cli),
        rel100: cli.rel100.parse()?,
    })
}

fn main() -> ExitCode {
    switchboard::cli::init_tracing();
    let cli = parse_cli();
    if let Some(Command::Send { file, to, wait }) = &cli.command {
        return match seconds("--wait", *wait) {
            Ok(w) if !w.is_zero() => send::run(file, to, cli.bind, w),
            _ => {
                eprintln!("softphone: --wait must be between 0 and 86400 seconds");
                ExitCode::from(2)
            }
        };
    }
    if let Some(Command::Load(args)) = &cli.command {
        let globals =
            load::Globals { bind: cli.bind, user: &cli.user, password_file: cli.password_file.as_ref(), json: cli.summary.is_some() };
        return load::run(args, &globals, target_of);
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("softphone: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("softphone: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: &Cli) -> Result<ExitCode, String> {
    let mut transport = UdpTransport::bind(cli.bind).await.map_err(|e| format!("cannot bind {}: {e}", cli.bind))?;
    // A request to a dead port then fails at once on the ICMP error, not after 64*T1.
    if let Err(e) = transport.report_unreachable() {
        tracing::debug!(error = %e, "ICMP errors will not be reported");
    }
    let local = transport.local_addr();
    let endpoint = Endpoint::new(endpoint_config(cli));
    let shutdown = switchboard::driver::interrupted();
    let phone = match &cli.command {
        Some(Command::Dial { uri, duration, move_after, move_to, late_offer }) => {
            // Registered phones send their calls through the registrar (outbound proxy).
            let target = match &cli.register {
                Some(r) => target_from(r, local)?,
                None => target_from(uri, local)?,
            };
            let mut config = phone_config(cli, local, Some(seconds("--duration", *duration)?), None, Some(1))?;
            config.move_after = move_plan(*move_after, move_to.as_deref(), local)?;
            let mut inner = Phone::new(config, Some(target));
            inner.set_srtp(cli.srtp.mode());
            let mut phone = message::Printing::new(inner, cli.summary.is_some());
            eprintln!("softphone: calling {uri} from {local}");
            if *late_offer {
                phone.dial_late_offer(uri, target);
            } else {
                phone.dial(uri, target);
            }
            let phone = switchboard::driver::run(transport, endpoint, phone, shutdown).await;
            return Ok(report(cli, &phone.reports, Some(target)));
        }
        Some(Command::Answer { calls, after, duration, move_after, move_to }) => {
            let duration = duration.map(|d| seconds("--duration", d)).transpose()?;
            let mut config = phone_config(cli, local, duration, Some(seconds("--after", *after)?), *calls)?;
            config.move_after = move_plan(*move_after, move_to.as_deref(), local)?;
            let mut inner = Phone::new(config, None);
            inner.set_srtp(cli.srtp.mode());
            let phone = message::Printing::new(inner, cli.summary.is_some());
            // Scripts read the address from this line (on stderr with --summary json, whose
            // stdout is JSON only).
            let listening = format!("softphone listening on udp {local}; call sip:{}@{local}", cli.user);
            if cli.summary.is_some() {
                eprintln!("{listening}");
            } else {
                println!("{listening}");
            }
            switchboard::driver::run(transport, endpoint, phone, shutdown).await
        }
        Some(Command::Message { uri, text }) => {
            let dest = match &cli.register {
                Some(r) => target_from(r, local)?,
                None => target_from(uri, local)?,
            };
            let config = phone_config(cli, local, None, None, None)?;
            let from = match (&config.register, &config.domain) {
                (Some(r), _) => r.aor.clone(),
                (None, Some(d)) => format!("sip:{}@{d}", config.user),
                (None, None) => format!("sip:{}@{local}", config.user),
            };
            let msg = switchboard::ua::message::MessageConfig {
                to: uri.clone(),
                from,
                dest,
                local,
                text: text.clone(),
                content_type: "text/plain; charset=UTF-8".into(),
            };
            return Ok(message::send(transport, msg, config.credentials, config.realm).await);
        }
        Some(Command::Send { .. } | Command::Load(_)) => return Ok(ExitCode::SUCCESS),
        None => {
            let mut phone = Phone::new(phone_config(cli, local, None, None, None)?, None);
            phone.set_srtp(cli.srtp.mode());
            // The prompt prints messages itself, between its other lines.
            message::Printing::quiet(prompt::run(transport, endpoint, phone, local, &cli.user).await)
        }
    };
    Ok(report(cli, &phone.reports, None))
}

/// Why a call failed, in one line for stderr: `target` is where a dialled call went.
fn failure(r: &CallReport, target: Option<SocketAddr>, t1: Duration) -> String {
    let to = target.map_or_else(String::new, |t| format!(" from {t}"));
    let what = match (r.state, r.reason.as_str()) {
        _ if r.detail.is_some() => r.detail.clone().unwrap_or_default(),
        (_, reason) if reason.starts_with("refused:") => format!("connection refused by {}", &reason["refused:".len()..]),
        (EndState::Failed, "timeout") if r.responses.is_empty() => {
            format!("no response{to} within {:.1} s (64*T1; ICMP errors, if any, were not reported by the socket)", (t1 * 64).as_secs_f64())
        }
        (EndState::Failed, "timeout") => format!("no final response{to} (responses so far: {:?})", r.responses),
        (EndState::Rejected, code) => format!("rejected with {code}"),
        (_, reason) => reason.to_owned(),
    };
    if r.call_id.is_empty() {
        format!("softphone: call failed: {what}")
    } else {
        format!("softphone: call {} {}: {what}", r.call_id, r.state)
    }
}

/// Prints one line (and a JSON object with --summary json) per call and writes the recordings.
/// With --summary json stdout carries the JSON only; the human lines go to stderr. A call that
/// failed gets one line saying why on stderr, and the exit status is non-zero.
fn report(cli: &Cli, reports: &[CallReport], target: Option<SocketAddr>) -> ExitCode {
    let mut ok = !reports.is_empty();
    let json = cli.summary.is_some();
    let human = |line: String| if json { eprintln!("{line}") } else { println!("{line}") };
    for (i, r) in reports.iter().enumerate() {
        ok &= r.state == EndState::Completed;
        if r.state != EndState::Completed {
            eprintln!("{}", failure(r, target, t1_of(cli)));
        }
        let m = r.media.as_ref();
        human(format!(
            "call {}: {} ({}); responses {:?}; setup {}; duration {}; codec {}; rtp sent {} received {} lost {}; jitter {:.1} ms; dtmf {:?}{}",
            r.call_id,
            r.state,
            r.reason,
            r.responses,
            r.setup.map_or("-".into(), |s| format!("{} ms", s.as_millis())),
            r.duration.map_or("-".into(), |d| format!("{:.1} s", d.as_secs_f64())),
            m.map_or("-", |m| codec_name(m.codec)),
            m.map_or(0, |m| m.packets_sent),
            m.map_or(0, |m| m.packets_received),
            m.map_or(0, |m| m.packets_lost),
            m.map_or(0.0, |m| m.jitter_ms),
            m.map_or("", |m| m.dtmf_received.as_str()),
            if r.early_media { "; early media" } else { "" },
        ));
        if json {
            let v = serde_json::json!({
                "type": "call", "call_id": r.call_id, "state": r.state.as_str(), "reason": r.reason, "responses": r.responses, "bye_status": r.bye_status,
                "setup_ms": r.setup.map(|s| s.as_millis() as u64), "duration_s": r.duration.map(|d| d.as_secs_f64()),
                "codec": m.map(|m| codec_name(m.codec)), "rtp_sent": m.map_or(0, |m| m.packets_sent),
                "rtp_received": m.map_or(0, |m| m.packets_received), "rtp_lost": m.map_or(0, |m| m.packets_lost),
                "jitter_ms": m.map_or(0.0, |m| m.jitter_ms), "dtmf_received": m.map_or("", |m| m.dtmf_received.as_str()),
                "non_rtp_dropped": m.map_or(0, |m| m.non_rtp_dropped), "early_media": r.early_media, "detail": r.detail,
            });
            println!("{v}");
        }
        if let Some(path) = &cli.record {
            let path = if i == 0 { path.clone() } else { numbered(path, i + 1) };
            let written = switchboard::media::wav::write_wav(&r.recording)
                .map_err(|e| e.to_string())
                .and_then(|bytes| std::fs::write(&path, bytes).map_err(|e| e.to_string()));
            if let Err(e) = written {
                eprintln!("softphone: cannot write {}: {e}", path.display());
                ok = false;
            }
        }
    }
    if reports.is_empty() {
        eprintln!("softphone: no call was made or answered");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn codec_name(c: Codec) -> &'static str {
    match c {
        Codec::Pcmu => "PCMU",
        Codec::Pcma => "PCMA",
    }
}

/// OUT.wav -> OUT-2.wav.
fn numbered(path: &std::path::Path, n: usize) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    path.with_file_name(format!("{stem}-{n}{ext}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own checks of the parser, with the hidden per-command copies of global options.
    #[test]
    fn the_command_line_is_consistent() {
        command().debug_assert();
    }

    /// Values of a global option given before or after a command reach the same field, also for
    /// a command whose help hides it.
    #[test]
    fn global_options_parse_before_and_after_any_command() {
        use clap::FromArgMatches;
        let parse = |args: &[&str]| {
            let mut m = command().try_get_matches_from(args).expect("parses");
            Cli::from_arg_matches_mut(&mut m).expect("builds")
        };
        for args in [
            &["softphone", "--tone", "440", "--t1-ms", "20", "send", "f.sip", "--to", "127.0.0.1:5060"][..],
            &["softphone", "send", "f.sip", "--to", "127.0.0.1:5060", "--tone", "440", "--t1-ms", "20"][..],
            &["softphone", "dial", "sip:a@127.0.0.1", "--tone", "440", "--t1-ms", "20"][..],
        ] {
            let cli = parse(args);
            assert_eq!((cli.tone, cli.t1_ms), (Some(440.0), 20), "{args:?}");
        }
        assert_eq!(parse(&["softphone", "answer"]).t1_ms, 500);
    }
}
