//! Shared test helpers: fixture loading.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The project root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Reads a fixture in wire form. The RFC 5118 files are kept as the RFC archive has them (bare LF,
/// some without the empty line after the headers, some with a wrong Content-Length); this turns them
/// into what a peer would send: CRLF line ends, the empty line, and Content-Length recounted.
pub fn wire_fixture(rel: &str) -> Vec<u8> {
    let path = root().join("fixtures/torture").join(rel);
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if rel.starts_with("rfc5118/") {
        to_wire(&raw)
    } else {
        raw
    }
}

/// LF to CRLF, add a missing empty line, recount Content-Length.
pub fn to_wire(raw: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(raw.len() + 64);
    for &b in raw {
        if b == b'\n' {
            t.extend_from_slice(b"\r\n");
        } else {
            t.push(b);
        }
    }
    let split = find(&t, b"\r\n\r\n").unwrap_or_else(|| {
        t.extend_from_slice(b"\r\n");
        t.len() - 4
    });
    let (head, body) = (t[..split].to_vec(), t[split + 4..].to_vec());
    let head = String::from_utf8(head).expect("RFC 5118 headers are text");
    let mut out = String::new();
    for (i, line) in head.split("\r\n").enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        let lower = line.to_ascii_lowercase();
        let is_cl = lower.starts_with("content-length") || lower.starts_with("l:") || lower.starts_with("l ");
        if is_cl && line.contains(':') {
            let name = line.split(':').next().unwrap_or("Content-Length").trim_end();
            out.push_str(&format!("{name}: {}", body.len()));
        } else {
            out.push_str(line);
        }
    }
    let mut v = out.into_bytes();
    v.extend_from_slice(b"\r\n\r\n");
    v.extend_from_slice(&body);
    v
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Rows of fixtures/torture/MANIFEST.tsv: (file, section, kind, expected).
pub fn manifest() -> Vec<(String, String, String, String)> {
    let text = std::fs::read_to_string(root().join("fixtures/torture/MANIFEST.tsv")).expect("MANIFEST.tsv");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut c = l.splitn(4, '\t').map(str::to_owned);
            let mut next = || c.next().unwrap_or_default();
            (next(), next(), next(), next())
        })
        .collect()
}

/// Every file under `dir` with extension `ext`, sorted.
pub fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_with_ext(&p, ext));
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
    out.sort();
    out
}
