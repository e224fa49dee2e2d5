//! Euler (Karras et al. Algorithm 2 without churn) and Euler ancestral, as
//! diffusers' EulerDiscreteScheduler and EulerAncestralDiscreteScheduler.

use candle_core::{Result, Tensor};

use super::schedule::{self, PredictionType, TimestepSpacing};
use super::{SchedulerConfig, Stepped, lincomb};

#[derive(Debug, Clone)]
pub struct Euler {
    pub(super) timesteps: Vec<f64>,
    /// One per timestep, then a final 0.
    sigmas: Vec<f64>,
    spacing: TimestepSpacing,
    prediction: PredictionType,
    pub(super) ancestral: bool,
}

impl Euler {
    pub fn new(config: &SchedulerConfig, steps: usize, ancestral: bool) -> Euler {
        let n = config.num_train_timesteps;
        let betas = schedule::betas(config.beta_schedule, config.beta_start, config.beta_end, n);
        let train_sigmas = schedule::train_sigmas(&schedule::alphas_cumprod(&betas));
        let timesteps = schedule::timesteps(config.timestep_spacing, n, steps, config.steps_offset);
        let mut sigmas: Vec<f64> = timesteps
            .iter()
            .map(|t| schedule::interp(*t, &train_sigmas))
            .collect();
        sigmas.push(0.0);
        Euler {
            timesteps,
            sigmas,
            spacing: config.timestep_spacing,
            prediction: config.prediction_type,
            ancestral,
        }
    }

    pub fn init_noise_sigma(&self) -> f64 {
        let max = self.sigmas.iter().copied().fold(0.0, f64::max);
        match self.spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => max,
            TimestepSpacing::Leading => (max * max + 1.0).sqrt(),
        }
    }

    pub fn scale_model_input(&self, sample: &Tensor, step: usize) -> Result<Tensor> {
        let sigma = self.sigmas[step];
        sample.affine(1.0 / (sigma * sigma + 1.0).sqrt(), 0.0)
    }

    pub fn step(
        &self,
        model_output: &Tensor,
        step: usize,
        sample: &Tensor,
        noise: Option<&Tensor>,
    ) -> Result<Stepped> {
        let sigma = self.sigmas[step];
        let sigma_next = self.sigmas[step + 1];
        let pred_original = match self.prediction {
            PredictionType::Epsilon => lincomb(sample, 1.0, model_output, -sigma)?,
            PredictionType::VPrediction => {
                let c = sigma * sigma + 1.0;
                lincomb(model_output, -sigma / c.sqrt(), sample, 1.0 / c)?
            }
            PredictionType::Sample => model_output.clone(),
        };
        // derivative = (sample - x0) / sigma; prev = sample + derivative * dt
        let (sigma_to, sigma_up) = if self.ancestral {
            let up = (sigma_next * sigma_next * (sigma * sigma - sigma_next * sigma_next)
                / (sigma * sigma))
                .max(0.0)
                .sqrt();
            ((sigma_next * sigma_next - up * up).max(0.0).sqrt(), up)
        } else {
            (sigma_next, 0.0)
        };
        let dt = sigma_to - sigma;
        let derivative = (sample - &pred_original)?.affine(1.0 / sigma, 0.0)?;
        let prev = (sample + derivative.affine(dt, 0.0)?)?;
        let sample = match noise {
            Some(noise) if self.ancestral && sigma_up > 0.0 => {
                (prev + noise.affine(sigma_up, 0.0)?)?
            }
            _ => prev,
        };
        Ok(Stepped {
            sample,
            denoised: pred_original,
        })
    }

    pub fn add_noise(&self, original: &Tensor, noise: &Tensor, step: usize) -> Result<Tensor> {
        lincomb(original, 1.0, noise, self.sigmas[step])
    }
}
