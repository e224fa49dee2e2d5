//! wordup-bot: the chat adapters (Discord, Slack), and what the binaries
//! share: settings, telemetry, the health report.

pub mod ack;
pub mod buttons;
pub mod commands;
pub mod delivery;
pub mod discord;
pub mod grammar;
pub mod health;
pub mod metrics;
pub mod policy;
pub mod retry;
pub mod secret;
pub mod settings;
pub mod signals;
pub mod slack;
pub mod telemetry;
pub mod text;
