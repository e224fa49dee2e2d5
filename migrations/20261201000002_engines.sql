-- Engines working the queue and the platforms each can post to: an engine
-- claims only jobs it can deliver, and /queue and the metrics say when a
-- job waits for an engine that can. Refreshed by each engine every poll.
CREATE TABLE engines (
    id         text        PRIMARY KEY,
    platforms  text[]      NOT NULL,
    last_seen  timestamptz NOT NULL DEFAULT now()
);
