//! /describe: an image fetched safely by the platform adapter, kept as the
//! job's input, and described by an engine (only engines hold CLIP): four
//! prompt suggestions with buttons that draw them.

use image::RgbImage;
use image::imageops::FilterType;
use wordup_queue::{Request, Tier};

use super::{Accepted, CommandError, Commands, Invocation, UserError};
use crate::fetch::{FetchPolicy, fetch_image};

/// The batch key of descriptions: jobs that draw nothing.
pub const BATCH_KEY: &str = "describe";
/// Longest side an image is kept at: CLIP looks at 224–336 pixels.
pub const KEPT_SIDE: u32 = 512;

/// The image as the job keeps it: at most [`KEPT_SIDE`] on its longer side, PNG.
pub fn kept_png(image: &RgbImage) -> Result<Vec<u8>, UserError> {
    let (w, h) = image.dimensions();
    let scale = f64::from(KEPT_SIDE) / f64::from(w.max(h).max(1));
    let small;
    let image = if scale < 1.0 {
        let side = |x: u32| ((f64::from(x) * scale).round() as u32).max(1);
        small = image::imageops::resize(image, side(w), side(h), FilterType::Triangle);
        &small
    } else {
        image
    };
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| UserError::BadImage(format!("that image could not be re-encoded: {e}")))?;
    Ok(png)
}

/// Fetches the images users point at, as their platform allows.
#[derive(Debug, Clone)]
pub struct Fetcher {
    pub client: reqwest::Client,
    pub policy: FetchPolicy,
}

impl Fetcher {
    pub fn new(policy: FetchPolicy) -> anyhow::Result<Fetcher> {
        Ok(Fetcher {
            client: crate::fetch::client()?,
            policy,
        })
    }

    /// The image at `url`, or what to tell the user about it.
    pub async fn image(&self, url: &str) -> Result<RgbImage, UserError> {
        match fetch_image(&self.client, url, &self.policy).await {
            Ok(fetched) => Ok(fetched.image),
            Err(e) => {
                if e.is_transient() {
                    tracing::warn!(error = %e, "an image could not be fetched");
                }
                Err(UserError::BadImage(e.to_string()))
            }
        }
    }
}

impl Commands {
    pub async fn describe(
        &self,
        invocation: &Invocation,
        image: &RgbImage,
    ) -> Result<Accepted, CommandError> {
        if let Some(replayed) = self.replayed(&invocation.idempotency_key).await? {
            return Ok(replayed);
        }
        // Stored before the job exists: whoever claims it finds it.
        self.queue
            .put_input(&invocation.idempotency_key, &kept_png(image)?)
            .await?;
        let channel = self
            .queue
            .channel_settings(&invocation.origin.platform, &invocation.origin.channel_id)
            .await?;
        let job = invocation.job(
            &channel,
            invocation.idempotency_key.clone(),
            Tier::Fast,
            Request::Describe {},
            BATCH_KEY.to_owned(),
        );
        self.enqueue_within_quota(&job).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_kept_small_enough_for_clip() {
        for ((w, h), kept) in [
            ((64, 48), (64, 48)),
            ((2048, 1024), (512, 256)),
            ((300, 900), (171, 512)),
        ] {
            let png = kept_png(&RgbImage::new(w, h)).unwrap();
            let back = image::load_from_memory(&png).unwrap();
            assert_eq!((back.width(), back.height()), kept, "{w}×{h}");
        }
    }
}
