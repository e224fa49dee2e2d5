//! DDIM (Song et al.) with eta = 0, as diffusers' DDIMScheduler.

use candle_core::{Result, Tensor};

use super::schedule::{self, PredictionType, TimestepSpacing};
use super::{SchedulerConfig, Stepped, lincomb};

#[derive(Debug, Clone)]
pub struct Ddim {
    pub(super) timesteps: Vec<f64>,
    alphas_cumprod: Vec<f64>,
    final_alpha_cumprod: f64,
    step_ratio: usize,
    prediction: PredictionType,
    clip_sample: Option<f64>,
}

impl Ddim {
    pub fn new(config: &SchedulerConfig, steps: usize) -> Ddim {
        let n = config.num_train_timesteps;
        let betas = schedule::betas(config.beta_schedule, config.beta_start, config.beta_end, n);
        let alphas_cumprod = schedule::alphas_cumprod(&betas);
        let final_alpha_cumprod = if config.set_alpha_to_one {
            1.0
        } else {
            alphas_cumprod[0]
        };
        let steps = steps.clamp(1, n);
        let timesteps = schedule::timesteps(config.timestep_spacing, n, steps, config.steps_offset)
            .into_iter()
            .map(|t| match config.timestep_spacing {
                TimestepSpacing::Linspace => schedule::round_half_even(t),
                _ => t,
            })
            .collect();
        Ddim {
            timesteps,
            alphas_cumprod,
            final_alpha_cumprod,
            step_ratio: n / steps,
            prediction: config.prediction_type,
            clip_sample: config.clip_sample.then_some(config.clip_sample_range),
        }
    }

    fn alpha_at(&self, t: i64) -> f64 {
        if t >= 0 {
            self.alphas_cumprod[(t as usize).min(self.alphas_cumprod.len() - 1)]
        } else {
            self.final_alpha_cumprod
        }
    }

    pub fn step(&self, model_output: &Tensor, step: usize, sample: &Tensor) -> Result<Stepped> {
        let t = self.timesteps[step] as i64;
        let prev_t = t - self.step_ratio as i64;
        let alpha = self.alpha_at(t);
        let alpha_prev = self.alpha_at(prev_t);
        let beta = 1.0 - alpha;
        let (pred_original, pred_epsilon) = match self.prediction {
            PredictionType::Epsilon => (
                lincomb(
                    sample,
                    1.0 / alpha.sqrt(),
                    model_output,
                    -beta.sqrt() / alpha.sqrt(),
                )?,
                model_output.clone(),
            ),
            PredictionType::Sample => (
                model_output.clone(),
                lincomb(
                    sample,
                    1.0 / beta.sqrt(),
                    model_output,
                    -alpha.sqrt() / beta.sqrt(),
                )?,
            ),
            PredictionType::VPrediction => (
                lincomb(sample, alpha.sqrt(), model_output, -beta.sqrt())?,
                lincomb(model_output, alpha.sqrt(), sample, beta.sqrt())?,
            ),
        };
        let pred_original = match self.clip_sample {
            Some(range) => pred_original.clamp(-range, range)?,
            None => pred_original,
        };
        let sample = lincomb(
            &pred_original,
            alpha_prev.sqrt(),
            &pred_epsilon,
            (1.0 - alpha_prev).sqrt(),
        )?;
        Ok(Stepped {
            sample,
            denoised: pred_original,
        })
    }

    pub fn add_noise(&self, original: &Tensor, noise: &Tensor, step: usize) -> Result<Tensor> {
        let alpha = self.alpha_at(self.timesteps[step] as i64);
        lincomb(original, alpha.sqrt(), noise, (1.0 - alpha).sqrt())
    }
}
