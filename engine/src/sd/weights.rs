//! Weighted multi-prompts in embedding space: each part's text embeddings
//! combined as `Σ wᵢ·Eᵢ / Σ wᵢ` (the semantics are `wordup_queue::prompt`'s).

use candle_core::{DType, Tensor};
use wordup_queue::prompt::{WeightError, WeightedPart, is_weighted, weighted_parts};

use crate::error::{EngineError, Result};

/// The parts `prompt` is encoded as: one part of weight 1 holding the
/// prompt exactly as written when it has no `::`, so that such a prompt is
/// encoded as it always was.
pub fn parts(prompt: &str) -> Result<Vec<WeightedPart>> {
    if !is_weighted(prompt) {
        return Ok(vec![WeightedPart {
            text: prompt.to_owned(),
            weight: 1.0,
        }]);
    }
    weighted_parts(prompt).map_err(|e: WeightError| EngineError::InvalidRequest(e.to_string()))
}

/// The normalised weighted sum of same-shaped `embeddings`, one weight
/// each, in the first one's dtype. A single embedding comes back as it is
/// (its weight divides out), bit for bit.
pub fn combine(embeddings: &[Tensor], weights: &[f32]) -> Result<Tensor> {
    let (first, total) = match (embeddings.first(), weights.iter().sum::<f32>()) {
        (Some(first), total) if embeddings.len() == weights.len() && total > 0.0 => (first, total),
        _ => {
            return Err(EngineError::InvalidRequest(format!(
                "{} embeddings and {} weights adding up to {}: nothing to combine",
                embeddings.len(),
                weights.len(),
                weights.iter().sum::<f32>()
            )));
        }
    };
    if embeddings.len() == 1 {
        return Ok(first.clone());
    }
    // Summed in f32 whatever the model's dtype: f16 would round each term.
    let mut sum = first
        .to_dtype(DType::F32)?
        .affine(f64::from(weights[0] / total), 0.0)?;
    for (embedding, weight) in embeddings.iter().zip(weights).skip(1) {
        let term = embedding
            .to_dtype(DType::F32)?
            .affine(f64::from(weight / total), 0.0)?;
        sum = (sum + term)?;
    }
    Ok(sum.to_dtype(first.dtype())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn tensor(values: &[f32]) -> Tensor {
        Tensor::new(values, &Device::Cpu).unwrap()
    }

    #[test]
    fn combines_by_normalised_weights() {
        let a = tensor(&[1.0, 2.0]);
        let b = tensor(&[3.0, -2.0]);
        let c = tensor(&[5.0, 0.0]);
        for (weights, expected) in [
            (vec![1.0, 1.0, 0.0], [2.0, 0.0]),
            (
                vec![1.0, 2.0, -0.5],
                [(1.0 + 6.0 - 2.5) / 2.5, (2.0 - 4.0) / 2.5],
            ),
            (vec![0.5, 0.0, 0.0], [1.0, 2.0]),
        ] {
            let got = combine(&[a.clone(), b.clone(), c.clone()], &weights)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            for (g, e) in got.iter().zip(expected) {
                assert!((g - e).abs() < 1e-6, "{weights:?}: {got:?} vs {expected:?}");
            }
        }
    }

    #[test]
    fn one_embedding_is_returned_untouched() {
        let a = tensor(&[0.1, 0.7, -0.3]);
        let got = combine(std::slice::from_ref(&a), &[3.0]).unwrap();
        assert_eq!(got.to_vec1::<f32>().unwrap(), a.to_vec1::<f32>().unwrap());
    }

    #[test]
    fn refuses_what_cannot_be_combined() {
        let a = tensor(&[1.0]);
        assert!(combine(&[], &[]).is_err());
        assert!(combine(&[a.clone(), a.clone()], &[1.0, -1.0]).is_err());
        assert!(combine(std::slice::from_ref(&a), &[1.0, 1.0]).is_err());
    }

    #[test]
    fn prompts_without_double_colons_are_one_part_as_written() {
        for prompt in ["  a castle ", "", "ratio 16:9"] {
            let got = parts(prompt).unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!((got[0].text.as_str(), got[0].weight), (prompt, 1.0));
        }
        assert_eq!(parts("a:: b::2").unwrap().len(), 2);
        assert!(parts("a::-1").is_err());
    }
}
