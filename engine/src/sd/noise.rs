//! Seeded Gaussian noise, generated on the host so that a seed gives the
//! same noise on every device.

use candle_core::{DType, Device, Result, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A stream of standard normal samples for one image.
#[derive(Debug, Clone)]
pub struct NoiseStream {
    rng: StdRng,
}

impl NoiseStream {
    pub fn new(seed: u64) -> NoiseStream {
        NoiseStream {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// A stream for `seed` apart from [`NoiseStream::new`]'s, one per
    /// `purpose`: draws from it leave the image's latent noise as it was.
    pub fn aside(seed: u64, purpose: u64) -> NoiseStream {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&purpose.to_le_bytes());
        NoiseStream {
            rng: StdRng::from_seed(key),
        }
    }

    /// The next uniform sample in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.rng.random::<f64>()
    }

    /// The next `shape`-sized tensor of N(0, 1) samples.
    pub fn tensor(&mut self, shape: &[usize], device: &Device, dtype: DType) -> Result<Tensor> {
        let count: usize = shape.iter().product();
        let mut values = Vec::with_capacity(count + 1);
        while values.len() < count {
            // Box–Muller: two uniforms in (0, 1] give two normals.
            let u1: f64 = 1.0 - self.rng.random::<f64>();
            let u2: f64 = self.rng.random::<f64>();
            let radius = (-2.0 * u1.ln()).sqrt();
            let angle = std::f64::consts::TAU * u2;
            values.push((radius * angle.cos()) as f32);
            values.push((radius * angle.sin()) as f32);
        }
        values.truncate(count);
        Tensor::from_vec(values, shape, device)?.to_dtype(dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_noise_and_roughly_standard() {
        let device = Device::Cpu;
        let a = NoiseStream::new(7)
            .tensor(&[4, 64, 64], &device, DType::F32)
            .unwrap();
        let b = NoiseStream::new(7)
            .tensor(&[4, 64, 64], &device, DType::F32)
            .unwrap();
        let c = NoiseStream::new(8)
            .tensor(&[4, 64, 64], &device, DType::F32)
            .unwrap();
        let diff = |x: &Tensor, y: &Tensor| {
            (x - y)
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert_eq!(diff(&a, &b), 0.0);
        assert!(diff(&a, &c) > 1.0);
        let values = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let n = values.len() as f32;
        let mean = values.iter().sum::<f32>() / n;
        let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "variance {var}");
    }

    #[test]
    fn streams_aside_differ_from_the_seeds_own_and_each_other() {
        let draw = |mut stream: NoiseStream| {
            stream
                .tensor(&[64], &Device::Cpu, DType::F32)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let own = draw(NoiseStream::new(7));
        let aside = draw(NoiseStream::aside(7, 1));
        assert_eq!(aside, draw(NoiseStream::aside(7, 1)));
        assert_ne!(aside, own);
        assert_ne!(aside, draw(NoiseStream::aside(7, 2)));
        assert_ne!(aside, draw(NoiseStream::aside(8, 1)));
    }
}
