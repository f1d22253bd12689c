-- The overdraft bound (lime/money/overdraft.py): how far below zero a tenant of the package may go for the part of
-- a request's cost its reservation cannot see (a file the upstream fetches). 0: not at all.
ALTER TABLE packages
    ADD COLUMN overdraft_limit bigint NOT NULL DEFAULT 0 CHECK (overdraft_limit >= 0);  -- micro-points
