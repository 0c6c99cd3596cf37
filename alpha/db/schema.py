"""The run database's schema, as numbered migrations.

Each migration is a list of statements applied once, in one transaction, together with its row in
`schema_version`; that row is inserted FIRST, so two processes migrating at the same time cannot
both apply it (the second one's insert hits the primary key and its whole batch rolls back).
Never edit a migration that has shipped: add the next number.

Tables (see DESIGN.md, Storage):
    runs            one row per run folder; configs as columns (for queries) and as JSON (whole)
    metrics         WITHOUT ROWID, PK (run_id, step); non-finite values are NULL, and the names of
                    the fields that were NaN/Inf are kept in `payload` under "nonfinite"
    checkpoints     WITHOUT ROWID, PK (run_id, step)
    samples         WITHOUT ROWID, PK (run_id, step, idx)
    events          rowid-ordered; UNIQUE (run_id, event_key) makes re-imports idempotent
    domains         seeded from alpha.core.domains at every migrate
    sync_state      how far `sync_from_disk` has read each run's .jsonl files (offset + fingerprint)
    schema_version  applied migrations
View `run_summary`: each run with its checkpoint count, latest checkpoint step and metric count.
"""

from __future__ import annotations

import json

SCHEMA_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " applied_at TEXT NOT NULL)"
)

METRIC_FIELDS = (  # the metrics.jsonl fields that get their own column; others go to payload
    "loss", "lr", "grad_norm", "clip_coef", "tokens_per_sec", "ms_per_iter", "elapsed_s",
    "timing_fwd_ms", "timing_bwd_ms", "timing_optim_ms", "timing_data_ms", "val_loss",
)

RUN_STATUSES_V1 = ("active", "completed", "stale", "failed")
# "stopped": stopped by the user (Ctrl-C/SIGTERM; the trainer's `interrupted` event). Migration 2.
RUN_STATUSES = ("active", "completed", "stale", "failed", "stopped")


def _runs_table(statuses) -> str:
    return f"""CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL UNIQUE,
        config_hash TEXT,
        domain TEXT,
        tokenizer TEXT,
        status TEXT NOT NULL DEFAULT 'active'
            CHECK (status IN ({", ".join(f"'{s}'" for s in statuses)})),
        -- model config
        vocab_size INTEGER, n_layer INTEGER, n_head INTEGER, n_embd INTEGER,
        block_size INTEGER, ffn_dim INTEGER, activation TEXT, dropout REAL,
        -- train config
        backend TEXT, batch_size INTEGER, iters INTEGER, lr REAL, min_lr REAL,
        warmup_iters INTEGER, weight_decay REAL, grad_clip REAL, accum_steps INTEGER, seed INTEGER,
        -- whole configs as JSON
        model_json TEXT, train_json TEXT, sample_json TEXT, config_json TEXT,
        -- progress
        latest_step INTEGER, last_loss REAL, best_val_loss REAL, param_count INTEGER,
        -- where it ran
        host TEXT, pid INTEGER, cpu TEXT, gpu TEXT, info_json TEXT,
        run_dir TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )"""


_M1 = [
    """CREATE TABLE domains (
        name TEXT PRIMARY KEY,
        description TEXT NOT NULL DEFAULT '',
        tokenizer TEXT NOT NULL DEFAULT '',
        special_tokens TEXT NOT NULL DEFAULT '[]',   -- JSON list
        defaults TEXT NOT NULL DEFAULT '{}'           -- JSON {model, train, sample} overrides
    )""",
    _runs_table(RUN_STATUSES_V1),
    "CREATE INDEX runs_recent ON runs (updated_at DESC)",
    "CREATE INDEX runs_status ON runs (status, updated_at DESC)",
    f"""CREATE TABLE metrics (
        run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        step INTEGER NOT NULL,
        {", ".join(f"{name} REAL" for name in METRIC_FIELDS)},
        payload TEXT,                                  -- JSON: other fields, "nonfinite" names
        PRIMARY KEY (run_id, step)
    ) WITHOUT ROWID""",
    # best val loss and the validation curve without scanning every step (the primary key
    # serves "the last N metrics of a run")
    "CREATE INDEX metrics_val ON metrics (run_id, val_loss) WHERE val_loss IS NOT NULL",
    """CREATE TABLE checkpoints (
        run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        step INTEGER NOT NULL,
        path TEXT NOT NULL,
        size INTEGER,
        checksum TEXT,
        created_at TEXT NOT NULL,
        PRIMARY KEY (run_id, step)
    ) WITHOUT ROWID""",
    """CREATE TABLE samples (
        run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        step INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        text TEXT NOT NULL,
        payload TEXT,                                  -- JSON: prompt, temperature, ...
        created_at TEXT NOT NULL,
        PRIMARY KEY (run_id, step, idx)
    ) WITHOUT ROWID""",
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        step INTEGER,
        level TEXT NOT NULL DEFAULT 'info',
        kind TEXT NOT NULL DEFAULT '',
        message TEXT NOT NULL DEFAULT '',
        payload TEXT,                                  -- JSON
        time TEXT,
        event_key TEXT NOT NULL,                -- hash of step, level, kind, message, payload
        UNIQUE (run_id, event_key)
    )""",
    "CREATE INDEX events_run ON events (run_id, id)",
    """CREATE TABLE sync_state (
        run_id TEXT NOT NULL,
        file TEXT NOT NULL,
        offset INTEGER NOT NULL,
        fingerprint TEXT NOT NULL,
        PRIMARY KEY (run_id, file)
    ) WITHOUT ROWID""",
    """CREATE VIEW run_summary AS
    SELECT r.*,
        (SELECT count(*) FROM checkpoints c WHERE c.run_id = r.run_id) AS checkpoint_count,
        (SELECT max(step) FROM checkpoints c WHERE c.run_id = r.run_id) AS latest_checkpoint_step,
        (SELECT count(*) FROM metrics m WHERE m.run_id = r.run_id) AS metric_count
    FROM runs r""",
]

# Migration 2: runs.status may be 'stopped'. SQLite cannot change a CHECK in place, so the runs
# table is rebuilt. Dropping the old one would cascade-delete its children (foreign keys are on and
# cannot be turned off inside a transaction), so their rows are set aside first and put back after.
_RUN_CHILDREN = ("metrics", "checkpoints", "samples", "events")
_RUN_SUMMARY = [st for st in _M1 if st.startswith("CREATE VIEW run_summary")][0]
_M2 = (
    ["DROP VIEW run_summary",
     _runs_table(RUN_STATUSES).replace("CREATE TABLE runs (", "CREATE TABLE runs_v2 (", 1),
     "INSERT INTO runs_v2 SELECT * FROM runs"]
    + [st for t in _RUN_CHILDREN
       for st in (f"CREATE TABLE keep_{t} AS SELECT * FROM {t}", f"DELETE FROM {t}")]
    + ["DROP TABLE runs",
       "ALTER TABLE runs_v2 RENAME TO runs",
       "CREATE INDEX runs_recent ON runs (updated_at DESC)",
       "CREATE INDEX runs_status ON runs (status, updated_at DESC)"]
    + [st for t in _RUN_CHILDREN
       for st in (f"INSERT INTO {t} SELECT * FROM keep_{t}", f"DROP TABLE keep_{t}")]
    + [_RUN_SUMMARY]
)

# (version, name, statements)
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "initial schema", _M1),
    (2, "run status 'stopped'", _M2),
]

LATEST_VERSION = MIGRATIONS[-1][0]

TABLES = ("runs", "metrics", "checkpoints", "samples", "events", "domains", "schema_version")


def domain_statements() -> list[tuple[str, tuple]]:
    """Upserts of every registered domain (run at each migrate, so new domains appear)."""
    from alpha.core.domains import all_domains

    out = []
    for d in all_domains():
        defaults = json.dumps({"model": d.model, "train": d.train, "sample": d.sample},
                              sort_keys=True)
        out.append((
            "INSERT INTO domains (name, description, tokenizer, special_tokens, defaults)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
            " description = excluded.description, tokenizer = excluded.tokenizer,"
            " special_tokens = excluded.special_tokens, defaults = excluded.defaults",
            (d.name, d.description, d.tokenizer, json.dumps(list(d.special_tokens)), defaults),
        ))
    return out
