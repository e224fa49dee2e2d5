//! wordup-chat: the chat side of Word Up!. Platform-neutral command logic
//! first (the grammar, buttons, policy, `commands/`, the texts users see,
//! delivery by platform, fetching the images users point at), then the
//! platforms' wire formats in `discord/` and `slack/`.

pub mod ack;
pub mod buttons;
pub mod commands;
pub mod delivery;
pub mod discord;
pub mod fetch;
pub mod grammar;
pub mod metrics;
pub mod once;
pub mod policy;
pub mod retry;
pub mod settings;
pub mod slack;
pub mod text;
pub mod web;
