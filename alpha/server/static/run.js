// /runs/{id}: one run's history — charts, config, checkpoints (download), samples by step,
// events with filters. An active run keeps updating from the live stream.
"use strict";
(async function () {
  A.header("/runs");
  const main = A.$("#main");
  const id = decodeURIComponent(location.pathname.split("/").pop());
  const api = `/api/runs/${encodeURIComponent(id)}`;
  let run;
  try {
    run = await A.getJSON(api);
  } catch (e) {
    main.replaceChildren(A.el("h1", {}, id), A.el("p", { class: "empty" }, e.message));
    return;
  }
  const [metricRows, ckpts, samples] = await Promise.all([
    A.allMetrics(id), A.getJSON(`${api}/checkpoints`), A.getJSON(`${api}/samples`)]);

  const badge = A.el("span", {}, A.badge(run.status));
  const stat = (k, v) => A.el("div", { class: "stat" }, A.el("div", { class: "v" }, v), A.el("div", { class: "k" }, k));
  const model = run.n_layer ? `${run.n_layer}L · ${run.n_head}H · ${run.n_embd}d · T${run.block_size}` : "—";
  const charts = A.el("div", { class: "grid" });
  const slot = () => { const d = A.el("div", { class: "panel" }); charts.append(d); return d; };
  const logBox = A.el("input", { type: "checkbox" });
  const smooth = A.el("input", { type: "range", min: 0, max: 0.99, step: 0.01, value: 0 });
  const loss = new AChart(slot(), { id: `${id}:loss`, title: "loss / val loss" });
  const lr = new AChart(slot(), { id: `${id}:lr`, title: "learning rate", small: true });
  const gn = new AChart(slot(), { id: `${id}:grad_norm`, title: "grad norm", small: true });
  const tps = new AChart(slot(), { id: `${id}:tokens_per_sec`, title: "tokens / s", small: true });
  logBox.addEventListener("change", () => loss.setOption("logY", logBox.checked));
  smooth.addEventListener("input", () => loss.setOption("smoothing", Number(smooth.value)));

  function plot(rows, append) {
    const pick = (k) => rows.filter((r) => typeof r[k] === "number").map((r) => [r.step, r[k]]);
    const put = (c, name, k) => (append ? c.append(name, pick(k)) : c.set(name, pick(k)));
    put(loss, "loss", "loss"); put(loss, "val_loss", "val_loss"); put(lr, "lr", "lr");
    put(gn, "grad_norm", "grad_norm"); put(tps, "tokens/s", "tokens_per_sec");
  }
  plot(metricRows, false);

  // checkpoints
  const ckBody = A.el("tbody", {}, ckpts.checkpoints.map((c) => A.el("tr", {},
    A.el("td", {}, A.fmtInt(c.step)), A.el("td", {}, c.size ? `${(c.size / 1e6).toFixed(2)} MB` : "—"),
    A.el("td", { class: "hide-narrow muted" }, (c.checksum || "").slice(0, 16)),
    A.el("td", {}, c.exists === false ? A.el("span", { class: "muted" }, "deleted")
      : A.el("a", { href: `${api}/download/${c.path || `checkpoints/${encodeURIComponent(c.file)}`}`, download: c.file }, "download")))));

  // samples by step
  const steps = [...new Set(samples.samples.map((s) => s.step))].sort((a, b) => b - a);
  const stepPick = A.el("select", { id: "sample-step" }, steps.map((s) => A.el("option", { value: s }, `step ${s}`)));
  const sampleBox = A.el("div", { id: "samples" });
  const showSamples = () => sampleBox.replaceChildren(...samples.samples
    .filter((s) => String(s.step) === stepPick.value)
    .map((s) => A.el("div", { class: "sample" }, s.text)));
  stepPick.addEventListener("change", showSamples);

  // events with filters
  const level = A.el("select", { id: "event-level" }, ["", "info", "warning", "error"].map((l) => A.el("option", { value: l }, l || "any level")));
  const kind = A.el("input", { id: "event-kind", placeholder: "kind (e.g. eval)" });
  const evBody = A.el("tbody", { id: "events" });
  async function loadEvents() {
    const q = new URLSearchParams();
    if (level.value) q.set("level", level.value);
    if (kind.value.trim()) q.set("kind", kind.value.trim());
    const ev = (await A.getJSON(`${api}/events?${q}`)).events;
    evBody.replaceChildren(...ev.map((e) => A.el("tr", {},
      A.el("td", {}, A.fmtInt(e.step)), A.el("td", {}, e.level), A.el("td", {}, e.kind),
      A.el("td", {}, e.message), A.el("td", { class: "hide-narrow muted" }, e.time || ""))));
    if (!ev.length) evBody.append(A.el("tr", {}, A.el("td", { colspan: 5, class: "empty" }, "no events")));
  }
  level.addEventListener("change", loadEvents);
  kind.addEventListener("change", loadEvents);

  const table = (head, body) => A.el("div", { class: "table-wrap" }, A.el("table", {},
    A.el("thead", {}, A.el("tr", {}, head.map((h) => A.el("th", {}, h)))), body));
  main.replaceChildren(
    A.el("div", { class: "card-head" }, A.el("h1", { class: "title" }, id), badge,
      A.el("a", { href: `/compare?a=${encodeURIComponent(id)}` }, "compare with…")),
    A.el("div", { class: "stats" }, stat("domain", run.domain || "—"), stat("model", model),
      stat("params", run.param_count ? `${(run.param_count / 1e6).toFixed(2)}M` : "—"),
      stat("step", `${A.fmtInt(run.latest_step)}${run.iters ? " / " + A.fmtInt(run.iters) : ""}`),
      stat("last loss", A.fmt(run.last_loss, 4)), stat("best val", A.fmt(run.best_val_loss, 4)),
      stat("backend", run.backend || "—"), stat("host", run.host || "—")),
    A.el("div", { class: "row panel" }, A.el("label", {}, logBox, " log scale"), A.el("label", {}, "smoothing ", smooth)),
    charts,
    A.el("h2", {}, "Checkpoints"),
    A.el("div", { class: "panel" }, ckpts.checkpoints.length ? table(["step", "size", "checksum", ""], ckBody)
      : A.el("p", { class: "muted" }, "none")),
    A.el("h2", {}, "Samples"),
    A.el("div", { class: "panel" }, steps.length ? [stepPick, sampleBox] : A.el("p", { class: "muted" }, "none")),
    A.el("h2", {}, "Events"),
    A.el("div", { class: "panel" }, A.el("div", { class: "row" }, level, kind), table(["step", "level", "kind", "message", "time"], evBody)),
    A.el("h2", {}, "Config"),
    A.el("pre", { id: "config" }, JSON.stringify(run.config || {}, null, 2)));
  if (steps.length) showSamples();
  loadEvents();

  if (run.status === "active") {
    A.live({
      metrics(d) { if (d.run_id === id) plot(d.rows, true); },
      run_complete(d) { if (d.run_id === id) badge.replaceChildren(A.badge(d.status)); },
    });
  }
})();
