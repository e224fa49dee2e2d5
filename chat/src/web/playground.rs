//! The local playground: a page with a prompt box that is a channel of its
//! own (platform "web"). Prompts go through the same grammar, policy,
//! quotas, queue and engine as Discord's and Slack's; the page shows each
//! job's place in line, its progress and its grid with U1–U4, V1–V4 and 🔄,
//! read from Postgres (refreshing itself while a job is unfinished). It is
//! served on its own listener, on 127.0.0.1 unless a token guards it.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use wordup_queue::{GRID_IMAGES, Job, JobId, JobState, Origin, Request};
use wordup_runtime::secret::Secret;

use super::board::png_response;
use super::html::{escape, page};
use crate::buttons::{Action, ButtonId};
use crate::commands::answer::error_text;
use crate::commands::remix::imagine_text;
use crate::commands::{Commands, Invocation, imagine};

/// The playground's platform name, in jobs' origins.
pub const PLATFORM: &str = "web";
/// Its one channel.
pub const CHANNEL: &str = "playground";
/// Jobs listed on the page.
const LISTED: i64 = 12;
/// The cookie a token is kept in once given.
const COOKIE: &str = "wordup_play";

/// The id a playground result is recorded under (nothing is posted).
pub fn message_id(job: JobId) -> String {
    format!("web-{job}")
}

#[derive(Clone)]
pub struct PlaygroundState {
    pub commands: Commands,
    /// Required on every request when set (`WORDUP_PLAYGROUND_TOKEN`).
    pub token: Option<Secret>,
}

pub fn router(state: PlaygroundState) -> axum::Router {
    axum::Router::new()
        .route("/", get(home))
        .route("/imagine", post(imagine_form))
        .route("/press", post(press_form))
        .route("/png/{job}/{idx}", get(png))
        .route_layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// With a token set, a request needs it: as `?token=` (the page then keeps
/// it in a cookie) or in that cookie.
async fn guard(
    State(state): State<PlaygroundState>,
    Query(query): Query<TokenQuery>,
    headers: HeaderMap,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let Some(token) = &state.token else {
        return next.run(request).await;
    };
    let expected = token.expose();
    let from_cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(&format!("{COOKIE}=")))
        .any(|given| same(given, expected));
    let from_query = query
        .token
        .as_deref()
        .is_some_and(|given| same(given, expected));
    if !(from_cookie || from_query) {
        return (
            StatusCode::UNAUTHORIZED,
            Html(page(
                "Token needed",
                "<h1>This playground needs its token</h1><p>Open the link with <code>?token=…</code> that its operator gave you.</p>",
            )),
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    if from_query
        && let Ok(cookie) = HeaderValue::from_str(&format!(
            "{COOKIE}={expected}; HttpOnly; SameSite=Strict; Path=/"
        ))
    {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// Equal strings, compared in time independent of where they differ.
fn same(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn origin() -> Origin {
    Origin {
        platform: PLATFORM.to_owned(),
        workspace_id: "local".to_owned(),
        channel_id: CHANNEL.to_owned(),
        thread_id: None,
        user_id: "you".to_owned(),
    }
}

/// An invocation of the page's form `nonce` (a repeated submission makes
/// no second job).
fn invocation(nonce: &str) -> Invocation {
    Invocation {
        origin: origin(),
        idempotency_key: format!("{PLATFORM}:{nonce}"),
        channel_nsfw: false,
        reply: serde_json::json!({}),
    }
}

fn nonce() -> String {
    format!("{:032x}", rand::random::<u128>())
}

async fn home(State(state): State<PlaygroundState>) -> Response {
    render(&state, None, StatusCode::OK).await
}

/// The page: the prompt box (with `error` under it, if any) and the latest jobs.
async fn render(state: &PlaygroundState, error: Option<&str>, status: StatusCode) -> Response {
    let queue = &state.commands.queue;
    let jobs = match queue.channel_jobs(PLATFORM, CHANNEL, LISTED).await {
        Ok(jobs) => jobs,
        Err(e) => {
            tracing::error!(error = %e, "playground");
            return (StatusCode::INTERNAL_SERVER_ERROR, "something went wrong").into_response();
        }
    };
    let mut cards = String::new();
    for job in &jobs {
        let position = match job.state {
            JobState::Queued => queue.position(job.id).await.ok().flatten(),
            _ => None,
        };
        let images = queue.image_list(job.id).await.unwrap_or_default();
        cards.push_str(&job_html(job, position, &images));
    }
    let unfinished = jobs.iter().any(|j| !j.state.is_finished());
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Word Up! playground</h1>\
         <form method=\"post\" action=\"/imagine\"><input type=\"hidden\" name=\"nonce\" value=\"{nonce}\">\
         <label for=\"prompt\">Prompt, with any /imagine parameters</label>\
         <textarea id=\"prompt\" name=\"prompt\" rows=\"2\" required maxlength=\"1500\" \
         placeholder=\"a lighthouse at dusk --ar 16:9\"></textarea>\
         <p><button id=\"imagine\">Imagine</button></p></form>{error}\
         <div class=\"results\">{cards}</div>",
        nonce = nonce(),
    );
    let mut html = page("Word Up! playground", &body);
    if unfinished {
        // Progress without a script: the page reloads while a job runs (to
        // "/": a refresh of a URL with a fragment would only scroll).
        html = html.replacen(
            "<head>",
            "<head><meta http-equiv=\"refresh\" content=\"2; url=/\">",
            1,
        );
    }
    (status, Html(html)).into_response()
}

/// A job's card: its prompt and state, and once drawn its images and buttons.
pub fn job_html(job: &Job, position: Option<i64>, images: &[wordup_queue::BoardImage]) -> String {
    let id = job.id;
    let prompt = match &job.request {
        Request::Imagine(request) => imagine_text(request),
        Request::Vary {
            remix: Some(remix), ..
        } => imagine_text(remix),
        other => other
            .parent()
            .map(|parent| format!("{} of job {parent}", other.kind()))
            .unwrap_or_default(),
    };
    let state = match (job.state, position, &job.progress) {
        (JobState::Queued, Some(1), _) => "queued — next in line".to_owned(),
        (JobState::Queued, Some(n), _) => format!("queued — #{n} in line"),
        (JobState::Queued, None, _) => "queued".to_owned(),
        (JobState::Running, _, Some(p)) if p.total > 1 => {
            format!("{} {}/{}", p.stage, p.step, p.total)
        }
        (JobState::Running, _, Some(p)) => p.stage.clone(),
        (JobState::Running, _, None) => "starting".to_owned(),
        (JobState::Succeeded, ..) => "done ✅".to_owned(),
        (JobState::Failed, ..) => format!(
            "failed: {}",
            job.last_error.as_deref().unwrap_or("unknown error")
        ),
        (JobState::Cancelled, ..) => "cancelled".to_owned(),
    };
    let mut tiles = String::new();
    for image in images {
        tiles.push_str(&format!(
            "<a href=\"/png/{id}/{idx}\"><img src=\"/png/{id}/{idx}\" width=\"{w}\" height=\"{h}\" alt=\"image {n} of job {id}\"></a>",
            idx = image.idx,
            n = image.idx + 1,
            w = image.width,
            h = image.height,
        ));
    }
    let buttons = if job.state == JobState::Succeeded && images.len() == usize::from(GRID_IMAGES) {
        let mut html = String::from("<div class=\"buttons\">");
        for button in ButtonId::grid_rows(id)
            .into_iter()
            .flatten()
            .filter(|b| b.request().is_some())
        {
            html.push_str(&format!(
                "<form method=\"post\" action=\"/press\"><input type=\"hidden\" name=\"button\" value=\"{button}\">\
                 <input type=\"hidden\" name=\"nonce\" value=\"{}\"><button id=\"{}\">{}</button></form>",
                nonce(),
                button_element_id(&button),
                escape(&button.label()),
            ));
        }
        html.push_str("</div>");
        html
    } else {
        String::new()
    };
    format!(
        "<div class=\"result\" id=\"job-{id}\"><div class=\"tiles\">{tiles}</div>\
         <p class=\"prompt\">{}</p><p class=\"meta\">job {id} · <span class=\"state\">{}</span></p>{buttons}</div>",
        escape(&prompt),
        escape(&state),
    )
}

/// An element id for a button, for the browser tests: `u2-17` is U2 of job 17.
fn button_element_id(button: &ButtonId) -> String {
    let job = button.job;
    match button.action {
        Action::Upscale { index } => format!("u{}-{job}", index + 1),
        Action::Vary { index } => format!("v{}-{job}", index + 1),
        Action::Reroll => format!("reroll-{job}"),
        _ => format!("button-{job}"),
    }
}

#[derive(Deserialize)]
struct ImagineForm {
    prompt: String,
    nonce: String,
}

async fn imagine_form(
    State(state): State<PlaygroundState>,
    Form(form): Form<ImagineForm>,
) -> Response {
    let commands = &state.commands;
    let all = match imagine::check_all(&form.prompt, &commands.config) {
        Ok(all) => all,
        Err(e) => return render(&state, Some(&format!("⚠️ {e}")), StatusCode::BAD_REQUEST).await,
    };
    let invocation = invocation(&form.nonce);
    let outcome = if all.len() == 1 {
        commands
            .imagine(&invocation, &all[0], None)
            .await
            .map(|accepted| accepted.job)
    } else {
        commands
            .imagine_group(&invocation, &all, None)
            .await
            .and_then(|group| match (group.queued.first(), group.refused) {
                (Some((_, first)), _) => Ok(first.job),
                (None, Some((_, e))) => Err(e),
                (None, None) => Err(crate::commands::UserError::NotAFollowUp.into()),
            })
    };
    match outcome {
        Ok(job) => Redirect::to(&format!("/#job-{job}")).into_response(),
        Err(e) => render(&state, Some(&error_text(&e)), StatusCode::BAD_REQUEST).await,
    }
}

#[derive(Deserialize)]
struct PressForm {
    button: String,
    nonce: String,
}

async fn press_form(State(state): State<PlaygroundState>, Form(form): Form<PressForm>) -> Response {
    let Some(button) = ButtonId::parse(&form.button).filter(|b| b.request().is_some()) else {
        return render(
            &state,
            Some("⚠️ that button starts no job"),
            StatusCode::BAD_REQUEST,
        )
        .await;
    };
    let invocation = Invocation {
        idempotency_key: button.press_key(PLATFORM, &form.nonce),
        ..invocation(&form.nonce)
    };
    match in_playground(&state, button.job).await {
        Ok(true) => {}
        Ok(false) => {
            return render(
                &state,
                Some("⚠️ that grid is not on this page"),
                StatusCode::NOT_FOUND,
            )
            .await;
        }
        Err(response) => return response,
    }
    match state.commands.press(&invocation, &button).await {
        Ok(accepted) => Redirect::to(&format!("/#job-{}", accepted.job)).into_response(),
        Err(e) => render(&state, Some(&error_text(&e)), StatusCode::BAD_REQUEST).await,
    }
}

/// Whether `job` is one of the playground's.
async fn in_playground(state: &PlaygroundState, job: JobId) -> Result<bool, Response> {
    match state.commands.queue.job(job).await {
        Ok(found) => {
            Ok(found
                .is_some_and(|j| j.origin.platform == PLATFORM && j.origin.channel_id == CHANNEL))
        }
        Err(e) => {
            tracing::error!(error = %e, "playground");
            Err((StatusCode::INTERNAL_SERVER_ERROR, "something went wrong").into_response())
        }
    }
}

async fn png(State(state): State<PlaygroundState>, Path((job, idx)): Path<(i64, i32)>) -> Response {
    match in_playground(&state, JobId(job)).await {
        Ok(true) => {}
        Ok(false) => return StatusCode::NOT_FOUND.into_response(),
        Err(response) => return response,
    }
    match state.commands.queue.image(JobId(job), idx).await {
        Ok(Some(image)) => png_response(image.png, &format!("\"{job}-{idx}\"")),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "playground");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abd", "abc"));
        assert!(!same("ab", "abc"));
        assert!(!same("", "abc"));
    }

    #[test]
    fn buttons_have_ids_the_tests_can_find() {
        let job = JobId(17);
        let ids: Vec<String> = ButtonId::grid_rows(job)
            .into_iter()
            .flatten()
            .filter(|b| b.request().is_some())
            .map(|b| button_element_id(&b))
            .collect();
        assert_eq!(
            ids,
            [
                "u1-17",
                "u2-17",
                "u3-17",
                "u4-17",
                "v1-17",
                "v2-17",
                "v3-17",
                "v4-17",
                "reroll-17"
            ]
        );
    }
}
