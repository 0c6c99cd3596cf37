"""`python -m alpha db migrate|sync|status|runs|export` on the default SQLite database."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from alpha.cli.main import main
from test_db_sync import write_run


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _local_db(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # main() reads .env.local from the working folder
    monkeypatch.delenv("TURSO_DATABASE_URL", raising=False)
    monkeypatch.delenv("TURSO_AUTH_TOKEN", raising=False)


def test_migrate_sync_status_runs_export(tmp_path, capsys):
    out = str(tmp_path / "outputs")
    write_run(out, "run-a", steps=25, checkpoints=(25,))
    write_run(out, "run-b", steps=7)
    assert main(["db", "migrate", "--outputs", out]) == 0
    assert "schema version 2 (applied 1, 2)" in capsys.readouterr().out
    assert main(["db", "migrate", "--outputs", out]) == 0
    assert "already up to date" in capsys.readouterr().out

    assert main(["db", "sync", "--outputs", out]) == 0
    text = capsys.readouterr().out
    assert "2 runs: 32 new metric lines" in text and "run-a  completed" in text

    assert main(["db", "status", "--outputs", out]) == 0
    text = capsys.readouterr().out
    assert f"sqlite file {out}/alpha.db" in text and "metrics         32" in text
    assert "schema version  2" in text

    assert main(["db", "runs", "--outputs", out, "--limit", "1"]) == 0
    text = capsys.readouterr().out
    assert len(text.strip().splitlines()) == 2 and "completed" in text

    assert main(["db", "export", "--outputs", out, "--metrics", "--run", "run-a"]) == 0
    data = json.loads(capsys.readouterr().out)
    (run,) = data["runs"]
    assert run["run_id"] == "run-a" and len(run["metrics"]) == 25
    assert run["model"]["n_layer"] == 2 and run["checkpoints"][0]["step"] == 25

    target = tmp_path / "export.json"
    assert main(["db", "export", "--outputs", out, "-o", str(target)]) == 0
    data = json.loads(target.read_text())
    assert [r["run_id"] for r in data["runs"]] == ["run-a", "run-b"]
    assert "metrics" not in data["runs"][0]


def test_errors_are_one_line(tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "outputs")
    assert main(["db", "runs", "--outputs", out]) == 2
    assert "db migrate" in capsys.readouterr().err
    monkeypatch.setenv("TURSO_DATABASE_URL", "ftp://host?authToken=hidden")
    assert main(["db", "status"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "hidden" not in err


def test_module_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "alpha", "db", "status", "--outputs",
                           str(tmp_path)], capture_output=True, text=True, cwd=str(tmp_path),
                          env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": ROOT})
    assert proc.returncode == 0, proc.stderr
    assert "none yet" in proc.stdout  # status reads; it never creates the database
    assert not os.path.exists(tmp_path / "alpha.db")
