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

_V2_RATE_LIMITS = r"""
-- Rate limits shared by processes (PostgresRateLimitStore): one row per deployment, locked by each admission, with
-- what the provider's rate-limit headers said; one hold per admitted request until `per` seconds after it ended.
-- UNLOGGED: windows are seconds to minutes of state, so commits need not wait for the disk (half an admission's
-- cost); a server crash or failover starts them empty.
CREATE UNLOGGED TABLE llmclient_rate_windows (
    key                text PRIMARY KEY,
    remaining_requests bigint,
    requests_reset     timestamptz,
    admitted_since     bigint NOT NULL DEFAULT 0,
    remaining_tokens   bigint,
    tokens_reset       timestamptz,
    -- Running totals of the deployment's holds, so an admission that fits reads no hold (as in memory).
    held               bigint NOT NULL DEFAULT 0,
    held_tokens        bigint NOT NULL DEFAULT 0
);
-- `ended_at` is NULL while the request is in flight; a hold whose process died before settling counts as having
-- ended at `expires_at` (its lease), so it leaves the window `per` seconds after that.
CREATE UNLOGGED TABLE llmclient_rate_holds (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key        text NOT NULL REFERENCES llmclient_rate_windows (key) ON DELETE CASCADE,
    tokens     bigint NOT NULL,
    ended_at   timestamptz,
    expires_at timestamptz NOT NULL
);
CREATE INDEX llmclient_rate_holds_key ON llmclient_rate_holds (key, (coalesce(ended_at, expires_at)));

-- Admission in one statement, as MemoryRateLimitStore does it: lock the deployment's row (admissions to one
-- deployment take turns; others go on), drop holds that left the window, and either insert a hold (returning its
-- id) or return the seconds until one request of `p_tokens` would fit.
CREATE OR REPLACE FUNCTION llmclient_rate_acquire(
    p_key text, p_rpm bigint, p_tpm bigint, p_per double precision, p_tokens bigint, p_lease double precision,
    p_at timestamptz
) RETURNS TABLE (hold bigint, wait double precision)
LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz := coalesce(p_at, clock_timestamp());
    per interval := make_interval(secs => p_per);
    w llmclient_rate_windows;
    n_held bigint;
    ended bigint;
    n_tokens bigint;
    gone bigint;
    gone_tokens bigint;
    over bigint;
    freed timestamptz;
    waiting double precision := 0;
BEGIN
    SELECT * INTO w FROM llmclient_rate_windows x WHERE x.key = p_key FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO llmclient_rate_windows (key) VALUES (p_key) ON CONFLICT (key) DO NOTHING;
        SELECT * INTO w FROM llmclient_rate_windows x WHERE x.key = p_key FOR UPDATE;
    END IF;
    WITH dropped AS (
        DELETE FROM llmclient_rate_holds h WHERE h.key = p_key AND coalesce(h.ended_at, h.expires_at) <= t - per
        RETURNING h.tokens)
    SELECT count(*), coalesce(sum(d.tokens), 0) INTO gone, gone_tokens FROM dropped d;
    n_held := w.held - gone;
    n_tokens := w.held_tokens - gone_tokens;
    -- An ended hold leaves the window `per` seconds after it ended; one in flight, no sooner than `per` from now.
    IF p_rpm IS NOT NULL AND n_held + 1 > p_rpm THEN
        SELECT count(*) INTO ended FROM llmclient_rate_holds h
         WHERE h.key = p_key AND (h.ended_at IS NOT NULL OR h.expires_at <= t);
        IF n_held + 1 - p_rpm <= ended THEN
            SELECT e INTO freed FROM (
                SELECT coalesce(h.ended_at, h.expires_at) AS e FROM llmclient_rate_holds h
                 WHERE h.key = p_key AND (h.ended_at IS NOT NULL OR h.expires_at <= t) ORDER BY 1
                OFFSET n_held - p_rpm LIMIT 1) s;
            waiting := greatest(waiting, extract(epoch FROM freed + per - t));
        ELSE
            waiting := greatest(waiting, p_per);
        END IF;
    END IF;
    IF p_tpm IS NOT NULL THEN
        over := n_tokens + least(p_tokens, p_tpm) - p_tpm;
        IF over > 0 THEN
            freed := NULL;
            SELECT s.e INTO freed FROM (
                SELECT coalesce(h.ended_at, h.expires_at) AS e,
                       sum(h.tokens) OVER (ORDER BY coalesce(h.ended_at, h.expires_at), h.id) AS freed_tokens
                  FROM llmclient_rate_holds h
                 WHERE h.key = p_key AND (h.ended_at IS NOT NULL OR h.expires_at <= t)) s
             WHERE s.freed_tokens >= over ORDER BY s.e LIMIT 1;
            waiting := greatest(waiting, coalesce(extract(epoch FROM freed + per - t), p_per));
        END IF;
    END IF;
    IF w.remaining_requests IS NOT NULL AND t < w.requests_reset AND w.remaining_requests - w.admitted_since < 1 THEN
        waiting := greatest(waiting, extract(epoch FROM w.requests_reset - t));
    END IF;
    IF w.remaining_tokens IS NOT NULL AND t < w.tokens_reset AND w.remaining_tokens < p_tokens THEN
        waiting := greatest(waiting, extract(epoch FROM w.tokens_reset - t));
    END IF;
    IF waiting > 0 THEN
        IF gone > 0 THEN
            UPDATE llmclient_rate_windows x SET held = n_held, held_tokens = n_tokens WHERE x.key = p_key;
        END IF;
        RETURN QUERY SELECT NULL::bigint, waiting;
        RETURN;
    END IF;
    UPDATE llmclient_rate_windows x SET held = n_held + 1, held_tokens = n_tokens + p_tokens,
           admitted_since = x.admitted_since + 1
     WHERE x.key = p_key;
    RETURN QUERY INSERT INTO llmclient_rate_holds AS h (key, tokens, expires_at)
        VALUES (p_key, p_tokens, t + make_interval(secs => p_lease)) RETURNING h.id, 0::double precision;
END
$$;

-- Settling many holds at once (the writer thread batches them): each ends now with its actual tokens (NULL keeps
-- the reservation), and its deployment's running total follows. The deployments' rows are locked first, in key
-- order, as admissions lock them before their holds (no deadlock). A hold already ended or gone is left alone.
CREATE OR REPLACE FUNCTION llmclient_rate_settle(p_ids bigint[], p_tokens bigint[], p_at timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz := coalesce(p_at, clock_timestamp());
BEGIN
    PERFORM 1 FROM llmclient_rate_windows x
      WHERE x.key IN (SELECT h.key FROM llmclient_rate_holds h WHERE h.id = ANY (p_ids))
      ORDER BY x.key FOR UPDATE;
    WITH settled AS (
        UPDATE llmclient_rate_holds h SET ended_at = t, tokens = coalesce(s.tokens, o.tokens)
          FROM unnest(p_ids, p_tokens) AS s (id, tokens) JOIN llmclient_rate_holds o ON o.id = s.id
         WHERE h.id = s.id AND h.ended_at IS NULL
        RETURNING h.key, coalesce(s.tokens, o.tokens) - o.tokens AS change)
    UPDATE llmclient_rate_windows x SET held_tokens = x.held_tokens + c.change
      FROM (SELECT key, sum(change) AS change FROM settled GROUP BY key) c
     WHERE x.key = c.key AND c.change <> 0;
END
$$;

-- The provider's word (rate-limit headers): requests or tokens left until a reset, counted from now; requests in
-- flight may not be in its count yet, so they count against it.
CREATE OR REPLACE FUNCTION llmclient_rate_learn(
    p_key text, p_requests bigint, p_requests_reset double precision, p_tokens bigint,
    p_tokens_reset double precision, p_at timestamptz
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz := coalesce(p_at, clock_timestamp());
BEGIN
    INSERT INTO llmclient_rate_windows (key) VALUES (p_key) ON CONFLICT (key) DO NOTHING;
    IF p_requests IS NOT NULL THEN
        UPDATE llmclient_rate_windows x SET remaining_requests = p_requests,
               requests_reset = t + make_interval(secs => p_requests_reset),
               admitted_since = (SELECT count(*) FROM llmclient_rate_holds h
                                  WHERE h.key = p_key AND h.ended_at IS NULL AND h.expires_at > t)
         WHERE x.key = p_key;
    END IF;
    IF p_tokens IS NOT NULL THEN
        UPDATE llmclient_rate_windows x SET remaining_tokens = p_tokens,
               tokens_reset = t + make_interval(secs => p_tokens_reset)
         WHERE x.key = p_key;
    END IF;
END
$$;
"""

# Routing names the deployment that served a call (`LedgerRecord.deployment`), as the SQLite ledger records it.
_V3_DEPLOYMENT = """
ALTER TABLE llmclient_calls ADD COLUMN IF NOT EXISTS deployment text;
"""

# The writer (stores/writer.py) repeats a write whose acknowledgement was lost: a settlement without a ledger row
# is keyed by its call id here, so it counts once. `charged_usd` is what a row's shared budgets were charged (its
# cost, or its reservation when the cost is unknown), so every budget's spend is the sum of its rows' charges.
# Count margins learned from shortfalls, per model or deployment, shared so a new process starts from them.
# A reservation whose answer never came is released by id, leaving a tombstone that `llmclient_reserve` honours, so
# a reserve statement delivered after its release (a network or server that held it) reserves nothing.
_V4_FLEET = r"""
ALTER TABLE llmclient_calls ADD COLUMN IF NOT EXISTS charged_usd numeric;
CREATE TABLE IF NOT EXISTS llmclient_settled (
    call_id text PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS llmclient_margins (
    key        text PRIMARY KEY,
    margin     double precision NOT NULL CHECK (margin >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS llmclient_released (
    id          text PRIMARY KEY,
    released_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS llmclient_released_at ON llmclient_released (released_at);

-- Releasing a reservation whose fate is unknown: drop it if it was made, and keep it from being made later. A
-- tombstone is kept a day (far longer than any statement is held up; a reservation made later still ends with
-- its lease).
CREATE OR REPLACE FUNCTION llmclient_release(p_id text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(26, hashtext(p_id));
    INSERT INTO llmclient_released (id) VALUES (p_id) ON CONFLICT (id) DO NOTHING;
    DELETE FROM llmclient_reservations WHERE id = p_id;
    DELETE FROM llmclient_released WHERE released_at < now() - interval '1 day';
END
$$;

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
    -- Released before it was made: the client gave up waiting for this statement (a silent database, a network
    -- that held it) and released the id; made now, it would hold the budget until its lease ran out. The id's
    -- lock orders this with its release (`llmclient_release` takes it too): whichever comes second sees the other.
    PERFORM pg_advisory_xact_lock(26, hashtext(p_id));
    IF EXISTS (SELECT 1 FROM llmclient_released x WHERE x.id = p_id) THEN
        RETURN QUERY SELECT NULL::text, 'released'::text, NULL::numeric, NULL::numeric;
        RETURN;
    END IF;
    SELECT n INTO missing FROM unnest(p_required) AS n
     WHERE NOT EXISTS (SELECT 1 FROM llmclient_budgets x WHERE x.name = n) LIMIT 1;
    IF missing IS NOT NULL THEN
        RETURN QUERY SELECT missing, 'missing'::text, NULL::numeric, NULL::numeric;
        RETURN;
    END IF;
    -- NO KEY UPDATE: admissions to one budget take turns, while a settle (whose spend row only references the
    -- budget: KEY SHARE) goes on; each statement below reads a fresh snapshot, a settle committed whole or not.
    FOR b IN SELECT * FROM llmclient_budgets x WHERE x.name = ANY (p_required || p_optional)
             ORDER BY x.name FOR NO KEY UPDATE LOOP
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
"""

MIGRATIONS: tuple[str, ...] = (_V1_TABLES + _V1_FUNCTIONS, _V2_RATE_LIMITS, _V3_DEPLOYMENT, _V4_FLEET)
"""Migration N (1-based) is `MIGRATIONS[N - 1]`; append, never edit, once released."""

SCHEMA_VERSION = len(MIGRATIONS)
