//! `switchboard`: the SIP service and its tools.
//!
//! Subcommands: `check` parses SIP message files and reports a verdict per file.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[path = "../cli/check.rs"]
mod check;
#[path = "../cli/serve.rs"]
mod serve;

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
    /// Answers INVITEs to the built-in user `echo` (sip:echo@HOST) with 200 and an SDP answer,
    /// OPTIONS with 200, BYE with 200, and other users with 404 until routing exists. Malformed
    /// requests get 400 naming the bad header (505, 501, 483, 420, 416 where the RFC says so).
    /// Ctrl-C sends BYE for live calls, then exits. Try it with sipp:
    /// `sipp -sn uac -s echo -r 10 -m 100 127.0.0.1:5060`.
    Serve(serve::ServeArgs),
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
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { files, json } => check::run(&files, json),
        Command::Serve(args) => serve::run(args),
    }
}
