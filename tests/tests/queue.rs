//! The queue against a real Postgres, each test in a database of its own.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::postgres::PgListener;
use tokio::io::{AsyncBufReadExt, BufReader};
use wordup_queue::{
    BackoffPolicy, CANCEL_CHANNEL, CancelOutcome, ChannelSettings, ChannelSettingsUpdate,
    FailOutcome, Failure, JobId, JobImage, JobState, NewJob, Progress, Queue, QueueConfig,
    QueueError, Request, Tier,
};
use wordup_tests::jobs::job;
use wordup_tests::pg::TestDb;

async fn db_now(queue: &Queue) -> chrono::DateTime<chrono::Utc> {
    sqlx::query_scalar("SELECT now()")
        .fetch_one(queue.pool())
        .await
        .unwrap()
}

async fn state_of(queue: &Queue, id: JobId) -> JobState {
    queue.job(id).await.unwrap().unwrap().state
}

fn keyed(key: &str, user: &str) -> NewJob {
    NewJob {
        idempotency_key: Some(key.to_owned()),
        ..job(user, Tier::Fast, "k")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_claimers_complete_ten_thousand_jobs_exactly_once() {
    let db = TestDb::new().await.unwrap();
    let queue = db.queue(QueueConfig::default(), 12).await.unwrap();
    let jobs: Vec<NewJob> = (0..10_000)
        .map(|i| {
            let tier = if i % 3 == 0 { Tier::Relax } else { Tier::Fast };
            job(&format!("user-{}", i % 37), tier, ["a", "b", "c"][i % 3])
        })
        .collect();
    for chunk in jobs.chunks(2_000) {
        queue.enqueue_many(chunk).await.unwrap();
    }

    let seen = Arc::new(Mutex::new(Vec::<(i64, i32)>::new()));
    let mut claimers = Vec::new();
    for claimer in 0..8u32 {
        let queue = queue.clone();
        let seen = seen.clone();
        claimers.push(tokio::spawn(async move {
            loop {
                let batch = queue.claim(1 + claimer % 4 * 3).await.unwrap();
                if batch.is_empty() {
                    break;
                }
                let settle: Vec<(JobId, i32)> =
                    batch.iter().map(|job| (job.id(), job.attempt())).collect();
                let stale = queue.complete_many(&settle).await.unwrap();
                assert!(stale.is_empty(), "fresh claims came back stale: {stale:?}");
                seen.lock()
                    .unwrap()
                    .extend(settle.iter().map(|(id, attempt)| (id.0, *attempt)));
            }
        }));
    }
    for claimer in claimers {
        claimer.await.unwrap();
    }

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let mut times: HashMap<i64, usize> = HashMap::new();
    for (id, attempt) in seen {
        assert_eq!(attempt, 1);
        *times.entry(id).or_default() += 1;
    }
    assert_eq!(times.len(), 10_000, "every job claimed");
    assert!(times.values().all(|n| *n == 1), "no job claimed twice");
    let succeeded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'succeeded' AND attempt = 1")
            .fetch_one(queue.pool())
            .await
            .unwrap();
    assert_eq!(succeeded, 10_000);
}

#[tokio::test]
async fn a_sigkilled_worker_s_job_is_reclaimed_and_completes_once() {
    let db = TestDb::new().await.unwrap();
    // Long enough that the checks after the kill run mid-lease, even on a
    // loaded machine.
    let config = QueueConfig {
        lease: Duration::from_secs(5),
        ..QueueConfig::default()
    };
    let queue = db.queue(config, 4).await.unwrap();
    let id = queue
        .enqueue(&job("alice", Tier::Fast, "k"))
        .await
        .unwrap()
        .id;

    let mut worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_queue-test-worker"))
        .env("DATABASE_URL", db.url())
        .env("LEASE_SECS", "5")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(worker.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("worker claimed in time")
        .unwrap()
        .unwrap();
    assert_eq!(line, format!("claimed {id} 1"));
    assert_eq!(state_of(&queue, id).await, JobState::Running);

    // SIGKILL: no destructor, no release, only the lease remains.
    worker.start_kill().unwrap();
    worker.wait().await.unwrap();
    assert_eq!(
        queue.rescue_expired().await.unwrap(),
        0,
        "lease still valid"
    );
    assert!(
        queue.claim(1).await.unwrap().is_empty(),
        "not claimable mid-lease"
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    while queue.rescue_expired().await.unwrap() == 0 {
        assert!(Instant::now() < deadline, "lease never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reclaimed = queue.claim(1).await.unwrap();
    assert_eq!(reclaimed.len(), 1);
    assert_eq!((reclaimed[0].id(), reclaimed[0].attempt()), (id, 2));

    assert!(matches!(
        queue.complete(id, 1).await,
        Err(QueueError::Stale { attempt: 1, .. })
    ));
    assert!(matches!(
        queue.fail(id, 1, "late", Failure::Transient).await,
        Err(QueueError::Stale { .. })
    ));
    queue.complete(id, 2).await.unwrap();
    assert!(matches!(
        queue.complete(id, 2).await,
        Err(QueueError::Stale { .. })
    ));
    let done = queue.job(id).await.unwrap().unwrap();
    assert_eq!((done.state, done.attempt), (JobState::Succeeded, 2));
}

#[tokio::test]
async fn a_second_user_is_not_stuck_behind_a_first_user_s_backlog() {
    let db = TestDb::new().await.unwrap();
    let queue = db.queue(QueueConfig::default(), 4).await.unwrap();
    let mut a_jobs = Vec::new();
    for _ in 0..500 {
        a_jobs.push(queue.enqueue(&job("a", Tier::Fast, "k")).await.unwrap().id);
    }
    let b = queue.enqueue(&job("b", Tier::Fast, "k")).await.unwrap().id;

    let b_position = queue.position(b).await.unwrap().unwrap();
    let a_positions = [
        queue.position(a_jobs[0]).await.unwrap().unwrap(),
        queue.position(a_jobs[1]).await.unwrap().unwrap(),
        queue.position(a_jobs[499]).await.unwrap().unwrap(),
    ];

    let mut order = Vec::new();
    while let Some(claimed) = queue.claim(1).await.unwrap().pop() {
        order.push(claimed.id());
    }
    assert_eq!(order.len(), 501);
    let b_index = order.iter().position(|id| *id == b).unwrap();
    assert!(b_index < 2, "b claimed {}th", b_index + 1);
    assert_eq!(
        b_position,
        b_index as i64 + 1,
        "position agrees with claims"
    );
    for (id, position) in [a_jobs[0], a_jobs[1], a_jobs[499]].iter().zip(a_positions) {
        let claimed_at = order.iter().position(|claimed| claimed == id).unwrap();
        assert_eq!(position, claimed_at as i64 + 1, "position of job {id}");
    }
    assert_eq!(
        queue.position(b).await.unwrap(),
        None,
        "no position once running"
    );
}

#[tokio::test]
async fn relax_jobs_yield_to_fast_ones_but_only_for_the_aging_bound() {
    let db = TestDb::new().await.unwrap();
    let aging = Duration::from_secs(2);
    let config = QueueConfig {
        relax_aging: aging,
        fair_slot: Duration::from_millis(10),
        ..QueueConfig::default()
    };
    let queue = db.queue(config, 4).await.unwrap();
    let relax = queue.enqueue(&job("r", Tier::Relax, "k")).await.unwrap().id;
    let relax_enqueued = Instant::now();

    // A steady stream of fast jobs from many users, arriving faster than
    // they are served, so there is always a fast job waiting.
    let mut fast_claimed_before = 0;
    let mut user = 0;
    let claimed_after = loop {
        for _ in 0..2 {
            user += 1;
            queue
                .enqueue(&job(&format!("f{user}"), Tier::Fast, "k"))
                .await
                .unwrap();
        }
        let claimed = queue.claim(1).await.unwrap();
        let claimed = &claimed[0];
        queue
            .complete(claimed.id(), claimed.attempt())
            .await
            .unwrap();
        if claimed.id() == relax {
            break relax_enqueued.elapsed();
        }
        assert_eq!(claimed.job.tier, Tier::Fast);
        fast_claimed_before += 1;
        assert!(relax_enqueued.elapsed() < aging * 3, "relax job starved");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let fast_waiting = queue.depth().await.unwrap().fast_queued;
    assert!(fast_claimed_before > 10, "fast jobs went first");
    assert!(
        fast_waiting > 10,
        "fast jobs were still waiting: {fast_waiting}"
    );
    assert!(
        claimed_after >= aging - Duration::from_millis(100)
            && claimed_after < aging + Duration::from_secs(1),
        "relax job claimed after {claimed_after:?}, aging bound {aging:?}"
    );
}

#[tokio::test]
async fn the_same_interaction_twice_makes_one_job() {
    let db = TestDb::new().await.unwrap();
    let queue = db.queue(QueueConfig::default(), 8).await.unwrap();
    let first = queue.enqueue(&keyed("discord:1", "a")).await.unwrap();
    let again = queue.enqueue(&keyed("discord:1", "a")).await.unwrap();
    assert!(first.created);
    assert!(!again.created);
    assert_eq!(first.id, again.id);

    // Concurrent deliveries of one interaction race on the unique key.
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let queue = queue.clone();
            tokio::spawn(async move { queue.enqueue(&keyed("discord:2", "a")).await.unwrap() })
        })
        .collect();
    let mut ids = Vec::new();
    let mut created = 0;
    for racer in racers {
        let outcome = racer.await.unwrap();
        ids.push(outcome.id);
        created += usize::from(outcome.created);
    }
    assert_eq!(created, 1);
    assert!(ids.iter().all(|id| *id == ids[0]));
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(queue.pool())
        .await
        .unwrap();
    assert_eq!(total, 2);
}

#[tokio::test]
async fn cancelling_a_queued_job_and_signalling_a_running_one() {
    let db = TestDb::new().await.unwrap();
    let queue = db.queue(QueueConfig::default(), 4).await.unwrap();
    let queued = queue.enqueue(&job("a", Tier::Fast, "x")).await.unwrap().id;
    assert_eq!(
        queue.cancel(queued).await.unwrap(),
        CancelOutcome::Cancelled
    );
    assert_eq!(state_of(&queue, queued).await, JobState::Cancelled);
    assert!(
        queue.claim(1).await.unwrap().is_empty(),
        "cancelled never runs"
    );

    let running = queue.enqueue(&job("a", Tier::Fast, "x")).await.unwrap().id;
    let claimed = queue.claim(1).await.unwrap().remove(0);
    assert!(!queue.heartbeat(running, 1).await.unwrap().cancel_requested);

    let mut listener = PgListener::connect_with(queue.pool()).await.unwrap();
    listener.listen(CANCEL_CHANNEL).await.unwrap();
    assert_eq!(
        queue.cancel(running).await.unwrap(),
        CancelOutcome::Signalled
    );
    let signal = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(signal.payload(), running.to_string());
    assert!(queue.heartbeat(running, 1).await.unwrap().cancel_requested);
    assert_eq!(state_of(&queue, running).await, JobState::Running);

    queue
        .acknowledge_cancel(claimed.id(), claimed.attempt())
        .await
        .unwrap();
    assert_eq!(state_of(&queue, running).await, JobState::Cancelled);
    assert!(queue.complete(running, 1).await.is_err());
    assert_eq!(
        queue.cancel(running).await.unwrap(),
        CancelOutcome::AlreadyFinished
    );
    assert_eq!(
        queue.cancel(JobId(999_999)).await.unwrap(),
        CancelOutcome::NotFound
    );
}

#[tokio::test]
async fn failures_back_off_exponentially_then_fail_for_good() {
    let db = TestDb::new().await.unwrap();
    let config = QueueConfig {
        max_attempts: 3,
        backoff: BackoffPolicy {
            base: Duration::from_millis(300),
            max: Duration::from_secs(10),
            jitter: 0.0,
        },
        ..QueueConfig::default()
    };
    let queue = db.queue(config, 4).await.unwrap();
    let id = queue.enqueue(&job("a", Tier::Fast, "k")).await.unwrap().id;

    for (attempt, expected_delay_ms) in [(1, 300i64), (2, 600)] {
        let claimed = queue.claim(1).await.unwrap().remove(0);
        assert_eq!(claimed.attempt(), attempt);
        let before = db_now(&queue).await;
        let outcome = queue
            .fail(id, attempt, "CUDA out of memory", Failure::Transient)
            .await
            .unwrap();
        let FailOutcome::Retrying { run_at } = outcome else {
            panic!("attempt {attempt} should retry, got {outcome:?}");
        };
        let after = db_now(&queue).await;
        // The failure's own now() lies between the two readings, so the
        // delay is exact whatever the round trips cost.
        let (from_before, from_after) = (
            (run_at - before).num_milliseconds(),
            (run_at - after).num_milliseconds(),
        );
        assert!(
            from_before >= expected_delay_ms && from_after <= expected_delay_ms,
            "attempt {attempt}: run_at is {from_before} ms after the reading before the \
             failure and {from_after} ms after the one after it, expected {expected_delay_ms}"
        );
        assert!(
            queue.claim(1).await.unwrap().is_empty(),
            "not before run_at"
        );
        tokio::time::sleep(Duration::from_millis(expected_delay_ms as u64 + 50)).await;
    }
    let claimed = queue.claim(1).await.unwrap().remove(0);
    assert_eq!(claimed.attempt(), 3);
    let outcome = queue
        .fail(id, 3, "CUDA out of memory", Failure::Transient)
        .await
        .unwrap();
    assert_eq!(outcome, FailOutcome::Failed);
    let failed = queue.job(id).await.unwrap().unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(failed.last_error.as_deref(), Some("CUDA out of memory"));
    assert!(failed.finished_at.is_some());

    let permanent = queue.enqueue(&job("a", Tier::Fast, "k")).await.unwrap().id;
    queue.claim(1).await.unwrap();
    assert_eq!(
        queue
            .fail(permanent, 1, "parent image is gone", Failure::Permanent)
            .await
            .unwrap(),
        FailOutcome::Failed
    );
}

#[tokio::test]
async fn a_batch_claim_only_groups_equal_batch_keys() {
    let db = TestDb::new().await.unwrap();
    let queue = db.queue(QueueConfig::default(), 4).await.unwrap();
    let keys = ["sd-turbo:512x512:1", "sd-turbo:768x512:1", "upscale"];
    let jobs: Vec<NewJob> = (0..30)
        .map(|i| job(&format!("u{}", i % 5), Tier::Fast, keys[i % 3]))
        .collect();
    queue.enqueue_many(&jobs).await.unwrap();

    let mut claimed_total = 0;
    loop {
        let batch = queue.claim(4).await.unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 4);
        let key = &batch[0].job.batch_key;
        assert!(batch.iter().all(|job| &job.job.batch_key == key), "{key}");
        claimed_total += batch.len();
    }
    assert_eq!(claimed_total, 30);
}

#[tokio::test]
async fn progress_events_reach_a_listener_and_are_stored() {
    let db = TestDb::new().await.unwrap();
    let queue = db.queue(QueueConfig::default(), 4).await.unwrap();
    let id = queue.enqueue(&job("a", Tier::Fast, "k")).await.unwrap().id;
    let claimed = queue.claim(1).await.unwrap().remove(0);
    let mut listener = queue.progress_listener().await.unwrap();

    let progress = Progress {
        stage: "denoising".to_owned(),
        step: 3,
        total: 4,
    };
    queue
        .report_progress(id, claimed.attempt(), &progress)
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((event.job_id, event.attempt), (id, 1));
    assert_eq!(event.progress, progress);
    assert_eq!(
        queue.job(id).await.unwrap().unwrap().progress,
        Some(progress.clone())
    );
    assert!(matches!(
        queue.report_progress(id, 7, &progress).await,
        Err(QueueError::Stale { .. })
    ));
}

#[tokio::test]
async fn heartbeats_extend_the_lease_on_the_database_clock() {
    let db = TestDb::new().await.unwrap();
    let config = QueueConfig {
        lease: Duration::from_secs(30),
        ..QueueConfig::default()
    };
    let queue = db.queue(config, 4).await.unwrap();
    let id = queue.enqueue(&job("a", Tier::Fast, "k")).await.unwrap().id;
    let first = queue.claim(1).await.unwrap().remove(0);
    let first_lease = first.job.lease_expires_at.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let beat = queue.heartbeat(id, 1).await.unwrap();
    assert!(beat.lease_expires_at > first_lease);
    let until_expiry = beat.lease_expires_at - db_now(&queue).await;
    assert!((29..=30).contains(&until_expiry.num_seconds()));
    assert!(matches!(
        queue.heartbeat(id, 2).await,
        Err(QueueError::Stale { .. })
    ));
}

#[tokio::test]
async fn a_released_job_runs_again_and_its_old_attempt_stays_fenced() {
    let db = TestDb::new().await.unwrap();
    let queue = db.queue(QueueConfig::default(), 4).await.unwrap();
    let id = queue.enqueue(&job("a", Tier::Fast, "k")).await.unwrap().id;
    queue.claim(1).await.unwrap();
    queue.release(id, 1).await.unwrap();
    let again = queue.claim(1).await.unwrap().remove(0);
    assert_eq!(again.attempt(), 2);
    assert_eq!(
        again.job.max_attempts,
        QueueConfig::default().max_attempts + 1
    );
    assert!(queue.complete(id, 1).await.is_err());
    queue.complete(id, 2).await.unwrap();
}

#[tokio::test]
async fn per_user_counts_and_depth() {
    let db = TestDb::new().await.unwrap();
    let queue = db.queue(QueueConfig::default(), 4).await.unwrap();
    for _ in 0..3 {
        queue.enqueue(&job("a", Tier::Fast, "k")).await.unwrap();
    }
    queue.enqueue(&job("a", Tier::Relax, "k")).await.unwrap();
    queue.enqueue(&job("b", Tier::Fast, "k")).await.unwrap();
    let claimed = queue.claim(1).await.unwrap().remove(0);
    assert_eq!(claimed.job.origin.user_id, "a");
    queue.complete(claimed.id(), 1).await.unwrap();
    queue.claim(1).await.unwrap();

    let a = queue.user_counts("discord", "a").await.unwrap();
    let b = queue.user_counts("discord", "b").await.unwrap();
    assert_eq!((a.queued + a.running, a.today), (3, 4));
    assert_eq!((b.queued + b.running, b.today), (1, 1));
    assert_eq!(
        queue.user_active_jobs("discord", "a").await.unwrap().len(),
        3
    );
    let depth = queue.depth().await.unwrap();
    assert_eq!(
        (depth.fast_queued, depth.relax_queued, depth.running),
        (2, 1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_enqueues_of_one_user_never_pass_a_quota() {
    let db = TestDb::new().await.unwrap();
    let queue = db.queue(QueueConfig::default(), 16).await.unwrap();
    const LIMIT: i64 = 5;
    let at_most = |counts: &wordup_queue::UserCounts| {
        if counts.queued + counts.running < LIMIT {
            Ok(())
        } else {
            Err(counts.queued + counts.running)
        }
    };
    // Twenty commands from one user at once, each a separate interaction.
    let attempts: Vec<_> = (0..20)
        .map(|i| {
            let queue = queue.clone();
            let key = format!("burst-{i}");
            tokio::spawn(async move {
                let outcome = queue
                    .enqueue_checked(&keyed(&key, "a"), at_most)
                    .await
                    .unwrap();
                (key, outcome)
            })
        })
        .collect();
    let mut admitted = Vec::new();
    let mut refused = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            (key, Ok(job)) => {
                assert!(job.created);
                admitted.push((job.position.unwrap(), key, job.id));
            }
            (_, Err(active)) => {
                assert_eq!(active, LIMIT);
                refused += 1;
            }
        }
    }
    assert_eq!((admitted.len() as i64, refused), (LIMIT, 20 - LIMIT));
    // Each job's place in line as of its insert: one after another.
    admitted.sort();
    let positions: Vec<i64> = admitted.iter().map(|(position, ..)| *position).collect();
    assert_eq!(positions, (1..=LIMIT).collect::<Vec<_>>());
    let counts = queue.user_counts("discord", "a").await.unwrap();
    assert_eq!((counts.queued, counts.today), (LIMIT, LIMIT));

    // A repeated interaction gets its job back even at the limit; another
    // user is not held by the first one's quota.
    let (_, first_key, first_id) = &admitted[0];
    let again = queue
        .enqueue_checked(&keyed(first_key, "a"), at_most)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (again.id, again.created, again.position),
        (*first_id, false, Some(1))
    );
    let other_user = queue
        .enqueue_checked(&keyed("other-0", "b"), at_most)
        .await
        .unwrap();
    assert!(other_user.is_ok_and(|admitted| admitted.created && admitted.position.is_some()));
}

#[tokio::test]
async fn retention_prunes_only_old_finished_jobs_with_their_outputs() {
    let db = TestDb::new().await.unwrap();
    let queue = db.queue(QueueConfig::default(), 4).await.unwrap();
    let done = queue.enqueue(&job("a", Tier::Fast, "k")).await.unwrap().id;
    let waiting = queue.enqueue(&job("a", Tier::Fast, "k")).await.unwrap().id;
    queue.claim(1).await.unwrap();
    let image = JobImage {
        idx: 0,
        png: vec![0x89, b'P', b'N', b'G'],
        width: 512,
        height: 512,
        seed: 7,
        score: Some(31.5),
        draft_latents: None,
    };
    queue.store_image(done, 1, &image).await.unwrap();
    queue.complete(done, 1).await.unwrap();

    assert_eq!(
        queue
            .prune_finished(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        queue
            .prune_finished(Duration::from_millis(1))
            .await
            .unwrap(),
        1
    );
    assert!(queue.job(done).await.unwrap().is_none());
    assert!(queue.images(done).await.unwrap().is_empty());
    assert_eq!(state_of(&queue, waiting).await, JobState::Queued);
}

#[tokio::test]
async fn images_and_posts_are_stored_for_buttons() {
    let db = TestDb::new().await.unwrap();
    let queue = db.queue(QueueConfig::default(), 4).await.unwrap();
    let id = queue.enqueue(&job("a", Tier::Fast, "k")).await.unwrap().id;
    queue.claim(1).await.unwrap();
    for idx in 0..4 {
        let image = JobImage {
            idx,
            png: vec![idx as u8; 16],
            width: 512,
            height: 512,
            seed: 100 + i64::from(idx),
            score: Some(20.0 + idx as f32),
            // A draft image keeps its latents for a full decode later.
            draft_latents: (idx == 1).then(|| vec![7u8; 32]),
        };
        queue.store_image(id, 1, &image).await.unwrap();
    }
    let image = JobImage {
        idx: 9,
        png: vec![],
        width: 1,
        height: 1,
        seed: 0,
        score: None,
        draft_latents: None,
    };
    assert!(
        queue.store_image(id, 2, &image).await.is_err(),
        "stale attempt"
    );
    queue.complete(id, 1).await.unwrap();

    let images = queue.images(id).await.unwrap();
    assert_eq!(images.len(), 4);
    assert_eq!(images[2].seed, 102);
    assert_eq!(
        queue.image(id, 3).await.unwrap().unwrap().png,
        vec![3u8; 16]
    );
    assert_eq!(images[1].draft_latents, Some(vec![7u8; 32]));
    assert_eq!(
        queue.image(id, 3).await.unwrap().unwrap().draft_latents,
        None
    );
    assert_eq!(
        queue.image(id, 1).await.unwrap().unwrap().draft_latents,
        Some(vec![7u8; 32])
    );

    let first = queue
        .record_post(id, "grid", "discord", "chan", "msg-1")
        .await
        .unwrap();
    let again = queue
        .record_post(id, "grid", "discord", "chan", "msg-2")
        .await
        .unwrap();
    assert_eq!(first.message_id, "msg-1");
    assert_eq!(again.message_id, "msg-1", "the first post wins");
    let found = queue
        .post_by_message("discord", "msg-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.job_id, id.0);
    assert!(
        queue
            .post_by_message("slack", "msg-1")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_settings_changes_all_persist() {
    let db = TestDb::new().await.unwrap();
    let queue = db.queue(QueueConfig::default(), 8).await.unwrap();
    let updates = [
        ChannelSettingsUpdate {
            default_style: Some(Some("anime".into())),
            ..Default::default()
        },
        ChannelSettingsUpdate {
            default_tier: Some(Tier::Relax),
            ..Default::default()
        },
        ChannelSettingsUpdate {
            restrict_buttons: Some(true),
            ..Default::default()
        },
        ChannelSettingsUpdate {
            allow_nsfw: Some(true),
            ..Default::default()
        },
        ChannelSettingsUpdate {
            default_quality: Some(3),
            ..Default::default()
        },
    ];
    // Five moderators change five settings of each channel at once.
    for channel in 0..20 {
        let channel = format!("channel-{channel}");
        let tasks: Vec<_> = updates
            .iter()
            .cloned()
            .map(|update| {
                let queue = queue.clone();
                let channel = channel.clone();
                tokio::spawn(async move {
                    queue
                        .update_channel_settings("discord", &channel, &update)
                        .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let settings = queue.channel_settings("discord", &channel).await.unwrap();
        assert_eq!(
            settings,
            ChannelSettings {
                default_style: Some("anime".into()),
                default_tier: Some(Tier::Relax),
                default_quality: Some(3),
                restrict_buttons: true,
                allow_nsfw: true,
            },
            "{channel}"
        );
    }
    let cleared = queue
        .update_channel_settings(
            "discord",
            "channel-0",
            &ChannelSettingsUpdate {
                default_style: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(cleared.default_style, None);
    assert_eq!(cleared.default_tier, Some(Tier::Relax));
    assert_eq!(cleared.default_quality, Some(3));
}

#[tokio::test]
async fn an_unreadable_job_fails_alone_and_its_batch_runs() {
    let db = TestDb::new().await.unwrap();
    let queue = db.queue(QueueConfig::default(), 4).await.unwrap();
    let good = queue.enqueue(&job("a", Tier::Fast, "k")).await.unwrap().id;
    let bad = queue.enqueue(&job("b", Tier::Fast, "k")).await.unwrap().id;
    // A request kind from a newer release, say.
    sqlx::query("UPDATE jobs SET request = '{\"kind\": \"from_the_future\"}' WHERE id = $1")
        .bind(bad.0)
        .execute(queue.pool())
        .await
        .unwrap();
    let claimed = queue.claim(2).await.unwrap();
    assert_eq!(
        claimed.iter().map(|c| c.id()).collect::<Vec<_>>(),
        vec![good]
    );
    // Read back, it is a failed job whose request cannot be read, with
    // the reason kept and its origin intact.
    let failed = queue.job(bad).await.unwrap().unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert!(matches!(failed.request, Request::Unreadable { .. }));
    assert!(
        failed
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("cannot read the job"),
        "the reason is kept"
    );
    assert_eq!(failed.origin.user_id, "b");
    // So the sweep of endings can tell its requester.
    let announced = queue
        .claim_notices(10, Duration::ZERO)
        .await
        .unwrap()
        .into_iter()
        .map(|job| job.id)
        .collect::<Vec<_>>();
    assert_eq!(announced, vec![bad]);
    queue.complete(good, 1).await.unwrap();
}

#[tokio::test]
async fn every_job_that_ends_without_a_result_is_announced_once() {
    let db = TestDb::new().await.unwrap();
    let config = QueueConfig {
        lease: Duration::from_millis(200),
        max_attempts: 1,
        ..QueueConfig::default()
    };
    let queue = db.queue(config, 4).await.unwrap();
    let rescued = queue.enqueue(&job("a", Tier::Fast, "k")).await.unwrap().id;
    let settled = queue.enqueue(&job("b", Tier::Fast, "k")).await.unwrap().id;
    let done = queue.enqueue(&job("c", Tier::Fast, "k")).await.unwrap().id;
    let cancelled = queue.enqueue(&job("d", Tier::Fast, "k")).await.unwrap().id;
    queue.claim(3).await.unwrap();
    queue.complete(done, 1).await.unwrap();
    queue
        .fail(settled, 1, "boom", Failure::Permanent)
        .await
        .unwrap();
    queue.cancel(cancelled).await.unwrap();
    // The worker that failed `settled` tells its requester itself.
    assert!(queue.claim_notice(settled).await.unwrap());
    assert!(!queue.claim_notice(settled).await.unwrap(), "told once");
    assert!(
        !queue.claim_notice(done).await.unwrap(),
        "a success is posted, not announced"
    );
    // `rescued`'s worker died on its last attempt: nobody told its requester.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(queue.rescue_expired().await.unwrap(), 1);
    assert!(
        queue
            .claim_notices(10, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty(),
        "a fresh ending is left to the worker that settles it"
    );
    let mut swept: Vec<JobId> = queue
        .claim_notices(10, Duration::ZERO)
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    swept.sort();
    assert_eq!(swept, vec![rescued, cancelled]);
    assert!(
        queue
            .claim_notices(10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty(),
        "never twice"
    );
    // A notice that could not be posted is swept again.
    queue.release_notice(rescued).await.unwrap();
    let again: Vec<JobId> = queue
        .claim_notices(10, Duration::ZERO)
        .await
        .unwrap()
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(again, vec![rescued]);
}

#[tokio::test]
async fn an_engine_claims_only_what_it_can_post_and_the_rest_says_it_waits() {
    let db = TestDb::new().await.unwrap();
    let queue = db.queue(QueueConfig::default(), 4).await.unwrap();
    let on = |platform: &str, user: &str| NewJob {
        origin: wordup_queue::Origin {
            platform: platform.to_owned(),
            ..wordup_tests::jobs::origin(user)
        },
        ..job(user, Tier::Fast, "k")
    };
    let slack = queue.enqueue(&on("slack", "a")).await.unwrap().id;
    let discord = queue.enqueue(&on("discord", "b")).await.unwrap().id;
    let later_slack = queue.enqueue(&on("slack", "c")).await.unwrap().id;
    let discord_only = queue.clone().serving(vec!["discord".to_owned()]);
    // No engine has said what it serves: every queued job waits for one.
    assert_eq!(
        queue.waiting_for_an_engine().await.unwrap(),
        vec![("discord".to_owned(), 1), ("slack".to_owned(), 2)]
    );
    discord_only.engine_seen("engine-1").await.unwrap();
    assert_eq!(queue.served_platforms().await.unwrap(), vec!["discord"]);
    assert_eq!(
        queue.waiting_for_an_engine().await.unwrap(),
        vec![("slack".to_owned(), 2)]
    );
    // The Discord engine skips the Slack jobs ahead of its own, in one
    // batch claim and in settle-and-claim alike.
    let claimed = discord_only.claim(3).await.unwrap();
    assert_eq!(
        claimed.iter().map(|c| c.id()).collect::<Vec<_>>(),
        vec![discord]
    );
    let settled = discord_only
        .settle_and_claim(&[(discord, 1)], 3)
        .await
        .unwrap();
    assert!(settled.stale.is_empty());
    assert!(settled.claimed.is_empty(), "only Slack jobs are left");
    assert_eq!(state_of(&queue, slack).await, JobState::Queued);
    // An engine that serves Slack takes them in order.
    let slack_engine = queue.clone().serving(vec!["slack".to_owned()]);
    let claimed = slack_engine.claim(3).await.unwrap();
    assert_eq!(
        claimed.iter().map(|c| c.id()).collect::<Vec<_>>(),
        vec![slack, later_slack]
    );
    discord_only.engine_gone("engine-1").await.unwrap();
    assert!(queue.served_platforms().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_new_attempt_clears_the_images_of_earlier_ones() {
    let db = TestDb::new().await.unwrap();
    let queue = db.queue(QueueConfig::default(), 4).await.unwrap();
    let id = queue.enqueue(&job("a", Tier::Fast, "k")).await.unwrap().id;
    queue.claim(1).await.unwrap();
    let image = |idx| JobImage {
        idx,
        png: vec![1; 4],
        width: 64,
        height: 64,
        seed: 1,
        score: None,
        draft_latents: None,
    };
    queue.clear_images(id, 1).await.unwrap();
    for idx in 0..4 {
        queue.store_image(id, 1, &image(idx)).await.unwrap();
    }
    // Attempt 1 dies before completing; attempt 2 withholds image 2.
    queue.release(id, 1).await.unwrap();
    queue.claim(1).await.unwrap();
    assert!(
        queue.clear_images(id, 1).await.is_err(),
        "a stale attempt clears nothing"
    );
    assert!(queue.has_image(id, 1).await.unwrap());
    queue.clear_images(id, 2).await.unwrap();
    for idx in [0, 2, 3] {
        queue.store_image(id, 2, &image(idx)).await.unwrap();
    }
    queue.complete(id, 2).await.unwrap();
    assert!(
        !queue.has_image(id, 1).await.unwrap(),
        "withheld on attempt 2"
    );
    assert_eq!(queue.images(id).await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_notification_wakes_an_idle_worker_and_a_lost_listener_repolls() {
    let db = TestDb::new().await.unwrap();
    let queue = db.queue(QueueConfig::default(), 4).await.unwrap();
    // A long poll interval: only a notification or a reconnect wakes it quickly.
    let mut waker = queue.waker(Duration::from_secs(30)).await.unwrap();
    let worker = {
        let queue = queue.clone();
        tokio::spawn(async move {
            let claimed = queue.claim_next(&mut waker, 1).await.unwrap();
            (claimed[0].id(), Instant::now(), waker)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let id = queue.enqueue(&job("a", Tier::Fast, "k")).await.unwrap().id;
    let enqueued = Instant::now();
    let (claimed, at, mut waker) = tokio::time::timeout(Duration::from_secs(5), worker)
        .await
        .expect("woken by the notification")
        .unwrap();
    assert_eq!(claimed, id);
    assert!(at - enqueued < Duration::from_secs(2));

    // A job whose notification never comes (the trigger is off) is found
    // by the re-poll that follows the listener's reconnect, long before the
    // 30 s poll interval.
    sqlx::query("ALTER TABLE jobs DISABLE TRIGGER jobs_notify_insert")
        .execute(queue.pool())
        .await
        .unwrap();
    let idle = {
        let queue = queue.clone();
        tokio::spawn(async move { queue.claim_next(&mut waker, 1).await.unwrap()[0].id() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let unannounced = queue.enqueue(&job("a", Tier::Fast, "k")).await.unwrap().id;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!idle.is_finished(), "nothing announced the job yet");
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_one(queue.pool())
    .await
    .unwrap();
    assert_eq!(killed, 1);
    let picked = tokio::time::timeout(Duration::from_secs(5), idle)
        .await
        .expect("re-polled after the reconnect")
        .unwrap();
    assert_eq!(picked, unannounced);
}

#[tokio::test]
async fn an_aged_relax_job_moves_to_the_front_and_its_position_says_so() {
    let db = TestDb::new().await.unwrap();
    // Long enough that the first positions are read before the relax job
    // ages, even on a loaded machine.
    let aging = Duration::from_secs(3);
    let config = QueueConfig {
        relax_aging: aging,
        ..QueueConfig::default()
    };
    let queue = db.queue(config, 4).await.unwrap();
    let relax = queue.enqueue(&job("r", Tier::Relax, "k")).await.unwrap().id;
    let first_fast = queue.enqueue(&job("f1", Tier::Fast, "k")).await.unwrap().id;
    queue.enqueue(&job("f2", Tier::Fast, "k")).await.unwrap();
    assert_eq!(queue.position(relax).await.unwrap(), Some(3));
    assert_eq!(queue.position(first_fast).await.unwrap(), Some(1));

    tokio::time::sleep(aging + Duration::from_millis(100)).await;
    queue.enqueue(&job("f3", Tier::Fast, "k")).await.unwrap();
    assert_eq!(queue.position(relax).await.unwrap(), Some(1));
    assert_eq!(queue.position(first_fast).await.unwrap(), Some(2));
    assert_eq!(queue.claim(1).await.unwrap()[0].id(), relax);
    assert_eq!(queue.claim(1).await.unwrap()[0].id(), first_fast);
}

#[tokio::test]
async fn settle_and_claim_completes_fenced_and_claims_in_one_statement() {
    let db = TestDb::new().await.unwrap();
    let queue = db.queue(QueueConfig::default(), 4).await.unwrap();
    let jobs: Vec<NewJob> = (0..5)
        .map(|i| job(&format!("u{i}"), Tier::Fast, "k"))
        .collect();
    queue.enqueue_many(&jobs).await.unwrap();

    let first = queue.settle_and_claim(&[], 2).await.unwrap();
    assert!(first.stale.is_empty());
    assert_eq!(first.claimed.len(), 2);
    let done: Vec<(JobId, i32)> = first
        .claimed
        .iter()
        .map(|j| (j.id(), j.attempt()))
        .collect();
    // One real completion, one from an attempt that is not current.
    let with_stale = [done[0], (done[1].0, 9)];
    let second = queue.settle_and_claim(&with_stale, 3).await.unwrap();
    assert_eq!(second.stale, vec![done[1].0]);
    assert_eq!(second.claimed.len(), 3);
    assert_eq!(state_of(&queue, done[0].0).await, JobState::Succeeded);
    assert_eq!(state_of(&queue, done[1].0).await, JobState::Running);

    // Nothing left to claim: completions still go through and are reported.
    let rest: Vec<(JobId, i32)> = second
        .claimed
        .iter()
        .map(|j| (j.id(), j.attempt()))
        .collect();
    let last = queue.settle_and_claim(&rest, 3).await.unwrap();
    assert!(last.claimed.is_empty());
    assert!(last.stale.is_empty());
    for (id, _) in rest {
        assert_eq!(state_of(&queue, id).await, JobState::Succeeded);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_intent_to_post_says_when_the_first_try_began() {
    let db = TestDb::new().await.unwrap();
    let queue = db.queue(QueueConfig::default(), 4).await.unwrap();
    let id = queue.enqueue(&job("a", Tier::Fast, "k")).await.unwrap().id;
    let before = db_now(&queue).await;
    assert_eq!(queue.intend_post(id, "result").await.unwrap(), None);
    let first = queue
        .intend_post(id, "result")
        .await
        .unwrap()
        .expect("a repeat");
    assert!(first >= before);
    // Later tries still name the first one; other keys and jobs are apart.
    assert_eq!(queue.intend_post(id, "result").await.unwrap(), Some(first));
    assert_eq!(queue.intend_post(id, "notice:ended").await.unwrap(), None);
    let other = queue.enqueue(&job("b", Tier::Fast, "k")).await.unwrap().id;
    assert_eq!(queue.intend_post(other, "result").await.unwrap(), None);
}
