//! User agents built on the endpoint, the dialog layer and the call layer (sans-IO):
//! [`core::UaCore`] joins transactions and dialogs, [`media::CallMedia`] gives each dialog its media
//! session, and on them stand the service's echo user ([`echo::EchoUas`]) and the softphone
//! ([`phone::Phone`]). Both implement [`crate::application::Application`].

pub mod core;
pub mod echo;
pub mod media;
pub mod phone;
pub mod register;
