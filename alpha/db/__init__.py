"""The run database: schema + migrations, a SQLite store, a Turso (Hrana over HTTP) store, the
import of run folders (`sync_from_disk`) and the trainer's background `RunRecorder`.

The run folder is the source of truth; the database is an index of it that can always be rebuilt
with `python -m alpha db sync`.
"""

from alpha.db.recorder import RunRecorder  # noqa: F401
from alpha.db.store import Store, open_store  # noqa: F401
from alpha.db.sync import sync_from_disk  # noqa: F401
