-- Per-channel settings that /settings (Discord) and /imagine-settings (Slack)
-- change. A channel without a row uses the defaults.
CREATE TABLE channel_settings (
    platform          text    NOT NULL,
    channel_id        text    NOT NULL,
    -- A style preset applied when a prompt names none.
    default_style     text,
    -- 'fast' or 'relax' when a prompt names neither.
    default_tier      text    CHECK (default_tier IN ('fast', 'relax')),
    -- Only the person who asked for a grid may press its buttons.
    restrict_buttons  boolean NOT NULL DEFAULT false,
    -- Skip the output safety check; the adapter only lets this be set where
    -- the platform marks the channel NSFW, and checks the mark again per job.
    allow_nsfw        boolean NOT NULL DEFAULT false,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform, channel_id)
);
