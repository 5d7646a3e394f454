//! Typed header values, parsed lazily from the raw bytes when a caller asks (one file per grammar).

mod auth;
mod name_addr;
mod scalar;
mod via;

pub use auth::AuthHeader;
pub(crate) use name_addr::AddrForm;
pub use name_addr::NameAddr;
pub use scalar::{check_date, parse_number, CSeq, DeltaWithParams, MediaType, Reason, Refresher, TokenList};
pub use via::{Via, BRANCH_COOKIE};
