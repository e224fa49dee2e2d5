//! wordup-tests: shared fixtures for the end-to-end tests and benchmarks.

pub mod fake_discord;
pub mod fake_slack;
pub mod interactions;
pub mod jobs;
pub mod pg;
pub mod private_pg;
pub mod slack_requests;
pub mod stack;
