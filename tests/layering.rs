//! The sans-IO layers must stay free of I/O and the OS clock: they take `now` and bytes as inputs
//! and return what to send. This test fails if any of their source files names tokio, a std UDP
//! socket, files, processes or threads, or reads the clock with `Instant::now` / `SystemTime::now`,
//! and if a source file under src/ is listed as neither sans-IO nor I/O. Unit tests are left out of the clock rule (a test
//! takes its start instant from the clock and passes it in like any caller): the `#[cfg(test)]`
//! module at the bottom of a file, and files that are themselves `#[cfg(test)] mod name;`.
//!
//! Also no sans-IO file imports an I/O module (`driver`, `store`, `cli`, `transport::udp`): the
//! application contract they build on is `application`, the rows the service writes are
//! `records`, and the binaries and the driver wire the I/O in.

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
    "transport/rate_limit.rs",
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
    "decimal.rs",
    "cluster",
    "dispatch",
    "application",
    "records.rs",
    "testing",
];
/// Modules that do I/O (sockets, files, the clock, the terminal): the thin shells around the rest.
const IO: &[&str] = &[
    "driver.rs",
    "workers.rs",
    "transport/udp.rs",
    "transport/udp_sync.rs",
    "transport/mmsg.rs",
    "transport/media_readers.rs",
    "transport/media_readers_portable.rs",
    "store",
    "cli.rs",
    "bin",
    "lib.rs",
];
const FORBIDDEN: &[&str] = &[
    "tokio",
    "std::net::UdpSocket",
    "UdpSocket",
    "Instant::now",
    "SystemTime::now",
    "std::fs",
    "std::process",
    "std::thread",
    "crate::driver",
    "crate::store",
    "crate::cli",
    "crate::transport::udp",
    "crate::transport::mmsg",
    "super::udp",
    "super::mmsg",
];
/// The I/O modules by name, for a grouped `use crate::{..}` that names one of them.
const IO_MODULES: &[&str] = &["driver", "store", "cli"];

/// The I/O module a `use crate::{a, b::c, ..}` line names, if any.
fn grouped_io_import(code: &str) -> Option<&'static str> {
    let group = code.split("crate::{").nth(1)?;
    let items: Vec<&str> = group.split(['{', ',']).map(str::trim).collect();
    IO_MODULES.iter().copied().find(|m| items.iter().any(|i| i.trim_end_matches(['}', ';']) == *m || i.starts_with(&format!("{m}::"))))
}

fn rust_files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            rust_files(&e.path(), out);
        }
    } else if p.extension().is_some_and(|x| x == "rs") {
        out.push(p.to_path_buf());
    }
}

/// True at a `#[cfg(test)]` line that opens a test module (`mod tests {` or `mod name;`).
fn is_test_module(line: &str, next: Option<&&str>) -> bool {
    line.trim() == "#[cfg(test)]" && next.is_some_and(|n| n.trim_start().starts_with("mod "))
}

/// The files of the modules that `file` declares as `#[cfg(test)] mod name;`.
fn test_modules(file: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    // `a/mod.rs` declares `a/name.rs`; `a/b.rs` declares `a/b/name.rs`.
    let dir = match file.file_stem().and_then(|s| s.to_str()) {
        Some("mod" | "lib") => file.parent().map(Path::to_path_buf),
        _ => file.parent().zip(file.file_stem()).map(|(p, s)| p.join(s)),
    };
    let Some(dir) = dir else { return Vec::new() };
    (0..lines.len())
        .filter(|&n| is_test_module(lines[n], lines.get(n + 1)))
        .filter_map(|n| lines[n + 1].trim().strip_prefix("mod ")?.strip_suffix(';').map(|name| dir.join(format!("{name}.rs"))))
        .collect()
}

#[test]
fn sans_io_modules_do_no_io_and_read_no_clock() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for m in SANS_IO {
        rust_files(&src.join(m), &mut files);
    }
    assert!(files.iter().any(|f| f.ends_with("message/mod.rs")), "the message layer is checked");
    let tests: Vec<PathBuf> = files.iter().flat_map(|f| test_modules(f)).collect();
    let mut offences = Vec::new();
    for f in files.iter().filter(|f| !tests.contains(f)) {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            if is_test_module(line, lines.get(n + 1)) {
                break; // the unit tests at the bottom of the file
            }
            // A `#[cfg(feature = "tokio")]` gate names the feature, not the crate.
            let code = line.split("//").next().unwrap_or("").replace("feature = \"tokio\"", "");
            for word in FORBIDDEN.iter().copied().chain(grouped_io_import(&code)) {
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

#[test]
fn grouped_imports_of_an_io_module_are_seen() {
    assert_eq!(grouped_io_import("use crate::{driver::Io, dialog};"), Some("driver"));
    assert_eq!(grouped_io_import("use crate::{dialog::Dialogs, store};"), Some("store"));
    assert_eq!(grouped_io_import("use crate::{call::{self, Source}, cli::x};"), Some("cli"));
    assert_eq!(grouped_io_import("use crate::{client, stores::x, records::StoreOp};"), None);
    assert_eq!(grouped_io_import("use crate::dialog::Dialogs;"), None);
}
