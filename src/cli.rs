//! What the two binaries (`switchboard`, `softphone`) share; their commands live under
//! `src/bin/<name>/`.

/// Sends `tracing` logs to stderr, filtered by `RUST_LOG` (default `info`), in colour only when
/// stderr is a terminal. Call once, first thing in `main`.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Reads and parses the TOML config file at `path` (`serve --config`, `users --config`); the error
/// names the file and the problem in one line. The parsing is the service's
/// ([`crate::service::config::parse`]); the reading is I/O, so it is here.
pub fn load_config(path: &std::path::Path) -> Result<crate::service::config::FileConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
    crate::service::config::parse(&text, path)
}
