-- 👍 on results: one vote per person per result (pressing again takes it
-- back). Read by the result's button label and the channel's board.
CREATE TABLE job_votes (
    job_id   bigint      NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    platform text        NOT NULL,
    user_id  text        NOT NULL,
    voted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, platform, user_id)
);

-- A channel's board lists its finished jobs, newest first.
CREATE INDEX jobs_board ON jobs (platform, channel_id, finished_at DESC)
    WHERE state = 'succeeded';
