-- Responses the upstreams stored (the Responses API's `store`), so that only their tenant may retrieve, delete,
-- cancel, list or continue them, on the upstream (the failover candidate) that holds them. Redis holds the same
-- record for a day for the request path (lime/money/response_records.py); this table answers after that.
CREATE TABLE responses (
    id             text PRIMARY KEY,          -- the upstream's response id
    tenant_id      text NOT NULL,
    key_id         text NOT NULL,
    upstream       text NOT NULL,             -- the catalog upstream: its route and credential
    candidate      text NOT NULL DEFAULT '',  -- the failover candidate that served it; '' for a single upstream
    model          text NOT NULL,             -- the public id
    upstream_model text NOT NULL,
    context_tokens bigint NOT NULL,           -- input + output of the stored response: what a continuation carries
    created_at     timestamptz NOT NULL,
    stored         boolean NOT NULL,          -- false: `store: false`, nothing retrievable
    deleted_at     timestamptz,               -- set by a DELETE the upstream confirmed
    request_id     text NOT NULL DEFAULT ''
);
CREATE INDEX responses_tenant ON responses (tenant_id, created_at);
