-- Posts about to be made: a platform call that timed out may still have
-- posted, and the platforms do not deduplicate (Slack) or only briefly
-- (Discord's nonce). A second try of the same post finds its intent here
-- and looks for the first one's message before posting again.
CREATE TABLE post_intents (
    job_id   bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    post_key text   NOT NULL,
    first_at timestamptz NOT NULL DEFAULT now(),
    tries    integer NOT NULL DEFAULT 1,
    PRIMARY KEY (job_id, post_key)
);
