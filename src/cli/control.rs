//! The service's control socket (a Unix stream socket, `switchboard.sock` in the data directory):
//! `switchboard calls` connects, writes `calls`, and reads the live calls as one JSON array.
//!
//! The service loop never blocks on it: a request raises a flag, the loop publishes a snapshot
//! within [`CHECK`] and the socket task sends it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard::driver::{Application, FlowId, Io};
use switchboard::endpoint::EndpointEvent;
use switchboard::service::app::Service;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Notify;

/// How often the loop looks for a request.
const CHECK: Duration = Duration::from_millis(200);

/// Shared between the service loop and the socket task.
#[derive(Debug, Default)]
pub(crate) struct Control {
    wanted: AtomicBool,
    snapshot: Mutex<(u64, String)>,
    published: Notify,
}

/// The service, publishing its live calls when asked.
pub(crate) struct Published {
    inner: Service,
    control: Arc<Control>,
    next_check: Option<Instant>,
}

impl Published {
    pub(crate) fn new(inner: Service, control: Arc<Control>) -> Published {
        Published { inner, control, next_check: None }
    }

    fn publish(&mut self, now: Instant) {
        if now >= self.next_check.unwrap_or(now) {
            self.next_check = Some(now + CHECK);
            if self.control.wanted.swap(false, Ordering::AcqRel) {
                let json = serde_json::to_string(&self.inner.live_calls(now)).unwrap_or_else(|_| "[]".into());
                if let Ok(mut s) = self.control.snapshot.lock() {
                    *s = (s.0 + 1, json);
                }
                self.control.published.notify_waiters();
            }
        }
    }
}

impl Application for Published {
    fn start(&mut self, io: &mut Io<'_>, now: Instant) {
        self.inner.start(io, now);
        self.next_check = Some(now + CHECK);
    }
    fn handle_event(&mut self, io: &mut Io<'_>, event: EndpointEvent, now: Instant) {
        self.inner.handle_event(io, event, now);
    }
    fn handle_media(&mut self, io: &mut Io<'_>, flow: FlowId, source: std::net::SocketAddr, payload: bytes::Bytes, now: Instant) {
        self.inner.handle_media(io, flow, source, payload, now);
    }
    fn handle_timeout(&mut self, io: &mut Io<'_>, now: Instant) {
        self.inner.handle_timeout(io, now);
        self.publish(now);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        [self.inner.poll_timeout(), self.next_check].into_iter().flatten().min()
    }
    fn shutdown(&mut self, io: &mut Io<'_>, now: Instant) {
        self.inner.shutdown(io, now);
    }
    fn is_done(&self) -> bool {
        self.inner.is_done()
    }
}

/// The socket path for a data directory.
pub(crate) fn default_path(data: &Path) -> PathBuf {
    data.join("switchboard.sock")
}

/// Listens on `path` (a stale socket file is replaced) and answers `calls` requests.
pub(crate) fn listen(path: &Path, control: Arc<Control>) -> Result<(), String> {
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
            let control = control.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut line = String::new();
                let read = tokio::time::timeout(Duration::from_secs(5), BufReader::new(r).read_line(&mut line)).await;
                let answer = match (read, line.trim()) {
                    (Ok(Ok(_)), "calls") => snapshot(&control).await,
                    _ => "{\"error\":\"unknown command; try: calls\"}".into(),
                };
                let _ = w.write_all(answer.as_bytes()).await;
                let _ = w.write_all(b"\n").await;
            });
        }
    });
    Ok(())
}

async fn snapshot(control: &Control) -> String {
    let before = control.snapshot.lock().map(|s| s.0).unwrap_or(0);
    let published = control.published.notified();
    control.wanted.store(true, Ordering::Release);
    let _ = tokio::time::timeout(Duration::from_secs(3), published).await;
    match control.snapshot.lock() {
        Ok(s) if s.0 != before => s.1.clone(),
        _ => "{\"error\":\"the service did not answer in time\"}".into(),
    }
}
