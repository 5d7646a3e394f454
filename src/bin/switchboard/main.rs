//! `switchboard`: the SIP service and its tools.
//!
//! Subcommands: `serve` runs the service, `users` manages its users, `registrations` lists what
//! its store holds, `cdr` lists call records, `calls` shows live calls, `check` parses SIP message
//! files and reports a verdict per file.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

mod cdr;
mod check;
mod control;
mod dispatch;
mod members;
mod serve;
mod shared_calls;
mod shared_store;
mod users;
mod workers;

/// switchboard: a SIP session initiation service over UDP.
///
/// Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) to control them.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the SIP service on UDP.
    ///
    /// A registrar with digest authentication (REGISTER gets 401, INVITE 407); calls between users
    /// go to every registered contact of the called user (480 when none, 404 for unknown users),
    /// through a B2BUA that relays their RTP and writes call records (`--mode b2bua`, the default)
    /// or a stateful proxy (`--mode proxy`); the built-in user `echo` (sip:echo@HOST, no
    /// authentication) answers and sends your RTP back. Registrations, users and established
    /// calls live in the data directory and survive a restart, even `kill -9`. Malformed requests
    /// get 400 naming the bad header (505, 501, 483, 420, 416 where the RFC says so). Ctrl-C sends
    /// BYE for the echo user's calls and exits; B2BUA calls are kept for the next start. Try it:
    /// `sipp -sn uac -s echo -r 10 -m 100 127.0.0.1:5060`.
    // Boxed: its many flags make it far larger than the other variants (clippy large_enum_variant).
    Serve(Box<serve::ServeArgs>),
    /// Run the dispatcher: a stateless, Call-ID-sticky SIP load balancer in front of several
    /// `serve` instances.
    ///
    /// Each new call goes to one live backend by rendezvous hashing of its Call-ID (a dead
    /// backend's calls move, nobody else's), bounded so that no backend holds more than
    /// (1 + ε) × the mean of live calls; it record-routes itself with the chosen backend, so
    /// in-dialog requests return to it; REGISTER gets Path, so a phone stays reachable from any
    /// instance. Backends are probed with OPTIONS; the live set is published with a rising epoch
    /// in Redis (`--store`, key and channel sb:members). A Route naming the dispatcher without a
    /// cluster token gets 403. Start the instances with `--dispatcher ADDR` so that their
    /// per-source limits see the phones' addresses.
    Dispatch(dispatch::DispatchArgs),
    /// Manage the users of digest authentication (stored as HA1 hashes, never plaintext); a
    /// running service takes each change at once, through its control socket.
    Users(users::UsersArgs),
    /// List the registrations kept in the data directory, with their remaining expiry.
    Registrations(users::RegistrationsArgs),
    /// List call records (B2BUA mode): both Call-IDs, from, to, times, duration, why and by whom
    /// the call ended, codec, and per-leg RTP packets, loss and jitter.
    Cdr(cdr::CdrArgs),
    /// Show the calls in progress in the running service, with duration and live media figures
    /// (asks the service over its control socket, `switchboard.sock` in the data directory).
    Calls(cdr::CallsArgs),
    /// Parse SIP message files and print a verdict per file.
    ///
    /// Each file holds one message as sent on the wire. A file is valid when it parses, every header
    /// this stack knows matches its grammar, and a request carries To, From, Call-ID, CSeq and Via.
    /// Exits 1 if any file is invalid or unreadable.
    Check {
        /// Files to check (e.g. fixtures/sip/*.sip).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Print one JSON object per file instead of a text line.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    switchboard::cli::init_tracing();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { files, json } => check::run(&files, json),
        Command::Serve(args) => serve::run(*args),
        Command::Dispatch(args) => dispatch::run(args),
        Command::Users(args) => users::run(args),
        Command::Registrations(args) => users::list_registrations(args),
        Command::Cdr(args) => cdr::run_cdr(args),
        Command::Calls(args) => cdr::run_calls(args),
    }
}
