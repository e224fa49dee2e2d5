//! Schedulers built from a model's `scheduler/scheduler_config.json`:
//! DDIM and Euler (discrete and ancestral), each with leading, linspace or
//! trailing spacing and epsilon, v-prediction or sample prediction.

mod ddim;
mod euler;
pub mod schedule;

use candle_core::{Result, Tensor};
use serde::Deserialize;

pub use ddim::Ddim;
pub use euler::Euler;
pub use schedule::{BetaSchedule, PredictionType, TimestepSpacing};

/// Which algorithm to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    Ddim,
    EulerDiscrete,
    EulerAncestral,
}

impl SchedulerKind {
    /// The kind for a diffusers class name; `None` for classes we do not
    /// implement (the caller substitutes DDIM over the same schedule).
    pub fn from_class_name(name: &str) -> Option<SchedulerKind> {
        match name {
            "DDIMScheduler" => Some(SchedulerKind::Ddim),
            "EulerDiscreteScheduler" => Some(SchedulerKind::EulerDiscrete),
            "EulerAncestralDiscreteScheduler" => Some(SchedulerKind::EulerAncestral),
            _ => None,
        }
    }

    pub fn parse(name: &str) -> Option<SchedulerKind> {
        match name.to_ascii_lowercase().as_str() {
            "ddim" => Some(SchedulerKind::Ddim),
            "euler" => Some(SchedulerKind::EulerDiscrete),
            "euler-ancestral" | "euler_a" | "euler-a" => Some(SchedulerKind::EulerAncestral),
            _ => SchedulerKind::from_class_name(name),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SchedulerKind::Ddim => "ddim",
            SchedulerKind::EulerDiscrete => "euler",
            SchedulerKind::EulerAncestral => "euler-ancestral",
        }
    }
}

fn default_train_steps() -> usize {
    1000
}
fn default_beta_start() -> f64 {
    0.0001
}
fn default_beta_end() -> f64 {
    0.02
}
fn default_beta_schedule() -> BetaSchedule {
    BetaSchedule::Linear
}
fn default_prediction() -> PredictionType {
    PredictionType::Epsilon
}
fn default_spacing() -> TimestepSpacing {
    TimestepSpacing::Leading
}
fn default_true() -> bool {
    true
}
fn default_clip_range() -> f64 {
    1.0
}

/// `scheduler_config.json`, the fields we use, with diffusers' defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name", default)]
    pub class_name: String,
    #[serde(default = "default_train_steps")]
    pub num_train_timesteps: usize,
    #[serde(default = "default_beta_start")]
    pub beta_start: f64,
    #[serde(default = "default_beta_end")]
    pub beta_end: f64,
    #[serde(default = "default_beta_schedule")]
    pub beta_schedule: BetaSchedule,
    #[serde(default = "default_prediction")]
    pub prediction_type: PredictionType,
    #[serde(default = "default_spacing")]
    pub timestep_spacing: TimestepSpacing,
    #[serde(default)]
    pub steps_offset: usize,
    #[serde(default = "default_true")]
    pub set_alpha_to_one: bool,
    #[serde(default)]
    pub clip_sample: bool,
    #[serde(default = "default_clip_range")]
    pub clip_sample_range: f64,
}

/// One step's outcome: the latents the next step starts from, and the
/// step's estimate of the finished latents (what a preview shows).
#[derive(Debug, Clone)]
pub struct Stepped {
    pub sample: Tensor,
    pub denoised: Tensor,
}

/// A scheduler set up for a number of inference steps.
#[derive(Debug, Clone)]
pub enum Scheduler {
    Ddim(Ddim),
    Euler(Euler),
}

impl Scheduler {
    pub fn new(kind: SchedulerKind, config: &SchedulerConfig, steps: usize) -> Scheduler {
        match kind {
            SchedulerKind::Ddim => Scheduler::Ddim(Ddim::new(config, steps)),
            SchedulerKind::EulerDiscrete => Scheduler::Euler(Euler::new(config, steps, false)),
            SchedulerKind::EulerAncestral => Scheduler::Euler(Euler::new(config, steps, true)),
        }
    }

    /// Timesteps to run, highest first (what the UNet is called with).
    pub fn timesteps(&self) -> &[f64] {
        match self {
            Scheduler::Ddim(s) => &s.timesteps,
            Scheduler::Euler(s) => &s.timesteps,
        }
    }

    /// The same schedule, run for its first `steps` timesteps only.
    pub fn truncated(&self, steps: usize) -> Scheduler {
        let mut cut = self.clone();
        match &mut cut {
            Scheduler::Ddim(s) => s.timesteps.truncate(steps),
            Scheduler::Euler(s) => s.timesteps.truncate(steps),
        }
        cut
    }

    /// Scale of the initial noise.
    pub fn init_noise_sigma(&self) -> f64 {
        match self {
            Scheduler::Ddim(_) => 1.0,
            Scheduler::Euler(s) => s.init_noise_sigma(),
        }
    }

    pub fn scale_model_input(&self, sample: &Tensor, step: usize) -> Result<Tensor> {
        match self {
            Scheduler::Ddim(_) => Ok(sample.clone()),
            Scheduler::Euler(s) => s.scale_model_input(sample, step),
        }
    }

    /// Whether [`Scheduler::step`] needs fresh noise (ancestral sampling).
    pub fn needs_noise(&self) -> bool {
        matches!(self, Scheduler::Euler(s) if s.ancestral)
    }

    /// One denoising step at index `step` of [`Scheduler::timesteps`].
    pub fn step(
        &self,
        model_output: &Tensor,
        step: usize,
        sample: &Tensor,
        noise: Option<&Tensor>,
    ) -> Result<Stepped> {
        match self {
            Scheduler::Ddim(s) => s.step(model_output, step, sample),
            Scheduler::Euler(s) => s.step(model_output, step, sample, noise),
        }
    }

    /// Noises clean latents to the level of timestep index `step` (img2img).
    pub fn add_noise(&self, original: &Tensor, noise: &Tensor, step: usize) -> Result<Tensor> {
        match self {
            Scheduler::Ddim(s) => s.add_noise(original, noise, step),
            Scheduler::Euler(s) => s.add_noise(original, noise, step),
        }
    }
}

/// Index of the first step img2img runs at `strength` out of `steps`, as
/// diffusers' `get_timesteps`: the last `steps × strength` steps run.
pub fn img2img_start(steps: usize, strength: f64) -> usize {
    let init = ((steps as f64 * strength.clamp(0.0, 1.0)) as usize).min(steps);
    steps - init
}

/// `a·x + b·y` for tensors of one shape.
pub(crate) fn lincomb(x: &Tensor, a: f64, y: &Tensor, b: f64) -> Result<Tensor> {
    x.affine(a, 0.0)? + y.affine(b, 0.0)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn config(prediction: &str) -> SchedulerConfig {
        serde_json::from_value(serde_json::json!({
            "_class_name": "EulerDiscreteScheduler",
            "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
            "timestep_spacing": "trailing", "prediction_type": prediction,
        }))
        .unwrap()
    }

    /// A step's estimate of the finished latents is the sample a step to
    /// σ = 0 (Euler) or to ᾱ = 1 (DDIM) lands on: the last step's output.
    #[test]
    fn the_last_steps_estimate_is_its_output() {
        let device = Device::Cpu;
        let sample = Tensor::randn(0f32, 1.0, (1, 4, 3, 3), &device).unwrap();
        let output = Tensor::randn(0f32, 1.0, (1, 4, 3, 3), &device).unwrap();
        for kind in [SchedulerKind::EulerDiscrete, SchedulerKind::Ddim] {
            for prediction in ["epsilon", "v_prediction", "sample"] {
                let scheduler = Scheduler::new(kind, &config(prediction), 2);
                let last = scheduler.timesteps().len() - 1;
                let stepped = scheduler.step(&output, last, &sample, None).unwrap();
                let gap = (stepped.sample - stepped.denoised)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(gap < 1e-5, "{kind:?} {prediction}: {gap}");
            }
        }
    }
}
