//! Finished images as files: PNG with provenance (prompt, seed, model, …,
//! and the IPTC marker that the image is AI-generated), the 2×2 grid, alt
//! text, and re-encoding or downscaling to fit an upload limit.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::{ImageEncoder, RgbImage};

use crate::error::{EngineError, Result};

/// IPTC's digital source type for media made by a trained model.
pub const IPTC_TRAINED_ALGORITHMIC_MEDIA: &str =
    "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia";

/// How an image was made.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub seed: u64,
    pub steps: usize,
    pub guidance: f64,
    pub scheduler: String,
    /// Model id and revision (or directory).
    pub model: String,
    pub clip_score: Option<f32>,
}

impl Provenance {
    /// Text chunks, in the order written.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        let mut entries = vec![
            ("Software", "Word Up!".to_owned()),
            ("Description", alt_text(&self.prompt)),
            ("prompt", self.prompt.clone()),
        ];
        if let Some(negative) = &self.negative_prompt {
            entries.push(("negative_prompt", negative.clone()));
        }
        entries.extend([
            ("seed", self.seed.to_string()),
            ("steps", self.steps.to_string()),
            ("guidance", format!("{}", self.guidance)),
            ("scheduler", self.scheduler.clone()),
            ("model", self.model.clone()),
            (
                "DigitalSourceType",
                IPTC_TRAINED_ALGORITHMIC_MEDIA.to_owned(),
            ),
        ]);
        if let Some(score) = self.clip_score {
            entries.push(("clip_score", format!("{score:.2}")));
        }
        entries
    }

    /// An XMP packet carrying the IPTC digital source type and the prompt.
    pub fn xmp(&self) -> String {
        format!(
            concat!(
                "<?xpacket begin=\"\u{feff}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>",
                "<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">",
                "<rdf:Description rdf:about=\"\" xmlns:Iptc4xmpExt=\"http://iptc.org/std/Iptc4xmpExt/2008-02-29/\" ",
                "xmlns:dc=\"http://purl.org/dc/elements/1.1/\" xmlns:xmp=\"http://ns.adobe.com/xap/1.0/\">",
                "<Iptc4xmpExt:DigitalSourceType>{}</Iptc4xmpExt:DigitalSourceType>",
                "<xmp:CreatorTool>Word Up!</xmp:CreatorTool>",
                "<dc:description><rdf:Alt><rdf:li xml:lang=\"x-default\">{}</rdf:li></rdf:Alt></dc:description>",
                "</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end=\"w\"?>"
            ),
            IPTC_TRAINED_ALGORITHMIC_MEDIA,
            xml_escape(&alt_text(&self.prompt)),
        )
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Alt text for an image made from `prompt`: says it is AI-generated and
/// what was asked, within Discord's 1024-character description limit.
pub fn alt_text(prompt: &str) -> String {
    capped_alt("AI-generated image", prompt)
}

/// Alt text for the 2×2 grid of four images made from `prompt`, within the
/// same limit.
pub fn grid_alt_text(prompt: &str) -> String {
    capped_alt("Four AI-generated images in a grid", prompt)
}

fn capped_alt(what: &str, prompt: &str) -> String {
    const LIMIT: usize = 1000;
    let prompt = prompt.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = format!("{what}: {prompt}");
    if text.chars().count() <= LIMIT {
        return text;
    }
    let mut cut: String = text.chars().take(LIMIT - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod alt_tests {
    use super::*;

    #[test]
    fn alt_texts_stay_within_discords_description_limit() {
        let long = "word ".repeat(400);
        for alt in [alt_text(&long), grid_alt_text(&long)] {
            assert_eq!(alt.chars().count(), 1000);
            assert!(alt.ends_with('…'));
        }
        assert_eq!(
            grid_alt_text("a  fox"),
            "Four AI-generated images in a grid: a fox"
        );
    }
}

/// PNG bytes with the provenance as iTXt chunks (UTF-8) and an XMP packet.
pub fn encode_png(image: &RgbImage, provenance: &Provenance) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, image.width(), image.height());
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        for (key, value) in provenance.entries() {
            encoder
                .add_itxt_chunk(key.to_owned(), value)
                .map_err(|e| EngineError::Image(e.to_string()))?;
        }
        encoder
            .add_itxt_chunk("XML:com.adobe.xmp".to_owned(), provenance.xmp())
            .map_err(|e| EngineError::Image(e.to_string()))?;
        let mut writer = encoder
            .write_header()
            .map_err(|e| EngineError::Image(e.to_string()))?;
        writer
            .write_image_data(image.as_raw())
            .map_err(|e| EngineError::Image(e.to_string()))?;
        writer
            .finish()
            .map_err(|e| EngineError::Image(e.to_string()))?;
    }
    Ok(bytes)
}

/// The text chunks of a PNG, for tests and tools.
pub fn png_text(bytes: &[u8]) -> Result<Vec<(String, String)>> {
    let decoder = png::Decoder::new(Cursor::new(bytes));
    let reader = decoder
        .read_info()
        .map_err(|e| EngineError::Image(e.to_string()))?;
    let info = reader.info();
    let mut out: Vec<(String, String)> = info
        .uncompressed_latin1_text
        .iter()
        .map(|t| (t.keyword.clone(), t.text.clone()))
        .collect();
    for chunk in &info.utf8_text {
        if let Ok(text) = chunk.get_text() {
            out.push((chunk.keyword.clone(), text));
        }
    }
    Ok(out)
}

/// Images side by side in a grid of `columns` (2×2 for four images).
pub fn grid(images: &[RgbImage], columns: usize) -> Result<RgbImage> {
    let first = images
        .first()
        .ok_or_else(|| EngineError::InvalidRequest("a grid needs at least one image".into()))?;
    let (w, h) = first.dimensions();
    if images.iter().any(|image| image.dimensions() != (w, h)) {
        return Err(EngineError::InvalidRequest(
            "grid images differ in size".into(),
        ));
    }
    let columns = columns.clamp(1, images.len());
    let rows = images.len().div_ceil(columns);
    let mut grid = RgbImage::new(w * columns as u32, h * rows as u32);
    for (i, image) in images.iter().enumerate() {
        let (x, y) = ((i % columns) as u32 * w, (i / columns) as u32 * h);
        image::imageops::replace(&mut grid, image, i64::from(x), i64::from(y));
    }
    Ok(grid)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Webp,
    Jpeg,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Jpeg => "jpg",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Format::Png => "image/png",
            Format::Webp => "image/webp",
            Format::Jpeg => "image/jpeg",
        }
    }
}

/// An image encoded to fit an upload limit.
#[derive(Debug, Clone)]
pub struct Fitted {
    pub bytes: Vec<u8>,
    pub format: Format,
    pub width: u32,
    pub height: u32,
}

/// The PNG when it fits in `limit` bytes; else lossless WebP (same pixels,
/// usually a quarter smaller); else JPEG at falling quality; else JPEG of
/// ever smaller copies. Fails only below 64 pixels a side.
pub fn fit_to_limit(png: Vec<u8>, image: &RgbImage, limit: usize) -> Result<Fitted> {
    if png.len() <= limit {
        return Ok(Fitted {
            bytes: png,
            format: Format::Png,
            width: image.width(),
            height: image.height(),
        });
    }
    let webp = encode_webp_lossless(image)?;
    if webp.len() <= limit {
        return Ok(Fitted {
            bytes: webp,
            format: Format::Webp,
            width: image.width(),
            height: image.height(),
        });
    }
    let mut current = image.clone();
    loop {
        for quality in [92u8, 85, 75, 60] {
            let bytes = encode_jpeg(&current, quality)?;
            if bytes.len() <= limit {
                return Ok(Fitted {
                    bytes,
                    format: Format::Jpeg,
                    width: current.width(),
                    height: current.height(),
                });
            }
        }
        let (w, h) = (current.width() * 3 / 4, current.height() * 3 / 4);
        if w.min(h) < 64 {
            return Err(EngineError::Image(format!(
                "cannot fit a {}x{} image in {limit} bytes",
                image.width(),
                image.height()
            )));
        }
        current = image::imageops::resize(image, w, h, image::imageops::FilterType::Lanczos3);
    }
}

pub fn encode_webp_lossless(image: &RgbImage) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut bytes)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| EngineError::Image(e.to_string()))?;
    Ok(bytes)
}

pub fn encode_jpeg(image: &RgbImage, quality: u8) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, quality)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| EngineError::Image(e.to_string()))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provenance() -> Provenance {
        Provenance {
            prompt: "a cozy coffee shop at sunset, «warm» light".to_owned(),
            negative_prompt: Some("blurry".to_owned()),
            seed: 42,
            steps: 4,
            guidance: 0.0,
            scheduler: "euler".to_owned(),
            model: "stabilityai/sd-turbo@main".to_owned(),
            clip_score: Some(31.25),
        }
    }

    fn noisy(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = (x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503)).wrapping_mul(2246822519);
            image::Rgb([(v >> 24) as u8, (v >> 16) as u8, (v >> 8) as u8])
        })
    }

    #[test]
    fn png_carries_provenance_and_the_ai_marker() {
        let png = encode_png(&noisy(16, 8), &provenance()).unwrap();
        let text = png_text(&png).unwrap();
        let get = |key: &str| text.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        assert_eq!(
            get("prompt").as_deref(),
            Some("a cozy coffee shop at sunset, «warm» light")
        );
        assert_eq!(get("seed").as_deref(), Some("42"));
        assert_eq!(get("model").as_deref(), Some("stabilityai/sd-turbo@main"));
        assert_eq!(get("clip_score").as_deref(), Some("31.25"));
        assert_eq!(
            get("DigitalSourceType").as_deref(),
            Some(IPTC_TRAINED_ALGORITHMIC_MEDIA)
        );
        assert!(
            get("XML:com.adobe.xmp")
                .unwrap()
                .contains("trainedAlgorithmicMedia")
        );
        let decoded = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(decoded, noisy(16, 8));
    }

    #[test]
    fn alt_text_says_what_and_stays_short() {
        assert_eq!(alt_text("a  red\nfox"), "AI-generated image: a red fox");
        let long = alt_text(&"word ".repeat(500));
        assert_eq!(long.chars().count(), 1000);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn grid_places_images_in_reading_order() {
        let colours = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [9, 9, 9]];
        let tiles: Vec<RgbImage> = colours
            .iter()
            .map(|c| RgbImage::from_pixel(4, 3, image::Rgb(*c)))
            .collect();
        let grid = grid(&tiles, 2).unwrap();
        assert_eq!(grid.dimensions(), (8, 6));
        assert_eq!(grid.get_pixel(0, 0).0, colours[0]);
        assert_eq!(grid.get_pixel(7, 0).0, colours[1]);
        assert_eq!(grid.get_pixel(0, 5).0, colours[2]);
        assert_eq!(grid.get_pixel(7, 5).0, colours[3]);
        assert!(grid_of_mixed_sizes_fails());
    }

    fn grid_of_mixed_sizes_fails() -> bool {
        grid(&[RgbImage::new(2, 2), RgbImage::new(3, 2)], 2).is_err()
    }

    #[test]
    fn fitting_re_encodes_then_downscales() {
        let image = noisy(512, 512);
        let png = encode_png(&image, &provenance()).unwrap();
        let kept = fit_to_limit(png.clone(), &image, png.len()).unwrap();
        assert_eq!((kept.format, kept.width), (Format::Png, 512));
        let jpeg = fit_to_limit(png.clone(), &image, png.len() / 2).unwrap();
        assert_ne!(jpeg.format, Format::Png);
        assert!(jpeg.bytes.len() <= png.len() / 2);
        let small = fit_to_limit(png.clone(), &image, 20_000).unwrap();
        assert!(small.width < 512 && small.bytes.len() <= 20_000);
        assert!(fit_to_limit(png, &image, 100).is_err());
    }

    #[test]
    fn lossless_webp_keeps_every_pixel_when_it_is_enough() {
        // A photo-like picture (a fixture of the CLIP tests).
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/clip-tiny/image_3.png"
        );
        let image = image::open(path).unwrap().to_rgb8();
        let png = encode_png(&image, &provenance()).unwrap();
        let webp = encode_webp_lossless(&image).unwrap();
        assert!(
            webp.len() < png.len(),
            "webp {} png {}",
            webp.len(),
            png.len()
        );
        let fitted = fit_to_limit(png, &image, webp.len()).unwrap();
        assert_eq!(fitted.format, Format::Webp);
        assert_eq!(
            image::load_from_memory(&fitted.bytes).unwrap().to_rgb8(),
            image
        );
    }
}
