// Every run, filterable by status and domain; pick two to compare.
"use strict";
(async function () {
  A.header("/runs");
  const main = A.$("#main");
  const status = A.el("select", { id: "status" }, ["", "active", "completed", "failed", "stopped", "stale"].map(
    (s) => A.el("option", { value: s }, s || "any status")));
  const domain = A.el("select", { id: "domain" }, A.el("option", { value: "" }, "any domain"));
  const body = A.el("tbody");
  const compare = A.el("button", { class: "primary", disabled: true }, "compare two");
  const picked = new Set();
  compare.addEventListener("click", () => {
    const [a, b] = [...picked];
    location.href = `/compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`;
  });
  main.replaceChildren(A.el("h1", {}, "Runs"),
    A.el("div", { class: "row panel" }, status, domain, A.el("span", { class: "spacer" }), compare),
    A.el("div", { class: "panel table-wrap" }, A.el("table", {}, A.el("thead", {}, A.el("tr", {},
      ["", "run", "status", "domain", "model", "step", "loss", "best val", "updated"].map(
        (h, i) => A.el("th", { class: i > 6 || i === 4 ? "hide-narrow" : "" }, h)))), body)));
  try {
    for (const d of (await A.getJSON("/api/domains")).domains) domain.append(A.el("option", { value: d.name }, d.name));
  } catch (e) { /* the list still works */ }
  async function load() {
    const q = new URLSearchParams();
    if (status.value) q.set("status", status.value);
    if (domain.value) q.set("domain", domain.value);
    let runs;
    try { runs = (await A.getJSON(`/api/runs?${q}`)).runs; } catch (e) {
      body.replaceChildren(A.el("tr", {}, A.el("td", { colspan: 9, class: "empty" }, e.message)));
      return;
    }
    body.replaceChildren(...runs.map((r) => {
      const box = A.el("input", { type: "checkbox", "aria-label": "pick to compare" });
      box.addEventListener("change", () => {
        if (box.checked) picked.add(r.run_id); else picked.delete(r.run_id);
        compare.disabled = picked.size !== 2;
      });
      const model = r.n_layer ? `${r.n_layer}L ${r.n_head}H ${r.n_embd}d` : "—";
      return A.el("tr", {}, A.el("td", {}, box), A.el("td", {}, A.runLink(r.run_id)),
        A.el("td", {}, A.badge(r.status)), A.el("td", {}, r.domain || "—"),
        A.el("td", { class: "hide-narrow" }, model),
        A.el("td", {}, A.fmtInt(r.latest_step)), A.el("td", {}, A.fmt(r.last_loss)),
        A.el("td", { class: "hide-narrow" }, A.fmt(r.best_val_loss)),
        A.el("td", { class: "hide-narrow muted" }, A.ago(r.updated_at)));
    }));
    if (!runs.length) body.append(A.el("tr", {}, A.el("td", { colspan: 9, class: "empty" }, "no runs")));
  }
  status.addEventListener("change", load);
  domain.addEventListener("change", load);
  load();
})();
