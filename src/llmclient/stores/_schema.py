"""The PostgreSQL schema, as numbered migrations the package applies in order (`llmclient db migrate`).

Every statement is idempotent where PostgreSQL allows it, and `migrate` runs them under a transaction-scoped
advisory lock, so many processes starting at once apply each migration exactly once. The version table records
what was applied; a database newer than this package is refused rather than written with an old layout.
"""

from __future__ import annotations

# One advisory-lock key for schema changes ("llmclient" in ASCII, as a bigint); any constant works if it is fixed.
ADVISORY_LOCK_KEY = 0x6C6C6D636C69656E

VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS llmclient_schema (
    version    integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

_V1_TABLES = """
CREATE TABLE llmclient_budgets (
    name                 text PRIMARY KEY,
    limit_usd            numeric NOT NULL CHECK (limit_usd >= 0),
    period               text NOT NULL DEFAULT 'none' CHECK (period IN ('none', 'day', 'month')),
    rolling              boolean NOT NULL DEFAULT false,
    time_zone            text NOT NULL DEFAULT 'UTC',
    allow_unknown_prices boolean NOT NULL DEFAULT false,
    created_at           timestamptz NOT NULL DEFAULT now()
);
-- Spend per budget and bucket: the calendar window's start, the hour (rolling windows) or -infinity (no window).
-- Settling adds to the bucket of its time; nothing is ever reset, so a rollover cannot overwrite spend.
CREATE TABLE llmclient_budget_spend (
    budget text NOT NULL REFERENCES llmclient_budgets (name) ON DELETE CASCADE ON UPDATE CASCADE,
    bucket timestamptz NOT NULL,
    spent  numeric NOT NULL DEFAULT 0,
    calls  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (budget, bucket)
);
CREATE TABLE llmclient_reservations (
    id         text NOT NULL,
    budget     text NOT NULL REFERENCES llmclient_budgets (name) ON DELETE CASCADE ON UPDATE CASCADE,
    amount     numeric NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (id, budget)
);
CREATE INDEX llmclient_reservations_budget ON llmclient_reservations (budget, expires_at);
CREATE TABLE llmclient_calls (
    call_id              text PRIMARY KEY,
    at                   timestamptz NOT NULL,
    provider             text NOT NULL,
    model                text NOT NULL,
    kind                 text NOT NULL,
    input_tokens         integer NOT NULL,
    cached_input_tokens  integer NOT NULL,
    output_tokens        integer NOT NULL,
    reasoning_tokens     integer NOT NULL,
    estimated            boolean NOT NULL,
    cost_usd             numeric,
    cost_input_usd       numeric,
    cost_cached_usd      numeric,
    cost_output_usd      numeric,
    price_source         text,
    price_checked        text,
    latency_s            double precision NOT NULL,
    attempts             integer NOT NULL,
    request_id           text,
    tags                 text[] NOT NULL DEFAULT '{}',
    error                text,
    counted_input_tokens integer,
    budgets              text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX llmclient_calls_at ON llmclient_calls (at);
CREATE INDEX llmclient_calls_model ON llmclient_calls (provider, model);
"""

_V1_FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION llmclient_bucket(b llmclient_budgets, t timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN b.period = 'none' THEN '-infinity'::timestamptz
        WHEN b.rolling THEN date_trunc('hour', t)
        ELSE date_trunc(b.period, t AT TIME ZONE b.time_zone) AT TIME ZONE b.time_zone
    END
$$;

-- Spend plus live reservations in one statement (one snapshot): a settle that commits meanwhile is seen whole
-- (its reservation gone and its spend added) or not at all. Rolling windows count whole hours, erring towards the
-- limit: a rolling day sums the last 24 to 25 hourly buckets.
CREATE OR REPLACE FUNCTION llmclient_used(b llmclient_budgets, t timestamptz) RETURNS numeric
LANGUAGE sql STABLE AS $$
    SELECT
        (SELECT coalesce(sum(s.spent), 0) FROM llmclient_budget_spend s
          WHERE s.budget = b.name AND CASE
              WHEN b.rolling AND b.period <> 'none' THEN s.bucket >= date_trunc('hour', t - CASE b.period
                  WHEN 'day' THEN interval '1 day' ELSE interval '30 days' END)
              ELSE s.bucket = llmclient_bucket(b, t) END)
      + (SELECT coalesce(sum(r.amount), 0) FROM llmclient_reservations r
          WHERE r.budget = b.name AND r.expires_at > t)
$$;

-- Admission as one atomic operation: lock the named budgets in name order (no deadlocks between processes),
-- drop expired leases, and reserve `amount` on every one of them or on none. Returns one row per budget reserved
-- (reason 'reserved'), or the one row that refused (reason 'over', 'unpriced' or 'missing').
CREATE OR REPLACE FUNCTION llmclient_reserve(
    p_id text, p_required text[], p_optional text[], p_amount numeric, p_lease interval, p_at timestamptz
) RETURNS TABLE (budget text, reason text, remaining numeric, limit_usd numeric)
LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz := coalesce(p_at, clock_timestamp());
    b llmclient_budgets;
    used numeric;
    missing text;
BEGIN
    SELECT n INTO missing FROM unnest(p_required) AS n
     WHERE NOT EXISTS (SELECT 1 FROM llmclient_budgets x WHERE x.name = n) LIMIT 1;
    IF missing IS NOT NULL THEN
        RETURN QUERY SELECT missing, 'missing'::text, NULL::numeric, NULL::numeric;
        RETURN;
    END IF;
    FOR b IN SELECT * FROM llmclient_budgets x WHERE x.name = ANY (p_required || p_optional)
             ORDER BY x.name FOR UPDATE LOOP
        DELETE FROM llmclient_reservations r WHERE r.budget = b.name AND r.expires_at <= t;
        IF p_amount IS NULL AND NOT b.allow_unknown_prices THEN
            RETURN QUERY SELECT b.name, 'unpriced'::text, NULL::numeric, b.limit_usd;
            RETURN;
        END IF;
        used := llmclient_used(b, t);
        IF used + coalesce(p_amount, 0) > b.limit_usd THEN
            RETURN QUERY SELECT b.name, 'over'::text, b.limit_usd - used, b.limit_usd;
            RETURN;
        END IF;
    END LOOP;
    RETURN QUERY
        INSERT INTO llmclient_reservations AS r (id, budget, amount, expires_at)
        SELECT p_id, x.name, coalesce(p_amount, 0), t + p_lease FROM llmclient_budgets x
         WHERE x.name = ANY (p_required || p_optional)
        RETURNING r.budget, 'reserved'::text, NULL::numeric, NULL::numeric;
END
$$;

-- Settling: drop the reservation and add the actual cost to the bucket of `at` of every named budget (in name
-- order, so concurrent settles lock spend rows in the same order).
CREATE OR REPLACE FUNCTION llmclient_settle(p_id text, p_names text[], p_amount numeric, p_at timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz := coalesce(p_at, clock_timestamp());
BEGIN
    IF p_id IS NOT NULL THEN
        DELETE FROM llmclient_reservations WHERE id = p_id;
    END IF;
    INSERT INTO llmclient_budget_spend AS s (budget, bucket, spent, calls)
    SELECT x.name, llmclient_bucket(x, t), coalesce(p_amount, 0), 1 FROM llmclient_budgets x
     WHERE x.name = ANY (p_names) ORDER BY x.name
    ON CONFLICT (budget, bucket) DO UPDATE SET spent = s.spent + excluded.spent, calls = s.calls + 1;
END
$$;
"""

MIGRATIONS: tuple[str, ...] = (_V1_TABLES + _V1_FUNCTIONS,)
"""Migration N (1-based) is `MIGRATIONS[N - 1]`; append, never edit, once released."""

SCHEMA_VERSION = len(MIGRATIONS)
