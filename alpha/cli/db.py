"""`python -m alpha db migrate|sync|status|runs|export`: the run database.

The database is $TURSO_DATABASE_URL (file:PATH, libsql://, https://, http://; token from
$TURSO_AUTH_TOKEN, never printed), else <outputs>/alpha.db.
"""

from __future__ import annotations

import json
import os
import sys


def register(sub):
    p = sub.add_parser("db", help="the run database: migrate, sync run folders, status, export")
    actions = p.add_subparsers(dest="db_command", metavar="ACTION")

    def common(q):
        q.add_argument("--outputs", default="outputs", metavar="DIR",
                       help="folder of run folders (default: outputs/)")
        q.set_defaults(func=run)

    common(actions.add_parser("migrate", help="create or upgrade the schema"))
    q = actions.add_parser("sync", help="import every run folder (idempotent, resumable)")
    common(q)
    q.add_argument("--run", action="append", default=[], metavar="RUN_ID",
                   help="only this run (repeatable)")
    common(actions.add_parser("status", help="which database, schema version, row counts"))
    q = actions.add_parser("runs", help="recent runs")
    common(q)
    q.add_argument("--limit", type=int, default=20)
    q.add_argument("--status", choices=("active", "completed", "stale", "failed", "stopped"))
    q = actions.add_parser("export", help="runs (and optionally metrics) as JSON")
    common(q)
    q.add_argument("--metrics", action="store_true", help="include every metric row")
    q.add_argument("--run", action="append", default=[], metavar="RUN_ID",
                   help="only this run (repeatable)")
    q.add_argument("-o", "--output", default="-", metavar="FILE", help="file (default: stdout)")
    p.set_defaults(func=run, db_command=None)


def run(args) -> int:
    from alpha.db.store import database_url, open_store, parse_database_url

    if not args.db_command:
        print("usage: python -m alpha db {migrate,sync,status,runs,export} [--outputs DIR]",
              file=sys.stderr)
        return 2
    # reading commands never create (or migrate) a database
    readonly = args.db_command in ("status", "runs", "export")
    if args.db_command == "status":
        kind, target = parse_database_url(database_url(), args.outputs)
        if kind == "sqlite" and not os.path.exists(target):
            print(f"database        sqlite file {target} (none yet: the first `train` or "
                  "`python -m alpha db migrate` creates it)")
            return 0
    with open_store(None, args.outputs, readonly=readonly) as store:
        return _ACTIONS[args.db_command](store, args)


def _migrate(store, args) -> int:
    applied = store.migrate()
    version = store.schema_version()
    done = f"applied {', '.join(map(str, applied))}" if applied else "already up to date"
    print(f"{store.describe()}: schema version {version} ({done})")
    return 0


def _sync(store, args) -> int:
    from alpha.db.sync import sync_from_disk

    store.migrate()
    report = sync_from_disk(store, args.outputs, run_ids=set(args.run) or None)
    for problem in report.problems:
        print(f"warning: {problem}", file=sys.stderr)
    print(f"{store.describe()}: {report.summary()}")
    for run_id, status in sorted(report.statuses.items()):
        print(f"  {run_id}  {status}")
    return 0


def _status(store, args) -> int:
    from alpha.db import schema

    version = store.schema_version()
    print(f"database        {store.describe()}")
    note = "" if version >= schema.LATEST_VERSION else \
        f" (latest {schema.LATEST_VERSION}: run `python -m alpha db migrate`)"
    print(f"schema version  {version}{note}")
    for table, n in store.counts().items():
        print(f"{table:<15} {'missing' if n < 0 else n}")
    return 0


def _runs(store, args) -> int:
    store.require_schema()
    rows = store.runs(limit=args.limit, status=args.status)
    if not rows:
        print("no runs (import run folders with `python -m alpha db sync`)")
        return 0
    print(f"{'run_id':<36} {'status':<9} {'domain':<6} {'step':>7} {'loss':>8} {'best val':>9} "
          f"{'ckpts':>5}  updated")
    for r in rows:
        print(f"{r['run_id']:<36} {r['status']:<9} {r['domain'] or '-':<6} "
              f"{_fmt(r['latest_step'], 'd'):>7} {_fmt(r['last_loss'], '.4f'):>8} "
              f"{_fmt(r['best_val_loss'], '.4f'):>9} {r['checkpoint_count']:>5}  "
              f"{r['updated_at']}")
    return 0


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _export(store, args) -> int:
    store.require_schema()
    wanted = set(args.run)
    runs = [r for r in store.runs(limit=1_000_000) if not wanted or r["run_id"] in wanted]
    runs.sort(key=lambda r: r["created_at"])
    for r in runs:
        for key in ("model_json", "train_json", "sample_json", "config_json", "info_json"):
            if r.get(key):
                r[key[:-5]] = json.loads(r.pop(key))
            else:
                r.pop(key, None)
        r["checkpoints"] = store.checkpoints(r["run_id"])
        if args.metrics:
            metrics = store.metrics(r["run_id"])
            for m in metrics:
                m.pop("run_id", None)
                if m.get("payload"):
                    m["payload"] = json.loads(m["payload"])
            r["metrics"] = metrics
    text = json.dumps({"database": store.describe(), "runs": runs}, indent=2)
    if args.output == "-":
        sys.stdout.write(text + "\n")
    else:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        print(f"wrote {len(runs)} runs to {args.output}", file=sys.stderr)
    return 0


_ACTIONS = {"migrate": _migrate, "sync": _sync, "status": _status, "runs": _runs,
            "export": _export}
