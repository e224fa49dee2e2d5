pub mod clip;
pub mod safety;
