//! `switchboard cdr` (call records from the store) and `switchboard calls` (live calls from the
//! running service's control socket).

use crate::serve::{open_store, store_name};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use switchboard::store::CallRecord;

/// Options of `switchboard cdr`.
#[derive(Debug, clap::Args)]
pub(crate) struct CdrArgs {
    /// The data directory of the service (as `serve --data`).
    #[arg(long = "data", value_name = "DIR", env = "SWITCHBOARD_DATA")]
    data: Option<PathBuf>,
    /// The shared store of the service (as `serve --store redis://HOST:PORT/DB`).
    #[arg(long = "store", value_name = "URL", env = "SWITCHBOARD_STORE")]
    store: Option<String>,
    /// Only calls invited at or after T: unix seconds, `YYYY-MM-DD[THH:MM[:SS]]` (UTC), or an age
    /// such as `30s`, `15m`, `2h`, `7d`.
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// One JSON object per call instead of a table.
    #[arg(long)]
    json: bool,
}

/// Options of `switchboard calls`.
#[derive(Debug, clap::Args)]
pub(crate) struct CallsArgs {
    /// The data directory of the running service; its control socket is `switchboard.sock` there.
    #[arg(long = "data", value_name = "DIR", env = "SWITCHBOARD_DATA")]
    data: Option<PathBuf>,
    /// The control socket (as `serve --control`), instead of the one in the data directory.
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Instead of asking one running service: list the established calls saved in this shared
    /// store (`redis://HOST:PORT/DB`), whichever instance holds them.
    #[arg(long = "store", value_name = "URL", conflicts_with = "control")]
    store: Option<String>,
    /// One JSON object per call instead of a table.
    #[arg(long)]
    json: bool,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `--since`: unix seconds, a UTC date and time, or an age; returns unix seconds.
pub(crate) fn parse_since(t: &str, now: u64) -> Result<u64, String> {
    let bad = || format!("--since {t:?}: expected unix seconds, YYYY-MM-DD[THH:MM[:SS]] or an age like 15m");
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(secs);
    }
    if let Some(unit) = t.chars().last().filter(|c| "smhd".contains(*c)) {
        if let Ok(n) = t[..t.len() - 1].parse::<u64>() {
            let mult = match unit {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                _ => 86_400,
            };
            return Ok(now.saturating_sub(n.saturating_mul(mult)));
        }
    }
    let (date, time) = t.split_once(['T', ' ']).unwrap_or((t, "00:00:00"));
    let num = |s: Option<&str>| s.and_then(|s| s.parse::<i64>().ok()).ok_or_else(bad);
    let mut d = date.splitn(3, '-');
    let (y, m, day) = (num(d.next())?, num(d.next())?, num(d.next())?);
    let (m, day) = (u32::try_from(m).map_err(|_| bad())?, u32::try_from(day).map_err(|_| bad())?);
    let time = time.trim_end_matches('Z');
    let mut h = time.splitn(3, ':');
    let (hh, mm) = (num(h.next())?, num(h.next())?);
    let ss = h.next().map_or(Ok(0), |s| num(Some(s)))?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || !(0..24).contains(&hh) || !(0..60).contains(&mm) || !(0..61).contains(&ss) {
        return Err(bad());
    }
    // Counted from the 1st of the month, as before jiff: a day past the month's end (2026-02-30)
    // runs on into the next month, and second 60 into the next minute.
    let year = i16::try_from(y).map_err(|_| bad())?;
    let first = jiff::civil::Date::new(year, m as i8, 1).map_err(|_| bad())?;
    let first = jiff::tz::TimeZone::UTC.to_timestamp(first.to_datetime(jiff::civil::Time::midnight())).map_err(|_| bad())?;
    u64::try_from(first.as_second() + (i64::from(day) - 1) * 86_400 + hh * 3600 + mm * 60 + ss).map_err(|_| bad())
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of unix milliseconds (unix seconds with an `@` past the year 9999).
fn utc(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    jiff::Timestamp::from_second(secs)
        .ok()
        .and_then(|t| jiff::fmt::strtime::format("%Y-%m-%d %H:%M:%S", t).ok())
        .unwrap_or_else(|| format!("@{secs}"))
}

fn jitter(v: f64) -> serde_json::Value {
    if v.is_finite() {
        serde_json::json!((v * 100.0).round() / 100.0)
    } else {
        serde_json::Value::Null
    }
}

fn record_json(c: &CallRecord) -> serde_json::Value {
    let duration = c.answered_at.zip(c.ended_at).map(|(a, e)| e.saturating_sub(a) as f64 / 1000.0);
    serde_json::json!({
        "id": c.id, "caller_call_id": c.caller_call_id, "callee_call_id": c.callee_call_id,
        "from": c.from, "to": c.to, "invited_at": c.invited_at, "answered_at": c.answered_at, "ended_at": c.ended_at,
        "duration_s": duration, "end_reason": c.end_reason, "ended_by": c.ended_by, "codec": c.codec,
        "caller": {"packets": c.caller_packets, "lost": c.caller_lost, "jitter_ms": jitter(c.caller_jitter_ms)},
        "callee": {"packets": c.callee_packets, "lost": c.callee_lost, "jitter_ms": jitter(c.callee_jitter_ms)},
    })
}

pub(crate) fn run_cdr(args: CdrArgs) -> ExitCode {
    let since = match args.since.as_deref().map(|t| parse_since(t, now_secs())).transpose() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(2);
        }
    };
    let data = args.data.unwrap_or_else(switchboard::store::default_data_dir);
    let calls = open_store(args.store.as_deref(), Some(&data))
        .and_then(|s| s.calls(since.map(|s| s.saturating_mul(1000))).map_err(|e| e.to_string()));
    let calls = match calls {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(2);
        }
    };
    // A write error (a closed pipe, as in `cdr | head`) leaves nothing to report: ignored below.
    let mut out = std::io::stdout().lock();
    if !args.json {
        let _ = writeln!(
            out,
            "{:<20} {:<19} {:<28} {:<28} {:>8} {:<18} {:<7} {:<10} {:>20} {:>20}",
            "id", "invited (UTC)", "from", "to", "duration", "end", "by", "codec", "caller pkts/lost/jit", "callee pkts/lost/jit"
        );
    }
    for c in &calls {
        if args.json {
            let _ = writeln!(out, "{}", record_json(c));
            continue;
        }
        let duration = c.answered_at.zip(c.ended_at).map_or("-".into(), |(a, e)| format!("{:.1}s", e.saturating_sub(a) as f64 / 1000.0));
        let leg = |p: u64, l: i64, j: f64| format!("{p}/{l}/{}", if j.is_finite() { format!("{j:.1}") } else { "-".into() });
        let _ = writeln!(
            out,
            "{:<20} {:<19} {:<28} {:<28} {:>8} {:<18} {:<7} {:<10} {:>20} {:>20}",
            c.id,
            utc(c.invited_at),
            c.from,
            c.to,
            duration,
            c.end_reason.as_deref().unwrap_or("in progress"),
            c.ended_by.as_deref().unwrap_or("-"),
            c.codec.as_deref().unwrap_or("-"),
            leg(c.caller_packets, c.caller_lost, c.caller_jitter_ms),
            leg(c.callee_packets, c.callee_lost, c.callee_jitter_ms),
        );
    }
    eprintln!("{} call records in {}", calls.len(), store_name(args.store.as_deref(), &data));
    ExitCode::SUCCESS
}

pub(crate) fn run_calls(args: CallsArgs) -> ExitCode {
    if let Some(url) = &args.store {
        return crate::shared_calls::list(url, args.json);
    }
    let path =
        args.control.unwrap_or_else(|| crate::control::default_path(&args.data.unwrap_or_else(switchboard::store::default_data_dir)));
    let answer = (|| -> std::io::Result<String> {
        let mut s = std::os::unix::net::UnixStream::connect(&path)?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        s.write_all(b"calls\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })();
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "switchboard: cannot reach the service at {}: {e} (is `switchboard serve` running with this data directory?)",
                path.display()
            );
            return ExitCode::from(2);
        }
    };
    let calls: Vec<serde_json::Value> = match serde_json::from_str(answer.trim()) {
        Ok(serde_json::Value::Array(a)) => a,
        _ => {
            eprintln!("switchboard: the service answered: {}", answer.trim());
            return ExitCode::FAILURE;
        }
    };
    // A write error (a closed pipe, as in `cdr | head`) leaves nothing to report: ignored below.
    let mut out = std::io::stdout().lock();
    if !args.json {
        let _ = writeln!(
            out,
            "{:<20} {:<28} {:<28} {:<7} {:>9} {:<10} {:>24} {:>24}",
            "id", "from", "to", "phase", "duration", "codec", "caller pkts/lost/jitter", "callee pkts/lost/jitter"
        );
    }
    for c in &calls {
        if args.json {
            let _ = writeln!(out, "{c}");
            continue;
        }
        let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_owned();
        let leg = |l: &serde_json::Value| format!("{}/{}/{:.1}", l["packets"], l["lost"], l["jitter_ms"].as_f64().unwrap_or(0.0));
        let dur = c["duration_secs"].as_f64().map_or("-".into(), |d| format!("{d:.1}s"));
        let _ = writeln!(
            out,
            "{:<20} {:<28} {:<28} {:<7} {:>9} {:<10} {:>24} {:>24}",
            s(&c["id"]),
            s(&c["from"]),
            s(&c["to"]),
            s(&c["phase"]),
            dur,
            s(&c["codec"]),
            leg(&c["caller"]),
            leg(&c["callee"])
        );
    }
    eprintln!("{} calls in progress", calls.len());
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        assert_eq!(parse_since("1700000000", 0), Ok(1_700_000_000));
        assert_eq!(parse_since("15m", 10_000), Ok(10_000 - 900));
        assert_eq!(parse_since("2026-11-23", 0), Ok(1_795_392_000));
        assert_eq!(parse_since("2026-11-23T10:30", 0), Ok(1_795_392_000 + 37_800));
        assert!(parse_since("yesterday", 0).is_err());
        assert!(parse_since("2026-13-01", 0).is_err());
        assert_eq!(utc(1_795_392_000_000 + 37_800_000), "2026-11-23 10:30:00");
        // Leap days, and the tolerance kept from the hand-written calendar: days and seconds past the
        // end of their month or minute run on.
        assert_eq!(parse_since("2000-02-29", 0), Ok(951_782_400));
        assert_eq!(parse_since("2026-02-30", 0), parse_since("2026-03-02", 0));
        assert_eq!(parse_since("2026-11-23T10:29:60", 0), Ok(1_795_392_000 + 37_800));
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc(0), "1970-01-01 00:00:00");
    }
}
