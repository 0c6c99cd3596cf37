"""Remote reporting: a run's progress sent to an Alpha server's `/api/ingest` from a background
thread, and its checkpoints uploaded; optional Discord-compatible webhook announcements.

    reporter = RemoteReporter.from_env(run_dir, upload_checkpoints=False)   # None when off
    reporter.start()            # after config.json exists
    ...                         # the trainer writes its run folder as usual
    reporter.close(timeout)     # send what is left (and the final checkpoint), within `timeout`

Environment: ALPHA_REMOTE_URL (the server, e.g. http://host:8000), ALPHA_REMOTE_SECRET (its
UPLOAD_SECRET), ALPHA_WEBHOOK_URL (a Discord-style webhook: JSON {"content": ...}).

The durable outbox is the run folder itself. The trainer already appends (and flushes) every
metric, sample and event to metrics.jsonl, samples.jsonl and events.jsonl; this reporter follows
those files and keeps in `remote-outbox.json`, beside them, how far the server has acknowledged
each one (a byte offset and a fingerprint of the bytes before it), replaced atomically after every
acknowledged batch, plus the checkpoints waiting for upload. Hence:
- training never waits on the network: the trainer's only cost is the line it writes anyway;
- nothing is lost: whatever the server has not acknowledged stays past the cursor and is sent
  when the server answers again — also by the next process after a kill and `--resume`;
- nothing is doubled: the server keys metrics by (run, step), samples by (run, step, idx) and
  events by their content, so a batch re-sent after a lost reply changes nothing. Delivery into
  the server's database is exactly once.
A file rewritten under the cursor (a resumed run cuts metrics.jsonl back to its checkpoint) fails
the fingerprint check and is sent again from its start, which is idempotent too.

Failures back off (1 s doubling to 10 s). A 401/403 (wrong secret) is retried slowly: the data
waits. A batch the server calls invalid (400/422) is skipped and counted in `status()["skipped"]`.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import urllib.error
import urllib.request

from alpha.core.atomic import atomic_write
from alpha.core.files import file_sha256
from alpha.core.jsonl_tail import JsonlTail

URL_ENV = "ALPHA_REMOTE_URL"
SECRET_ENV = "ALPHA_REMOTE_SECRET"
WEBHOOK_ENV = "ALPHA_WEBHOOK_URL"
OUTBOX_FILE = "remote-outbox.json"
FILES = ("metrics.jsonl", "samples.jsonl", "events.jsonl")
KIND = {"metrics.jsonl": "metrics", "samples.jsonl": "samples", "events.jsonl": "events"}
POLL_S = 0.5  # how often new lines are looked for
HEARTBEAT_S = 10.0
BATCH_BYTES = 1 << 20  # per file per request
CHUNK_BYTES = 4 << 20  # checkpoint upload chunk
BACKOFF_MIN_S, BACKOFF_MAX_S = 1.0, 10.0
CLOSE_TIMEOUT_S = 10.0  # at the end of a run, how long the last data may take to leave
TERMINAL = {"completed": "completed", "interrupted": "stopped", "diverged": "failed",
            "failed": "failed", "error": "failed", "crashed": "failed"}


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def _request(method: str, url: str, body: bytes | None, headers: dict, timeout: float):
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        text = e.read()[:300].decode("utf-8", "replace")
        raise _Refused(e.code, text) from None


def outbox_pending(run_dir: str) -> dict:
    """What still waits for the server: {"bytes": unsent .jsonl bytes, "uploads": [names]}."""
    state = _load_state(run_dir)
    total = 0
    for name in FILES:
        cur = state["files"].get(name, {})
        tail = JsonlTail(os.path.join(run_dir, name), cur.get("offset", 0),
                         cur.get("fingerprint", ""))
        chunk = tail.poll(max_bytes=1 << 30)
        if chunk is not None:
            total += chunk.end - chunk.start
    return {"bytes": total, "uploads": list(state["uploads"])}


def _load_state(run_dir: str) -> dict:
    try:
        with open(os.path.join(run_dir, OUTBOX_FILE), encoding="utf-8") as f:
            state = json.load(f)
        if isinstance(state, dict):
            state.setdefault("files", {})
            state.setdefault("uploads", [])
            return state
    except (OSError, ValueError):
        pass
    return {"files": {}, "uploads": []}


class RemoteReporter:
    def __init__(self, run_dir: str, url: str | None, secret: str | None, *,
                 webhook_url: str | None = None, upload_checkpoints: bool = False,
                 timeout: float = 10.0, poll_s: float = POLL_S):
        self.run_dir = run_dir
        self.run_id = os.path.basename(os.path.normpath(run_dir))
        self.url = url.rstrip("/") if url else None
        self._secret = secret
        self.webhook_url = webhook_url
        self.upload_checkpoints = upload_checkpoints
        self.timeout = timeout
        self.poll_s = poll_s
        self.sent = {"metrics": 0, "samples": 0, "events": 0}
        self.skipped = 0
        self.uploaded: list[str] = []
        self.last_error: str | None = None
        self._state = _load_state(run_dir)
        self._tails = {name: JsonlTail(os.path.join(run_dir, name),
                                       self._state["files"].get(name, {}).get("offset", 0),
                                       self._state["files"].get(name, {}).get("fingerprint", ""))
                       for name in FILES}
        # the webhook follows only what this process appends (announcements are best effort)
        self._hook_tails = {name: JsonlTail(os.path.join(run_dir, name))
                            for name in ("samples.jsonl", "events.jsonl")}
        for t in self._hook_tails.values():
            t.skip_to_end()
        self._started_sent = False
        self._last_heartbeat = 0.0
        self._latest_step = None
        self._retry_at = 0.0
        self._backoff = BACKOFF_MIN_S
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._give_up_at = float("inf")
        self._thread: threading.Thread | None = None

    @classmethod
    def from_env(cls, run_dir: str, *, upload_checkpoints: bool = False,
                 environ=None) -> tuple["RemoteReporter | None", str | None]:
        """(reporter or None, a warning to show once or None)."""
        env = os.environ if environ is None else environ
        url = env.get(URL_ENV, "").strip()
        secret = env.get(SECRET_ENV, "").strip()
        webhook = env.get(WEBHOOK_ENV, "").strip() or None
        warning = None
        if url and not url.lower().startswith(("http://", "https://")):
            warning = f"{URL_ENV} must start with http:// or https://; remote reporting is off"
            url = ""
        elif url and not secret:
            warning = f"{URL_ENV} is set but {SECRET_ENV} is not; remote reporting is off"
            url = ""
        if webhook and not webhook.lower().startswith(("http://", "https://")):  # (qa)
            warning = warning or (f"{WEBHOOK_ENV} must start with http:// or https://; the "
                                  "webhook is off")
            webhook = None
        if upload_checkpoints and not url:
            warning = warning or f"--upload-checkpoints needs {URL_ENV} and {SECRET_ENV}"
        if not url and not webhook:
            return None, warning
        return cls(run_dir, url or None, secret or None, webhook_url=webhook,
                   upload_checkpoints=upload_checkpoints), warning

    # ---- the trainer's side ----------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="alpha-remote", daemon=True)
            self._thread.start()

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Send what is left and the final checkpoint, waiting at most `timeout` seconds; what
        could not be sent stays in the outbox for the next process on this run folder."""
        if self._thread is None:
            return
        self._give_up_at = time.monotonic() + timeout
        self._retry_at = 0.0
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def status(self) -> dict:
        return {"url": self.url, "sent": dict(self.sent), "skipped": self.skipped,
                "uploaded": list(self.uploaded), "last_error": self.last_error,
                "pending_uploads": list(self._state["uploads"])}

    # ---- the background thread -----------------------------------------------------------
    def _work(self) -> None:
        while True:
            stopping = self._stop.is_set()
            try:
                done = self._tick(final=stopping)
            except Exception as e:  # noqa: BLE001 - the network must never reach training
                self.last_error = f"{type(e).__name__}: {e}"
                done = False
            if stopping and (done or time.monotonic() >= self._give_up_at):
                return
            if stopping:  # closing: retry until close()'s timeout
                time.sleep(min(1.0, self._backoff))
                continue
            self._wake.wait(self.poll_s)

    def _tick(self, final: bool) -> bool:
        """Send what is due; True when everything was delivered."""
        if self.webhook_url:
            self._webhook_tick(final)
        if not self.url:
            return True
        deadline = time.monotonic() + (1e9 if final else 5.0)
        if time.monotonic() < self._retry_at and not final:
            return False
        try:
            while self._send_batch(final) and time.monotonic() < deadline:
                pass  # more data waits: send the next batch now
            self._upload_pending(final)
            self._backoff = BACKOFF_MIN_S
            return True
        except (OSError, _Refused, ValueError) as e:
            self.last_error = str(e)[:300]
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(BACKOFF_MAX_S, self._backoff * 2)
            return False

    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self._secret}", "Content-Type": "application/json"}

    def _post(self, messages: list[dict]) -> None:
        body = json.dumps(messages, separators=(",", ":"), allow_nan=False).encode()
        _request("POST", self.url + "/api/ingest", body, self._headers(), self.timeout)

    def _send_batch(self, final: bool) -> bool:
        """One POST with the new lines of every file (and run_start / heartbeat when due).
        Returns True when a file had more than one batch waiting."""
        messages, chunks, more = [], {}, False
        if not self._started_sent:
            messages.append(self._run_start())
        for name, tail in self._tails.items():
            chunk = tail.poll(BATCH_BYTES)
            if chunk is None:
                continue
            chunks[name] = chunk
            more = more or tail.pending_bytes() > chunk.end - chunk.start
            if chunk.rows:
                messages.append({"type": KIND[name], "run_id": self.run_id, "rows": chunk.rows})
            if name == "metrics.jsonl" and chunk.rows:
                self._latest_step = chunk.rows[-1].get("step", self._latest_step)
        now = time.monotonic()
        if now - self._last_heartbeat >= HEARTBEAT_S and not final:
            messages.append({"type": "heartbeat", "run_id": self.run_id,
                             "step": self._latest_step, "pid": os.getpid()})
        if not messages and not chunks:
            return False
        if messages:
            try:
                self._post(messages)
            except _Refused as e:
                if e.status not in (400, 422):
                    raise
                self.skipped += sum(len(m.get("rows", ())) for m in messages)
                self.last_error = f"the server refused a batch ({e}); skipped"
        self._last_heartbeat = now
        self._started_sent = True
        for name, chunk in chunks.items():
            self._tails[name].advance(chunk)
            self.sent[KIND[name]] += len(chunk.rows)
            if name == "events.jsonl":
                self._note_checkpoints(chunk.rows)
        self._save_state()
        return more

    def _run_start(self) -> dict:
        try:
            with open(os.path.join(self.run_dir, "config.json"), encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, ValueError):
            config = {}
        return {"type": "run_start", "run_id": self.run_id, "config": config,
                "info": config.get("info") if isinstance(config.get("info"), dict) else {}}

    def _note_checkpoints(self, rows: list[dict]) -> None:
        for row in rows:
            kind = row.get("kind")
            payload = row.get("payload") if isinstance(row.get("payload"), dict) else {}
            if kind == "checkpoint" and self.upload_checkpoints and payload.get("path"):
                self._queue_upload(os.path.basename(str(payload["path"])))

    def _queue_final_checkpoint(self) -> None:
        folder = os.path.join(self.run_dir, "checkpoints")
        try:
            steps = [(int(n[5:-5]), n) for n in os.listdir(folder)
                     if n.startswith("step-") and n.endswith(".ckpt") and n[5:-5].isdigit()]
        except OSError:
            return
        if steps:
            self._queue_upload(max(steps)[1])

    def _queue_upload(self, name: str) -> None:
        if name not in self._state["uploads"] and name not in self._state.get("uploaded", []):
            self._state["uploads"].append(name)

    def _save_state(self) -> None:
        self._state["files"] = {name: tail.state() for name, tail in self._tails.items()}
        atomic_write(os.path.join(self.run_dir, OUTBOX_FILE),
                     json.dumps(self._state, indent=1) + "\n")

    # ---- checkpoint upload (chunked, resumable) -------------------------------------------
    def _upload_pending(self, final: bool) -> None:
        if final and not self.upload_checkpoints:
            self._queue_final_checkpoint()
        while self._state["uploads"]:
            name = self._state["uploads"][0]
            path = os.path.join(self.run_dir, "checkpoints", name)
            if os.path.isfile(path) and os.path.getsize(path) > 0:
                self._upload(name, path)
                self.uploaded.append(name)
                self._state.setdefault("uploaded", []).append(name)
            self._state["uploads"].pop(0)
            self._save_state()

    def _upload(self, name: str, path: str) -> None:
        size = os.path.getsize(path)
        sha = file_sha256(path).hex()
        base = f"{self.url}/api/upload/{self.run_id}/{name}"
        query = f"?size={size}&sha256={sha}"
        headers = {"Authorization": f"Bearer {self._secret}"}
        _, body = _request("GET", base + query, None, headers, self.timeout)
        offset = int(json.loads(body).get("received", 0))
        with open(path, "rb") as f:
            while offset < size:
                f.seek(offset)
                data = f.read(CHUNK_BYTES)
                chunk_headers = {**headers, "Content-Type": "application/octet-stream",
                                 "X-Chunk-Sha256": hashlib.sha256(data).hexdigest()}
                try:
                    _, body = _request("PUT", f"{base}{query}&offset={offset}", data,
                                       chunk_headers, max(self.timeout, 60.0))
                except _Refused as e:
                    if e.status != 409:  # 409: the server stands elsewhere; ask where
                        raise
                    _, body = _request("GET", base + query, None, headers, self.timeout)
                reply = json.loads(body)
                if reply.get("complete"):
                    return
                offset = int(reply.get("received", offset + len(data)))

    # ---- webhook (best effort, never retried) ---------------------------------------------
    def _webhook_tick(self, final: bool) -> None:
        lines = []
        for name, tail in self._hook_tails.items():
            chunk = tail.poll(BATCH_BYTES)
            if chunk is None:
                continue
            tail.advance(chunk)
            for row in chunk.rows:
                text = self._announcement(name, row)
                if text:
                    lines.append(text)
        for text in lines[-5:]:  # a burst is cut to its last few lines
            try:
                _request("POST", self.webhook_url,
                         json.dumps({"content": text[:1900]}).encode(),
                         {"Content-Type": "application/json"}, self.timeout)
            except (OSError, _Refused, ValueError) as e:
                self.last_error = f"webhook: {e}"[:300]
                return

    def _announcement(self, name: str, row: dict) -> str | None:
        if name == "samples.jsonl":
            text = str(row.get("text", ""))[:600]
            return f"**{self.run_id}** sample at step {row.get('step')}:\n```\n{text}\n```"
        kind = row.get("kind")
        message = row.get("message", "")
        if kind in ("start", "resume"):
            return f"**{self.run_id}** started: {message}"
        if kind in TERMINAL:
            verb = "finished" if kind == "completed" else "failed" if TERMINAL[kind] == "failed" \
                else "stopped"
            return f"**{self.run_id}** {verb}: {message}"
        return None
