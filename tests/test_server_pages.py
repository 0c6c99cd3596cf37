"""The web pages in a real browser: Debian's chromium, headless, driven by Playwright for Python
(test-only; tools/install-test-deps.sh installs both). Assertions are on the DOM and on the
charts' data (window.alphaCharts), never on pixels; a screenshot of every page is kept under
test-artifacts/screenshots/ (git-ignored)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import require_peer
from watch_helpers import AUTH, ROOT, SECRET, LocalServer, call

CHROMIUM = os.environ.get("CHROMIUM_BIN") or shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = os.path.join(ROOT, "test-artifacts", "screenshots")
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    require_peer(sync_playwright is not None, "playwright for Python is not installed "
                 "(pip install playwright; run tools/install-test-deps.sh)")
    require_peer(os.path.isfile(CHROMIUM), f"chromium not found at {CHROMIUM} "
                 "(apt-get install chromium)")
    os.makedirs(SHOTS, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM,
                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield b
        b.close()


class Page:
    """A page that records console errors and uncaught exceptions."""

    def __init__(self, browser, **options):
        self.context = browser.new_context(**options)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def shot(self, name: str) -> None:
        self.page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("UPLOAD_SECRET", SECRET)
    monkeypatch.delenv("TURSO_DATABASE_URL", raising=False)
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    with LocalServer(outputs) as s:
        yield s


def ingest(server, messages):
    status, _, body = call("POST", server.url + "/api/ingest", messages, AUTH)
    assert status == 200, body


def seed(server, run_id, steps, iters=100, shift=0.0):
    ingest(server, [
        {"type": "run_start", "run_id": run_id,
         "config": {"domain": "text", "model": {"n_layer": 2, "n_head": 2, "n_embd": 32,
                                                "block_size": 16},
                    "train": {"iters": iters, "backend": "cpu"}},
         "info": {"param_count": 20000}},
        {"type": "metrics", "run_id": run_id,
         "rows": [{"step": i, "loss": 4.0 - i * 0.02 + shift, "lr": 1e-3 * min(1, i / 5),
                   "grad_norm": 1.0 / i, "tokens_per_sec": 1000.0 + i, "ms_per_iter": 30.0,
                   **({"val_loss": 4.05 - i * 0.02 + shift} if i % 10 == 0 else {})}
                  for i in range(1, steps + 1)]},
        {"type": "samples", "run_id": run_id, "rows": [{"step": 10, "text": XSS}]},
        {"type": "events", "run_id": run_id,
         "rows": [{"step": 0, "kind": "start", "message": "started"},
                  {"step": 10, "kind": "eval", "message": "val loss 3.85"},
                  {"step": 12, "level": "warning", "kind": "bad_step", "message": XSS}]},
    ])


def chart_points(page, chart_id: str, series: int = 0) -> list:
    return page.evaluate(
        "([id, i]) => { const c = window.alphaCharts && window.alphaCharts[id];"
        " return c && c.series[i] ? c.series[i].points : null; }", [chart_id, series])


def test_training_page_updates_live(browser, server):
    seed(server, "live-1", 30)
    p = Page(browser)
    try:
        page = p.page
        page.goto(server.url + "/training")
        page.wait_for_function("() => { const c = window.alphaCharts['live-1:loss'];"
                               " return c && c.series[0] && c.series[0].points.length === 30; }",
                               timeout=15000)
        assert len(chart_points(page, "live-1:loss", 1)) == 3  # val loss at 10, 20, 30
        assert len(chart_points(page, "live-1:lr")) == 30
        assert page.evaluate("() => window.alphaCharts['live-1:loss'].view !== null")
        page.wait_for_function("() => document.querySelector('#live-state').textContent"
                               " === 'live'", timeout=10000)
        # an ingest posted now is on the page (DOM and chart data) within a second
        t0 = time.monotonic()
        ingest(server, {"type": "metrics", "run_id": "live-1",
                        "rows": [{"step": 31, "loss": 3.25, "tokens_per_sec": 1234.0}]})
        page.wait_for_function(
            "() => window.alphaCharts['live-1:loss'].series[0].points.some(p => p[0] === 31)"
            " && document.querySelector('[data-run=\"live-1\"] [data-stat=\"step\"]')"
            ".textContent.startsWith('31')", timeout=5000)
        assert time.monotonic() - t0 < 1.0
        assert page.text_content('[data-run="live-1"] [data-stat="loss"]') == "3.2500"
        # a run that starts now appears by itself
        seed(server, "live-2", 5)
        page.wait_for_selector('[data-run="live-2"]', timeout=5000)
        # the sample is shown as text, never run
        assert XSS in page.text_content('[data-run="live-1"]')
        assert page.evaluate("() => window.__xss") is None
        page.click("#logy")
        assert page.evaluate("() => window.alphaCharts['live-1:loss'].opts.logY") is True
        p.shot("training")
        assert p.errors == []
    finally:
        p.close()


def test_overview_runs_run_and_compare_pages(browser, server, tmp_path):
    seed(server, "hist-a", 40)
    seed(server, "hist-b", 25, shift=0.3)
    ingest(server, {"type": "complete", "run_id": "hist-a", "status": "completed"})
    ckpt = tmp_path / "outputs" / "hist-a" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "step-40.ckpt").write_bytes(b"not really a checkpoint")
    call("GET", server.url + "/api/runs")  # (the watcher indexes the file within a few seconds)
    from alpha.db import rows as R
    from alpha.server.watch import get_watch

    watch = get_watch(server.ctx)
    watch.store().transaction([R.checkpoint_upsert("hist-a", 40, str(ckpt / "step-40.ckpt"),
                                                   23, None)])
    p = Page(browser)
    try:
        page = p.page
        page.goto(server.url + "/")
        page.wait_for_selector("#counts")
        assert "hist-a" in page.text_content("main") and page.query_selector(".spark polyline")
        p.shot("overview")

        page.goto(server.url + "/runs")
        page.wait_for_selector("a[href='/runs/hist-b']")
        page.select_option("#status", "completed")
        page.wait_for_function("() => !document.querySelector(\"a[href='/runs/hist-b']\")")
        p.shot("runs")

        page.goto(server.url + "/runs/hist-a")
        page.wait_for_function("() => { const c = window.alphaCharts['hist-a:loss'];"
                               " return c && c.series[0] && c.series[0].points.length === 40; }")
        assert XSS in page.text_content("#samples")
        href = page.get_attribute("a[download]", "href")
        assert page.evaluate("(u) => fetch(u).then(r => r.text())", href) == \
            "not really a checkpoint"
        page.wait_for_selector("#events tr")
        page.select_option("#event-level", "warning")
        page.wait_for_function("() => document.querySelectorAll('#events tr').length === 1")
        assert XSS in page.text_content("#events")
        assert json.loads(page.text_content("#config"))["train"]["iters"] == 100
        assert page.evaluate("() => window.__xss") is None
        p.shot("run")

        page.goto(server.url + "/compare?a=hist-a&b=hist-b")
        page.wait_for_function("() => { const c = window.alphaCharts['compare:loss'];"
                               " return c && c.series.length === 4; }")
        assert len(chart_points(page, "compare:loss", 0)) == 40
        assert len(chart_points(page, "compare:loss", 2)) == 25
        p.shot("compare")
        assert p.errors == []
    finally:
        p.close()
    # a phone, in dark mode
    p = Page(browser, viewport={"width": 390, "height": 844}, color_scheme="dark",
             is_mobile=True, has_touch=True)
    try:
        p.page.goto(server.url + "/runs/hist-a")
        p.page.wait_for_function("() => { const c = window.alphaCharts['hist-a:loss'];"
                                 " return c && c.series[0] && c.series[0].points.length; }")
        width = p.page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 400, f"the page is {width}px wide on a 390px phone"
        p.shot("run-phone-dark")
        assert p.errors == []
    finally:
        p.close()


def test_chat_streams_a_reply(browser, tmp_path, monkeypatch):
    pytest.importorskip("alpha.server.openai", reason="the /v1 API is not built yet")
    outputs = tmp_path / "outputs"
    data = tmp_path / "data.txt"
    with open(os.__file__, encoding="utf-8") as f:
        data.write_text(f.read()[:30_000])
    r = subprocess.run([sys.executable, "-m", "alpha", "train", "--data", str(data), "--layers",
                        "1", "--heads", "2", "--dim", "16", "--block", "32", "--batch", "2",
                        "--iters", "20", "--eval-iters", "1", "--quiet", "--run-dir",
                        str(outputs / "chat-model")], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    monkeypatch.delenv("ALPHA_API_KEY", raising=False)
    with LocalServer(outputs) as server:
        p = Page(browser)
        try:
            page = p.page
            page.goto(server.url + "/chat")
            page.wait_for_function("() => [...document.querySelectorAll('#model option')]"
                                   ".some(o => o.value.startsWith('chat-model'))", timeout=15000)
            page.fill("#max_tokens", "12")
            page.fill("#prompt", "def main")
            page.click("#send")
            page.wait_for_selector(".msg.assistant[data-done]", timeout=60000)
            assert page.text_content(".msg.user") == "def main"
            assert len(page.text_content(".msg.assistant")) > 0
            p.shot("chat")
            assert p.errors == []
        finally:
            p.close()
