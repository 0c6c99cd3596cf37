// Shared helpers of Alpha's pages. Every value that came from the server is put into the page
// as text (el() uses textContent), never as HTML, so nothing stored in the database can run.
"use strict";

const A = (window.A = {});

// el("div", {class: "x", onclick: fn}, "text", child, ...): a DOM element; strings become text.
A.el = function (tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
};

A.$ = (sel, root) => (root || document).querySelector(sel);

A.getJSON = async function (url) {
  const r = await fetch(url, { headers: { Accept: "application/json" } });
  if (!r.ok) {
    let msg = `${r.status}`;
    try { msg = (await r.json()).error.message; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return r.json();
};

// Every metric row of a run (the API pages past 10,000 rows).
A.allMetrics = async function (runId) {
  const out = [];
  for (let offset = 0; ; offset += 10000) {
    const page = (await A.getJSON(`/api/runs/${encodeURIComponent(runId)}/metrics?limit=10000&offset=${offset}`)).metrics;
    out.push(...page);
    if (page.length < 10000) return out;
  }
};

A.fmt = function (v, digits) {
  if (v === null || v === undefined || v === "") return "—";
  if (typeof v !== "number") return String(v);
  if (!isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (digits !== undefined) return v.toFixed(digits);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  if (Number.isInteger(v)) return v.toLocaleString("en-US");
  return a >= 100 ? v.toFixed(1) : a >= 1 ? v.toFixed(3) : v.toPrecision(3);
};

A.fmtInt = (v) => (v === null || v === undefined ? "—" : Math.round(v).toLocaleString("en-US"));

A.duration = function (s) {
  if (s === null || s === undefined || !isFinite(s)) return "—";
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return h ? `${h}h ${m}m` : m ? `${m}m ${sec}s` : `${sec}s`;
};

A.ago = function (iso) {
  if (!iso) return "—";
  const t = Date.parse(iso);
  if (isNaN(t)) return String(iso);
  return A.duration((Date.now() - t) / 1000) + " ago";
};

A.badge = (status) => A.el("span", { class: `badge ${status || ""}` }, status || "?");

A.runLink = (id) => A.el("a", { href: `/runs/${encodeURIComponent(id)}` }, id);

// An SVG sparkline of [[x, y], ...].
A.sparkline = function (pairs, w = 120, h = 28) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("class", "spark");
  const pts = (pairs || []).filter((p) => p[1] !== null && isFinite(p[1]));
  if (pts.length >= 2) {
    const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
    const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", pts.map((p) =>
      `${((p[0] - x0) / (x1 - x0 || 1) * (w - 2) + 1).toFixed(1)},` +
      `${(h - 2 - (p[1] - y0) / (y1 - y0 || 1) * (h - 4)).toFixed(1)}`).join(" "));
    svg.append(line);
  }
  return svg;
};

// The light/dark toggle: follows the system until the user picks; the pick is remembered.
A.theme = function () {
  const saved = localStorage.getItem("alpha-theme");
  if (saved) document.documentElement.setAttribute("data-theme", saved);
};
A.toggleTheme = function () {
  const root = document.documentElement;
  const dark = root.getAttribute("data-theme")
    ? root.getAttribute("data-theme") === "dark"
    : matchMedia("(prefers-color-scheme: dark)").matches;
  const next = dark ? "light" : "dark";
  root.setAttribute("data-theme", next);
  localStorage.setItem("alpha-theme", next);
  window.dispatchEvent(new Event("themechange"));
};

A.header = function (current) {
  const links = [["/", "Overview"], ["/training", "Training"], ["/runs", "Runs"],
    ["/compare", "Compare"], ["/chat", "Chat"]];
  const nav = A.el("nav", {}, links.map(([href, name]) =>
    A.el("a", { href, class: href === current ? "current" : "" }, name)));
  const top = A.el("header", { class: "top" },
    A.el("a", { class: "brand", href: "/" }, "α Alpha"), nav,
    A.el("button", { onclick: A.toggleTheme, title: "light / dark", "aria-label": "theme" }, "◐"));
  document.body.prepend(top);
};

// Follows /api/training/live. handlers: {snapshot(runs), run_start(d), metrics(d), samples(d),
// events(d), run_complete(d), heartbeat(d), status(text)}. EventSource reconnects by itself and
// sends Last-Event-ID, so nothing is missed across a short outage.
A.live = function (handlers) {
  const src = new EventSource("/api/training/live");
  const on = (name) => src.addEventListener(name, (ev) => {
    let data;
    try { data = JSON.parse(ev.data); } catch (e) { return; }
    window.alphaLive.events += 1;
    if (handlers[name]) handlers[name](data);
  });
  window.alphaLive = window.alphaLive || { events: 0 };
  ["snapshot", "run_start", "metrics", "samples", "events", "run_complete", "heartbeat"]
    .forEach(on);
  src.onopen = () => handlers.status && handlers.status("live");
  src.onerror = () => handlers.status && handlers.status("reconnecting…");
  return src;
};

A.theme();
