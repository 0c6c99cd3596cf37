// /training: every active run, live. The history comes from /api/runs/{id}/metrics, then each
// change arrives on /api/training/live (SSE) and is drawn without a reload.
"use strict";
(function () {
  A.header("/training");
  const main = A.$("#main");
  const cards = new Map(); // run_id -> Card
  const settings = {
    logY: localStorage.getItem("alpha-logy") === "1",
    smoothing: Number(localStorage.getItem("alpha-smoothing") || 0.6),
    peak: Number(localStorage.getItem("alpha-peak-tflops") || 0),
  };

  const state = A.el("span", { class: "muted", id: "live-state" }, "connecting…");
  const logBox = A.el("input", { type: "checkbox", id: "logy" });
  logBox.checked = settings.logY;
  const smooth = A.el("input", { type: "range", min: 0, max: 0.99, step: 0.01, id: "smoothing" });
  smooth.value = settings.smoothing;
  const peak = A.el("input", { type: "number", min: 0, step: "any", id: "peak", placeholder: "peak TFLOP/s" });
  if (settings.peak) peak.value = settings.peak;
  const list = A.el("div", { id: "runs" });
  const none = A.el("p", { class: "empty", id: "no-runs" }, "no active runs: start one with python -m alpha train");
  main.replaceChildren(
    A.el("div", { class: "row" }, A.el("h1", {}, "Training"), A.el("span", { class: "spacer" }), state),
    A.el("div", { class: "row panel" },
      A.el("label", {}, logBox, " log scale"),
      A.el("label", {}, "smoothing ", smooth),
      A.el("label", { title: "your hardware's peak, for MFU" }, "peak TFLOP/s ", peak)),
    none, list);

  logBox.addEventListener("change", () => {
    settings.logY = logBox.checked;
    localStorage.setItem("alpha-logy", settings.logY ? "1" : "0");
    for (const c of cards.values()) c.loss.setOption("logY", settings.logY);
  });
  smooth.addEventListener("input", () => {
    settings.smoothing = Number(smooth.value);
    localStorage.setItem("alpha-smoothing", smooth.value);
    for (const c of cards.values()) c.loss.setOption("smoothing", settings.smoothing);
  });
  peak.addEventListener("change", () => {
    settings.peak = Number(peak.value) || 0;
    localStorage.setItem("alpha-peak-tflops", String(settings.peak));
    for (const c of cards.values()) c.renderStats();
  });

  class Card {
    constructor(run) {
      this.id = run.run_id;
      this.run = run;
      this.rows = new Map(); // step -> metrics row
      this.samples = [];
      const id = this.id;
      this.badge = A.el("span");
      this.bar = A.el("div");
      this.statsBox = A.el("div", { class: "stats" });
      this.samplesBox = A.el("div");
      const charts = A.el("div", { class: "grid" });
      const slot = (title) => { const d = A.el("div", { class: "panel" }); charts.append(d); return d; };
      this.loss = new AChart(slot(), { id: `${id}:loss`, title: "loss / val loss", logY: settings.logY, smoothing: settings.smoothing });
      this.lr = new AChart(slot(), { id: `${id}:lr`, title: "learning rate", small: true });
      this.gnorm = new AChart(slot(), { id: `${id}:grad_norm`, title: "grad norm", small: true });
      this.tps = new AChart(slot(), { id: `${id}:tokens_per_sec`, title: "tokens / s", small: true });
      this.ms = new AChart(slot(), { id: `${id}:ms_per_iter`, title: "step time (ms)", small: true });
      this.node = A.el("section", { class: "panel", "data-run": id },
        A.el("div", { class: "card-head" }, A.el("span", { class: "title" }, A.runLink(id)), this.badge,
          A.el("span", { class: "muted" }, describe(run))),
        A.el("div", { class: "progress" }, this.bar), this.statsBox, charts,
        A.el("h3", {}, "latest samples"), this.samplesBox);
      list.prepend(this.node);
      this.setStatus(run.status || "active");
      this.renderStats();
      this.loadHistory();
    }

    async loadHistory() {
      try {
        const [m, s] = await Promise.all([
          A.getJSON(`/api/runs/${encodeURIComponent(this.id)}/metrics?last=5000`),
          A.getJSON(`/api/runs/${encodeURIComponent(this.id)}/samples`)]);
        for (const row of m.metrics) if (!this.rows.has(row.step)) this.rows.set(row.step, row);
        this.redrawAll();
        this.addSamples(s.samples.slice(-3), true);
      } catch (e) { /* a run only known from the live stream so far */ }
    }

    redrawAll() {
      const rows = [...this.rows.values()].sort((a, b) => a.step - b.step);
      const pick = (k) => rows.filter((r) => typeof r[k] === "number").map((r) => [r.step, r[k]]);
      this.loss.set("loss", pick("loss"));
      this.loss.set("val_loss", pick("val_loss"));
      this.lr.set("lr", pick("lr"));
      this.gnorm.set("grad_norm", pick("grad_norm"));
      this.tps.set("tokens/s", pick("tokens_per_sec"));
      this.ms.set("ms/step", pick("ms_per_iter"));
      this.renderStats();
    }

    addMetrics(rows) {
      const fresh = rows.filter((r) => typeof r.step === "number");
      for (const r of fresh) this.rows.set(r.step, r);
      const pts = (k) => fresh.filter((r) => typeof r[k] === "number").map((r) => [r.step, r[k]]);
      this.loss.append("loss", pts("loss"));
      this.loss.append("val_loss", pts("val_loss"));
      this.lr.append("lr", pts("lr"));
      this.gnorm.append("grad_norm", pts("grad_norm"));
      this.tps.append("tokens/s", pts("tokens_per_sec"));
      this.ms.append("ms/step", pts("ms_per_iter"));
      this.renderStats();
    }

    addSamples(rows, replace) {
      this.samples = (replace ? rows : this.samples.concat(rows)).slice(-3);
      this.samplesBox.replaceChildren(...this.samples.slice().reverse().map((s) =>
        A.el("div", {}, A.el("div", { class: "muted" }, `step ${s.step}`), A.el("div", { class: "sample" }, s.text))));
      if (!this.samples.length) this.samplesBox.append(A.el("p", { class: "muted" }, "none yet"));
    }

    setStatus(status) {
      this.status = status;
      this.badge.replaceChildren(A.badge(status));
    }

    renderStats() {
      const rows = [...this.rows.values()].sort((a, b) => a.step - b.step);
      // the newest value of each field (a row may carry only some of them)
      const last = {};
      for (const r of rows) for (const [k, v] of Object.entries(r)) if (v !== null && v !== undefined) last[k] = v;
      const recent = rows.slice(-20).filter((r) => typeof r.ms_per_iter === "number");
      const msAvg = recent.length ? recent.reduce((a, r) => a + r.ms_per_iter, 0) / recent.length : null;
      const iters = this.run.iters || (this.run.config && this.run.config.train && this.run.config.train.iters);
      const step = last.step || this.run.latest_step || 0;
      const eta = iters && msAvg !== null ? (iters - step) * msAvg / 1000 : null;
      if (iters) this.bar.style.width = `${Math.min(100, 100 * step / iters).toFixed(1)}%`;
      const flops = flopsPerToken(this.run);
      const achieved = flops && last.tokens_per_sec ? flops * last.tokens_per_sec : null;
      const mfu = typeof last.mfu === "number" ? last.mfu
        : achieved && settings.peak ? achieved / (settings.peak * 1e12) : null;
      const stat = (k, v, id) => A.el("div", { class: "stat" }, A.el("div", { class: "v", "data-stat": id }, v), A.el("div", { class: "k" }, k));
      this.statsBox.replaceChildren(
        stat("step", `${A.fmtInt(step)}${iters ? " / " + A.fmtInt(iters) : ""}`, "step"),
        stat("loss", A.fmt(last.loss, 4), "loss"),
        stat("val loss", A.fmt(last.val_loss, 4), "val_loss"),
        stat("tokens / s", A.fmtInt(last.tokens_per_sec), "tokens_per_sec"),
        stat("ms / step", A.fmt(last.ms_per_iter, 1), "ms_per_iter"),
        stat(mfu !== null ? "MFU" : "GFLOP/s (set peak for MFU)",
          mfu !== null ? `${(100 * mfu).toFixed(1)}%` : achieved ? A.fmt(achieved / 1e9, 1) : "—", "mfu"),
        stat("ETA", this.status === "active" ? A.duration(eta) : this.status, "eta"));
    }
  }

  function describe(run) {
    const parts = [];
    if (run.domain) parts.push(run.domain);
    if (run.n_layer) parts.push(`${run.n_layer}L·${run.n_head}H·${run.n_embd}d`);
    if (run.param_count) parts.push(`${(run.param_count / 1e6).toFixed(2)}M params`);
    if (run.backend) parts.push(run.backend);
    return parts.join(" · ");
  }

  // Training FLOPs per token: 6N for the weights plus attention's 12·L·T·d (PaLM's estimate).
  function flopsPerToken(run) {
    if (!run.param_count) return null;
    const att = run.n_layer && run.block_size && run.n_embd ? 12 * run.n_layer * run.block_size * run.n_embd : 0;
    return 6 * run.param_count + att;
  }

  function card(runId, run) {
    let c = cards.get(runId);
    if (!c) {
      c = new Card(run || { run_id: runId, status: "active" });
      cards.set(runId, c);
      none.hidden = true;
    } else if (run) {
      c.run = Object.assign(c.run, run);
    }
    return c;
  }

  window.alphaTraining = { cards };
  A.live({
    status: (text) => { state.textContent = text; },
    // the first event, and the first after a reconnect the server could not resume: cards
    // already shown fetch their history again, so a long outage leaves no gap
    snapshot(d) {
      for (const r of d.runs) {
        if (cards.has(r.run_id)) { const c = card(r.run_id, r); c.setStatus(r.status); c.loadHistory(); }
        else if (r.status === "active") card(r.run_id, r);
      }
      state.textContent = "live";
    },
    run_start(d) { card(d.run_id, d.run).setStatus("active"); },
    metrics(d) { card(d.run_id).addMetrics(d.rows); },
    samples(d) { card(d.run_id).addSamples(d.rows); },
    run_complete(d) { if (cards.has(d.run_id)) { const c = cards.get(d.run_id); c.setStatus(d.status); c.renderStats(); } },
    heartbeat(d) { if (cards.has(d.run_id)) cards.get(d.run_id).lastBeat = Date.now(); },
  });
})();
