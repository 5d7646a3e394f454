//! The media core (`src/media/**`) is sans-IO: no tokio, no sockets, no clock reads; every time
//! input is a `now: Instant` parameter. Its non-test code also has no `unwrap`/`expect`/`panic!`,
//! since much of it handles bytes from the network. Comments are ignored; so is everything from a
//! file's `#[cfg(test)]` on (unit tests may unwrap; they still may not read the clock).

use std::path::{Path, PathBuf};

const FORBIDDEN: &[&str] = &["tokio", "UdpSocket", "std::net", "Instant::now", "SystemTime::now", "std::thread"];
const NO_PANIC: &[&str] = &[".unwrap()", ".expect(", "panic!(", "unreachable!(", "todo!(", "unimplemented!("];

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
fn media_core_does_no_io_reads_no_clock_and_does_not_panic() {
    let mut files = Vec::new();
    rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/media"), &mut files);
    assert!(files.len() >= 10, "src/media files found: {files:?}");
    let mut offences = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let mut in_tests = false;
        for (n, line) in text.lines().enumerate() {
            in_tests |= line.trim_start().starts_with("#[cfg(test)]");
            let code = line.split("//").next().unwrap_or("");
            let words = FORBIDDEN.iter().chain(if in_tests { &[][..] } else { NO_PANIC });
            for word in words {
                if code.contains(word) {
                    offences.push(format!("{}:{}: {word}: {}", f.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(offences.is_empty(), "the media core breaks its layering rules:\n{}", offences.join("\n"));
}
