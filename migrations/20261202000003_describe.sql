-- An image a command brought (/describe), as PNG: stored under the job's
-- idempotency key before the job is enqueued, so that the engine that claims
-- the job finds it. Retention deletes it with the jobs of its age.
CREATE TABLE job_inputs (
    idempotency_key text        PRIMARY KEY,
    png             bytea       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- /describe's prompt suggestions, which the buttons under its answer run.
CREATE TABLE job_suggestions (
    job_id bigint   NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx    smallint NOT NULL,
    prompt text     NOT NULL,
    PRIMARY KEY (job_id, idx)
);
