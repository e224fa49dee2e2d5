//! Logging set-up, once per binary.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: `WORDUP_LOG` (an EnvFilter, default
/// `info`) picks what is logged, `WORDUP_LOG_FORMAT=json` switches to JSON lines.
pub fn init() {
    let filter =
        EnvFilter::try_from_env("WORDUP_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = if std::env::var("WORDUP_LOG_FORMAT").is_ok_and(|format| format == "json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // A subscriber already installed (in tests) is fine.
    drop(installed);
}
