//! `switchboard check FILE...`: feed message files to the parser and print a verdict for each.

use bytes::Bytes;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use switchboard::message::{Message, ParseError};

/// The outcome for one file.
enum Verdict {
    Valid(Message),
    Invalid(Option<Message>, ParseError),
    Unreadable(std::io::Error),
}

fn judge(path: &Path) -> Verdict {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return Verdict::Unreadable(e),
    };
    let msg = match Message::parse(Bytes::from(bytes)) {
        Ok(m) => m,
        Err(e) => return Verdict::Invalid(None, e),
    };
    let checked = msg.validate().and_then(|()| if msg.is_request() { msg.check_required() } else { Ok(()) });
    match checked {
        Ok(()) => Verdict::Valid(msg),
        Err(e) => Verdict::Invalid(Some(msg), e),
    }
}

fn first_line(m: &Message) -> String {
    match (m.method(), m.status()) {
        (Some(method), _) => method.to_string(),
        (_, Some(code)) => code.to_string(),
        _ => String::new(),
    }
}

fn text_line(path: &Path, v: &Verdict) -> String {
    let p = path.display();
    match v {
        Verdict::Valid(m) => format!("{p}: valid {} Call-ID {}", first_line(m), m.call_id().unwrap_or("-")),
        Verdict::Invalid(Some(m), e) if !m.is_request() => {
            format!("{p}: invalid {} Call-ID {}: {e} (drop the response)", first_line(m), m.call_id().unwrap_or("-"))
        }
        Verdict::Invalid(Some(m), e) => {
            format!(
                "{p}: invalid {} Call-ID {}: {e} (answer {} {})",
                first_line(m),
                m.call_id().unwrap_or("-"),
                e.status_code(),
                e.reason_phrase()
            )
        }
        Verdict::Invalid(None, e) => format!("{p}: invalid: {e} (answer {} {})", e.status_code(), e.reason_phrase()),
        Verdict::Unreadable(e) => format!("{p}: unreadable: {e}"),
    }
}

fn json_line(path: &Path, v: &Verdict) -> String {
    let file = path.display().to_string();
    let describe = |m: &Message| {
        json!({
            "kind": if m.is_request() { "request" } else { "response" },
            "method": m.method().map(|x| x.to_string()),
            "status": m.status(),
            "call_id": m.call_id().ok(),
        })
    };
    let obj = match v {
        Verdict::Valid(m) => {
            let mut o = describe(m);
            o["file"] = json!(file);
            o["valid"] = json!(true);
            o
        }
        Verdict::Invalid(m, e) => {
            let mut o = m.as_ref().map(describe).unwrap_or_else(|| json!({}));
            o["file"] = json!(file);
            o["valid"] = json!(false);
            o["error"] = json!(e.to_string());
            o["error_kind"] = json!(format!("{:?}", e.kind()));
            o["header"] = json!(e.header().map(|h| h.as_str()));
            o["offset"] = json!(e.offset());
            o["answer"] = json!(format!("{} {}", e.status_code(), e.reason_phrase()));
            o
        }
        Verdict::Unreadable(e) => json!({"file": file, "valid": false, "error": e.to_string()}),
    };
    obj.to_string()
}

/// Runs the check over `files`; exit status 1 if any is invalid or unreadable.
pub(crate) fn run(files: &[PathBuf], json: bool) -> ExitCode {
    let mut bad = 0usize;
    for path in files {
        let v = judge(path);
        if !matches!(v, Verdict::Valid(_)) {
            bad += 1;
        }
        println!("{}", if json { json_line(path, &v) } else { text_line(path, &v) });
    }
    if bad > 0 {
        eprintln!("{bad} of {} files invalid", files.len());
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
