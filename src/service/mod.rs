//! The service: registrar with digest auth, routing between registered phones, the echo user.

pub mod admit;
pub mod app;
pub mod config;
pub mod guard;
pub mod routes;
pub mod shared;
