-- When a job that ended failed or cancelled was announced to its requester
-- (claimed for announcing: set before the notice is posted, cleared again
-- if posting fails). Jobs that ended before this column existed count as
-- announced, so a deploy does not send old news.
ALTER TABLE jobs ADD COLUMN notice_claimed_at timestamptz;
UPDATE jobs SET notice_claimed_at = coalesce(finished_at, now())
WHERE state IN ('failed', 'cancelled');
CREATE INDEX jobs_unannounced ON jobs (finished_at)
    WHERE state IN ('failed', 'cancelled') AND notice_claimed_at IS NULL;
