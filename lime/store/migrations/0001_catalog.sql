-- The catalog and the keys. Money tables come with the billing migration.

CREATE TABLE upstreams (
    id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]*$'),
    protocol    text NOT NULL CHECK (protocol IN ('openai', 'anthropic')),
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE models (
    id                 text PRIMARY KEY,
    upstream_id        text NOT NULL REFERENCES upstreams (id),
    upstream_model     text NOT NULL,
    kind               text NOT NULL CHECK (kind IN ('chat', 'embedding')),
    display_name       text NOT NULL DEFAULT '',
    owned_by           text NOT NULL DEFAULT 'lime',
    -- integer micro-points per million tokens
    input_price        bigint NOT NULL DEFAULT 0 CHECK (input_price >= 0),
    output_price       bigint NOT NULL DEFAULT 0 CHECK (output_price >= 0),
    cached_input_price bigint NOT NULL DEFAULT 0 CHECK (cached_input_price >= 0),
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE packages (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE package_models (
    package_id text NOT NULL REFERENCES packages (id) ON DELETE CASCADE,
    model_id   text NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    PRIMARY KEY (package_id, model_id)
);

CREATE TABLE brands (
    id              text PRIMARY KEY,
    name            text NOT NULL,
    -- NULL: no narrowing; an array: the only models this brand shows (intersected with the package)
    model_allowlist text[],
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenants (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    package_id text REFERENCES packages (id),
    brand_id   text REFERENCES brands (id),
    status     text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id             text PRIMARY KEY,
    tenant_id      text NOT NULL REFERENCES tenants (id),
    key_hash       text NOT NULL UNIQUE,  -- sha256 hex of the key; the key itself is never stored
    display_prefix text NOT NULL,
    name           text NOT NULL DEFAULT '',
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    expires_at     timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- Services keep the catalog in memory. Any change to a catalog table bumps this version and notifies
-- `lime_catalog`, so every process reloads without anyone having to remember to tell it.
CREATE TABLE catalog_version (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version   bigint NOT NULL
);
INSERT INTO catalog_version VALUES (true, 1);

CREATE FUNCTION bump_catalog_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE catalog_version SET version = version + 1;
    PERFORM pg_notify('lime_catalog', '');
    RETURN NULL;
END $$;

DO $$
DECLARE
    catalog_table text;
BEGIN
    FOREACH catalog_table IN ARRAY ARRAY['upstreams', 'models', 'packages', 'package_models', 'brands', 'tenants']
    LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %I'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_version()',
                       catalog_table || '_changed', catalog_table);
    END LOOP;
END $$;
