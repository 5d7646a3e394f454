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

/// softphone: a command-line SIP phone over UDP (G.711, DTMF, WAV and tones).
///
/// Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) to control them. Without a command it
/// opens an interactive prompt (dial, answer, hangup, hold, resume, dtmf, move, status, quit).
#[derive(Debug, Parser)]
#[command(name = "softphone", version, about, long_about = None)]
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
    })
}

fn main() -> ExitCode {
    switchboard::cli::init_tracing();
    let cli = Cli::parse();
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
    let transport = UdpTransport::bind(cli.bind).await.map_err(|e| format!("cannot bind {}: {e}", cli.bind))?;
    let local = transport.local_addr();
    let endpoint = Endpoint::new(EndpointConfig::default());
    let shutdown = switchboard::driver::interrupted();
    let phone = match &cli.command {
        Some(Command::Dial { uri, duration, move_after, move_to }) => {
            // Registered phones send their calls through the registrar (outbound proxy).
            let target = match &cli.register {
                Some(r) => target_of(r)?,
                None => target_of(uri)?,
            };
            let mut config = phone_config(cli, local, Some(seconds("--duration", *duration)?), None, Some(1))?;
            config.move_after = move_plan(*move_after, move_to.as_deref(), local)?;
            let mut phone = message::Printing::new(Phone::new(config, Some(target)), cli.summary.is_some());
            eprintln!("softphone: calling {uri} from {local}");
            phone.dial(uri, target);
            switchboard::driver::run(transport, endpoint, phone, shutdown).await
        }
        Some(Command::Answer { calls, after, duration, move_after, move_to }) => {
            let duration = duration.map(|d| seconds("--duration", d)).transpose()?;
            let mut config = phone_config(cli, local, duration, Some(seconds("--after", *after)?), *calls)?;
            config.move_after = move_plan(*move_after, move_to.as_deref(), local)?;
            let phone = message::Printing::new(Phone::new(config, None), cli.summary.is_some());
            // Scripts read the address from this line.
            println!("softphone listening on udp {local}; call sip:{}@{local}", cli.user);
            switchboard::driver::run(transport, endpoint, phone, shutdown).await
        }
        Some(Command::Message { uri, text }) => {
            let dest = match &cli.register {
                Some(r) => target_of(r)?,
                None => target_of(uri)?,
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
            let phone = Phone::new(phone_config(cli, local, None, None, None)?, None);
            // The prompt prints messages itself, between its other lines.
            message::Printing::quiet(prompt::run(transport, endpoint, phone, local, &cli.user).await)
        }
    };
    Ok(report(cli, &phone.reports))
}

/// Prints one line (and a JSON object with --summary json) per call and writes the recordings.
fn report(cli: &Cli, reports: &[CallReport]) -> ExitCode {
    let mut ok = !reports.is_empty();
    for (i, r) in reports.iter().enumerate() {
        ok &= r.state == EndState::Completed;
        let m = r.media.as_ref();
        println!(
            "call {}: {} ({}); responses {:?}; setup {}; duration {}; codec {}; rtp sent {} received {} lost {}; jitter {:.1} ms; dtmf {:?}",
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
        );
        if cli.summary.is_some() {
            let v = serde_json::json!({
                "call_id": r.call_id, "state": r.state.as_str(), "reason": r.reason, "responses": r.responses, "bye_status": r.bye_status,
                "setup_ms": r.setup.map(|s| s.as_millis() as u64), "duration_s": r.duration.map(|d| d.as_secs_f64()),
                "codec": m.map(|m| codec_name(m.codec)), "rtp_sent": m.map_or(0, |m| m.packets_sent),
                "rtp_received": m.map_or(0, |m| m.packets_received), "rtp_lost": m.map_or(0, |m| m.packets_lost),
                "jitter_ms": m.map_or(0.0, |m| m.jitter_ms), "dtmf_received": m.map_or("", |m| m.dtmf_received.as_str()),
                "non_rtp_dropped": m.map_or(0, |m| m.non_rtp_dropped),
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
