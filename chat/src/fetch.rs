//! Fetching an image a user points the bot at (a Discord attachment, a Slack
//! file) for `/describe` and image prompts.
//!
//! The link comes from a user, so everything about it is refused unless
//! known to be safe: only the platform's own file hosts over https, no
//! redirect off them, the bot token only ever sent to them, the body cut off
//! at a size limit whatever the server says its length is, the format
//! sniffed from the bytes rather than the Content-Type, and the pixel count
//! read from the header and checked before anything is decoded.

use std::io::Cursor;
use std::time::Duration;

use image::{ImageError, ImageFormat, ImageReader, Limits, RgbImage};
use reqwest::{StatusCode, Url, header};
use wordup_runtime::secret::Secret;

use crate::delivery::Transience;

/// 10 MiB: Discord's default upload limit, so every attachment a server
/// without boosts can hold, and far more than a photo or a generated image
/// needs once it is scaled to what CLIP and Stable Diffusion read (224 to
/// 1024 pixels a side).
pub const MAX_BYTES: u64 = 10 * 1024 * 1024;

/// 40 megapixels: more than phone cameras save by default (12 to 24 MP) and
/// than any screenshot, while bounding what a decode allocates (8 bytes a
/// pixel at most, for 16-bit RGBA: 320 MB). The byte limit bounds nothing
/// here: a PNG's zlib stream compresses a plain image about 1000:1, so a
/// 10 MB file can claim gigapixels.
pub const MAX_PIXELS: u64 = 40_000_000;

/// Redirects followed, each within the allowed hosts.
pub const MAX_REDIRECTS: usize = 3;

/// For the whole fetch, body included: a server that trickles bytes must
/// not hold a command forever.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Whose files a policy fetches; it names the platform in error texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Discord,
    Slack,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Platform::Discord => "Discord",
            Platform::Slack => "Slack",
        })
    }
}

/// What [`fetch_image`] may fetch, and with what credentials.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    pub platform: Platform,
    /// Hosts matched exactly (no subdomains): `host` allows https on the
    /// default port; `host:port` allows that port over https or plain http,
    /// which only tests and fakes list.
    pub hosts: Vec<String>,
    pub max_bytes: u64,
    pub max_pixels: u64,
    /// Sent as `Authorization: Bearer`, and only to the hosts above.
    pub bearer: Option<Secret>,
}

impl FetchPolicy {
    /// Discord's attachment hosts. No token: attachment URLs are signed
    /// (their `ex`, `is` and `hm` parameters), which is also why they are
    /// never shown in an error.
    pub fn discord() -> FetchPolicy {
        FetchPolicy {
            platform: Platform::Discord,
            hosts: vec!["cdn.discordapp.com".into(), "media.discordapp.net".into()],
            max_bytes: MAX_BYTES,
            max_pixels: MAX_PIXELS,
            bearer: None,
        }
    }

    /// Slack's file host: a file's `url_private` needs the bot token.
    pub fn slack(bot_token: Secret) -> FetchPolicy {
        FetchPolicy {
            platform: Platform::Slack,
            hosts: vec!["files.slack.com".into()],
            max_bytes: MAX_BYTES,
            max_pixels: MAX_PIXELS,
            bearer: Some(bot_token),
        }
    }

    /// The same policy for these hosts instead (a fake on `127.0.0.1:port`).
    pub fn with_hosts<S: Into<String>>(self, hosts: impl IntoIterator<Item = S>) -> FetchPolicy {
        FetchPolicy {
            hosts: hosts
                .into_iter()
                .map(|h| h.into().to_ascii_lowercase())
                .collect(),
            ..self
        }
    }

    /// The link as a URL [`fetch_image`] would fetch, or why not. Cheap and
    /// offline: a command can refuse a link before queueing anything.
    pub fn check_url(&self, url: &str) -> Result<Url, FetchError> {
        let url = Url::parse(url.trim()).map_err(|_| FetchError::BadUrl)?;
        self.check(&url)?;
        Ok(url)
    }

    fn check(&self, url: &Url) -> Result<(), FetchError> {
        let refused = FetchError::HostNotAllowed(self.platform);
        if !matches!(url.scheme(), "https" | "http") {
            return Err(FetchError::NotHttps);
        }
        // Credentials in a link are a trick (the host of
        // `https://cdn.discordapp.com@evil.com/` is evil.com) or someone's
        // secret; no file host link has them.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refused);
        }
        // The parsed host, the one reqwest connects to: lowercased, IDNA and
        // percent-decoding applied, IPv6 in brackets. Compared whole, so
        // neither `cdn.discordapp.com.evil.com` nor an IP literal passes
        // unless listed.
        let Some(host) = url.host_str() else {
            return Err(refused);
        };
        let listed = |entry: &str| self.hosts.iter().any(|h| h == entry);
        let allowed = match (url.scheme(), url.port()) {
            ("https", None) => listed(host),
            (_, Some(port)) => listed(&format!("{host}:{port}")),
            _ => return Err(FetchError::NotHttps),
        };
        if allowed { Ok(()) } else { Err(refused) }
    }
}

/// An image fetched and decoded.
#[derive(Debug, Clone)]
pub struct FetchedImage {
    pub image: RgbImage,
    /// As sniffed from the bytes: PNG, JPEG or WebP.
    pub format: ImageFormat,
    /// The file's size.
    pub bytes: usize,
}

/// Why an image was not fetched. Display texts are for the user; none holds
/// the URL (signed for Discord) or the token.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("that is not a link")]
    BadUrl,
    #[error("images are only fetched over https")]
    NotHttps,
    #[error("images are only fetched from {0}'s own file hosts")]
    HostNotAllowed(Platform),
    #[error("the file host sent us elsewhere; images are only fetched from {0}'s own file hosts")]
    Redirected(Platform),
    #[error("the file host sent us through too many redirects")]
    TooManyRedirects,
    #[error("that file is gone; upload it again")]
    Gone,
    /// A login page (Slack answers one with 200 when the token lacks the
    /// scope) or a 401/403 from Slack.
    #[error("Slack would not give the file: the app needs the files:read scope")]
    SlackNoAccess,
    #[error("the file host answered HTTP {0}")]
    Status(u16),
    /// Kept without its URL.
    #[error("could not fetch the file: {0}")]
    Network(reqwest::Error),
    /// `bytes` is `None` when the body ran over the limit while being read.
    #[error("{}", too_large(*bytes, *limit))]
    TooLarge { bytes: Option<u64>, limit: u64 },
    #[error("that file is not a PNG, JPEG or WebP image")]
    NotAnImage,
    #[error(
        "that image is {width}×{height} pixels; the limit is {} megapixels",
        decimal(*limit as f64 / 1e6)
    )]
    TooManyPixels { width: u32, height: u32, limit: u64 },
    /// `detail` is the decoder's, for logs.
    #[error("that image could not be read: it may be damaged or cut short")]
    Undecodable { detail: String },
}

impl FetchError {
    /// Whether the same fetch may succeed later: connection failures,
    /// timeouts, 5xx, 429 and 408. Everything else is about the link or the
    /// file and will not change.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Network(_) => true,
            FetchError::Status(code) => *code >= 500 || *code == 429 || *code == 408,
            _ => false,
        }
    }

    fn network(e: reqwest::Error) -> FetchError {
        FetchError::Network(e.without_url())
    }

    fn undecodable(e: ImageError) -> FetchError {
        FetchError::Undecodable {
            detail: e.to_string(),
        }
    }
}

impl Transience for FetchError {
    fn is_transient(&self) -> bool {
        FetchError::is_transient(self)
    }
}

/// The client [`fetch_image`] is meant for: it follows no redirect itself,
/// so that every hop is checked against the policy before a request (and
/// the token) goes to it.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .build()
}

/// Fetches and decodes the image at `url` within `policy`. Use a client
/// from [`client`]: one that follows redirects itself still has the final
/// URL refused when it is off the allowed hosts, but only after reqwest has
/// requested it (without the `Authorization` header, which reqwest drops
/// across hosts).
pub async fn fetch_image(
    client: &reqwest::Client,
    url: &str,
    policy: &FetchPolicy,
) -> Result<FetchedImage, FetchError> {
    let mut url = policy.check_url(url)?;
    let mut redirects = 0;
    let mut response = loop {
        let mut request = client.get(url.clone()).timeout(TIMEOUT);
        if let Some(token) = &policy.bearer {
            // `url` passed the policy: the token goes to allowed hosts only.
            request = request.bearer_auth(token.expose());
        }
        let response = request.send().await.map_err(FetchError::network)?;
        if policy.check(response.url()).is_err() {
            return Err(FetchError::Redirected(policy.platform));
        }
        if !response.status().is_redirection() {
            break response;
        }
        let next = response
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| url.join(l).ok())
            .ok_or(FetchError::Status(response.status().as_u16()))?;
        if policy.check(&next).is_err() {
            return Err(FetchError::Redirected(policy.platform));
        }
        redirects += 1;
        if redirects > MAX_REDIRECTS {
            return Err(FetchError::TooManyRedirects);
        }
        url = next;
    };

    let status = response.status();
    match status {
        // Discord's signed links expire; Slack's files can be deleted.
        StatusCode::NOT_FOUND | StatusCode::GONE => return Err(FetchError::Gone),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN if policy.platform == Platform::Slack => {
            return Err(FetchError::SlackNoAccess);
        }
        s if !s.is_success() => return Err(FetchError::Status(s.as_u16())),
        _ => {}
    }

    // Refused before a byte of the body is read when the server admits it.
    let limit = policy.max_bytes;
    let length = response.content_length();
    if let Some(bytes) = length.filter(|&n| n > limit) {
        return Err(FetchError::TooLarge {
            bytes: Some(bytes),
            limit,
        });
    }
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|t| t.to_str().ok())
        .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("text/html"));
    // Counted while read, for servers that send no length (or a wrong one).
    let mut body = Vec::with_capacity(length.unwrap_or(0).min(limit) as usize);
    while let Some(chunk) = response.chunk().await.map_err(FetchError::network)? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(FetchError::TooLarge { bytes: None, limit });
        }
        body.extend_from_slice(&chunk);
    }

    let Some(format) = sniff(&body) else {
        let login_page = html || looks_like_html(&body);
        return Err(if login_page && policy.platform == Platform::Slack {
            FetchError::SlackNoAccess
        } else {
            FetchError::NotAnImage
        });
    };
    let bytes = body.len();
    let max_pixels = policy.max_pixels;
    // Decoding a large photo takes a while of CPU: off the async workers.
    let image = tokio::task::spawn_blocking(move || decode(&body, format, max_pixels))
        .await
        .map_err(|e| FetchError::Undecodable {
            detail: e.to_string(),
        })??;
    tracing::debug!(
        host = url.host_str(),
        bytes,
        ?format,
        width = image.width(),
        height = image.height(),
        "fetched an image"
    );
    Ok(FetchedImage {
        image,
        format,
        bytes,
    })
}

/// The format by its magic bytes; anything but PNG, JPEG and WebP is
/// `None`, whatever the server called it.
fn sniff(body: &[u8]) -> Option<ImageFormat> {
    if body.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if body.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if body.len() >= 12 && body.starts_with(b"RIFF") && &body[8..12] == b"WEBP" {
        Some(ImageFormat::WebP)
    } else {
        None
    }
}

fn looks_like_html(body: &[u8]) -> bool {
    let text = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    text.trim_ascii_start().starts_with(b"<")
}

/// The header's dimensions first, checked against `max_pixels` before any
/// pixel is decoded; then the decode, under an allocation limit in case a
/// decoder allocates more than the header announced.
fn decode(body: &[u8], format: ImageFormat, max_pixels: u64) -> Result<RgbImage, FetchError> {
    let (width, height) = ImageReader::with_format(Cursor::new(body), format)
        .into_dimensions()
        .map_err(FetchError::undecodable)?;
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(FetchError::TooManyPixels {
            width,
            height,
            limit: max_pixels,
        });
    }
    let mut reader = ImageReader::with_format(Cursor::new(body), format);
    let mut limits = Limits::default();
    // 8 bytes a pixel: a 16-bit RGBA image within the pixel limit decodes.
    limits.max_alloc = Some(max_pixels.saturating_mul(8));
    reader.limits(limits);
    let image = reader.decode().map_err(FetchError::undecodable)?;
    Ok(image.into_rgb8())
}

/// "14.2 MB", in the binary megabytes Discord and Slack both call MB.
fn too_large(bytes: Option<u64>, limit: u64) -> String {
    let mb = |n: u64| decimal(n as f64 / (1024.0 * 1024.0));
    match bytes {
        Some(bytes) => format!(
            "that file is {} MB; the limit is {} MB",
            mb(bytes),
            mb(limit)
        ),
        None => format!("that file is over the limit of {} MB", mb(limit)),
    }
}

/// One decimal, none when it would be `.0`.
fn decimal(x: f64) -> String {
    let text = format!("{x:.1}");
    text.strip_suffix(".0").map(str::to_owned).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::body::Body;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use image::{DynamicImage, Rgb};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    // ---- URLs, offline -------------------------------------------------

    #[derive(Debug, PartialEq)]
    enum Want {
        Ok,
        Https,
        Host,
        Bad,
    }

    fn check(policy: &FetchPolicy, url: &str, want: Want) {
        let got = match policy.check_url(url) {
            Ok(_) => Want::Ok,
            Err(FetchError::NotHttps) => Want::Https,
            Err(FetchError::HostNotAllowed(_)) => Want::Host,
            Err(FetchError::BadUrl) => Want::Bad,
            Err(e) => panic!("{url}: unexpected {e:?}"),
        };
        assert_eq!(got, want, "{url}");
    }

    #[test]
    fn discord_links_only_to_discords_file_hosts() {
        let policy = FetchPolicy::discord().with_hosts([
            "cdn.discordapp.com",
            "media.discordapp.net",
            "127.0.0.1:8080",
        ]);
        for (url, want) in [
            (
                "https://cdn.discordapp.com/attachments/1/2/cat.png?ex=1&is=2&hm=abc",
                Want::Ok,
            ),
            (
                "https://media.discordapp.net/attachments/1/2/cat.png",
                Want::Ok,
            ),
            ("  https://cdn.discordapp.com/a.png  ", Want::Ok),
            ("https://CDN.DiscordApp.com/a.png", Want::Ok),
            ("https://cdn.discordapp.com:443/a.png", Want::Ok),
            // IDNA maps the ideographic full stop to '.': the same host.
            ("https://cdn\u{3002}discordapp\u{3002}com/a.png", Want::Ok),
            ("http://cdn.discordapp.com/a.png", Want::Https),
            ("ftp://cdn.discordapp.com/a.png", Want::Https),
            ("file:///etc/passwd", Want::Https),
            ("data:image/png;base64,iVBORw0KGgo=", Want::Https),
            ("https://cdn.discordapp.com.evil.com/a.png", Want::Host),
            ("https://cdn.discordapp.com%2eevil.com/a.png", Want::Host),
            ("https://evilcdn.discordapp.com/a.png", Want::Host),
            ("https://discordapp.com/a.png", Want::Host),
            ("https://cdn.discordapp.com./a.png", Want::Host),
            ("https://evil.com/cdn.discordapp.com/a.png", Want::Host),
            (
                "https://evil.com/?u=https://cdn.discordapp.com/a.png",
                Want::Host,
            ),
            ("https://cdn.discordapp.com@evil.com/a.png", Want::Host),
            ("https://cdn.discordapp.com:x@evil.com/a.png", Want::Host),
            ("https://user:pw@cdn.discordapp.com/a.png", Want::Host),
            ("https://evil.com\\@cdn.discordapp.com/a.png", Want::Host),
            ("https://cdn.discordapp.com:8443/a.png", Want::Host),
            (
                "https://files.slack.com/files-pri/T1-F1/cat.png",
                Want::Host,
            ),
            ("https://127.0.0.1/a.png", Want::Host),
            ("https://[::1]/a.png", Want::Host),
            ("https://169.254.169.254/latest/meta-data", Want::Host),
            // Listed with its port: plain http allowed there, and only there.
            ("http://127.0.0.1:8080/a.png", Want::Ok),
            ("http://0x7f.0.0.1:8080/a.png", Want::Ok),
            ("http://127.0.0.1:8081/a.png", Want::Host),
            ("http://localhost:8080/a.png", Want::Host),
            ("http://127.0.0.1/a.png", Want::Https),
            ("cdn.discordapp.com/a.png", Want::Bad),
            ("", Want::Bad),
            ("https://", Want::Bad),
        ] {
            check(&policy, url, want);
        }
    }

    #[test]
    fn slack_links_only_to_slacks_file_host() {
        let policy = FetchPolicy::slack(Secret::new("xoxb-1"));
        for (url, want) in [
            ("https://files.slack.com/files-pri/T1-F1/cat.png", Want::Ok),
            (
                "https://files.slack.com.evil.com/files-pri/T1-F1/cat.png",
                Want::Host,
            ),
            ("https://slack-files.com/T1-F1-abc", Want::Host),
            (
                "https://cdn.discordapp.com/attachments/1/2/cat.png",
                Want::Host,
            ),
            (
                "http://files.slack.com/files-pri/T1-F1/cat.png",
                Want::Https,
            ),
        ] {
            check(&policy, url, want);
        }
    }

    #[test]
    fn refusals_read_as_sentences_for_the_user() {
        for (error, text) in [
            (
                FetchError::TooLarge {
                    bytes: Some(14_889_779),
                    limit: MAX_BYTES,
                },
                "that file is 14.2 MB; the limit is 10 MB",
            ),
            (
                FetchError::TooLarge {
                    bytes: None,
                    limit: MAX_BYTES,
                },
                "that file is over the limit of 10 MB",
            ),
            (
                FetchError::TooManyPixels {
                    width: 12000,
                    height: 12000,
                    limit: MAX_PIXELS,
                },
                "that image is 12000×12000 pixels; the limit is 40 megapixels",
            ),
            (
                FetchError::NotAnImage,
                "that file is not a PNG, JPEG or WebP image",
            ),
            (
                FetchError::HostNotAllowed(Platform::Discord),
                "images are only fetched from Discord's own file hosts",
            ),
            (
                FetchError::SlackNoAccess,
                "Slack would not give the file: the app needs the files:read scope",
            ),
        ] {
            assert_eq!(error.to_string(), text);
        }
        assert!(FetchError::Status(503).is_transient());
        assert!(FetchError::Status(429).is_transient());
        assert!(!FetchError::Status(400).is_transient());
        assert!(!FetchError::NotAnImage.is_transient());
    }

    #[test]
    fn sniffs_only_our_three_formats() {
        assert_eq!(sniff(&encoded(ImageFormat::Png)), Some(ImageFormat::Png));
        assert_eq!(sniff(&encoded(ImageFormat::Jpeg)), Some(ImageFormat::Jpeg));
        assert_eq!(sniff(&encoded(ImageFormat::WebP)), Some(ImageFormat::WebP));
        assert_eq!(sniff(GIF), None);
        assert_eq!(sniff(b"RIFF\0\0\0\0WAVEfmt "), None);
        assert_eq!(sniff(b"<!doctype html>"), None);
        assert_eq!(sniff(b""), None);
    }

    // ---- Files -----------------------------------------------------------

    const WIDTH: u32 = 64;
    const HEIGHT: u32 = 48;
    const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;";
    const LOGIN_PAGE: &str = "<!DOCTYPE html><html><head><title>Slack</title></head>\
                              <body>Sign in to your workspace</body></html>";

    fn picture() -> RgbImage {
        RgbImage::from_fn(WIDTH, HEIGHT, |x, y| {
            Rgb([(x * 4) as u8, (y * 5) as u8, ((x + y) * 2) as u8])
        })
    }

    /// WebP is written lossless (the only WebP `image` encodes).
    fn encoded(format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(picture())
            .write_to(&mut out, format)
            .unwrap();
        out.into_inner()
    }

    /// A PNG whose header claims `width`×`height` and whose data is a few
    /// bytes: a decompression bomb as far as anything reading its header
    /// can tell. Decoding it would fail, so a refusal for its pixel count
    /// shows that the header was checked first.
    fn png_claiming(width: u32, height: u32) -> Vec<u8> {
        fn crc32(bytes: &[u8]) -> u32 {
            let mut crc = !0u32;
            for &b in bytes {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 == 1 {
                        (crc >> 1) ^ 0xEDB8_8320
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        }
        fn chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
            png.extend((data.len() as u32).to_be_bytes());
            let start = png.len();
            png.extend(kind);
            png.extend(data);
            let crc = crc32(&png[start..]);
            png.extend(crc.to_be_bytes());
        }
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend(width.to_be_bytes());
        ihdr.extend(height.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB, no interlace
        chunk(&mut png, b"IHDR", &ihdr);
        chunk(&mut png, b"IDAT", &[0x78, 0x9C, 0x63, 0x00, 0x00]);
        chunk(&mut png, b"IEND", &[]);
        png
    }

    #[test]
    fn a_bomb_is_refused_from_its_header() {
        let png = png_claiming(20_000, 20_000);
        assert!(matches!(
            decode(&png, ImageFormat::Png, MAX_PIXELS),
            Err(FetchError::TooManyPixels {
                width: 20_000,
                height: 20_000,
                ..
            })
        ));
        // Within the limit, the same bytes get as far as decoding.
        assert!(matches!(
            decode(&png_claiming(100, 100), ImageFormat::Png, MAX_PIXELS),
            Err(FetchError::Undecodable { .. })
        ));
    }

    // ---- Over HTTP ---------------------------------------------------------

    const TOKEN: &str = "xoxb-test-token";
    const BIG: usize = 12 * 1024 * 1024;

    /// A request's path and its Authorization header.
    type Request = (String, Option<String>);

    /// Every request a server saw.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<Request>>>);

    impl Seen {
        fn record(&self, uri: &Uri, headers: &HeaderMap) {
            let auth = headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned());
            self.0.lock().unwrap().push((uri.path().to_owned(), auth));
        }

        fn all(&self) -> Vec<Request> {
            self.0.lock().unwrap().clone()
        }
    }

    #[derive(Clone)]
    struct Files {
        seen: Seen,
        elsewhere: SocketAddr,
    }

    fn typed(content_type: &'static str, body: impl Into<Body>) -> Response {
        ([("content-type", content_type)], body.into()).into_response()
    }

    async fn file(State(files): State<Files>, uri: Uri, headers: HeaderMap) -> Response {
        files.seen.record(&uri, &headers);
        let redirect = |to: String| (StatusCode::FOUND, [("location", to)]).into_response();
        match uri.path() {
            "/png" => typed("image/png", encoded(ImageFormat::Png)),
            "/jpeg" => typed("image/jpeg", encoded(ImageFormat::Jpeg)),
            "/webp" => typed("image/webp", encoded(ImageFormat::WebP)),
            // Called a PNG, and a GIF all the same.
            "/gif" => typed("image/png", GIF),
            "/html" => typed("text/html; charset=utf-8", LOGIN_PAGE),
            "/bomb" => typed("image/png", png_claiming(20_000, 20_000)),
            // Axum states its length.
            "/big" => typed("image/png", vec![0u8; BIG]),
            // No length at all: a PNG's signature, then 12 MB streamed.
            "/stream" => {
                let chunks = (0..BIG / 65536).map(|i| {
                    let mut chunk = vec![0u8; 65536];
                    if i == 0 {
                        chunk[..8].copy_from_slice(b"\x89PNG\r\n\x1a\n");
                    }
                    Ok::<_, std::io::Error>(chunk)
                });
                typed(
                    "image/png",
                    Body::from_stream(futures::stream::iter(chunks)),
                )
            }
            "/unavailable" => StatusCode::SERVICE_UNAVAILABLE.into_response(),
            "/expired" => StatusCode::NOT_FOUND.into_response(),
            "/home" => redirect("/png".into()),
            "/away" => redirect(format!("http://{}/png", files.elsewhere)),
            "/loop" => redirect("/loop".into()),
            // As Slack does: the file for the bot token, a login page
            // with 200 otherwise.
            "/slack/cat.png" => {
                let want = format!("Bearer {TOKEN}");
                if headers.get("authorization").is_some_and(|a| *a == *want) {
                    typed("image/png", encoded(ImageFormat::Png))
                } else {
                    typed("text/html", LOGIN_PAGE)
                }
            }
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    }

    async fn listen(app: Router) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    /// The file server, and another host that records what reaches it.
    struct Servers {
        files: SocketAddr,
        elsewhere: SocketAddr,
        seen: Seen,
        seen_elsewhere: Seen,
    }

    impl Servers {
        async fn start() -> Servers {
            let seen_elsewhere = Seen::default();
            let elsewhere = listen(Router::new().fallback({
                let seen = seen_elsewhere.clone();
                move |uri: Uri, headers: HeaderMap| async move {
                    seen.record(&uri, &headers);
                    typed("image/png", encoded(ImageFormat::Png))
                }
            }))
            .await;
            let seen = Seen::default();
            let files = listen(Router::new().fallback(get(file)).with_state(Files {
                seen: seen.clone(),
                elsewhere,
            }))
            .await;
            Servers {
                files,
                elsewhere,
                seen,
                seen_elsewhere,
            }
        }

        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.files)
        }

        fn discord(&self) -> FetchPolicy {
            FetchPolicy::discord().with_hosts([self.files.to_string()])
        }

        fn slack(&self, token: &str) -> FetchPolicy {
            FetchPolicy::slack(Secret::new(token)).with_hosts([self.files.to_string()])
        }

        async fn fetch(
            &self,
            path: &str,
            policy: &FetchPolicy,
        ) -> Result<FetchedImage, FetchError> {
            fetch_image(&client().unwrap(), &self.url(path), policy).await
        }
    }

    #[tokio::test]
    async fn fetches_png_jpeg_and_webp() {
        let servers = Servers::start().await;
        for (path, format) in [
            ("/png", ImageFormat::Png),
            ("/jpeg", ImageFormat::Jpeg),
            ("/webp", ImageFormat::WebP),
        ] {
            let fetched = servers.fetch(path, &servers.discord()).await.unwrap();
            assert_eq!(fetched.format, format, "{path}");
            assert_eq!(fetched.bytes, encoded(format).len(), "{path}");
            assert_eq!(fetched.image.dimensions(), (WIDTH, HEIGHT), "{path}");
            if format != ImageFormat::Jpeg {
                assert_eq!(fetched.image, picture(), "{path}: lossless");
            }
        }
    }

    #[tokio::test]
    async fn refuses_what_is_not_a_safe_image() {
        let servers = Servers::start().await;
        let discord = servers.discord();
        let small = FetchPolicy {
            max_pixels: u64::from(WIDTH * HEIGHT) - 1,
            ..servers.discord()
        };
        type Expected = fn(&FetchError) -> bool;
        let cases: [(&str, &FetchPolicy, Expected); 8] = [
            ("/gif", &discord, |e| matches!(e, FetchError::NotAnImage)),
            ("/html", &discord, |e| matches!(e, FetchError::NotAnImage)),
            ("/bomb", &discord, |e| {
                matches!(
                    e,
                    FetchError::TooManyPixels {
                        width: 20_000,
                        height: 20_000,
                        ..
                    }
                )
            }),
            ("/png", &small, |e| {
                matches!(
                    e,
                    FetchError::TooManyPixels {
                        width: WIDTH,
                        height: HEIGHT,
                        ..
                    }
                )
            }),
            (
                "/big",
                &discord,
                |e| matches!(e, FetchError::TooLarge { bytes: Some(n), .. } if *n == BIG as u64),
            ),
            ("/stream", &discord, |e| {
                matches!(e, FetchError::TooLarge { bytes: None, .. })
            }),
            ("/expired", &discord, |e| matches!(e, FetchError::Gone)),
            ("/loop", &discord, |e| {
                matches!(e, FetchError::TooManyRedirects)
            }),
        ];
        for (path, policy, want) in cases {
            let error = servers.fetch(path, policy).await.unwrap_err();
            assert!(want(&error), "{path}: {error:?}");
            assert!(!error.is_transient(), "{path}");
        }
        let loops = servers
            .seen
            .all()
            .iter()
            .filter(|(p, _)| p == "/loop")
            .count();
        assert_eq!(loops, 1 + MAX_REDIRECTS);
    }

    #[tokio::test]
    async fn a_stated_length_over_the_limit_is_refused_unread() {
        // Claims 12 MB and sends none of it: waiting for the body would hang.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await.unwrap();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: {BIG}\r\n\r\n"
            );
            socket.write_all(head.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        let policy = FetchPolicy::discord().with_hosts([addr.to_string()]);
        let (client, url) = (client().unwrap(), format!("http://{addr}/big.png"));
        let fetch = fetch_image(&client, &url, &policy);
        let error = tokio::time::timeout(Duration::from_secs(10), fetch)
            .await
            .expect("refused without reading the body")
            .unwrap_err();
        assert!(
            matches!(error, FetchError::TooLarge { bytes: Some(n), .. } if n == BIG as u64),
            "{error:?}"
        );
        assert_eq!(error.to_string(), "that file is 12 MB; the limit is 10 MB");
    }

    #[tokio::test]
    async fn follows_redirects_only_within_the_allowed_hosts() {
        let servers = Servers::start().await;
        let fetched = servers.fetch("/home", &servers.discord()).await.unwrap();
        assert_eq!(fetched.format, ImageFormat::Png);

        let error = servers
            .fetch("/away", &servers.discord())
            .await
            .unwrap_err();
        assert!(
            matches!(error, FetchError::Redirected(Platform::Discord)),
            "{error:?}"
        );
        assert!(servers.seen_elsewhere.all().is_empty());
    }

    #[tokio::test]
    async fn transient_failures_say_so() {
        let servers = Servers::start().await;
        let error = servers
            .fetch("/unavailable", &servers.discord())
            .await
            .unwrap_err();
        assert!(matches!(error, FetchError::Status(503)), "{error:?}");
        assert!(error.is_transient());

        // A closed port, and a signed link whose signature must not show.
        let closed = {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        let policy = FetchPolicy::discord().with_hosts([closed.to_string()]);
        let url = format!("http://{closed}/a.png?ex=1&hm=signature-secret");
        let error = fetch_image(&client().unwrap(), &url, &policy)
            .await
            .unwrap_err();
        assert!(matches!(error, FetchError::Network(_)), "{error:?}");
        assert!(error.is_transient());
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("signature-secret"), "{shown}");
        assert!(!error.to_string().contains("127.0.0.1"), "{error}");
    }

    #[tokio::test]
    async fn the_slack_token_goes_to_the_file_host_and_nowhere_else() {
        let servers = Servers::start().await;
        let slack = servers.slack(TOKEN);
        let fetched = servers.fetch("/slack/cat.png", &slack).await.unwrap();
        assert_eq!(fetched.image, picture());
        assert_eq!(
            servers.seen.all(),
            [("/slack/cat.png".to_owned(), Some(format!("Bearer {TOKEN}")))]
        );

        // Refused hosts get no request at all, token or not.
        let elsewhere = format!("http://{}/png", servers.elsewhere);
        let error = fetch_image(&client().unwrap(), &elsewhere, &slack)
            .await
            .unwrap_err();
        assert!(
            matches!(error, FetchError::HostNotAllowed(Platform::Slack)),
            "{error:?}"
        );
        let error = servers.fetch("/away", &slack).await.unwrap_err();
        assert!(
            matches!(error, FetchError::Redirected(Platform::Slack)),
            "{error:?}"
        );
        assert!(servers.seen_elsewhere.all().is_empty());

        // A client that follows redirects itself: reqwest drops the header
        // across hosts, and the final URL is refused all the same.
        let error = fetch_image(&reqwest::Client::new(), &servers.url("/away"), &slack)
            .await
            .unwrap_err();
        assert!(
            matches!(error, FetchError::Redirected(Platform::Slack)),
            "{error:?}"
        );
        assert_eq!(servers.seen_elsewhere.all(), [("/png".to_owned(), None)]);
    }

    #[tokio::test]
    async fn a_slack_login_page_means_a_missing_scope() {
        let servers = Servers::start().await;
        let wrong = "xoxb-without-files-read";
        for path in ["/slack/cat.png", "/html"] {
            let error = servers
                .fetch(path, &servers.slack(wrong))
                .await
                .unwrap_err();
            assert!(
                matches!(error, FetchError::SlackNoAccess),
                "{path}: {error:?}"
            );
            let shown = format!("{error} {error:?}");
            assert!(shown.contains("files:read"), "{shown}");
            assert!(!shown.contains(wrong), "{shown}");
        }
        // A policy's Debug hides the token too.
        assert!(!format!("{:?}", servers.slack(wrong)).contains(wrong));
    }
}
