// /compare?a=RUN&b=RUN: two runs' loss and validation loss on one chart.
"use strict";
(async function () {
  A.header("/compare");
  const main = A.$("#main");
  const q = new URLSearchParams(location.search);
  let runs = [];
  try { runs = (await A.getJSON("/api/runs")).runs; } catch (e) {
    main.replaceChildren(A.el("p", { class: "empty" }, e.message));
    return;
  }
  const picker = (name) => {
    const s = A.el("select", { id: `pick-${name}` }, A.el("option", { value: "" }, "pick a run"),
      runs.map((r) => A.el("option", { value: r.run_id }, r.run_id)));
    s.value = q.get(name) || "";
    return s;
  };
  const a = picker("a"), b = picker("b");
  const logBox = A.el("input", { type: "checkbox" });
  const smooth = A.el("input", { type: "range", min: 0, max: 0.99, step: 0.01, value: 0.6 });
  const box = A.el("div", { class: "panel" });
  const table = A.el("tbody");
  main.replaceChildren(A.el("h1", {}, "Compare runs"),
    A.el("div", { class: "row panel" }, a, A.el("span", {}, "vs"), b,
      A.el("label", {}, logBox, " log scale"), A.el("label", {}, "smoothing ", smooth)),
    box, A.el("div", { class: "panel table-wrap" }, A.el("table", {}, A.el("thead", {},
      A.el("tr", {}, ["", "run", "status", "step", "loss", "best val", "model", "lr", "batch"].map((h) => A.el("th", {}, h)))), table)));
  const chart = new AChart(box, { id: "compare:loss", title: "loss", smoothing: 0.6 });
  logBox.addEventListener("change", () => chart.setOption("logY", logBox.checked));
  smooth.addEventListener("input", () => chart.setOption("smoothing", Number(smooth.value)));

  async function load() {
    const ids = [a.value, b.value];
    const params = new URLSearchParams();
    if (ids[0]) params.set("a", ids[0]);
    if (ids[1]) params.set("b", ids[1]);
    history.replaceState(null, "", `/compare?${params}`);
    chart.series = [];
    table.replaceChildren();
    for (const [i, rid] of ids.entries()) {
      if (!rid) continue;
      const tag = i ? "B" : "A";
      const m = await A.allMetrics(rid);
      chart.set(`${tag} loss`, m.filter((r) => typeof r.loss === "number").map((r) => [r.step, r.loss]));
      chart.set(`${tag} val`, m.filter((r) => typeof r.val_loss === "number").map((r) => [r.step, r.val_loss]));
      const r = runs.find((x) => x.run_id === rid) || {};
      table.append(A.el("tr", {}, A.el("td", {}, tag), A.el("td", {}, A.runLink(rid)), A.el("td", {}, A.badge(r.status)),
        A.el("td", {}, A.fmtInt(r.latest_step)), A.el("td", {}, A.fmt(r.last_loss, 4)), A.el("td", {}, A.fmt(r.best_val_loss, 4)),
        A.el("td", {}, r.n_layer ? `${r.n_layer}L ${r.n_head}H ${r.n_embd}d` : "—"), A.el("td", {}, A.fmt(r.lr)), A.el("td", {}, A.fmt(r.batch_size))));
    }
    chart.renderLegend();
    chart.redraw();
  }
  a.addEventListener("change", load);
  b.addEventListener("change", load);
  load();
})();
