//! `serve --store redis://...`: the glue between the service loop and the shared store
//! (issue 17 points 1 and 6). The writer thread answers confirmed writes, and the follower thread
//! hands on other instances' changes; both reach the loop as [`Command`]s through an unbounded
//! channel, so neither thread ever waits for the loop (which may itself be waiting for the
//! writer, in a shutdown flush).
//!
//! With `--workers N` the writer is shared: each worker has its own [`ConfirmingWriter`] whose
//! confirmations go back to that worker's loop (the pending REGISTER and its ticket live in its
//! `Service`). Registrations and users are shared by the workers, so another instance's binding
//! and user changes are applied once, by worker 0; a removed user's calls end on every worker.

use std::error::Error;
use std::sync::Arc;
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
    pub(crate) writer: Arc<StoreWriter>,
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

/// Follows the other instances' user and binding changes on `url` into the loops of the workers
/// (`loop_txs`, worker 0 first).
pub(crate) fn follow(url: &str, origin: String, loop_txs: Vec<mpsc::UnboundedSender<Command<Service>>>) -> Result<(), String> {
    let Some(first) = loop_txs.first().cloned() else { return Ok(()) };
    switchboard::store::follow(url, origin, move |change| match change {
        // The registrar and the users are shared: worker 0 applies the change for all.
        Remote::Aor { aor, bindings } => first.send(Box::new(move |svc, _io, _now| svc.sync_aor(&aor, bindings))).is_ok(),
        Remote::User { name, user: Some(user) } => {
            first.send(Box::new(move |svc, io, now| svc.sync_user(io, &name, Some(user), now))).is_ok()
        }
        // Every worker ends the calls it holds of a removed user (the first to run removes the
        // user and the bindings).
        Remote::User { name, user: None } => loop_txs.iter().all(|tx| {
            let name = name.clone();
            tx.send(Box::new(move |svc, io, now| svc.sync_user(io, &name, None, now))).is_ok()
        }),
        Remote::Resync { users, bindings } => {
            let others: Vec<_> = loop_txs.iter().skip(1).cloned().collect();
            first
                .send(Box::new(move |svc, io, now| {
                    for name in svc.resync(io, users, bindings, now) {
                        for tx in &others {
                            let name = name.clone();
                            let _ = tx.send(Box::new(move |svc: &mut Service, io: &mut _, now| svc.sync_user(io, &name, None, now)));
                        }
                    }
                }))
                .is_ok()
        }
    })
    .map(drop)
    .map_err(|e| e.to_string())
}
