// The overview: counts, the recent runs with a loss sparkline each, the best validation losses.
"use strict";
(async function () {
  A.header("/");
  const main = A.$("#main");
  let data;
  try {
    data = await A.getJSON("/api/overview");
  } catch (e) {
    main.replaceChildren(A.el("p", { class: "empty" }, `the run database is unavailable: ${e.message}`));
    return;
  }
  const c = data.status_counts || {};
  const stat = (k, v) => A.el("div", { class: "stat" }, A.el("div", { class: "v" }, v), A.el("div", { class: "k" }, k));
  const stats = A.el("div", { class: "stats", id: "counts" },
    stat("runs", A.fmtInt(data.totals.runs)), stat("active", A.fmtInt(c.active || 0)),
    stat("completed", A.fmtInt(c.completed || 0)), stat("failed", A.fmtInt(c.failed || 0)),
    stat("metric rows", A.fmtInt(data.totals.metrics)), stat("checkpoints", A.fmtInt(data.totals.checkpoints)));

  const recent = A.el("tbody");
  for (const r of data.recent) {
    recent.append(A.el("tr", {},
      A.el("td", {}, A.runLink(r.run_id)), A.el("td", {}, A.badge(r.status)),
      A.el("td", { class: "hide-narrow" }, r.domain || "—"),
      A.el("td", {}, A.fmtInt(r.latest_step), r.iters ? ` / ${A.fmtInt(r.iters)}` : ""),
      A.el("td", {}, A.fmt(r.last_loss)), A.el("td", {}, A.sparkline(r.spark)),
      A.el("td", { class: "hide-narrow muted" }, A.ago(r.updated_at))));
  }
  const best = A.el("tbody");
  for (const r of data.best) {
    best.append(A.el("tr", {}, A.el("td", {}, A.runLink(r.run_id)), A.el("td", {}, r.domain || "—"),
      A.el("td", {}, A.fmt(r.best_val_loss, 4)), A.el("td", {}, A.fmtInt(r.latest_step)),
      A.el("td", {}, A.badge(r.status))));
  }
  const table = (head, body) => A.el("div", { class: "table-wrap" }, A.el("table", {},
    A.el("thead", {}, A.el("tr", {}, head.map(([h, cls]) => A.el("th", { class: cls }, h)))), body));
  main.replaceChildren(
    A.el("h1", {}, "Overview"), stats,
    A.el("h2", {}, "Recent runs"),
    A.el("div", { class: "panel" }, data.recent.length ? table(
      [["run"], ["status"], ["domain", "hide-narrow"], ["step"], ["loss"], ["loss curve"], ["updated", "hide-narrow"]],
      recent) : A.el("p", { class: "empty" }, "no runs yet: python -m alpha train")),
    A.el("h2", {}, "Best validation loss"),
    A.el("div", { class: "panel" }, data.best.length ? table(
      [["run"], ["domain"], ["val loss"], ["step"], ["status"]], best) : A.el("p", { class: "empty" }, "no evaluations yet")));
})();
