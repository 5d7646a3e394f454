//! The service's control socket (a Unix stream socket, `switchboard.sock` in the data directory,
//! mode 0600): one command line in, one JSON line out.
//!
//! | command              | answer                                   | used by                 |
//! |----------------------|------------------------------------------|-------------------------|
//! | `calls`              | the live calls, a JSON array             | `switchboard calls`     |
//! | `realm`              | `{"realm": R}` (`null` with auth off)    | `users add` (its realm) |
//! | `user-put {json}`    | `{"ok": true}` or `{"error": E}`         | `users add`, `passwd`   |
//! | `user-remove NAME`   | `{"ok": true, "bindings": N}`            | `users remove`          |
//!
//! Each command goes to the service loop through a channel ([`switchboard::driver::Command`]) and
//! runs there between two inputs: a user change is in force as soon as the command returns.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use switchboard::driver::Command;
use switchboard::service::app::Service;
use switchboard::store::UserRecord;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

/// The sending side, for the socket task.
pub(crate) type Commands = mpsc::Sender<Command<Service>>;

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
pub(crate) fn listen(path: &Path, commands: Commands) -> Result<(), String> {
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
            let commands = commands.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut line = String::new();
                let read = tokio::time::timeout(Duration::from_secs(5), BufReader::new(r).read_line(&mut line)).await;
                let answer = match read {
                    Ok(Ok(_)) => answer(line.trim(), &commands).await,
                    _ => json!({"error": "no command read"}).to_string(),
                };
                let _ = w.write_all(answer.as_bytes()).await;
                let _ = w.write_all(b"\n").await;
            });
        }
    });
    Ok(())
}

/// Runs one command line on the service loop and returns its JSON answer.
async fn answer(line: &str, commands: &Commands) -> String {
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    let (tx, rx) = oneshot::channel::<Value>();
    let command: Command<Service> = match word {
        "calls" => Box::new(move |svc, _io, now| {
            let _ = tx.send(serde_json::to_value(svc.live_calls(now)).unwrap_or_else(|_| json!([])));
        }),
        "realm" => Box::new(move |svc, _io, _now| {
            let _ = tx.send(json!({ "realm": svc.realm() }));
        }),
        "user-put" => {
            let Some(user) = serde_json::from_str(rest).ok().as_ref().and_then(user_of) else {
                return json!({"error": "user-put takes {\"name\",\"realm\",\"ha1_md5\",\"ha1_sha256\"}"}).to_string();
            };
            Box::new(move |svc, _io, _now| {
                let _ = tx.send(match svc.put_user(user) {
                    Ok(()) => json!({"ok": true}),
                    Err(e) => json!({ "error": e.to_string() }),
                });
            })
        }
        "user-remove" if !rest.is_empty() => {
            let name = rest.to_owned();
            Box::new(move |svc, io, now| {
                let _ = tx.send(json!({"ok": true, "bindings": svc.remove_user(io, &name, now)}));
            })
        }
        _ => return json!({"error": "unknown command; try: calls, realm, user-put JSON, user-remove NAME"}).to_string(),
    };
    if commands.send(command).await.is_err() {
        return json!({"error": "the service is stopping"}).to_string();
    }
    match tokio::time::timeout(Duration::from_secs(3), rx).await {
        Ok(Ok(v)) => v.to_string(),
        _ => json!({"error": "the service did not answer in time"}).to_string(),
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
