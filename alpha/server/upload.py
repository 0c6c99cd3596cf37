"""Files in and out of run folders: chunked, resumable checkpoint upload, and downloads with Range.

Upload (Bearer UPLOAD_SECRET), into outputs/<run>/checkpoints/<name>:
    GET /api/upload/{run}/{name}?size=N&sha256=HEX
        -> {"received": bytes so far, "complete": bool}   (ask first, then continue from there)
    PUT /api/upload/{run}/{name}?size=N&sha256=HEX&offset=K       body: the next chunk
        header X-Chunk-Sha256 (optional): the chunk's sha256, checked before it is kept
        -> {"received", "complete"}; 409 (with "received") when K is not where the upload stands
The part is kept as checkpoints/.upload-<name>.part (fsynced after each chunk); when `size` bytes
have arrived the whole file's sha256 is checked and the part is renamed over <name> (atomic), and
the checkpoint is indexed in the database. A mismatch deletes the part and answers 422. The run
id and the name must be plain names (alpha.server.watch.NAME_RE): nothing is written outside the
run's checkpoints folder. `size` is limited by ALPHA_UPLOAD_MAX_BYTES (default 16 GiB); a chunk
by CHUNK_MAX.

Download:
    GET /api/runs/{id}/download/{file}     a file of that run's folder, e.g. metrics.jsonl or
                                           checkpoints/step-100.ckpt (or step-100.ckpt, as the
                                           checkpoint list names it); single-range `Range:
                                           bytes=a-b` requests answer 206, unsatisfiable 416.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading

from alpha.core.atomic import fsync_dir
from alpha.core.errors import StoreError
from alpha.core.files import file_sha256
from alpha.db import rows as R
from alpha.server.http import HTTPError, Response, json_response
from alpha.server.watch import check_name, get_watch

CHUNK_MAX = 32 << 20
MAX_ENV = "ALPHA_UPLOAD_MAX_BYTES"
DEFAULT_MAX = 16 << 30
SMALL_FILE = 8 << 20  # downloads up to this size are one response; larger ones stream
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()

CONTENT_TYPES = {".json": "application/json", ".jsonl": "application/x-ndjson",
                 ".log": "text/plain; charset=utf-8", ".txt": "text/plain; charset=utf-8"}


def _lock_for(key) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def _max_bytes(ctx) -> int:
    raw = ctx.secret(MAX_ENV).strip()
    try:
        return int(raw) if raw else DEFAULT_MAX
    except ValueError:
        return DEFAULT_MAX


class _Upload:
    def __init__(self, req, watch):
        self.run_id = check_name(req.params["run"], "run id")
        self.name = check_name(req.params["name"], "file name")
        try:
            self.size = int(req.query.get("size", ""))
        except ValueError:
            raise HTTPError(400, "size=N (the whole file's bytes) is required", param="size") \
                from None
        if self.size < 1:
            raise HTTPError(400, "size must be at least 1", param="size")
        limit = _max_bytes(req.ctx)
        if self.size > limit:
            raise HTTPError(413, f"the file is {self.size} bytes; this server takes at most "
                                 f"{limit} ({MAX_ENV})", code="file_too_large")
        self.sha256 = req.query.get("sha256", "").lower()
        if not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise HTTPError(400, "sha256=HEX (64 hex digits, the whole file's) is required",
                            param="sha256")
        outputs = os.path.realpath(req.ctx.outputs)
        self.folder = os.path.join(outputs, self.run_id, "checkpoints")
        self.final = os.path.join(self.folder, self.name)
        self.part = os.path.join(self.folder, f".upload-{self.name}.part")
        self.meta = os.path.join(self.folder, f".upload-{self.name}.json")
        if os.path.dirname(os.path.realpath(self.final)) != os.path.realpath(self.folder) \
                and os.path.exists(self.folder):
            raise HTTPError(400, "the file name leaves the run folder", param="name")

    def received(self) -> int:
        """Bytes of this same upload (size and sha256) kept so far; a part of another one is
        discarded."""
        try:
            with open(self.meta, encoding="utf-8") as f:
                meta = json.load(f)
            if meta.get("size") != self.size or meta.get("sha256") != self.sha256:
                raise ValueError("another upload")
            return os.path.getsize(self.part)
        except (OSError, ValueError):
            for path in (self.part, self.meta):
                try:
                    os.unlink(path)
                except OSError:
                    pass
            return 0

    def already_there(self) -> bool:
        try:
            if os.path.getsize(self.final) != self.size:
                return False
        except OSError:
            return False
        return file_sha256(self.final).hex() == self.sha256


def register(router, ctx):
    watch = get_watch(ctx)

    def status(req):
        watch.require_writer(req)
        up = _Upload(req, watch)
        with _lock_for((up.run_id, up.name)):
            if up.already_there():
                return json_response({"received": up.size, "complete": True})
            return json_response({"received": up.received(), "complete": False})

    def put_chunk(req):
        watch.require_writer(req)
        up = _Upload(req, watch)
        try:
            offset = int(req.query.get("offset", ""))
        except ValueError:
            raise HTTPError(400, "offset=K (where this chunk starts) is required",
                            param="offset") from None
        data = req.body
        want = req.header("X-Chunk-Sha256").strip().lower()
        if want and hashlib.sha256(data).hexdigest() != want:
            raise HTTPError(422, "the chunk's sha256 does not match X-Chunk-Sha256: send it "
                                 "again", code="chunk_checksum_mismatch")
        with _lock_for((up.run_id, up.name)):
            if up.already_there():
                return json_response({"received": up.size, "complete": True})
            os.makedirs(up.folder, exist_ok=True)
            have = up.received()
            if have == 0 and not os.path.exists(up.meta):
                with open(up.meta, "w", encoding="utf-8") as f:
                    json.dump({"size": up.size, "sha256": up.sha256}, f)
            if offset != have:
                raise HTTPError(409, f"the upload stands at byte {have}, not {offset}: continue "
                                     f"from {have}", code="wrong_offset",
                                headers={"X-Received": str(have)})
            if have + len(data) > up.size:
                raise HTTPError(413, f"the chunk goes past the declared size {up.size}",
                                code="past_declared_size")
            with open(up.part, "ab") as f:
                f.truncate(have)
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            have += len(data)
            if have < up.size:
                return json_response({"received": have, "complete": False})
            if file_sha256(up.part).hex() != up.sha256:
                for path in (up.part, up.meta):
                    os.unlink(path)
                raise HTTPError(422, "the uploaded file's sha256 does not match: it was "
                                     "discarded; upload it again", code="checksum_mismatch")
            os.replace(up.part, up.final)
            os.unlink(up.meta)
            fsync_dir(up.folder)
        _index(watch, up)
        return json_response({"received": have, "complete": True}, 201)

    def download(req):
        run_id = check_name(req.params["id"], "run id")
        parts = req.params["file"].split("/")
        for p in parts:
            check_name(p, "file name")
        run_dir = os.path.realpath(os.path.join(req.ctx.outputs, run_id))
        path = os.path.realpath(os.path.join(run_dir, *parts))
        if len(parts) == 1 and not os.path.isfile(path):  # a bare checkpoint name, as listed
            path = os.path.realpath(os.path.join(run_dir, "checkpoints", parts[0]))
        if not path.startswith(run_dir + os.sep) or not os.path.isfile(path):
            raise HTTPError(404, f"run {run_id} has no file {req.params['file'][:120]!r}",
                            code="file_not_found")
        return _send_file(req, path)

    router.add("GET", "/api/upload/{run}/{name}", status)
    router.add("PUT", "/api/upload/{run}/{name}", put_chunk, max_body=CHUNK_MAX)
    router.add("POST", "/api/upload/{run}/{name}", put_chunk, max_body=CHUNK_MAX)
    router.add("GET", "/api/runs/{id}/download/{file:path}", download)


def _index(watch, up: _Upload) -> None:
    """Record an uploaded checkpoint (step-<N>.ckpt) in the database."""
    from alpha.db.sync import checkpoint_checksum
    from alpha.train.checkpoint import step_of

    step = step_of(up.name)
    if step is None:
        return

    try:
        stmts = [R.run_upsert(up.run_id, {}, {}),
                 R.checkpoint_upsert(up.run_id, step, up.final, up.size,
                                     checkpoint_checksum(up.final))]
        with watch.write_lock:
            watch.store().transaction(stmts)
    except (StoreError, HTTPError, OSError) as e:
        watch.ctx.log(f"warning: uploaded {up.final} but could not index it: {e}")


def _send_file(req, path: str):
    size = os.path.getsize(path)
    name = os.path.basename(path)
    ext = os.path.splitext(name)[1]
    headers = {"Accept-Ranges": "bytes",
               "Content-Disposition": f'attachment; filename="{name}"'}
    ctype = CONTENT_TYPES.get(ext, "application/octet-stream")
    start, end, status = 0, size - 1, 200
    spec = req.header("Range").strip()
    if spec:
        m = _RANGE.match(spec)
        if m and (m.group(1) or m.group(2)):
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:  # the last N bytes
                start = max(0, size - int(m.group(2)))
            if start >= size or start > end:
                return Response(416, b"", ctype, {**headers,
                                                 "Content-Range": f"bytes */{size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        # other forms (several ranges) get the whole file, as RFC 9110 allows
    length = end - start + 1 if size else 0
    if length <= SMALL_FILE or req.method == "HEAD":
        body = b""
        if req.method != "HEAD" and length:
            with open(path, "rb") as f:
                f.seek(start)
                body = f.read(length)
        return Response(status, body, ctype, headers)
    s = req.stream(status, ctype, headers)
    with open(path, "rb") as f:
        f.seek(start)
        left = length
        while left > 0:
            block = f.read(min(left, 1 << 20))
            if not block:
                break
            s.write(block)
            left -= len(block)
    return None
