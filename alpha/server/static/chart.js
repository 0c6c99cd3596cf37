// A small canvas line chart: several series, linear or log y, EMA smoothing (debiased, as
// TensorBoard does), nice ticks, a hover read-out, redrawn on resize and theme change.
//   const c = new AChart(container, {id: "run:loss", title: "loss", logY: false});
//   c.set("loss", [[step, value], ...]);  c.append("loss", [[step, value]]);
// Each chart is listed in window.alphaCharts[id] so tests (and the console) can read its data.
"use strict";

window.alphaCharts = window.alphaCharts || {};

class AChart {
  constructor(container, opts) {
    this.opts = Object.assign({ logY: false, smoothing: 0, height: null }, opts || {});
    this.series = [];
    this.box = A.el("div", { class: "chart" + (this.opts.small ? " small" : "") });
    this.canvas = A.el("canvas");
    this.tip = A.el("div", { class: "tip" });
    this.legend = A.el("div", { class: "legend" });
    this.box.append(this.canvas, this.tip);
    container.append(this.box, this.legend);
    this.pending = false;
    this.hoverX = null;
    if (this.opts.id) window.alphaCharts[this.opts.id] = this;
    this.canvas.addEventListener("mousemove", (e) => this.hover(e));
    this.canvas.addEventListener("mouseleave", () => { this.hoverX = null; this.tip.style.display = "none"; });
    if (window.ResizeObserver) new ResizeObserver(() => this.redraw()).observe(this.box);
    window.addEventListener("themechange", () => this.redraw());
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => this.redraw());
  }

  get(name) {
    let s = this.series.find((x) => x.name === name);
    if (!s) {
      const colors = ["--s1", "--s2", "--s3", "--s4", "--s5"];
      s = { name, points: [], color: colors[this.series.length % colors.length] };
      this.series.push(s);
      this.renderLegend();
    }
    return s;
  }

  set(name, points) {
    this.get(name).points = points.filter((p) => p[1] !== null && p[1] !== undefined);
    this.redraw();
  }

  // Adds points in x order; a point at an x already present replaces it (a re-sent step).
  append(name, points) {
    const s = this.get(name);
    for (const p of points) {
      if (p[1] === null || p[1] === undefined) continue;
      const n = s.points.length;
      if (!n || s.points[n - 1][0] < p[0]) { s.points.push(p); continue; }
      const i = s.points.findIndex((q) => q[0] >= p[0]);
      if (s.points[i][0] === p[0]) s.points[i] = p; else s.points.splice(i, 0, p);
    }
    this.redraw();
  }

  setOption(key, value) { this.opts[key] = value; this.redraw(); }

  renderLegend() {
    this.legend.replaceChildren(...this.series.map((s) => {
      const swatch = A.el("i");
      swatch.style.background = `var(${s.color})`;
      return A.el("span", {}, swatch, s.name);
    }));
  }

  redraw() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  smoothed(points) {
    const w = this.opts.smoothing;
    if (!w || points.length < 3) return points;
    let last = 0, n = 0;
    return points.map(([x, y]) => {
      last = last * w + (1 - w) * y;
      n += 1;
      return [x, last / (1 - Math.pow(w, n))];
    });
  }

  ty(y) { return this.opts.logY ? Math.log10(y) : y; }

  draw() {
    const css = getComputedStyle(document.documentElement);
    const color = (v) => css.getPropertyValue(v).trim() || "#888";
    const dpr = window.devicePixelRatio || 1;
    const W = this.box.clientWidth, H = this.box.clientHeight;
    if (!W || !H) return;
    this.canvas.width = Math.round(W * dpr);
    this.canvas.height = Math.round(H * dpr);
    const g = this.canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, W, H);
    g.font = "11px system-ui, sans-serif";
    const L = 52, R = 10, T = this.opts.title ? 18 : 8, B = 22;
    if (this.opts.title) {
      g.fillStyle = color("--muted");
      g.fillText(this.opts.title + (this.opts.logY ? " (log)" : ""), L, 12);
    }
    const shown = this.series.map((s) => ({
      s, pts: this.smoothed(s.points).filter((p) => isFinite(p[1]) && (!this.opts.logY || p[1] > 0)),
    }));
    const all = shown.flatMap((x) => x.pts);
    this.view = null;
    if (!all.length) {
      g.fillStyle = color("--muted");
      g.fillText("no data yet", L + 8, T + 20);
      return;
    }
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const [x, y] of all) {
      x0 = Math.min(x0, x); x1 = Math.max(x1, x);
      const v = this.ty(y);
      y0 = Math.min(y0, v); y1 = Math.max(y1, v);
    }
    if (x1 === x0) { x0 -= 1; x1 += 1; }
    if (y1 === y0) { y0 -= Math.abs(y0) * 0.05 || 1; y1 += Math.abs(y1) * 0.05 || 1; }
    const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
    const px = (x) => L + (x - x0) / (x1 - x0) * (W - L - R);
    const py = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
    this.view = { x0, x1, px, L, R, W };
    // grid and ticks
    g.strokeStyle = color("--grid"); g.fillStyle = color("--muted"); g.lineWidth = 1;
    for (const v of ticks(y0, y1, 5)) {
      const y = Math.round(py(v)) + 0.5;
      g.beginPath(); g.moveTo(L, y); g.lineTo(W - R, y); g.stroke();
      const label = this.opts.logY ? A.fmt(Math.pow(10, v)) : A.fmt(v);
      g.fillText(label, 4, y + 4);
    }
    for (const v of ticks(x0, x1, Math.max(2, Math.floor((W - L) / 90)))) {
      const x = Math.round(px(v)) + 0.5;
      g.beginPath(); g.moveTo(x, T); g.lineTo(x, H - B); g.stroke();
      g.fillText(A.fmt(v), x - 10, H - 6);
    }
    // lines
    for (const { s, pts } of shown) {
      g.strokeStyle = color(s.color); g.lineWidth = 1.6;
      g.beginPath();
      const step = Math.max(1, Math.floor(pts.length / (W * 2)));
      pts.forEach(([x, y], i) => {
        if (i % step && i !== pts.length - 1) return;
        const X = px(x), Y = py(this.ty(y));
        if (i === 0) g.moveTo(X, Y); else g.lineTo(X, Y);
      });
      g.stroke();
      if (pts.length === 1) {
        g.fillStyle = color(s.color);
        g.beginPath(); g.arc(px(pts[0][0]), py(this.ty(pts[0][1])), 3, 0, 7); g.fill();
      }
    }
    if (this.hoverX !== null) this.showTip();
  }

  hover(e) {
    if (!this.view) return;
    const rect = this.canvas.getBoundingClientRect();
    const { x0, x1, L, R, W } = this.view;
    this.hoverX = x0 + (e.clientX - rect.left - L) / (W - L - R) * (x1 - x0);
    this.showTip();
  }

  showTip() {
    const parts = [];
    let at = null;
    for (const s of this.series) {
      if (!s.points.length) continue;
      let best = s.points[0];
      for (const p of s.points) if (Math.abs(p[0] - this.hoverX) < Math.abs(best[0] - this.hoverX)) best = p;
      at = best[0];
      parts.push(`${s.name} ${A.fmt(best[1])}`);
    }
    if (!parts.length) return;
    this.tip.textContent = `step ${at}: ${parts.join(", ")}`;
    this.tip.style.display = "block";
    const x = Math.min(this.view.px(at) + 8, this.box.clientWidth - this.tip.offsetWidth - 4);
    this.tip.style.left = `${Math.max(0, x)}px`;
    this.tip.style.top = "2px";
  }
}

// About n "nice" tick values covering [lo, hi].
function ticks(lo, hi, n) {
  const span = hi - lo;
  if (!(span > 0)) return [lo];
  const raw = span / Math.max(1, n);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  return out;
}

window.AChart = AChart;
