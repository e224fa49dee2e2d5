//! The playground end to end: the page's prompt box through the real bot,
//! queue and engine (tiny model), the grid with its buttons, an upscale
//! pressed on the page; and the token that guards a playground off loopback.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use wordup_queue::{JobState, Request};
use wordup_tests::stack::{Stack, free_port};

const TIMEOUT: Duration = Duration::from_secs(180);

/// Polls the page until `done` holds for its HTML.
async fn page_until(stack: &Stack, url: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let html = stack
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if done(&html) {
            return html;
        }
        assert!(Instant::now() < deadline, "no {what}: {html}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_typed_on_the_page_is_drawn_and_its_buttons_work() {
    let mut stack = Stack::start().await.unwrap();
    let port = free_port().unwrap();
    stack
        .bot_env
        .push(("WORDUP_PLAYGROUND_PORT".into(), port.to_string()));
    stack.start_bot().await.unwrap();
    stack.start_engine(&[]).await.unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let client = no_redirects();

    // The page: a prompt box with a nonce.
    let html = stack
        .http
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("<textarea id=\"prompt\""), "{html}");
    let nonce = |html: &str| {
        let at = html.find("name=\"nonce\" value=\"").unwrap() + 20;
        html[at..at + 32].to_owned()
    };

    // A grammar mistake is shown on the page; nothing is queued.
    let answer = client
        .post(format!("{url}/imagine"))
        .form(&[("prompt", "a fox --steps 99"), ("nonce", &nonce(&html))])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    assert!(
        answer
            .text()
            .await
            .unwrap()
            .contains("`--steps 99` is not valid")
    );

    // A prompt: queued as a web job, then drawn; the page shows the grid.
    let form_nonce = nonce(&html);
    let answer = client
        .post(format!("{url}/imagine"))
        .form(&[
            ("prompt", "a lighthouse <at> dusk --ar 3:2"),
            ("nonce", &form_nonce),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    let job = stack
        .queue
        .job_by_idempotency_key(&format!("web:{form_nonce}"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (job.origin.platform.as_str(), job.origin.channel_id.as_str()),
        ("web", "playground")
    );
    // The same form sent twice makes no second job.
    client
        .post(format!("{url}/imagine"))
        .form(&[
            ("prompt", "a lighthouse <at> dusk --ar 3:2"),
            ("nonce", &form_nonce),
        ])
        .send()
        .await
        .unwrap();
    let html = page_until(&stack, &url, "grid", |html| {
        html.contains(&format!("id=\"u2-{}\"", job.id))
    })
    .await;
    assert!(
        html.contains("a lighthouse &lt;at&gt; dusk --ar 3:2"),
        "{html}"
    );
    assert!(html.contains("done ✅"), "{html}");
    assert_eq!(
        stack
            .queue
            .channel_jobs("web", "playground", 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let png = stack
        .http
        .get(format!("{url}/png/{}/1", job.id))
        .send()
        .await
        .unwrap();
    assert_eq!(png.headers()["content-type"], "image/png");

    // U2 on the page: an upscale through the same queue and engine.
    let answer = client
        .post(format!("{url}/press"))
        .form(&[
            ("button", format!("wu:u:{}:1", job.id)),
            ("nonce", nonce(&html)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    let upscale = stack
        .queue
        .channel_jobs("web", "playground", 10)
        .await
        .unwrap()
        .into_iter()
        .find(|j| matches!(j.request, Request::Upscale { index: 1, .. }))
        .expect("an upscale job");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let state = stack.queue.job(upscale.id).await.unwrap().unwrap().state;
        if state.is_finished() {
            assert_eq!(state, JobState::Succeeded);
            break;
        }
        assert!(Instant::now() < deadline, "upscale stayed {state:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let html = page_until(&stack, &url, "the upscale", |html| {
        html.contains(&format!("id=\"job-{}\"", upscale.id))
            && html.contains(&format!("/png/{}/0", upscale.id))
    })
    .await;
    assert!(
        html.contains(&format!("upscale of job {}", job.id)),
        "{html}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_playground_with_a_token_asks_for_it() {
    let mut stack = Stack::start().await.unwrap();
    let port = free_port().unwrap();
    stack.bot_env.extend([
        ("WORDUP_PLAYGROUND_PORT".to_owned(), port.to_string()),
        ("WORDUP_PLAYGROUND_TOKEN".to_owned(), "let-me-in".to_owned()),
    ]);
    stack.start_bot().await.unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let client = no_redirects();
    for path in ["/", "/png/1/0"] {
        let answer = client.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(answer.status(), 401, "{path}");
    }
    let answer = client
        .post(format!("{url}/imagine"))
        .form(&[("prompt", "a fox"), ("nonce", "0123")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    let wrong = client
        .get(format!("{url}/?token=let-me-out"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let answer = client
        .get(format!("{url}/?token=let-me-in"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let cookie = answer.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with("wordup_play=let-me-in;") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let answer = client
        .get(&url)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let answer = client
        .post(format!("{url}/imagine"))
        .header("cookie", &cookie)
        .form(&[("prompt", "a fox"), ("nonce", "0123")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
}
