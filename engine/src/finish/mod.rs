pub mod output;
pub mod refine;
pub mod resample;
pub mod upscale;
