-- A channel's default --quality: candidates drawn per image shown, the best
-- kept by CLIP score. NULL: 1, draw what is shown.
ALTER TABLE channel_settings
    ADD COLUMN default_quality smallint CHECK (default_quality BETWEEN 1 AND 4);
