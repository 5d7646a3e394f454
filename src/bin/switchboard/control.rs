//! The service's control socket (a Unix stream socket, `switchboard.sock` in the data directory,
//! mode 0600): one command line in, one JSON line out.
//!
//! | command              | answer                                   | used by                 |
//! |----------------------|------------------------------------------|-------------------------|
//! | `calls`              | the live calls, a JSON array             | `switchboard calls`     |
//! | `realm`              | `{"realm": R}` (`null` with auth off)    | `users add` (its realm) |
//! | `user-put {json}`    | `{"ok": true}` or `{"error": E}`         | `users add`, `passwd`   |
//! | `user-remove NAME`   | `{"ok": true, "bindings": N}`            | `users remove`          |
//! | `workers`            | `{"workers": N, "handed_off": H, ...}`   | tests, operators        |
//!
//! Each command goes to the service loops through channels ([`switchboard::driver::Command`]) and
//! runs there between two inputs: a user change is in force as soon as the command returns. With
//! `--workers N`, `calls` gathers every worker's calls and `user-remove` ends the user's calls on
//! every worker; users and registrations are shared, so `realm` and `user-put` ask worker 0.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use switchboard::driver::{Command, Io};
use switchboard::service::app::Service;
use switchboard::store::UserRecord;
use switchboard::workers::WorkerStats;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

/// The sending sides, one per worker (worker 0 first), for the socket task.
pub(crate) type Commands = Vec<mpsc::Sender<Command<Service>>>;

/// The socket path for a data directory.
pub(crate) fn default_path(data: &Path) -> PathBuf {
    data.join("switchboard.sock")
}

/// A user record as the control socket carries it.
pub(crate) fn user_json(u: &UserRecord) -> Value {
    json!({"name": u.name, "realm": u.realm, "ha1_md5": u.ha1_md5, "ha1_sha256": u.ha1_sha256})
}

fn user_of(v: &Value) -> Option<UserRecord> {
    let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    Some(UserRecord { name: field("name")?, realm: field("realm")?, ha1_md5: field("ha1_md5")?, ha1_sha256: field("ha1_sha256")? })
}

/// Listens on `path` (a stale socket file is replaced), mode 0600, and hands each command to the
/// service loop through `commands`.
pub(crate) fn listen(path: &Path, commands: Commands, stats: Arc<WorkerStats>) -> Result<(), String> {
    let commands = Arc::new(commands);
    if path.exists() {
        let _ = std::fs::remove_file(path);
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    // Owner only: the socket changes users. In the data directory (0700) nobody else could reach it
    // even before this; a socket placed elsewhere with --control relies on this alone.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(switchboard::store::files::FILE_MODE))
        .map_err(|e| format!("cannot make {} private: {e}", path.display()))?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (commands, stats) = (commands.clone(), stats.clone());
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut line = String::new();
                let read = tokio::time::timeout(Duration::from_secs(5), BufReader::new(r).read_line(&mut line)).await;
                let answer = match read {
                    Ok(Ok(_)) => answer(line.trim(), &commands, &stats).await,
                    _ => json!({"error": "no command read"}).to_string(),
                };
                let _ = w.write_all(answer.as_bytes()).await;
                let _ = w.write_all(b"\n").await;
            });
        }
    });
    Ok(())
}

/// What a command computes on one worker's loop.
type Job = Box<dyn FnOnce(&mut Service, &mut Io<'_>, Instant) -> Value + Send>;

/// Runs `job` on worker `sender`'s loop and returns what it computed.
async fn on_worker(sender: &mpsc::Sender<Command<Service>>, job: Job) -> Result<Value, String> {
    let (tx, rx) = oneshot::channel::<Value>();
    let command: Command<Service> = Box::new(move |svc, io, now| {
        let _ = tx.send(job(svc, io, now));
    });
    if sender.send(command).await.is_err() {
        return Err("the service is stopping".into());
    }
    match tokio::time::timeout(Duration::from_secs(3), rx).await {
        Ok(Ok(v)) => Ok(v),
        _ => Err("the service did not answer in time".into()),
    }
}

/// Runs one command line on the service loops and returns its JSON answer.
async fn answer(line: &str, commands: &Commands, stats: &WorkerStats) -> String {
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    let Some(first) = commands.first() else { return json!({"error": "no worker"}).to_string() };
    let result = match word {
        "calls" => {
            let mut all = Vec::new();
            for c in commands.iter() {
                match on_worker(c, Box::new(|svc, _io, now| serde_json::to_value(svc.live_calls(now)).unwrap_or_else(|_| json!([])))).await
                {
                    Ok(Value::Array(calls)) => all.extend(calls),
                    Ok(_) => {}
                    Err(e) => return json!({ "error": e }).to_string(),
                }
            }
            Ok(Value::Array(all))
        }
        "realm" => on_worker(first, Box::new(|svc, _io, _now| json!({ "realm": svc.realm() }))).await,
        "user-put" => {
            let Some(user) = serde_json::from_str(rest).ok().as_ref().and_then(user_of) else {
                return json!({"error": "user-put takes {\"name\",\"realm\",\"ha1_md5\",\"ha1_sha256\"}"}).to_string();
            };
            on_worker(
                first,
                Box::new(move |svc, _io, _now| match svc.put_user(user) {
                    Ok(()) => json!({"ok": true}),
                    Err(e) => json!({ "error": e.to_string() }),
                }),
            )
            .await
        }
        "user-remove" if !rest.is_empty() => {
            // Worker 0 first: it removes the user and the bindings (shared); every worker then
            // ends the user's calls it holds.
            let mut bindings = 0;
            for c in commands.iter() {
                let name = rest.to_owned();
                match on_worker(c, Box::new(move |svc, io, now| json!(svc.remove_user(io, &name, now)))).await {
                    Ok(v) => bindings += v.as_u64().unwrap_or(0),
                    Err(e) => return json!({ "error": e }).to_string(),
                }
            }
            Ok(json!({"ok": true, "bindings": bindings}))
        }
        "workers" => Ok(json!({
            "workers": commands.len(),
            "handed_off": stats.handed_off.load(Ordering::Relaxed),
            "handoff_drops": stats.handoff_drops.load(Ordering::Relaxed),
            "handled": stats.handled.iter().map(|h| h.load(Ordering::Relaxed)).collect::<Vec<_>>(),
        })),
        _ => return json!({"error": "unknown command; try: calls, realm, user-put JSON, user-remove NAME, workers"}).to_string(),
    };
    match result {
        Ok(v) => v.to_string(),
        Err(e) => json!({ "error": e }).to_string(),
    }
}

/// Why [`ask`] got no answer.
#[derive(Debug)]
pub(crate) enum AskError {
    /// No service listens there (no socket file, or nobody accepting).
    NotRunning,
    /// Anything else.
    Io(std::io::Error),
}

/// Client side: sends one command line to the service at `path` and returns its JSON answer.
pub(crate) fn ask(path: &Path, line: &str) -> Result<Value, AskError> {
    use std::io::ErrorKind;
    let mut s = std::os::unix::net::UnixStream::connect(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => AskError::NotRunning,
        _ => AskError::Io(e),
    })?;
    let io = |e| AskError::Io(e);
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(io)?;
    s.write_all(line.as_bytes()).and_then(|()| s.write_all(b"\n")).map_err(io)?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(io)?;
    serde_json::from_str(out.trim()).map_err(|e| AskError::Io(std::io::Error::new(ErrorKind::InvalidData, e)))
}
