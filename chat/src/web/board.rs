//! A channel's board: every result of the channel, newest (or most voted)
//! first, with prompt, requester, seeds, parameters, CLIP scores and votes;
//! each image full size with its provenance; a selection downloaded as a
//! ZIP of PNGs with their metadata, or as a contact sheet. Reached only
//! through a signed link ([`super::link`]): read-only, one channel, expiring.

use std::io::Write;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use chrono::{NaiveDate, Utc};
use image::RgbImage;
use image::imageops::FilterType;
use wordup_queue::{BoardEntry, BoardOrder, BoardQuery, JobId, Queue, Request};

use super::html::{escape, page};
use super::link::{BoardGrant, verify};
use crate::commands::remix::imagine_text;

/// Results on one board page.
pub const PAGE_RESULTS: i64 = 60;
/// Images in one download.
pub const MAX_PICKS: usize = 64;
/// A contact sheet's tile side, in pixels.
const SHEET_TILE: u32 = 256;
/// Tiles per contact sheet row.
const SHEET_COLUMNS: u32 = 4;

#[derive(Clone)]
pub struct BoardState {
    pub queue: Queue,
    /// The links' signing key (`WORDUP_BOARD_SECRET`).
    pub secret: Arc<Vec<u8>>,
}

pub fn router(state: BoardState) -> axum::Router {
    axum::Router::new()
        .route("/board/{token}", get(board_page))
        .route("/board/{token}/image/{job}/{idx}", get(image_page))
        .route("/board/{token}/png/{job}/{idx}", get(png))
        .route("/board/{token}/download", get(download))
        .with_state(state)
}

/// A board's filters, from its query string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filters {
    pub mine: bool,
    pub order: BoardOrder,
    pub day: Option<NaiveDate>,
}

/// Reads `mine=1`, `order=votes` and `day=YYYY-MM-DD`; anything else is ignored.
pub fn filters(query: &[(String, String)]) -> Filters {
    let mut filters = Filters::default();
    for (key, value) in query {
        match (key.as_str(), value.as_str()) {
            ("mine", "1") => filters.mine = true,
            ("order", "votes") => filters.order = BoardOrder::MostVoted,
            ("day", day) => filters.day = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok(),
            _ => {}
        }
    }
    filters
}

/// The images a download names (`pick=JOB-IDX`), at most [`MAX_PICKS`].
pub fn picks(query: &[(String, String)]) -> Vec<(JobId, i32)> {
    query
        .iter()
        .filter(|(key, _)| key == "pick")
        .filter_map(|(_, value)| {
            let (job, idx) = value.split_once('-')?;
            let job: i64 = job.parse().ok().filter(|j| *j > 0)?;
            let idx: i32 = idx.parse().ok().filter(|i| (0..16).contains(i))?;
            Some((JobId(job), idx))
        })
        .take(MAX_PICKS)
        .collect()
}

fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default()
}

/// Without a valid link nothing is shown, and the page does not say why.
fn refused() -> Response {
    (
        StatusCode::FORBIDDEN,
        Html(page(
            "Link not valid",
            "<h1>This link is not valid</h1><p>It may have expired. Ask for a new one with <b>/board</b> in the channel.</p>",
        )),
    )
        .into_response()
}

fn grant(state: &BoardState, token: &str) -> Option<BoardGrant> {
    verify(token, &state.secret, Utc::now()).ok()
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "board");
    (StatusCode::INTERNAL_SERVER_ERROR, "something went wrong").into_response()
}

async fn board_page(
    State(state): State<BoardState>,
    Path(token): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some(grant) = grant(&state, &token) else {
        return refused();
    };
    let filters = filters(&query_pairs(raw.as_deref()));
    let query = BoardQuery {
        platform: grant.platform.clone(),
        channel_id: grant.channel_id.clone(),
        user_id: filters.mine.then(|| grant.user_id.clone()),
        day: filters.day,
        order: filters.order,
        limit: PAGE_RESULTS,
    };
    match state.queue.board(&query).await {
        Ok(entries) => Html(board_html(&token, &grant, &filters, &entries)).into_response(),
        Err(e) => internal(e),
    }
}

/// The board's HTML: filters, then a card per result with a checkbox per
/// image for the download form.
pub fn board_html(
    token: &str,
    grant: &BoardGrant,
    filters: &Filters,
    entries: &[BoardEntry],
) -> String {
    let base = format!("/board/{token}");
    let link = |label: &str, query: &str, on: bool| {
        let label = escape(label);
        if on {
            format!("<b>{label}</b>")
        } else {
            format!("<a href=\"{base}{query}\">{label}</a>")
        }
    };
    let all = !filters.mine && filters.order == BoardOrder::Newest && filters.day.is_none();
    let mut body = format!(
        "<h1>Board of {} channel {}</h1><nav>{} {} {}</nav>\
         <form method=\"get\" action=\"{base}\"><label>Day <input type=\"date\" name=\"day\" value=\"{}\"></label> <button>Show</button></form>",
        escape(&grant.platform),
        escape(&grant.channel_id),
        link("All, newest first", "", all),
        link("Mine", "?mine=1", filters.mine),
        link(
            "Most voted",
            "?order=votes",
            filters.order == BoardOrder::MostVoted
        ),
        filters.day.map(|d| d.to_string()).unwrap_or_default(),
    );
    if entries.is_empty() {
        body.push_str("<p>No results here yet.</p>");
        return page("Board", &body);
    }
    body.push_str(&format!(
        "<form method=\"get\" action=\"{base}/download\">\
         <p>Tick images, then <button name=\"format\" value=\"zip\">Download ZIP</button> \
         <button name=\"format\" value=\"sheet\">Contact sheet</button></p><div class=\"results\">"
    ));
    for entry in entries {
        body.push_str(&entry_html(&base, entry));
    }
    body.push_str("</div></form>");
    page("Board", &body)
}

fn entry_html(base: &str, entry: &BoardEntry) -> String {
    let job = entry.job.id;
    let mut tiles = String::new();
    for image in &entry.images {
        tiles.push_str(&format!(
            "<label><a href=\"{base}/image/{job}/{idx}\"><img src=\"{base}/png/{job}/{idx}\" \
             width=\"{w}\" height=\"{h}\" loading=\"lazy\" alt=\"image {n} of job {job}\"></a>\
             <input type=\"checkbox\" name=\"pick\" value=\"{job}-{idx}\"> {n}</label>",
            idx = image.idx,
            n = image.idx + 1,
            w = image.width,
            h = image.height,
        ));
    }
    let seeds = entry
        .images
        .iter()
        .map(|i| i.seed.to_string())
        .collect::<Vec<_>>()
        .join(" / ");
    let scores = entry
        .images
        .iter()
        .map(|i| i.score.map_or("–".to_owned(), |s| format!("{s:.1}")))
        .collect::<Vec<_>>()
        .join(" / ");
    let clip = if entry.images.iter().any(|i| i.score.is_some()) {
        format!(" · CLIP {scores}")
    } else {
        String::new()
    };
    format!(
        "<div class=\"result\" id=\"job-{job}\"><div class=\"tiles\">{tiles}</div>\
         <p class=\"prompt\">{}</p><p class=\"meta\">{} · by {} · {} · seeds {seeds}{clip} · 👍 {}</p></div>",
        escape(&prompt_of(&entry.job.request)),
        escape(kind_of(&entry.job.request)),
        escape(&entry.job.origin.user_id),
        entry
            .job
            .finished_at
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default(),
        entry.votes,
    )
}

/// The /imagine a result was drawn for, as it could be typed; follow-ups
/// other than remixes name their parent.
fn prompt_of(request: &Request) -> String {
    match request {
        Request::Imagine(imagine) => imagine_text(imagine),
        Request::Vary {
            remix: Some(remix), ..
        } => imagine_text(remix),
        other => match other.parent() {
            Some(parent) => format!("from job {parent}"),
            None => String::new(),
        },
    }
}

fn kind_of(request: &Request) -> &'static str {
    match request {
        Request::Imagine(_) => "grid",
        Request::Vary { remix: Some(_), .. } => "remix",
        Request::Vary { .. } => "variations",
        Request::Reroll { .. } => "re-roll",
        Request::Upscale { .. } => "upscale",
        _ => "result",
    }
}

/// The board entry of `job`, if it is a result of the grant's channel.
async fn entry_in(
    state: &BoardState,
    grant: &BoardGrant,
    job: JobId,
) -> Result<Option<BoardEntry>, Response> {
    let Some(found) = state.queue.job(job).await.map_err(internal)? else {
        return Ok(None);
    };
    if found.origin.platform != grant.platform || found.origin.channel_id != grant.channel_id {
        return Ok(None);
    }
    let images = state.queue.image_list(job).await.map_err(internal)?;
    let votes = state.queue.votes(job).await.map_err(internal)?;
    Ok(Some(BoardEntry {
        job: found,
        votes,
        images,
    }))
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(page("Not found", "<h1>No such image on this board</h1>")),
    )
        .into_response()
}

/// One image full size, with its provenance.
async fn image_page(
    State(state): State<BoardState>,
    Path((token, job, idx)): Path<(String, i64, i32)>,
) -> Response {
    let Some(grant) = grant(&state, &token) else {
        return refused();
    };
    let entry = match entry_in(&state, &grant, JobId(job)).await {
        Ok(Some(entry)) => entry,
        Ok(None) => return not_found(),
        Err(response) => return response,
    };
    let Some(image) = entry.images.iter().find(|i| i.idx == idx) else {
        return not_found();
    };
    let body = format!(
        "<p><a href=\"/board/{token}#job-{job}\">← the board</a></p>\
         <div class=\"full\"><img src=\"/board/{token}/png/{job}/{idx}\" width=\"{w}\" height=\"{h}\" alt=\"image {n} of job {job}\"></div>\
         <p class=\"prompt\">{prompt}</p><ul class=\"meta\">\
         <li>{kind}, image {n} of job {job}</li><li>asked for by {user} on {platform}, channel {channel}</li>\
         <li>finished {finished}</li><li>seed {seed}</li><li>{w}×{h} pixels</li>{score}<li>👍 {votes}</li></ul>",
        prompt = escape(&prompt_of(&entry.job.request)),
        kind = escape(kind_of(&entry.job.request)),
        n = idx + 1,
        w = image.width,
        h = image.height,
        user = escape(&entry.job.origin.user_id),
        platform = escape(&entry.job.origin.platform),
        channel = escape(&entry.job.origin.channel_id),
        finished = entry
            .job
            .finished_at
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default(),
        seed = image.seed,
        score = image
            .score
            .map(|s| format!("<li>CLIP score {s:.1}</li>"))
            .unwrap_or_default(),
        votes = entry.votes,
    );
    Html(page(&format!("Job {job}, image {}", idx + 1), &body)).into_response()
}

/// A stored image's PNG. Stored images never change, so browsers may keep
/// them; privately, since the URL carries the link.
async fn png(
    State(state): State<BoardState>,
    Path((token, job, idx)): Path<(String, i64, i32)>,
) -> Response {
    let Some(grant) = grant(&state, &token) else {
        return refused();
    };
    match entry_in(&state, &grant, JobId(job)).await {
        Ok(Some(_)) => {}
        Ok(None) => return not_found(),
        Err(response) => return response,
    }
    match state.queue.image(JobId(job), idx).await {
        Ok(Some(image)) => png_response(image.png, &format!("\"{job}-{idx}\"")),
        Ok(None) => not_found(),
        Err(e) => internal(e),
    }
}

/// PNG bytes with caching headers.
pub fn png_response(png: Vec<u8>, etag: &str) -> Response {
    let mut response = png.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    if let Ok(etag) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, etag);
    }
    response
}

/// The ticked images as a ZIP (their PNGs and a `metadata.json`) or as a
/// contact sheet (one PNG of them side by side).
async fn download(
    State(state): State<BoardState>,
    Path(token): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let Some(grant) = grant(&state, &token) else {
        return refused();
    };
    let query = query_pairs(raw.as_deref());
    let picks = picks(&query);
    if picks.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            Html(page(
                "Nothing picked",
                &format!("<p>Tick some images first. <a href=\"/board/{token}\">Back to the board</a></p>"),
            )),
        )
            .into_response();
    }
    let mut files = Vec::with_capacity(picks.len());
    for (job, idx) in picks {
        let entry = match entry_in(&state, &grant, job).await {
            Ok(Some(entry)) => entry,
            Ok(None) => continue,
            Err(response) => return response,
        };
        let Some(meta) = entry.images.iter().find(|i| i.idx == idx) else {
            continue;
        };
        let png = match state.queue.image(job, idx).await {
            Ok(Some(image)) => image.png,
            Ok(None) => continue,
            Err(e) => return internal(e),
        };
        let metadata = serde_json::json!({
            "file": format!("job{job}-{}.png", idx + 1),
            "job": job.0,
            "image": idx + 1,
            "kind": kind_of(&entry.job.request),
            "prompt": prompt_of(&entry.job.request),
            "requester": entry.job.origin.user_id,
            "seed": meta.seed,
            "clip_score": meta.score,
            "votes": entry.votes,
            "finished_at": entry.job.finished_at,
        });
        files.push((metadata, png));
    }
    if files.is_empty() {
        return not_found();
    }
    let sheet = query.iter().any(|(k, v)| k == "format" && v == "sheet");
    let built = if sheet {
        contact_sheet(&files).map(|png| ("image/png", "contact-sheet.png", png))
    } else {
        zip_of(&files).map(|zip| ("application/zip", "board.zip", zip))
    };
    match built {
        Ok((content_type, name, bytes)) => {
            let mut response = bytes.into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            if let Ok(disposition) =
                HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
            {
                headers.insert(header::CONTENT_DISPOSITION, disposition);
            }
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => internal(e),
    }
}

/// A ZIP of the PNGs (stored: they are compressed already) and `metadata.json`.
pub fn zip_of(files: &[(serde_json::Value, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (metadata, png) in files {
        let name = metadata["file"].as_str().unwrap_or("image.png");
        zip.start_file(name, options).map_err(|e| e.to_string())?;
        zip.write_all(png).map_err(|e| e.to_string())?;
    }
    let metadata: Vec<&serde_json::Value> = files.iter().map(|(m, _)| m).collect();
    zip.start_file("metadata.json", options)
        .map_err(|e| e.to_string())?;
    zip.write_all(
        serde_json::to_string_pretty(&metadata)
            .map_err(|e| e.to_string())?
            .as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    Ok(zip.finish().map_err(|e| e.to_string())?.into_inner())
}

/// The images side by side, [`SHEET_COLUMNS`] to a row, each fitted in a
/// [`SHEET_TILE`]-pixel square on white, in the order picked.
pub fn contact_sheet(files: &[(serde_json::Value, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let count = files.len() as u32;
    let columns = count.clamp(1, SHEET_COLUMNS);
    let rows = count.div_ceil(columns);
    let mut sheet = RgbImage::from_pixel(
        columns * SHEET_TILE,
        rows * SHEET_TILE,
        image::Rgb([255, 255, 255]),
    );
    for (n, (_, png)) in files.iter().enumerate() {
        let image = image::load_from_memory(png).map_err(|e| e.to_string())?;
        let tile = image
            .resize(SHEET_TILE, SHEET_TILE, FilterType::Triangle)
            .to_rgb8();
        let (column, row) = (n as u32 % columns, n as u32 / columns);
        let x = column * SHEET_TILE + (SHEET_TILE - tile.width()) / 2;
        let y = row * SHEET_TILE + (SHEET_TILE - tile.height()) / 2;
        image::imageops::replace(&mut sheet, &tile, i64::from(x), i64::from(y));
    }
    let mut png = Vec::new();
    sheet
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &str) -> Vec<(String, String)> {
        query_pairs(Some(query))
    }

    #[test]
    fn filters_and_picks_come_from_the_query() {
        for (query, expected) in [
            ("", Filters::default()),
            (
                "mine=1&order=votes",
                Filters {
                    mine: true,
                    order: BoardOrder::MostVoted,
                    day: None,
                },
            ),
            (
                "day=2026-12-02&mine=0&order=x",
                Filters {
                    day: NaiveDate::from_ymd_opt(2026, 12, 2),
                    ..Filters::default()
                },
            ),
            ("day=yesterday", Filters::default()),
        ] {
            assert_eq!(filters(&pairs(query)), expected, "{query}");
        }
        assert_eq!(
            picks(&pairs(
                "pick=12-0&pick=12-3&pick=x&pick=0-1&pick=5-99&format=zip"
            )),
            [(JobId(12), 0), (JobId(12), 3)]
        );
        let many = (0..100)
            .map(|i| format!("pick={}-0", i + 1))
            .collect::<Vec<_>>()
            .join("&");
        assert_eq!(picks(&pairs(&many)).len(), MAX_PICKS);
    }

    fn png_of(width: u32, height: u32) -> Vec<u8> {
        let mut png = Vec::new();
        RgbImage::from_pixel(width, height, image::Rgb([200, 10, 10]))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        png
    }

    #[test]
    fn a_download_holds_the_pngs_and_their_metadata() {
        let files: Vec<(serde_json::Value, Vec<u8>)> = (1..=2)
            .map(|n| {
                (
                    serde_json::json!({ "file": format!("job7-{n}.png"), "seed": n }),
                    png_of(8, 8),
                )
            })
            .collect();
        let zip = zip_of(&files).unwrap();
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
        assert_eq!(archive.len(), 3);
        let mut png = Vec::new();
        std::io::Read::read_to_end(&mut archive.by_name("job7-2.png").unwrap(), &mut png).unwrap();
        assert_eq!(png, files[1].1);
        let mut metadata = String::new();
        std::io::Read::read_to_string(
            &mut archive.by_name("metadata.json").unwrap(),
            &mut metadata,
        )
        .unwrap();
        let metadata: serde_json::Value = serde_json::from_str(&metadata).unwrap();
        assert_eq!(metadata[1]["seed"], 2);

        // Five images: a sheet of four columns and two rows.
        let five: Vec<_> = (0..5)
            .map(|_| (serde_json::json!({}), png_of(64, 32)))
            .collect();
        let sheet = image::load_from_memory(&contact_sheet(&five).unwrap())
            .unwrap()
            .to_rgb8();
        assert_eq!(sheet.dimensions(), (4 * SHEET_TILE, 2 * SHEET_TILE));
        // Each image is fitted in its tile, centred, on white.
        assert_eq!(
            sheet.get_pixel(SHEET_TILE / 2, SHEET_TILE / 2).0,
            [200, 10, 10]
        );
        assert_eq!(sheet.get_pixel(2, 2).0, [255, 255, 255]);
        assert_eq!(
            sheet
                .get_pixel(SHEET_TILE + SHEET_TILE / 2, SHEET_TILE + 2)
                .0,
            [255, 255, 255]
        );
    }
}
