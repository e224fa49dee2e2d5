//! wordup-runtime: what both binaries need at run time and that is neither
//! chat nor engine: settings from the environment, telemetry, shutdown
//! signals, [`secret::Secret`], the health report and the metrics server.

pub mod health;
pub mod metrics;
pub mod secret;
pub mod settings;
pub mod signals;
pub mod telemetry;
