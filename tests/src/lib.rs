//! wordup-tests: shared fixtures for the end-to-end tests and benchmarks.

pub mod jobs;
pub mod pg;
