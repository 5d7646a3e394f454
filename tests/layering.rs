//! The sans-IO layers must stay free of I/O and the OS clock: they take `now` and bytes as inputs
//! and return what to send. This test fails if any of their source files names tokio, a std UDP
//! socket, or reads the clock with `Instant::now` / `SystemTime::now`, and if a source file under
//! src/ is listed as neither sans-IO nor I/O.
//!
//! Still open (issue 13 point 3): `ua`, `relay`, `b2bua` and `service` take the application
//! contract (`Application`, `Io`, `FlowId`) from the I/O module `driver`.

use std::path::{Path, PathBuf};

/// Sans-IO modules: folders and single files under src/.
const SANS_IO: &[&str] = &[
    "message",
    "sdp",
    "transaction",
    "dialog",
    "endpoint",
    "endpoint.rs",
    "transport/mod.rs",
    "call",
    "media",
    "registrar",
    "auth",
    "proxy",
    "relay",
    "b2bua",
    "ua",
    "service",
    "collections.rs",
    "testing",
];
/// Modules that do I/O (sockets, files, the clock, the terminal): the thin shells around the rest.
const IO: &[&str] = &["driver.rs", "transport/udp.rs", "store", "cli.rs", "bin", "lib.rs"];
const FORBIDDEN: &[&str] = &["tokio", "std::net::UdpSocket", "UdpSocket", "Instant::now", "SystemTime::now"];

fn rust_files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            rust_files(&e.path(), out);
        }
    } else if p.extension().is_some_and(|x| x == "rs") {
        out.push(p.to_path_buf());
    }
}

#[test]
fn sans_io_modules_do_no_io_and_read_no_clock() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for m in SANS_IO {
        rust_files(&src.join(m), &mut files);
    }
    assert!(files.iter().any(|f| f.ends_with("message/mod.rs")), "the message layer is checked");
    let mut offences = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            // A `#[cfg(feature = "tokio")]` gate names the feature, not the crate.
            let code = line.split("//").next().unwrap_or("").replace("feature = \"tokio\"", "");
            for word in FORBIDDEN {
                if code.contains(word) {
                    offences.push(format!("{}:{}: {word}: {}", f.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(offences.is_empty(), "sans-IO modules touch I/O or the clock:\n{}", offences.join("\n"));
}

#[test]
fn every_source_file_is_sans_io_or_io() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let listed = |f: &PathBuf| SANS_IO.iter().chain(IO).any(|m| f.starts_with(src.join(m)));
    let unlisted: Vec<String> = files.iter().filter(|f| !listed(f)).map(|f| f.display().to_string()).collect();
    assert!(unlisted.is_empty(), "add these to SANS_IO or IO in tests/layering.rs:\n{}", unlisted.join("\n"));
    assert!(!SANS_IO.iter().any(|m| IO.contains(m)), "a module is both sans-IO and I/O");
}
