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

/// The XMP namespace of our own provenance entries.
pub const XMP_NAMESPACE: &str = "urn:wordup:provenance:1";

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
    /// The draft decoder's id, for an image it decoded (`--draft`).
    pub draft_decoder: Option<String>,
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
        if let Some(decoder) = &self.draft_decoder {
            entries.push(("draft_decoder", decoder.clone()));
        }
        entries
    }

    /// An XMP packet carrying the IPTC digital source type, the description
    /// and every provenance entry (`wordup:prompt`, `wordup:seed`, …): the
    /// one carrier of provenance that PNG, WebP and JPEG all have.
    pub fn xmp(&self) -> String {
        let entries: String = self
            .entries()
            .into_iter()
            .filter(|(key, _)| !matches!(*key, "Software" | "Description" | "DigitalSourceType"))
            .map(|(key, value)| format!("<wordup:{key}>{}</wordup:{key}>", xml_escape(&value)))
            .collect();
        format!(
            concat!(
                "<?xpacket begin=\"\u{feff}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>",
                "<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">",
                "<rdf:Description rdf:about=\"\" xmlns:Iptc4xmpExt=\"http://iptc.org/std/Iptc4xmpExt/2008-02-29/\" ",
                "xmlns:dc=\"http://purl.org/dc/elements/1.1/\" xmlns:xmp=\"http://ns.adobe.com/xap/1.0/\" ",
                "xmlns:wordup=\"{}\">",
                "<Iptc4xmpExt:DigitalSourceType>{}</Iptc4xmpExt:DigitalSourceType>",
                "<xmp:CreatorTool>Word Up!</xmp:CreatorTool>",
                "<dc:description><rdf:Alt><rdf:li xml:lang=\"x-default\">{}</rdf:li></rdf:Alt></dc:description>",
                "{}",
                "</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end=\"w\"?>"
            ),
            XMP_NAMESPACE,
            IPTC_TRAINED_ALGORITHMIC_MEDIA,
            xml_escape(&alt_text(&self.prompt)),
            entries,
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
    capped_alt(IMAGE_ALT, prompt)
}

/// What alt text says one image is.
pub const IMAGE_ALT: &str = "AI-generated image";
/// What alt text says a 2×2 grid is.
pub const GRID_ALT: &str = "Four AI-generated images in a grid";

/// Alt text for the 2×2 grid of four images made from `prompt`, within the
/// same limit.
pub fn grid_alt_text(prompt: &str) -> String {
    capped_alt(GRID_ALT, prompt)
}

/// "{what}: {prompt}", the prompt cut to keep it within 1000 characters.
pub fn capped_alt(what: &str, prompt: &str) -> String {
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
/// ever smaller copies. Fails only below 64 pixels a side. WebP and JPEG
/// carry `xmp` (the PNG already carries it, see [`encode_png`]), so the
/// provenance survives re-encoding.
pub fn fit_to_limit(png: Vec<u8>, image: &RgbImage, limit: usize, xmp: &str) -> Result<Fitted> {
    if png.len() <= limit {
        return Ok(Fitted {
            bytes: png,
            format: Format::Png,
            width: image.width(),
            height: image.height(),
        });
    }
    let webp = with_webp_xmp(&encode_webp_lossless(image)?, image, xmp)?;
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
            let bytes = with_jpeg_xmp(&encode_jpeg(&current, quality)?, xmp)?;
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

/// The JPEG APP1 identifier of an XMP packet.
const JPEG_XMP_ID: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";

/// A simple-format WebP (`RIFF…WEBP` + one image chunk) turned into the
/// extended format with an `XMP ` chunk: a `VP8X` header with the XMP flag
/// and the canvas size, the image chunk, then the metadata.
pub fn with_webp_xmp(webp: &[u8], image: &RgbImage, xmp: &str) -> Result<Vec<u8>> {
    let malformed = || EngineError::Image("not a simple-format WebP".into());
    if webp.len() < 20 || &webp[..4] != b"RIFF" || &webp[8..12] != b"WEBP" {
        return Err(malformed());
    }
    if !matches!(&webp[12..16], b"VP8L" | b"VP8 ") {
        return Err(malformed());
    }
    let chunk = |fourcc: &[u8], data: &[u8]| {
        let mut out = Vec::with_capacity(data.len() + 9);
        out.extend_from_slice(fourcc);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(0);
        }
        out
    };
    let mut vp8x = vec![0x04, 0, 0, 0]; // XMP present; no ICC, alpha, EXIF or animation.
    vp8x.extend_from_slice(&(image.width() - 1).to_le_bytes()[..3]);
    vp8x.extend_from_slice(&(image.height() - 1).to_le_bytes()[..3]);
    let mut body = b"WEBP".to_vec();
    body.extend(chunk(b"VP8X", &vp8x));
    body.extend_from_slice(&webp[12..]);
    body.extend(chunk(b"XMP ", xmp.as_bytes()));
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend(body);
    Ok(out)
}

/// A JPEG with the XMP packet in an APP1 segment after the JFIF header.
pub fn with_jpeg_xmp(jpeg: &[u8], xmp: &str) -> Result<Vec<u8>> {
    let length = 2 + JPEG_XMP_ID.len() + xmp.len();
    if jpeg.len() < 4 || jpeg[..2] != [0xFF, 0xD8] || length > usize::from(u16::MAX) {
        return Err(EngineError::Image("cannot add XMP to this JPEG".into()));
    }
    // After SOI, and after an APP0 (JFIF) segment where there is one.
    let mut at = 2;
    if jpeg[2..4] == [0xFF, 0xE0] && jpeg.len() >= 6 {
        at += 2 + usize::from(u16::from_be_bytes([jpeg[4], jpeg[5]]));
    }
    let mut out = Vec::with_capacity(jpeg.len() + length + 2);
    out.extend_from_slice(&jpeg[..at]);
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&(length as u16).to_be_bytes());
    out.extend_from_slice(JPEG_XMP_ID);
    out.extend_from_slice(xmp.as_bytes());
    out.extend_from_slice(&jpeg[at..]);
    Ok(out)
}

/// The XMP packet a PNG, WebP or JPEG file carries, for tests and tools.
pub fn embedded_xmp(bytes: &[u8]) -> Option<String> {
    if bytes.starts_with(b"\x89PNG") {
        return png_text(bytes)
            .ok()?
            .into_iter()
            .find(|(key, _)| key == "XML:com.adobe.xmp")
            .map(|(_, xmp)| xmp);
    }
    if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        let mut at = 12;
        while at + 8 <= bytes.len() {
            let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().ok()?) as usize;
            let data = bytes.get(at + 8..at + 8 + size)?;
            if &bytes[at..at + 4] == b"XMP " {
                return String::from_utf8(data.to_vec()).ok();
            }
            at += 8 + size + size % 2;
        }
        return None;
    }
    if bytes.starts_with(&[0xFF, 0xD8]) {
        let mut at = 2;
        while at + 4 <= bytes.len() && bytes[at] == 0xFF && bytes[at + 1] != 0xDA {
            let length = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
            let data = bytes.get(at + 4..at + 2 + length)?;
            if bytes[at + 1] == 0xE1 && data.starts_with(JPEG_XMP_ID) {
                return String::from_utf8(data[JPEG_XMP_ID.len()..].to_vec()).ok();
            }
            at += 2 + length;
        }
    }
    None
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
            draft_decoder: Some("madebyollin/taesd@main".to_owned()),
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
            get("draft_decoder").as_deref(),
            Some("madebyollin/taesd@main")
        );
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
        let xmp = provenance().xmp();
        let kept = fit_to_limit(png.clone(), &image, png.len(), &xmp).unwrap();
        assert_eq!((kept.format, kept.width), (Format::Png, 512));
        let jpeg = fit_to_limit(png.clone(), &image, png.len() / 2, &xmp).unwrap();
        assert_ne!(jpeg.format, Format::Png);
        assert!(jpeg.bytes.len() <= png.len() / 2);
        let small = fit_to_limit(png.clone(), &image, 20_000, &xmp).unwrap();
        assert!(small.width < 512 && small.bytes.len() <= 20_000);
        assert!(fit_to_limit(png, &image, 100, &xmp).is_err());
        // Every format keeps the provenance, and the file still decodes.
        for fitted in [&kept, &jpeg, &small] {
            assert_eq!(embedded_xmp(&fitted.bytes).as_deref(), Some(xmp.as_str()));
            image::load_from_memory(&fitted.bytes).unwrap();
        }
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
        let xmp = provenance().xmp();
        let with_xmp = with_webp_xmp(&webp, &image, &xmp).unwrap();
        let fitted = fit_to_limit(png, &image, with_xmp.len(), &xmp).unwrap();
        assert_eq!(fitted.format, Format::Webp);
        assert_eq!(
            image::load_from_memory(&fitted.bytes).unwrap().to_rgb8(),
            image
        );
        let carried = embedded_xmp(&fitted.bytes).unwrap();
        for needle in [
            IPTC_TRAINED_ALGORITHMIC_MEDIA,
            "<wordup:seed>",
            "<wordup:model>",
            "<wordup:prompt>",
        ] {
            assert!(carried.contains(needle), "{needle} in {carried}");
        }
    }
}
