//! User agents built on the endpoint, the dialog layer and the call layer (sans-IO):
//! [`core::UaCore`] joins transactions and dialogs, [`media::CallMedia`] gives each dialog its media
//! session, and on them stand the service's echo user ([`echo::EchoUas`]) and the softphone
//! ([`phone::Phone`]). Both implement [`crate::application::Application`].

pub mod answer_check;
pub mod core;
pub mod echo;
pub mod late_offer;
pub mod media;
pub mod message;
pub mod phone;
pub mod register;
mod srtp_end;

use crate::dialog::{DialogError, DialogId};

/// Logs at debug, with the dialog's Call-ID, a dialog command that could not be carried out
/// (BYE, CANCEL, an answer, ...). Such a failure needs no other action: the dialog ended or moved
/// on meanwhile (a crossing BYE or CANCEL, a timeout), and that end reaches the application as the
/// dialog's own [`crate::dialog::Event::Terminated`].
pub(crate) fn log_unsent(result: Result<(), DialogError>, what: &str, dialog: &DialogId) {
    if let Err(e) = result {
        tracing::debug!(call_id = %dialog.call_id, error = %e, "{what}: not sent");
    }
}
