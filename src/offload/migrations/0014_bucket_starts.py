# Rate limits count starts as claimed (docs/flow-control.md#rate-limits).
#
# A task given a turn (rate_paced) took its token when the turn was given; it used to
# start at any claim after its turn. Claims that come late (a loaded machine) then found
# several turns due at once and started them together: 22 starts in one second at
# "20/s". offload_bucket gains ``started``, GCRA's theoretical arrival time over the
# starts alone: every rate-limited task, with a turn or not, starts only while
# ``started - interval / 4 - (burst - 1) * interval <= now``, and a start moves it to
# ``max(started, now - interval / 4) + interval``. The quarter interval absorbs a claim
# a little late without moving the later turns on; beyond the burst, two starts are
# never closer than half an interval. A turn that falls due before the bucket's starts
# allow is given a new one, best first, from the bucket's next start.
#
# PostgreSQL: offload_admit takes whether each candidate has a turn (p_paced), locks the
# buckets as before and keeps both times. 0011's signature stays for the previous
# release's workers during a rolling deploy (its candidates with a turn pass unchecked,
# as they did). SQLite: the claim admits by the same arithmetic (sqlite/admit.sql), the
# trigger moves ``started`` on for every task claimed and ``tat`` for those that took a
# token, and the store gives late turns new ones (SqliteStore._pace).
from django.db import migrations, models

FUNCTIONS = """

CREATE OR REPLACE FUNCTION offload_lock_buckets(p_backend text, p_keys text[], p_now float8)
RETURNS jsonb LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    times jsonb := '{}';
    r record;
BEGIN
    INSERT INTO offload_bucket (backend, key, tat)
    SELECT p_backend, k, p_now
    FROM (SELECT DISTINCT k FROM unnest(p_keys) AS u(k) WHERE k IS NOT NULL) AS d ORDER BY k
    ON CONFLICT (backend, key) DO UPDATE SET key = EXCLUDED.key WHERE false;
    FOR r IN SELECT b.key, b.tat, b.started FROM offload_bucket AS b
             WHERE b.backend = p_backend AND b.key = ANY(p_keys) LOOP
        times := times || jsonb_build_object(r.key, jsonb_build_array(r.tat, r.started));
    END LOOP;
    RETURN times;
END
$$;

CREATE OR REPLACE FUNCTION offload_admit(p_backend text, p_ids bigint[], p_keys text[],
                                         p_limits int[], p_rate_keys text[],
                                         p_intervals float8[], p_bursts int[],
                                         p_paced boolean[], p_now timestamptz,
                                         p_age_rate float8)
RETURNS SETOF bigint LANGUAGE plpgsql VOLATILE ROWS 10 AS $$
DECLARE
    now_e float8 := extract(epoch FROM p_now);
    keys text[] := array(SELECT k FROM unnest(p_keys) AS u(k) WHERE k IS NOT NULL);
    running jsonb := '{}';
    times jsonb := '{}';
    tats jsonb := '{}';
    starts jsonb := '{}';
    empty jsonb := '{}';
    late jsonb := '{}';
    admitted bigint[] := '{}';
    n int;
    t float8;
    s float8;
    bucket text;
    paced boolean;
    b record;
    given int;
BEGIN
    IF coalesce(cardinality(p_ids), 0) = 0 THEN
        RETURN;
    END IF;
    IF cardinality(keys) > 0 THEN
        running := offload_lock_keys(p_backend, keys);
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_rate_keys) AS u(k) WHERE k IS NOT NULL) THEN
        times := offload_lock_buckets(p_backend, p_rate_keys, now_e);
        SELECT jsonb_object_agg(e.key, e.value -> 0), jsonb_object_agg(e.key, e.value -> 1)
        INTO tats, starts FROM jsonb_each(times) AS e;
    END IF;
    FOR i IN 1 .. cardinality(p_ids) LOOP
        IF p_keys[i] IS NOT NULL THEN
            n := (running ->> p_keys[i])::int;
            CONTINUE WHEN n >= p_limits[i];
        END IF;
        bucket := p_rate_keys[i];
        IF bucket IS NOT NULL THEN
            paced := coalesce(p_paced[i], false);
            s := (starts ->> bucket)::float8;
            t := greatest((tats ->> bucket)::float8, now_e);
            IF s - p_intervals[i] / 4 - (p_bursts[i] - 1) * p_intervals[i]
                   > now_e + 1e-6 * p_intervals[i]
               OR (NOT paced AND t - (p_bursts[i] - 1) * p_intervals[i]
                                 > now_e + 1e-6 * p_intervals[i]) THEN
                IF paced THEN
                    late := late || jsonb_build_object(bucket, jsonb_build_array(p_intervals[i],
                                                                            p_bursts[i]));
                ELSE
                    empty := empty || jsonb_build_object(bucket, jsonb_build_array(p_intervals[i],
                                                                              p_bursts[i]));
                END IF;
                CONTINUE;
            END IF;
            IF NOT paced THEN
                tats := jsonb_set(tats, ARRAY[bucket], to_jsonb(t + p_intervals[i]));
            END IF;
            starts := jsonb_set(starts, ARRAY[bucket],
                                to_jsonb(greatest(s, now_e - p_intervals[i] / 4) + p_intervals[i]));
        END IF;
        IF p_keys[i] IS NOT NULL THEN
            running := jsonb_set(running, ARRAY[p_keys[i]], to_jsonb(n + 1));
        END IF;
        admitted := admitted || p_ids[i];
    END LOOP;
    IF cardinality(keys) > 0 THEN
        UPDATE offload_task SET key_waiting = true WHERE id IN (
            SELECT w.id FROM offload_task AS w
            WHERE w.status = 'READY' AND w.backend = p_backend AND w.concurrency_key = ANY(keys)
              AND NOT w.key_waiting AND w.id <> ALL(admitted)
              AND w.concurrency_limit <= (running ->> w.concurrency_key)::int
            FOR UPDATE SKIP LOCKED);
    END IF;
    -- Turns: for a bucket found empty, its due tasks without one, from its next token;
    -- for a bucket whose starts ran late, its due turns again, from its next start.
    FOR b IN SELECT e.key, (e.value ->> 0)::float8 AS step, (e.value ->> 1)::int AS burst,
                    false AS again FROM jsonb_each(empty) AS e
             UNION ALL
             SELECT e.key, (e.value ->> 0)::float8, (e.value ->> 1)::int, true
             FROM jsonb_each(late) AS e
             ORDER BY 1, 4 LOOP
        t := greatest((starts ->> b.key)::float8 - b.step / 4, now_e);
        IF NOT b.again THEN
            t := greatest((tats ->> b.key)::float8, t);
        END IF;
        UPDATE offload_task AS o SET
            rate_paced = true,
            available_at = to_timestamp(t - (b.burst - r.k) * b.step),
            age_key = CASE WHEN o.age_key IS NULL THEN NULL
                           ELSE o.priority - p_age_rate * (t - (b.burst - r.k) * b.step) END
        FROM (SELECT d.id, row_number() OVER (ORDER BY d.priority DESC, d.fair_seq,
                                                       d.available_at, d.id) AS k
              FROM (SELECT w.id, w.priority, w.fair_seq, w.available_at FROM offload_task AS w
                    WHERE w.status = 'READY' AND w.backend = p_backend AND w.rate_key = b.key
                      AND w.rate_paced = b.again AND NOT w.key_waiting
                      AND w.available_at <= p_now AND w.id <> ALL(admitted)
                    FOR UPDATE SKIP LOCKED) AS d) AS r
        WHERE o.id = r.id;
        GET DIAGNOSTICS given = ROW_COUNT;
        IF NOT b.again THEN
            tats := jsonb_set(tats, ARRAY[b.key], to_jsonb(t + given * b.step));
        END IF;
    END LOOP;
    UPDATE offload_bucket AS bk SET tat = (tats ->> bk.key)::float8,
                                   started = (starts ->> bk.key)::float8
    WHERE bk.backend = p_backend AND bk.key = ANY(array(SELECT jsonb_object_keys(times)))
      AND (bk.tat, bk.started) IS DISTINCT FROM ((tats ->> bk.key)::float8,
                                                 (starts ->> bk.key)::float8);
    RETURN QUERY SELECT unnest(admitted);
END
$$;

-- 0011's signature, kept for workers of the previous release during a rolling deploy:
-- they pass no bucket for a candidate with a turn.
CREATE OR REPLACE FUNCTION offload_admit(p_backend text, p_ids bigint[], p_keys text[],
                                         p_limits int[], p_rate_keys text[],
                                         p_intervals float8[], p_bursts int[],
                                         p_now timestamptz, p_age_rate float8)
RETURNS SETOF bigint LANGUAGE sql VOLATILE ROWS 10 AS $$
    SELECT offload_admit(p_backend, p_ids, p_keys, p_limits, p_rate_keys, p_intervals,
                         p_bursts, NULL::boolean[], p_now, p_age_rate)
$$;
"""

DROP = """
DROP FUNCTION IF EXISTS offload_admit(text, bigint[], text[], int[], text[], float8[], int[],
                                      boolean[], timestamptz, float8);
"""

#: SQLite: every rate-limited task claimed moves its bucket's starts on; one that took
#: a token (had no turn) moves its tokens on too.
TRIGGER = """
CREATE TRIGGER offload_rate_token AFTER UPDATE OF status ON offload_task
FOR EACH ROW WHEN NEW.status = 'RUNNING' AND OLD.status = 'READY'
                 AND NEW.rate_key IS NOT NULL
BEGIN
    INSERT INTO offload_bucket (backend, key, tat, started)
    VALUES (NEW.backend, NEW.rate_key,
            (julianday(NEW.last_attempted_at) - 2440587.5) * 86400.0
            + CASE WHEN OLD.rate_paced THEN 0.0 ELSE NEW.rate_interval END,
            (julianday(NEW.last_attempted_at) - 2440587.5) * 86400.0
            + NEW.rate_interval * 0.75)
    ON CONFLICT (backend, key) DO UPDATE SET
        tat = CASE WHEN OLD.rate_paced THEN tat
                   ELSE max(tat, (julianday(NEW.last_attempted_at) - 2440587.5) * 86400.0)
                        + NEW.rate_interval END,
        started = max(started, (julianday(NEW.last_attempted_at) - 2440587.5) * 86400.0
                               - NEW.rate_interval / 4.0) + NEW.rate_interval;
END
"""


def _previous():
    from importlib import import_module

    return import_module("offload.migrations.0011_flow_rates_fair")


def drop_trigger(apps, schema_editor):
    """SQLite: the trigger goes first, since adding the column remakes offload_bucket,
    which a trigger naming it would not survive."""
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute("DROP TRIGGER IF EXISTS offload_rate_token")


def restore_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(_previous().TRIGGER)


def create_functions(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTIONS)
    elif schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(TRIGGER)


def drop_functions(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)
        schema_editor.execute(_previous().FUNCTIONS)
    elif schema_editor.connection.vendor == "sqlite":
        schema_editor.execute("DROP TRIGGER IF EXISTS offload_rate_token")


class Migration(migrations.Migration):

    dependencies = [
        ('offload', '0013_live_schedules'),
    ]

    operations = [
        migrations.RunPython(drop_trigger, restore_trigger),
        migrations.AddField(
            model_name='ratebucket',
            name='started',
            field=models.FloatField(db_default=0.0, default=0.0),
        ),
        migrations.RunPython(create_functions, drop_functions),
    ]
