-- The job queue. One row per job; the hot rows are the queued and running ones,
-- and every index that the claim uses is partial on them so the finished rows
-- that wait for retention do not slow it down.
CREATE TABLE jobs (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- A chat platform's interaction id: the same interaction delivered twice makes one job.
    idempotency_key   text,
    tier              text        NOT NULL CHECK (tier IN ('fast', 'relax')),
    state             text        NOT NULL DEFAULT 'queued'
                      CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    -- Origin: where the request came from and where results go.
    platform          text        NOT NULL,
    workspace_id      text        NOT NULL,
    channel_id        text        NOT NULL,
    thread_id         text,
    user_id           text        NOT NULL,
    -- Adapter data the queue stores and never reads (message refs, tokens' ids).
    reply             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    request           jsonb       NOT NULL,
    batch_key         text        NOT NULL,
    -- Claim order: a virtual clock per user and tier (see queue/src/enqueue.rs).
    sort_key          timestamptz NOT NULL,
    attempt           integer     NOT NULL DEFAULT 0,
    max_attempts      integer     NOT NULL CHECK (max_attempts >= 1),
    run_at            timestamptz NOT NULL DEFAULT now(),
    enqueued_at       timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    lease_expires_at  timestamptz,
    finished_at       timestamptz,
    cancel_requested  boolean     NOT NULL DEFAULT false,
    last_error        text,
    progress          jsonb
);

-- Partial, so that jobs without a key cost no index writes.
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
-- The claim's head pick: first queued job in claim order.
CREATE INDEX jobs_queued_order ON jobs (sort_key, id) WHERE state = 'queued';
-- The claim's pick of relax jobs that aged.
CREATE INDEX jobs_queued_relax ON jobs (sort_key, id) WHERE state = 'queued' AND tier = 'relax';
-- The claim's batch fill: queued jobs of one batch key in claim order.
CREATE INDEX jobs_queued_batch ON jobs (batch_key, sort_key, id) WHERE state = 'queued';
-- Enqueue's per-user clock, quotas and /queue. Queued jobs only, so that a
-- claim writes no entry here; running jobs are found through the next index.
CREATE INDEX jobs_queued_user ON jobs (platform, user_id, tier, sort_key) WHERE state = 'queued';
-- The rescuer, and running jobs per user (there are few).
CREATE INDEX jobs_running_lease ON jobs (lease_expires_at) WHERE state = 'running';
-- Retention.
CREATE INDEX jobs_finished_at ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- Jobs enqueued per user and UTC day, for daily quotas. Kept apart from
-- jobs so that the hot table carries one index fewer on every claim and
-- completion (none of which can be HOT updates: `state` is in the partial
-- indexes' predicates).
CREATE TABLE user_usage (
    platform text    NOT NULL,
    user_id  text    NOT NULL,
    day      date    NOT NULL,
    jobs     integer NOT NULL,
    PRIMARY KEY (platform, user_id, day)
);

-- Images a job produced. Chat platforms' CDN links expire, so we keep the bytes.
CREATE TABLE job_images (
    job_id     bigint  NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx        integer NOT NULL CHECK (idx >= 0),
    png        bytea   NOT NULL,
    width      integer NOT NULL,
    height     integer NOT NULL,
    seed       bigint  NOT NULL,
    score      real,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, idx)
);

-- Chat messages a job's results were posted as. Recorded after a post so a
-- redelivery finds the post and does not post twice; buttons resolve through it.
CREATE TABLE job_posts (
    job_id     bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    post_key   text   NOT NULL,
    platform   text   NOT NULL,
    channel_id text   NOT NULL,
    message_id text   NOT NULL,
    posted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, post_key)
);
CREATE INDEX job_posts_message ON job_posts (platform, message_id);

-- Wake idle workers. One notification per statement: Postgres folds equal
-- payloads within a transaction, and a worker only needs to know "look again".
CREATE FUNCTION wordup_notify_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('wordup_jobs', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_notify_insert AFTER INSERT ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION wordup_notify_jobs();
