//! wordup-tests: shared fixtures for the end-to-end tests and benchmarks.

pub mod fake_discord;
pub mod interactions;
pub mod jobs;
pub mod pg;
pub mod stack;
