-- Money: package limits, balances, the ledger and usage records. All amounts are integer micro-points.

ALTER TABLE packages
    ADD COLUMN rpm_limit         integer CHECK (rpm_limit > 0),          -- requests per minute; NULL: no limit
    ADD COLUMN tpm_limit         integer CHECK (tpm_limit > 0),          -- tokens per minute; NULL: no limit
    ADD COLUMN concurrency_limit integer CHECK (concurrency_limit > 0),  -- requests in flight; NULL: no limit
    -- The output cap a reservation assumes, and sets on the upstream request, when the client sends none.
    ADD COLUMN default_max_output_tokens integer NOT NULL DEFAULT 4096 CHECK (default_max_output_tokens > 0);

-- Reservations price input at the full input price, which covers cache reads only if they cost no more.
ALTER TABLE models ADD CONSTRAINT cached_input_price_at_most_input CHECK (cached_input_price <= input_price);

-- Balances change on every settled request: kept out of `tenants`, whose trigger reloads the catalog.
CREATE TABLE balances (
    tenant_id  text PRIMARY KEY REFERENCES tenants (id),
    points     bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every change of a balance, signed. `request_id` is set for usage charges, and unique among them.
CREATE TABLE ledger (
    id            bigserial PRIMARY KEY,
    tenant_id     text NOT NULL REFERENCES tenants (id),
    kind          text NOT NULL CHECK (kind IN ('grant', 'usage', 'adjustment')),
    amount        bigint NOT NULL,
    balance_after bigint NOT NULL,
    request_id    text,
    note          text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX ledger_usage_request ON ledger (request_id) WHERE kind = 'usage';
CREATE INDEX ledger_tenant ON ledger (tenant_id, created_at);

-- One row per settled request, keyed by Envoy's request id: a redelivered settlement is a no-op.
CREATE TABLE usage_records (
    request_id          text PRIMARY KEY,
    tenant_id           text NOT NULL REFERENCES tenants (id),
    key_id              text NOT NULL,
    endpoint            text NOT NULL,
    model               text NOT NULL,
    upstream            text NOT NULL,
    -- complete: the upstream finished; partial: the client left or the stream broke; failed: nothing
    -- served (upstream error); reaped: the settlement never came and the reservation expired.
    outcome             text NOT NULL CHECK (outcome IN ('complete', 'partial', 'failed', 'reaped')),
    estimated           boolean NOT NULL DEFAULT false,  -- tokens counted by Lime, not reported upstream
    upstream_status     integer NOT NULL DEFAULT 0,
    input_tokens        bigint NOT NULL DEFAULT 0,
    cached_input_tokens bigint NOT NULL DEFAULT 0,
    cache_write_tokens  bigint NOT NULL DEFAULT 0,
    output_tokens       bigint NOT NULL DEFAULT 0,
    reasoning_tokens    bigint NOT NULL DEFAULT 0,
    reserved            bigint NOT NULL DEFAULT 0,
    cost                bigint NOT NULL DEFAULT 0,
    started_at          timestamptz NOT NULL,
    settled_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX usage_records_tenant ON usage_records (tenant_id, settled_at);
