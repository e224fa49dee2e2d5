-- The latents of an image drawn with --draft (a safetensors blob of one
-- [channels, height, width] tensor): an upscale or variation of a draft
-- image decodes them with the model's full VAE instead of working from the
-- draft decoder's softer picture. NULL for every other image.
ALTER TABLE job_images ADD COLUMN draft_latents bytea;
