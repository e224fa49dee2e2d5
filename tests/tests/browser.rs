//! The web page in a real browser: headless Chromium through chromedriver
//! (Debian's `chromium` and `chromium-driver`, which `scripts/test.sh`
//! installs). A prompt typed in the playground is drawn and upscaled with
//! U2; a board opens through a valid link and refuses expired and forged
//! ones. Screenshots go to `target/screenshots/`, or to `docs/` (the
//! README's) with `WORDUP_UPDATE_SCREENSHOTS=1`.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use tokio::process::{Child, Command};
use wordup_chat::web::link::{BoardGrant, sign};
use wordup_tests::stack::{Stack, free_port};

const TIMEOUT: Duration = Duration::from_secs(180);
const SECRET: &str = "board-secret-for-browser-tests";

/// chromedriver on a free port, killed with the value.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn driver() -> Driver {
    let port = free_port().unwrap();
    let binary = [
        "chromedriver",
        "/usr/bin/chromedriver",
        "/usr/lib/chromium/chromedriver",
    ]
    .into_iter()
    .find(|b| {
        std::process::Command::new(b)
            .arg("--version")
            .output()
            .is_ok()
    })
    .expect(
        "no chromedriver: install Debian's chromium and chromium-driver (./scripts/test.sh does)",
    );
    let child = Command::new(binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("{url}/status")).await.is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Driver { child, url }
}

async fn browser(driver: &Driver) -> Client {
    // Two crypto providers are linked in (see the workspace's rustls entry).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "args": [
            "--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
            "--disable-gpu", "--window-size=1000,1100",
        ] }),
    );
    ClientBuilder::rustls()
        .unwrap()
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .unwrap()
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    let dir = if std::env::var_os("WORDUP_UPDATE_SCREENSHOTS").is_some() {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs")
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots")
    };
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), png).unwrap();
}

/// Waits for an element to appear (the page reloads itself meanwhile).
async fn wait_for(client: &Client, css: &str) -> fantoccini::elements::Element {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Ok(element) = client.find(Locator::Css(css)).await {
            return element;
        }
        if Instant::now() > deadline {
            let url = client.current_url().await.map(|u| u.to_string());
            let source = client.source().await.unwrap_or_default();
            panic!("no {css} at {url:?}: {source}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_typed_in_the_playground_is_drawn_and_upscaled_with_u2() {
    let mut stack = Stack::start().await.unwrap();
    let port = free_port().unwrap();
    stack
        .bot_env
        .push(("WORDUP_PLAYGROUND_PORT".into(), port.to_string()));
    stack.start_bot().await.unwrap();
    stack.start_engine(&[]).await.unwrap();
    let driver = driver().await;
    let client = browser(&driver).await;

    client
        .goto(&format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap();
    let prompt = client.find(Locator::Css("#prompt")).await.unwrap();
    prompt
        .send_keys("a lighthouse at dusk --ar 3:2")
        .await
        .unwrap();
    client
        .find(Locator::Css("#imagine"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let u2 = wait_for(&client, "button[id^='u2-']").await;
    let job: i64 = u2
        .attr("id")
        .await
        .unwrap()
        .unwrap()
        .trim_start_matches("u2-")
        .parse()
        .unwrap();
    let card = client
        .find(Locator::Css(&format!("#job-{job}")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(card.contains("a lighthouse at dusk --ar 3:2"), "{card}");
    assert!(card.contains("done"), "{card}");
    let tiles = client
        .find_all(Locator::Css(&format!("#job-{job} img")))
        .await
        .unwrap();
    assert_eq!(tiles.len(), 4);
    screenshot(&client, "playground.png").await;

    u2.click().await.unwrap();
    // The upscale's card: one image, from job `job`.
    let upscale = wait_for(&client, &format!("img[alt$='of job {}']", job + 1)).await;
    assert!(upscale.attr("src").await.unwrap().unwrap().ends_with("/0"));
    let text = client
        .find(Locator::Css(&format!("#job-{}", job + 1)))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains(&format!("upscale of job {job}")), "{text}");
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_board_opens_through_a_valid_link_and_refuses_expired_and_forged_ones() {
    let mut stack = Stack::start().await.unwrap();
    let public = stack.public_url();
    let port = free_port().unwrap();
    stack.bot_env.extend([
        ("WORDUP_BOARD_SECRET".to_owned(), SECRET.to_owned()),
        ("WORDUP_PUBLIC_URL".to_owned(), public.clone()),
        ("WORDUP_PLAYGROUND_PORT".to_owned(), port.to_string()),
    ]);
    stack.start_bot().await.unwrap();
    stack.start_engine(&[]).await.unwrap();
    let driver = driver().await;
    let client = browser(&driver).await;

    // A result in the playground's channel, through the page.
    client
        .goto(&format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap();
    let prompt = client.find(Locator::Css("#prompt")).await.unwrap();
    prompt
        .send_keys("a {red, blue} kite over dunes")
        .await
        .unwrap();
    client
        .find(Locator::Css("#imagine"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while client
        .find_all(Locator::Css("button[id^='u1-']"))
        .await
        .unwrap()
        .len()
        < 2
    {
        if Instant::now() > deadline {
            panic!(
                "the two grids were not drawn: {}",
                client.source().await.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let link = |expires: chrono::DateTime<chrono::Utc>, secret: &str| {
        let grant = BoardGrant {
            platform: "web".into(),
            channel_id: "playground".into(),
            user_id: "you".into(),
            expires,
        };
        format!("{public}/board/{}", sign(&grant, secret.as_bytes()))
    };
    let now = chrono::Utc::now();
    client
        .goto(&link(now + chrono::Duration::days(1), SECRET))
        .await
        .unwrap();
    let heading = client
        .find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        heading.starts_with("Board of web channel playground"),
        "{heading}"
    );
    let results = client.find_all(Locator::Css(".result")).await.unwrap();
    assert_eq!(results.len(), 2);
    let text = client
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("a blue kite over dunes") && text.contains("a red kite over dunes"),
        "{text}"
    );
    screenshot(&client, "board.png").await;
    // An image's own page, with its provenance.
    client
        .find(Locator::Css(".tiles a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let provenance = client
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(provenance.contains("seed"), "{provenance}");

    for bad in [
        link(now - chrono::Duration::minutes(1), SECRET),
        link(now + chrono::Duration::days(1), "forged"),
    ] {
        client.goto(&bad).await.unwrap();
        let heading = client
            .find(Locator::Css("h1"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(heading, "This link is not valid", "{bad}");
        assert!(
            client
                .find_all(Locator::Css("img"))
                .await
                .unwrap()
                .is_empty()
        );
    }
    client.close().await.unwrap();
}
