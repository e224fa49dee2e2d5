#![allow(clippy::unwrap_used)]
//! Postgres restarted under load: the bot, two engines and the fake Discord
//! on a Postgres server of the test's own, a stream of signed /imagine
//! interactions, and the server stopped and started again mid-way. Every
//! interaction that made a job ends as exactly one posted result, every one
//! that did not is told so, and no process is restarted by hand. The time
//! to recover is printed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use wordup_chat::buttons::ButtonId;
use wordup_queue::{JobId, JobState};
use wordup_tests::interactions::{self, Member, new_interaction};
use wordup_tests::pg::TestDb;
use wordup_tests::private_pg::PrivatePostgres;
use wordup_tests::stack::Stack;

/// Interactions sent, one every [`GAP`]; the server is down from the
/// [`DOWN_AT`]th to the [`UP_AT`]th.
const INTERACTIONS: usize = 14;
const DOWN_AT: usize = 5;
const UP_AT: usize = 9;
const GAP: Duration = Duration::from_millis(500);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(300);

fn user(i: usize) -> Member {
    // Several users, so that the per-user quota is not what is tested.
    Member::new(&format!("12000000000000001{i:02}"), &format!("user{i}"))
}

struct Sent {
    id: String,
    token: String,
    answer: Value,
}

fn job_of_message(message: &wordup_tests::fake_discord::Message) -> Option<JobId> {
    let rows = message.button_rows();
    let (custom_id, _) = rows.first()?.first()?;
    Some(ButtonId::parse(custom_id)?.job)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_loses_and_doubles_nothing() {
    let pg = PrivatePostgres::start().unwrap();
    let db = TestDb::on_server(&pg.admin_url()).await.unwrap();
    let mut stack = Stack::start_on(db).await.unwrap();
    stack.start_bot().await.unwrap();
    stack.start_engine(&[]).await.unwrap();
    stack.start_another_engine(&[]).await.unwrap();

    let mut sent = Vec::new();
    let mut down_for = Duration::ZERO;
    let mut up_at = Instant::now();
    let mut down_at = Instant::now();
    for i in 0..INTERACTIONS {
        if i == DOWN_AT {
            pg.stop().unwrap();
            down_at = Instant::now();
        }
        if i == UP_AT {
            pg.start_again().unwrap();
            up_at = Instant::now();
            down_for = up_at - down_at;
        }
        let (id, token) = new_interaction();
        let payload =
            interactions::imagine(&id, &token, &user(i), &format!("a lantern {i} --seed {i}"));
        let answer = stack
            .signer
            .send(&stack.http, &stack.endpoint(), &payload)
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{i}: {:?}", answer.body);
        assert!(
            answer.latency < Duration::from_secs(3),
            "{i}: answered in {:?}",
            answer.latency
        );
        stack.fake.acknowledged(&token, &answer.body);
        sent.push(Sent {
            id,
            token,
            answer: answer.body,
        });
        tokio::time::sleep(GAP).await;
    }

    // Which interactions made a job (read once the server is back).
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut jobs: HashMap<JobId, usize> = HashMap::new();
    for (i, s) in sent.iter().enumerate() {
        let job = loop {
            match stack
                .queue
                .job_by_idempotency_key(&format!("discord:{}", s.id))
                .await
            {
                Ok(job) => break job,
                Err(e) => {
                    assert!(Instant::now() < deadline, "the queue stayed down: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        match job {
            Some(job) => {
                jobs.insert(job.id, i);
            }
            None => {
                // Not accepted: told so, at once or in the ack's edit.
                let told = s.answer["type"] == 4
                    || stack
                        .fake
                        .requests()
                        .iter()
                        .any(|r| r.method == "PATCH" && r.path.contains(&s.token));
                assert!(told, "interaction {i} made no job and was told nothing");
            }
        }
    }
    assert!(
        jobs.len() >= INTERACTIONS - (UP_AT - DOWN_AT),
        "the interactions before and after the outage all made jobs: {} of {INTERACTIONS}",
        jobs.len()
    );

    // Every job ends as exactly one posted result.
    loop {
        let messages = stack.fake.messages();
        let mut posted: HashMap<JobId, usize> = HashMap::new();
        for message in &messages {
            if let Some(job) = job_of_message(message) {
                *posted.entry(job).or_default() += 1;
            }
        }
        let all_in = jobs.keys().all(|job| posted.contains_key(job));
        if all_in {
            for (job, count) in &posted {
                assert!(
                    jobs.contains_key(job),
                    "a post for job {job} nobody asked for"
                );
                assert_eq!(*count, 1, "job {job} posted {count} times");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "results missing: {:?}",
            jobs.keys()
                .filter(|job| !posted.contains_key(job))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Recovery, from the fake's clock: results posted after the restart.
    let posts_after: Vec<Duration> = stack
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.contains("/channels/") && r.status == 200)
        .filter_map(|r| r.at.checked_duration_since(up_at))
        .collect();
    let first_after_restart = posts_after.iter().min().copied().unwrap_or_default();
    let all_after_restart = posts_after.iter().max().copied().unwrap_or_default();
    for job in jobs.keys() {
        let state = stack.queue.job(*job).await.unwrap().unwrap().state;
        assert_eq!(state, JobState::Succeeded, "job {job}");
    }
    // A little longer: nothing posts twice late.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let late = stack
        .fake
        .messages()
        .iter()
        .filter_map(job_of_message)
        .count();
    assert_eq!(late, jobs.len(), "one post per job, still");
    assert!(stack.engines_running(), "an engine exited");
    assert!(!stack.bot_exited(), "the bot exited");

    println!(
        "\n| postgres restart under load | value |\n|---|---|\n\
         | interactions | {INTERACTIONS} |\n| accepted (made a job) | {} |\n\
         | server down for | {:.1} s |\n\
         | first result after the restart | {:.1} s |\n\
         | all results after the restart | {:.1} s |\n",
        jobs.len(),
        down_for.as_secs_f64(),
        first_after_restart.as_secs_f64(),
        all_after_restart.as_secs_f64(),
    );
}
