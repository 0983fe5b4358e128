//! REST resources under `/api`.

pub mod access;
pub mod cameras;
pub mod events;
pub mod recordings;
pub mod users;
