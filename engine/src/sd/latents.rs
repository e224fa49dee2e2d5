//! One image's latents as bytes, for keeping with a stored draft image: a
//! safetensors blob holding one `[channels, height, width]` tensor in the
//! dtype the engine drew it in.

use candle_core::{DType, Device, Tensor};

use crate::error::{EngineError, Result};

/// The tensor's name inside the blob.
const NAME: &str = "latents";

/// `[C, h, w]` latents → bytes.
pub fn to_bytes(latents: &Tensor) -> Result<Vec<u8>> {
    if latents.rank() != 3 {
        return Err(EngineError::InvalidRequest(format!(
            "one image's latents are [channels, height, width], not {:?}",
            latents.dims()
        )));
    }
    let latents = latents.to_device(&Device::Cpu)?.contiguous()?;
    safetensors::serialize([(NAME, &latents)], None)
        .map_err(|e| EngineError::Image(format!("cannot encode latents: {e}")))
}

/// Bytes from [`to_bytes`] → `[C, h, w]` latents on `device` in `dtype`.
pub fn from_bytes(bytes: &[u8], device: &Device, dtype: DType) -> Result<Tensor> {
    let unreadable = |why: String| EngineError::InvalidRequest(format!("stored latents: {why}"));
    let mut tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
        .map_err(|e| unreadable(e.to_string()))?;
    let latents = tensors
        .remove(NAME)
        .ok_or_else(|| unreadable(format!("no tensor named {NAME}")))?;
    if latents.rank() != 3 {
        return Err(unreadable(format!("shape {:?}", latents.dims())));
    }
    Ok(latents.to_dtype(dtype)?.to_device(device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latents_survive_the_round_trip_in_their_dtype() {
        let latents = Tensor::arange(0f32, 4.0 * 3.0 * 2.0, &Device::Cpu)
            .unwrap()
            .reshape((4, 3, 2))
            .unwrap();
        for dtype in [DType::F32, DType::F16] {
            let stored = latents.to_dtype(dtype).unwrap();
            let bytes = to_bytes(&stored).unwrap();
            let back = from_bytes(&bytes, &Device::Cpu, DType::F32).unwrap();
            assert_eq!(back.dims(), [4, 3, 2]);
            assert_eq!(
                back.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                latents.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            );
        }
        assert!(to_bytes(&latents.unsqueeze(0).unwrap()).is_err());
        assert!(from_bytes(b"not latents", &Device::Cpu, DType::F32).is_err());
    }
}
