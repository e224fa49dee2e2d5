//! wordup-bot: the chat adapters (Discord, Slack), and what the binaries
//! share: settings, telemetry, the health report.

pub mod health;
pub mod secret;
pub mod settings;
pub mod telemetry;
