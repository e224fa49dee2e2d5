//! `--chaos`: how far a grid's images may wander from the prompt and from
//! each other. Each image gets its own prompt embedding, jittered with
//! Gaussian noise, and with guidance its own guidance scale, both drawn from
//! a stream of its seed kept apart from its latent noise: chaos 0 draws
//! nothing and changes nothing, and a seed draws the same image whatever
//! batch it is in.

use candle_core::{D, DType, Tensor};

use crate::error::{EngineError, Result};
use crate::sd::noise::NoiseStream;
use crate::sd::pipeline::Conditioning;

/// At chaos 1, the standard deviation of the noise added to each token's
/// embedding, relative to that token's own (across the hidden size; CLIP's
/// start token is far larger than the others, so one std for the whole
/// embedding would drown the rest).
pub const EMBEDDING_JITTER: f64 = 0.5;
/// At chaos 1, the guidance scale is multiplied by up to 1 ± this.
pub const GUIDANCE_JITTER: f64 = 0.5;
/// Which of a seed's streams aside chaos draws from.
const CHAOS_STREAM: u64 = u64::from_le_bytes(*b"chaos\0\0\0");

/// Per-image conditioning and guidance scales for `seeds` at `chaos`
/// (0–1). At chaos 0, `conditioning` as it is and `[guidance]`; else a
/// prompt embedding `[n, tokens, hidden]` and a scale per image.
pub fn jitter(
    conditioning: &Conditioning,
    guidance: f64,
    seeds: &[u64],
    chaos: f64,
) -> Result<(Conditioning, Vec<f64>)> {
    if !(0.0..=1.0).contains(&chaos) {
        return Err(EngineError::InvalidRequest(format!(
            "chaos {chaos} is not between 0 and 1"
        )));
    }
    if chaos == 0.0 {
        return Ok((conditioning.clone(), vec![guidance]));
    }
    let prompt = conditioning.prompt.to_dtype(DType::F32)?;
    let (_, tokens, hidden) = prompt.dims3()?;
    let centred = prompt.broadcast_sub(&prompt.mean_keepdim(D::Minus1)?)?;
    let scale = centred
        .sqr()?
        .mean_keepdim(D::Minus1)?
        .sqrt()?
        .affine(chaos * EMBEDDING_JITTER, 0.0)?;
    let mut prompts = Vec::with_capacity(seeds.len());
    let mut scales = Vec::with_capacity(seeds.len());
    for &seed in seeds {
        let mut stream = NoiseStream::aside(seed, CHAOS_STREAM);
        // Drawn whether or not guidance is on, so that the embedding's
        // noise is the same either way.
        scales.push(guidance_scale(guidance, chaos, stream.uniform()));
        let noise = stream.tensor(&[1, tokens, hidden], prompt.device(), DType::F32)?;
        prompts.push((&prompt + noise.broadcast_mul(&scale)?)?);
    }
    let jittered = Conditioning {
        prompt: Tensor::cat(&prompts, 0)?.to_dtype(conditioning.prompt.dtype())?,
        negative: conditioning.negative.clone(),
    };
    Ok((jittered, scales))
}

/// `guidance` jittered by a uniform `draw` in [0, 1): times 1 ± up to
/// [`GUIDANCE_JITTER`]·chaos, and never below 1 if it was above (below 1,
/// guidance would steer away from the prompt). Guidance ≤ 1 is off and
/// stays as it is.
pub fn guidance_scale(guidance: f64, chaos: f64, draw: f64) -> f64 {
    if guidance <= 1.0 {
        return guidance;
    }
    let factor = 1.0 + GUIDANCE_JITTER * chaos * (2.0 * draw - 1.0);
    (guidance * factor).max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn guidance_scales_spread_with_chaos() {
        for (guidance, chaos, draw, expected) in [
            (7.5, 0.0, 0.9, 7.5),
            (7.5, 1.0, 0.5, 7.5),
            (7.5, 1.0, 0.0, 3.75),
            (7.5, 1.0, 1.0, 11.25),
            (7.5, 0.5, 0.0, 5.625),
            (1.5, 1.0, 0.0, 1.0),
            (0.0, 1.0, 0.0, 0.0),
            (1.0, 1.0, 0.9, 1.0),
        ] {
            let got = guidance_scale(guidance, chaos, draw);
            assert!(
                (got - expected).abs() < 1e-12,
                "{guidance} at chaos {chaos}, draw {draw}: {got}"
            );
        }
    }

    fn conditioning() -> Conditioning {
        let values: Vec<f32> = (0..2 * 8).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        Conditioning {
            prompt: Tensor::from_vec(values, (1, 2, 8), &Device::Cpu).unwrap(),
            negative: Some(Tensor::zeros((1, 2, 8), DType::F32, &Device::Cpu).unwrap()),
        }
    }

    fn rows(t: &Tensor) -> Vec<Vec<Vec<f32>>> {
        t.to_vec3().unwrap()
    }

    #[test]
    fn chaos_zero_changes_nothing() {
        let c = conditioning();
        let (got, scales) = jitter(&c, 7.5, &[1, 2, 3], 0.0).unwrap();
        assert_eq!(rows(&got.prompt), rows(&c.prompt));
        assert_eq!(scales, [7.5]);
    }

    #[test]
    fn each_seed_draws_its_own_whatever_the_batch() {
        let c = conditioning();
        let (both, both_scales) = jitter(&c, 7.5, &[11, 12], 0.6).unwrap();
        let (alone, alone_scales) = jitter(&c, 7.5, &[12], 0.6).unwrap();
        assert_eq!(rows(&both.prompt)[1], rows(&alone.prompt)[0]);
        assert_eq!(both_scales[1], alone_scales[0]);
        assert_ne!(rows(&both.prompt)[0], rows(&both.prompt)[1]);
        assert_eq!(
            rows(both.negative.as_ref().unwrap()),
            rows(c.negative.as_ref().unwrap())
        );
    }

    #[test]
    fn the_spread_grows_with_chaos() {
        let c = conditioning();
        let spread = |chaos: f64| {
            let (got, _) = jitter(&c, 7.5, &[1, 2, 3, 4], chaos).unwrap();
            let mean = got.prompt.mean_keepdim(0).unwrap();
            got.prompt
                .broadcast_sub(&mean)
                .unwrap()
                .sqr()
                .unwrap()
                .mean_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        let (low, high) = (spread(0.1), spread(1.0));
        assert!(0.0 < low && low * 10.0 < high, "{low} vs {high}");
    }

    #[test]
    fn refuses_chaos_out_of_range() {
        for chaos in [-0.1, 1.5, f64::NAN] {
            assert!(jitter(&conditioning(), 7.5, &[1], chaos).is_err());
        }
    }
}
