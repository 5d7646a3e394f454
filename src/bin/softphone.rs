//! `softphone`: a CLI SIP phone. `softphone dial URI --duration SECS` places a call, hangs up after
//! SECS and prints what happened.

use clap::{Parser, Subcommand};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use switchboard::endpoint::{Endpoint, EndpointConfig};
use switchboard::message::Uri;
use switchboard::transport::udp::UdpTransport;
use switchboard::ua::dialer::{Dialer, Outcome};

#[path = "../cli/send.rs"]
mod send;

/// softphone: a command-line SIP phone over UDP.
///
/// Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) to control them.
#[derive(Debug, Parser)]
#[command(name = "softphone", version, about, long_about = None)]
struct Cli {
    /// Local UDP address to bind (port 0 picks a free one).
    #[arg(long, global = true, default_value = "127.0.0.1:0", value_name = "ADDR")]
    bind: SocketAddr,
    /// User name for From and Contact.
    #[arg(long, global = true, default_value = "softphone", value_name = "NAME")]
    user: String,
    /// Print a JSON summary of each call at exit.
    #[arg(long, global = true, value_name = "FORMAT", value_parser = ["json"])]
    summary: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Call URI (e.g. sip:echo@127.0.0.1:5060), hang up after --duration seconds.
    ///
    /// Exit status 0 when the call was answered and ended cleanly, 1 otherwise. Ctrl-C cancels a
    /// ringing call or hangs up an answered one.
    Dial {
        /// Who to call: sip:user@host[:port].
        uri: String,
        /// Seconds to stay in the call once answered.
        #[arg(long, default_value_t = 5.0, value_name = "SECS")]
        duration: f64,
    },
    /// Send a raw SIP message file over UDP, byte for byte, and print every reply.
    ///
    /// Replies are printed until none arrives for --wait seconds. Exit status 0 when at least one
    /// reply came. Example: softphone send fixtures/sip/options.sip --to 127.0.0.1:5060
    Send {
        /// The message file (wire bytes, e.g. fixtures/sip/options.sip).
        file: std::path::PathBuf,
        /// Where to send it: HOST:PORT.
        #[arg(long, value_name = "HOST:PORT")]
        to: String,
        /// Seconds to wait for further replies after the last one.
        #[arg(long, default_value_t = 2.0, value_name = "SECS")]
        wait: f64,
    },
}

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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let (uri, duration) = match &cli.command {
        Command::Dial { uri, duration } => (uri, duration),
        Command::Send { file, to, wait } => {
            if !wait.is_finite() || *wait <= 0.0 || *wait > 3600.0 {
                eprintln!("softphone: --wait must be between 0 and 3600 seconds");
                return ExitCode::from(2);
            }
            return send::run(file, to, cli.bind, Duration::from_secs_f64(*wait));
        }
    };
    if !duration.is_finite() || *duration < 0.0 || *duration > 86_400.0 {
        eprintln!("softphone: --duration must be between 0 and 86400 seconds");
        return ExitCode::from(2);
    }
    let target = match target_of(uri) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("softphone: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("softphone: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(dial(&cli, uri, target, Duration::from_secs_f64(*duration)))
}

async fn dial(cli: &Cli, uri: &str, target: SocketAddr, duration: Duration) -> ExitCode {
    let transport = match UdpTransport::bind(cli.bind).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("softphone: cannot bind {}: {e}", cli.bind);
            return ExitCode::FAILURE;
        }
    };
    let local = transport.local_addr();
    let mut endpoint = Endpoint::new(EndpointConfig::default());
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    let mut dialer = Dialer::new(uri, &cli.user, local, target, duration, seed);
    let shutdown = switchboard::driver::interrupted();
    eprintln!("softphone: calling {uri} from {local}");
    dialer.start(&mut endpoint, Instant::now());
    let dialer = switchboard::driver::run(transport, endpoint, dialer, shutdown).await;
    report(&dialer, cli.summary.is_some())
}

fn report(d: &Dialer, json: bool) -> ExitCode {
    let (state, reason, ok) = match &d.outcome {
        Outcome::Completed { ended_by } => ("completed", format!("bye-{ended_by}"), true),
        Outcome::Rejected(code) => ("rejected", code.to_string(), false),
        Outcome::Ended(why) => ("failed", format!("{why:?}"), false),
        Outcome::Timeout => ("failed", "timeout".into(), false),
        Outcome::Cancelled => ("cancelled", "cancel".into(), false),
        Outcome::Pending => ("failed", "unfinished".into(), false),
    };
    let setup_ms = d.setup_time.map(|t| t.as_millis() as u64);
    let talk = d.talk_time().map(|t| t.as_secs_f64());
    println!(
        "call {}: {state} ({reason}); responses {:?}; setup {}; duration {}",
        d.call_id,
        d.responses,
        setup_ms.map_or("-".into(), |m| format!("{m} ms")),
        talk.map_or("-".into(), |s| format!("{s:.1} s"))
    );
    if json {
        let v = serde_json::json!({
            "call_id": d.call_id, "state": state, "reason": reason, "responses": d.responses,
            "setup_ms": setup_ms, "duration_s": talk,
        });
        println!("{v}");
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
