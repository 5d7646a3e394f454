//! `serve --store redis://...`: the glue between the service loop and the shared store
//! (issue 17 points 1 and 6). The writer thread answers confirmed writes, and the follower thread
//! hands on other instances' changes; both reach the loop as [`Command`]s through an unbounded
//! channel, so neither thread ever waits for the loop (which may itself be waiting for the
//! writer, in a shutdown flush).

use std::error::Error;
use switchboard::driver::Command;
use switchboard::records::{Confirmation, NonceClaim, StoreOp, StoreSink};
use switchboard::service::app::Service;
use switchboard::store::{Remote, StoreWriter};
use tokio::sync::mpsc;

type BoxError = Box<dyn Error + Send + Sync>;

/// Commands from threads outside the runtime, forwarded to the loop's (bounded) channel.
pub(crate) fn forwarder(commands: mpsc::Sender<Command<Service>>) -> mpsc::UnboundedSender<Command<Service>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Command<Service>>();
    tokio::spawn(async move {
        while let Some(c) = rx.recv().await {
            if commands.send(c).await.is_err() {
                return;
            }
        }
    });
    tx
}

/// The store writer of a shared store: REGISTERs wait for their write ([`StoreSink::confirms`]).
#[derive(Debug)]
pub(crate) struct ConfirmingWriter {
    pub(crate) writer: StoreWriter,
    pub(crate) loop_tx: mpsc::UnboundedSender<Command<Service>>,
}

impl StoreSink for ConfirmingWriter {
    fn enqueue(&self, op: StoreOp) -> Result<(), BoxError> {
        self.writer.enqueue(op).map_err(Into::into)
    }

    fn flush(&self) -> Result<(), BoxError> {
        self.writer.flush().map_err(Into::into)
    }

    fn confirms(&self) -> bool {
        true
    }

    fn available(&self) -> bool {
        self.writer.available()
    }

    fn enqueue_confirmed(&self, ops: Vec<StoreOp>, claim: Option<NonceClaim>, ticket: u64) -> Result<(), BoxError> {
        let tx = self.loop_tx.clone();
        let done = Box::new(move |outcome: Confirmation| {
            let _ = tx.send(Box::new(move |svc: &mut Service, io: &mut _, now| svc.write_confirmed(io, ticket, outcome, now)));
        });
        self.writer.enqueue_confirmed(ops, claim, done).map_err(Into::into)
    }
}

/// Follows the other instances' user and binding changes on `url` into the loop.
pub(crate) fn follow(url: &str, origin: String, loop_tx: mpsc::UnboundedSender<Command<Service>>) -> Result<(), String> {
    switchboard::store::follow(url, origin, move |change| {
        let command: Command<Service> = match change {
            Remote::Aor { aor, bindings } => Box::new(move |svc, _io, _now| svc.sync_aor(&aor, bindings)),
            Remote::User { name, user } => Box::new(move |svc, io, now| svc.sync_user(io, &name, user, now)),
            Remote::Resync { users, bindings } => Box::new(move |svc, io, now| svc.resync(io, users, bindings, now)),
        };
        loop_tx.send(command).is_ok()
    })
    .map(drop)
    .map_err(|e| e.to_string())
}
