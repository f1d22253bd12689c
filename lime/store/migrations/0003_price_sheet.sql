-- The price sheet: every part a provider bills (docs/billing.md, "The price sheet"), and the usage parts priced
-- apart, recorded so that billing can audit each charge.

-- The parts beyond input, output and cached input, in the dictionary form of lime/money/price_sheet.py
-- (cache_write_5m, cache_write_1h, audio_input, audio_output, tiers, long_context, tool_calls), validated by the
-- admin functions that write it. '{}': none, which prices exactly as before this migration.
ALTER TABLE models
    ADD COLUMN price_sheet  jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(price_sheet) = 'object'),
    -- Where the prices came from (`lime model import-prices`: file, key, version or hash, date, rate, markup);
    -- NULL: typed by hand.
    ADD COLUMN price_source jsonb CHECK (price_source IS NULL OR jsonb_typeof(price_source) = 'object');

ALTER TABLE usage_records
    ADD COLUMN cache_write_1h_tokens bigint NOT NULL DEFAULT 0,  -- cache_write_tokens holds the 5-minute writes
    ADD COLUMN audio_input_tokens    bigint NOT NULL DEFAULT 0,  -- the audio share of input_tokens
    ADD COLUMN audio_output_tokens   bigint NOT NULL DEFAULT 0,  -- the audio share of output_tokens
    ADD COLUMN server_tool_calls     jsonb NOT NULL DEFAULT '{}',  -- {"web_search": 3}: calls billed per call
    ADD COLUMN service_tier          text,                        -- the tier the provider said it served
    ADD COLUMN unpriced              text[] NOT NULL DEFAULT '{}';  -- parts charged at the highest rate
