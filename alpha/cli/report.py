"""Send what a run's outbox still holds to the Alpha server (`python -m alpha report RUN_DIR`).

A training run reports itself while it trains (ALPHA_REMOTE_URL, ALPHA_REMOTE_SECRET); what the
server missed at the end waits in the run folder (remote-outbox.json marks how far it got) and is
normally sent by the next `train --resume`. For a run that will not be resumed, this sends it:
every line past the outbox's cursor, then the final checkpoint (every one with
--upload-checkpoints). Exactly once, like the trainer's own reporting. Exits 0 when the outbox is
empty, 3 when the server did not take everything (down, or refused a part: run it again later).
"""

from __future__ import annotations

import fcntl
import os
import sys

from alpha.core.errors import ConfigError

EXIT_NOT_DELIVERED = 3  # README, exit codes: nothing is lost, try again later


def register(sub):
    p = sub.add_parser("report", help="send a run's unsent metrics/checkpoints to the server",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run folder, e.g. outputs/<run id>")
    p.add_argument("--upload-checkpoints", action="store_true",
                   help="upload every checkpoint the run's events name, not just the final one")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="give up after S seconds (default 60)")
    p.set_defaults(func=run)


def run(args) -> int:
    from alpha.train.remote import URL_ENV, RemoteReporter, outbox_pending

    run_dir = args.run_dir
    if not os.path.isfile(os.path.join(run_dir, "config.json")):
        raise ConfigError(f"{run_dir} is not a run folder (no config.json)")
    reporter, warning = RemoteReporter.from_env(run_dir,
                                                upload_checkpoints=args.upload_checkpoints)
    if warning or reporter is None or not reporter.url:
        raise ConfigError(warning or f"set {URL_ENV} and ALPHA_REMOTE_SECRET to report a run")
    reporter.webhook_url = None  # announcements belong to the live run, not to a replay
    lock = _lock(run_dir)
    try:
        reporter.start()
        reporter.close(timeout=args.timeout)
    finally:
        os.close(lock)
    left = outbox_pending(run_dir)
    sent = ", ".join(f"{n} {k}" for k, n in reporter.sent.items())
    print(f"sent {sent}; uploaded {', '.join(reporter.uploaded) or 'no checkpoint'}")
    refused = reporter.last_error or ""
    if (left["bytes"] or left["uploads"]) and ("HTTP 401" in refused or "HTTP 403" in refused):
        # a wrong secret is the user's to fix, not "run this again": one line, exit 2 (qa)
        raise ConfigError(f"the server refused ALPHA_REMOTE_SECRET ({refused[:8]}): set it to the "
                          f"server's UPLOAD_SECRET; nothing is lost, {run_dir} still holds it all")
    if left["bytes"] or left["uploads"]:
        print(f"not delivered ({reporter.last_error}): {left['bytes']} bytes and "
              f"{len(left['uploads'])} uploads wait in {run_dir}; run this again later",
              file=sys.stderr)
        return EXIT_NOT_DELIVERED
    return 0


def _lock(run_dir: str) -> int:
    """The run folder's writer lock (alpha.train.runfolder): a run still training reports itself,
    and two reporters on one outbox would only repeat each other's work."""
    path = os.path.join(run_dir, ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError(f"{run_dir} is in use (training?): its trainer reports it") from None
    return fd
