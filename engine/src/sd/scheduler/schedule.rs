//! The noise schedule shared by the schedulers, as diffusers computes it:
//! betas, cumulative alphas, and the inference timesteps for a spacing.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    Linear,
    ScaledLinear,
    #[serde(rename = "squaredcos_cap_v2")]
    SquaredcosCapV2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    Leading,
    Linspace,
    Trailing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    Epsilon,
    VPrediction,
    Sample,
}

/// Betas for `n` training timesteps.
pub fn betas(schedule: BetaSchedule, beta_start: f64, beta_end: f64, n: usize) -> Vec<f64> {
    match schedule {
        BetaSchedule::Linear => linspace(beta_start, beta_end, n),
        BetaSchedule::ScaledLinear => linspace(beta_start.sqrt(), beta_end.sqrt(), n)
            .into_iter()
            .map(|b| b * b)
            .collect(),
        BetaSchedule::SquaredcosCapV2 => {
            let alpha_bar = |t: f64| {
                ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
                    .cos()
                    .powi(2)
            };
            (0..n)
                .map(|i| {
                    let t1 = i as f64 / n as f64;
                    let t2 = (i + 1) as f64 / n as f64;
                    (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999)
                })
                .collect()
        }
    }
}

pub fn alphas_cumprod(betas: &[f64]) -> Vec<f64> {
    betas
        .iter()
        .scan(1.0, |product, beta| {
            *product *= 1.0 - beta;
            Some(*product)
        })
        .collect()
}

/// Inference timesteps, highest first, as diffusers' `set_timesteps` gives
/// them (before any rounding a scheduler applies of its own).
pub fn timesteps(
    spacing: TimestepSpacing,
    train_steps: usize,
    steps: usize,
    offset: usize,
) -> Vec<f64> {
    let steps = steps.clamp(1, train_steps);
    match spacing {
        TimestepSpacing::Linspace => {
            let mut ts = linspace(0.0, (train_steps - 1) as f64, steps);
            ts.reverse();
            ts
        }
        TimestepSpacing::Leading => {
            let ratio = train_steps / steps;
            (0..steps)
                .rev()
                .map(|i| (i * ratio + offset) as f64)
                .collect()
        }
        TimestepSpacing::Trailing => {
            let ratio = train_steps as f64 / steps as f64;
            // numpy: np.round(np.arange(train_steps, 0, -ratio)) - 1
            let mut ts = Vec::with_capacity(steps);
            let mut t = train_steps as f64;
            while t > 0.0 && ts.len() < steps {
                ts.push(round_half_even(t) - 1.0);
                t -= ratio;
            }
            ts
        }
    }
}

/// `sqrt((1 - ᾱ) / ᾱ)` at every training timestep.
pub fn train_sigmas(alphas_cumprod: &[f64]) -> Vec<f64> {
    alphas_cumprod
        .iter()
        .map(|a| ((1.0 - a) / a).sqrt())
        .collect()
}

/// Linear interpolation of `values` (given at 0, 1, 2, …) at `t`, as `np.interp`.
pub fn interp(t: f64, values: &[f64]) -> f64 {
    if t <= 0.0 {
        return values[0];
    }
    let last = values.len() - 1;
    if t >= last as f64 {
        return values[last];
    }
    let low = t.floor() as usize;
    let frac = t - low as f64;
    values[low] * (1.0 - frac) + values[low + 1] * frac
}

pub fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    match n {
        0 => vec![],
        1 => vec![start],
        _ => {
            let step = (end - start) / (n - 1) as f64;
            (0..n).map(|i| start + step * i as f64).collect()
        }
    }
}

/// numpy's rounding (half to even).
pub fn round_half_even(x: f64) -> f64 {
    let rounded = x.round();
    if (x - x.trunc()).abs() == 0.5 && rounded % 2.0 != 0.0 {
        rounded - x.signum()
    } else {
        rounded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_timesteps(spacing: TimestepSpacing, steps: usize, offset: usize, expected: &[f64]) {
        assert_eq!(
            timesteps(spacing, 1000, steps, offset),
            expected,
            "{spacing:?} {steps}"
        );
    }

    #[test]
    fn timesteps_match_diffusers() {
        // Values printed by diffusers' schedulers for 1000 training steps.
        check_timesteps(TimestepSpacing::Trailing, 1, 0, &[999.0]);
        check_timesteps(TimestepSpacing::Trailing, 2, 0, &[999.0, 499.0]);
        check_timesteps(
            TimestepSpacing::Trailing,
            4,
            0,
            &[999.0, 749.0, 499.0, 249.0],
        );
        check_timesteps(TimestepSpacing::Trailing, 3, 0, &[999.0, 666.0, 332.0]);
        check_timesteps(TimestepSpacing::Leading, 2, 1, &[501.0, 1.0]);
        check_timesteps(TimestepSpacing::Leading, 4, 1, &[751.0, 501.0, 251.0, 1.0]);
        check_timesteps(TimestepSpacing::Leading, 3, 0, &[666.0, 333.0, 0.0]);
        check_timesteps(TimestepSpacing::Linspace, 1, 0, &[0.0]);
        check_timesteps(TimestepSpacing::Linspace, 2, 0, &[999.0, 0.0]);
        check_timesteps(TimestepSpacing::Linspace, 4, 0, &[999.0, 666.0, 333.0, 0.0]);
    }

    #[test]
    fn scaled_linear_schedule_ends() {
        let betas = betas(BetaSchedule::ScaledLinear, 0.00085, 0.012, 1000);
        assert!((betas[0] - 0.00085).abs() < 1e-12);
        assert!((betas[999] - 0.012).abs() < 1e-12);
        let cumprod = alphas_cumprod(&betas);
        assert!((cumprod[0] - (1.0 - 0.00085)).abs() < 1e-12);
        assert!(cumprod.windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn interp_and_rounding() {
        assert_eq!(interp(1.5, &[0.0, 1.0, 3.0]), 2.0);
        assert_eq!(interp(-1.0, &[5.0, 6.0]), 5.0);
        assert_eq!(interp(9.0, &[5.0, 6.0]), 6.0);
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(3.5), 4.0);
        assert_eq!(round_half_even(666.6666), 667.0);
    }
}
