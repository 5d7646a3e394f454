//! `switchboard calls --store URL`: the established calls saved in a shared store (issue 17),
//! whichever instance holds them. The saved state is the B2BUA's JSON (`call_states` in SQLite,
//! `sb:callstate:ID` in Redis); this reads the few fields a listing needs and ignores the rest.

use std::io::Write;
use std::process::ExitCode;

use serde_json::Value;

/// Lists the saved calls of the store at `url`, one line (or one JSON object) per call.
pub(crate) fn list(url: &str, json: bool) -> ExitCode {
    let states = crate::serve::open_store(Some(url), None).and_then(|s| s.call_states().map_err(|e| e.to_string()));
    let states = match states {
        Ok(s) => s,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(2);
        }
    };
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    // A write error (a closed pipe, as in `calls | head`) leaves nothing to report: ignored below.
    let mut out = std::io::stdout().lock();
    if !json {
        let _ = writeln!(out, "{:<20} {:<28} {:<28} {:>9} {:<10} owner", "id", "from", "to", "duration", "codec");
    }
    for s in &states {
        let v: Value = serde_json::from_str(&s.data).unwrap_or(Value::Null);
        let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
        let answered = v.get("answered_at").and_then(Value::as_u64);
        let duration = answered.map(|a| now_ms.saturating_sub(a) / 1000);
        if json {
            // The owner (member URI) and the epoch it took the call at (issue 17 point 2).
            let line = serde_json::json!({"id": s.id, "from": text("from"), "to": text("to"), "codec": text("codec"),
                "duration": duration, "owner": v.get("owner"), "epoch": v.get("epoch")});
            let _ = writeln!(out, "{line}");
        } else {
            let d = duration.map_or("-".into(), |d| format!("{d}s"));
            let _ = writeln!(out, "{:<20} {:<28} {:<28} {:>9} {:<10} {}", s.id, text("from"), text("to"), d, text("codec"), text("owner"));
        }
    }
    eprintln!("{} established calls in {}", states.len(), switchboard::store::redact_url(url));
    ExitCode::SUCCESS
}
