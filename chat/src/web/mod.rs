//! The web side: channel boards behind signed links.

pub mod board;
pub mod html;
pub mod link;
