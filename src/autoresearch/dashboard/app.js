// The dashboard page: polls /api/state and redraws. What a run wrote (descriptions, diffs,
// logs) is untrusted, so it only ever enters the page as text nodes, never as HTML.
"use strict";
const TOKEN = new URLSearchParams(location.search).get("token") || "";
const HEADERS = TOKEN ? { "X-Autoresearch-Token": TOKEN } : {};
const SVGNS = "http://www.w3.org/2000/svg";
let selected = null, lastState = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return node;
}
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text != null) node.textContent = String(text);
  return node;
}
// The report's number format (report.fmt): 6 significant digits, no trailing zeros, an
// exponent only below 1e-4 or from 1e15.
function fmt(v) {
  if (v == null || !isFinite(v)) return "–";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-4 || a >= 1e15)) return Number(v.toPrecision(6)).toExponential().replace(/e([+-])(\d)$/, "e$10$2");
  return String(Number(v.toPrecision(6)));
}
// "+ is better in the metric's direction", everywhere.
function gain(value, base, direction) {
  if (value == null || base == null) return null;
  return direction === "minimize" ? base - value : value - base;
}
// Axis ticks need 3 digits, not 6: 0.751, not 0.750582.
function tick(v) { return Math.abs(v) < 1e-4 && v !== 0 ? v.toExponential(1) : String(Number(v.toPrecision(3))); }
function signed(g) { return g == null ? "–" : (g > 0 ? "+" : g < 0 ? "−" : "±") + fmt(Math.abs(g)); }
function clock(s) {
  if (s == null) return "–";
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60), r = s % 60;
  return (h ? h + ":" + String(m).padStart(2, "0") : String(m).padStart(2, "0")) + ":" + String(r).padStart(2, "0");
}

// Axes from the data: log when positive values span more than two orders of magnitude;
// never past a physical bound the data respects ([0, 1] for rates, 0 for losses).
function scale(values) {
  const v = values.filter(x => x != null && isFinite(x));
  if (!v.length) return null;
  let lo = Math.min(...v), hi = Math.max(...v);
  const log = lo > 0 && hi / lo > 100;
  if (log) return { log, lo: Math.log10(lo) - 0.05, hi: Math.log10(hi) + 0.05 };
  const pad = (hi - lo || Math.abs(hi) || 1) * 0.06;
  let a = lo - pad, b = hi + pad;
  if (lo >= 0) a = Math.max(a, 0);
  if (lo >= 0 && hi <= 1) b = Math.min(b, 1);
  return { log, lo: a, hi: b };
}
function plot(series, opts) {
  // series: [{points: [[x, y]], kind: "line"|"dots"|"step", cls}] ; opts: {xlabel, ylabel}
  const W = 560, H = 220, L = 56, R = 10, T = 10, B = 34;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  const xs = series.flatMap(s => s.points.map(p => p[0])), ys = series.flatMap(s => s.points.map(p => p[1]));
  const sy = scale(ys);
  if (!xs.length || !sy) { root.append(svg("text", { x: L, y: H / 2 }, "no points yet")); return root; }
  const x0 = Math.min(0, ...xs), x1 = Math.max(...xs, x0 + 1);
  const X = x => L + (x - x0) / (x1 - x0) * (W - L - R);
  const Y = y => { const t = sy.log ? Math.log10(y) : y; return T + (1 - (t - sy.lo) / (sy.hi - sy.lo)) * (H - T - B); };
  root.append(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#999" }));
  root.append(svg("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#999" }));
  for (let i = 0; i <= 4; i++) {
    const t = sy.lo + (sy.hi - sy.lo) * i / 4, y = sy.log ? Math.pow(10, t) : t;
    root.append(svg("text", { x: L - 4, y: Y(y) + 4, "text-anchor": "end" }, tick(y)));
    const xv = opts.integer ? Math.round(x0 + (x1 - x0) * i / 4) : x0 + (x1 - x0) * i / 4;
    if (!opts.integer || i === 0 || xv !== Math.round(x0 + (x1 - x0) * (i - 1) / 4))
      root.append(svg("text", { x: X(xv), y: H - B + 14, "text-anchor": "middle" }, tick(xv)));
  }
  root.append(svg("text", { x: (W + L) / 2, y: H - 4, "text-anchor": "middle" }, opts.xlabel + (sy.log ? "   (y: log scale)" : "")));
  root.append(svg("text", { x: L + 6, y: T + 10 }, opts.ylabel));
  const colors = ["#2a7", "#37c", "#c73", "#a4a", "#777"];
  series.forEach((s, i) => {
    const pts = s.points.filter(p => p[1] != null && isFinite(p[1]) && (!sy.log || p[1] > 0));
    const color = s.color || colors[i % colors.length];
    if (s.kind === "dots") {
      for (const p of pts) root.append(svg("circle", { cx: X(p[0]), cy: Y(p[1]), r: 3, fill: color, "data-x": p[0] }));
    } else if (pts.length) {
      let d = "";
      pts.forEach((p, j) => {
        if (j && s.kind === "step") d += ` L${X(p[0])},${Y(pts[j - 1][1])}`;
        d += `${j ? " L" : "M"}${X(p[0])},${Y(p[1])}`;
      });
      root.append(svg("path", { d, fill: "none", stroke: color, "stroke-width": 1.6 }));
    }
    if (s.name) root.append(svg("text", { x: W - R - 4, y: T + 12 + 13 * i, "text-anchor": "end", fill: color }, s.name));
  });
  return root;
}

// The x axis of a curve: the run's own seconds when it reports them, else the time we saw it.
function curveSeries(curve) {
  if (!curve || !curve.length) return { series: [], xlabel: "" };
  // The run's own clock first; then its epochs or steps; our arrival stamps (t, 1 s grain) last.
  const tkey = ["seconds", "time", "elapsed"].find(k => curve.every(p => k in p));
  const xkey = tkey || ["epoch", "step", "t"].find(k => curve.every(p => k in p));
  const skip = new Set(["seconds", "time", "elapsed", "t", "epoch", "step", "lr", "learning_rate"]);
  const names = [...new Set(curve.flatMap(Object.keys))].filter(k => !skip.has(k)).slice(0, 4);
  return { xlabel: tkey || xkey === "t" ? "seconds" : (xkey || "point"),
           series: names.map(n => ({ name: n, kind: "line", points: curve.map((p, i) => [xkey ? p[xkey] : i, p[n]]) })) };
}

function renderRuns(state) {
  const box = document.getElementById("runs");
  const alive = state.live.filter(s => s.alive);
  box.replaceChildren();
  if (!alive.length) { box.append(el("p", { class: "dim" }, state.live.length ? "no run in flight (last update: " + new Date(Math.max(...state.live.map(s => s.updated_at || 0)) * 1000).toLocaleString() + ")" : "nothing is running")); return; }
  const now = Date.now() / 1000;
  for (const s of alive) {
    const started = s.stage === "measure" ? s.run_started_at : s.iteration_started_at;
    const elapsed = started ? now - started : 0;
    const run = el("div", { class: "run", "data-iteration": s.iteration });
    run.append(el("div", {}, el("b", {}, (s.worker != null ? `[w${s.worker}] ` : "") + (s.iteration != null ? `#${s.iteration} ` : "")),
      (s.stage === "measure" ? "training " : (s.stage || "") + " ") + clock(elapsed) + (s.stage === "measure" ? " / " + clock(s.budget) : ""),
      " · ", s.description || "(the agent is proposing)"));
    if (s.stage === "measure" && s.budget) {
      const bar = el("div", { class: "bar" }, el("div", {}));
      bar.firstChild.style.width = Math.min(100, 100 * elapsed / s.budget) + "%";
      run.append(bar);
    }
    if (s.log_line) run.append(el("div", { class: "dim" }, "log: " + s.log_line));
    const c = curveSeries(s.curve);
    if (c.series.length) run.append(plot(c.series, { xlabel: c.xlabel, ylabel: "live curve" }));
    box.append(run);
  }
}

function renderBest(state) {
  const box = document.getElementById("best");
  box.replaceChildren();
  const b = state.best, base = state.baseline;
  if (!b) { box.append(el("p", { class: "dim" }, "no experiment recorded yet")); return; }
  const g = gain(b.value, base && base.value, state.direction);
  box.append(el("p", {}, el("b", {}, `${state.primary} ${fmt(b.value)}`), ` at #${b.iteration} (${b.commit.slice(0, 7)}): ${b.description}`));
  if (base) box.append(el("p", {}, "vs baseline " + fmt(base.value) + ": ", el("span", { class: g > 0 ? "gain-pos" : g < 0 ? "gain-neg" : "" }, signed(g)), el("span", { class: "dim" }, " (+ is better, " + state.direction + "; noise floor " + (state.noise_floor == null ? "unknown" : fmt(state.noise_floor)) + ")")));
  const changed = state.knobs.filter(k => k.changed);
  if (changed.length) {
    const t = el("table", {}, el("tr", {}, el("th", {}, "knob"), el("th", {}, "baseline"), el("th", {}, "best")));
    for (const k of changed) t.append(el("tr", {}, el("td", {}, k.name), el("td", {}, JSON.stringify(k.baseline)), el("td", {}, JSON.stringify(k.best))));
    box.append(t);
  }
  if (state.reproduce.length) box.append(el("pre", {}, state.reproduce.join("\n")));
}

function renderProgress(state) {
  const rows = state.experiments, by = s => rows.filter(r => r.status === s && r.value != null).map(r => [r.iteration, r.value]);
  const best = rows.filter(r => r.best_so_far != null).map(r => [r.iteration, r.best_so_far]);
  document.getElementById("progress").replaceChildren(plot([
    { name: "best so far", kind: "step", points: best, color: "#2a7" },
    { name: "keep", kind: "dots", points: by("keep"), color: "#2a7" },
    { name: "discard", kind: "dots", points: by("discard"), color: "#bbb" },
  ], { xlabel: "experiment", ylabel: state.primary, integer: true }));
}

function renderTable(state) {
  document.getElementById("metric-head").textContent = state.primary;
  const body = document.querySelector("#table tbody");
  body.replaceChildren();
  for (const r of [...state.experiments].reverse()) {
    const tr = el("tr", { class: r.status + (r.iteration === selected ? " selected" : ""), "data-iteration": r.iteration, onclick: () => showDetail(r.iteration) },
      el("td", { class: "num" }, r.iteration), el("td", {}, r.commit.slice(0, 7)), el("td", { class: "num" }, fmt(r.value)),
      el("td", { class: "num" }, fmt(r.best_so_far)),
      el("td", { class: "num" }, r.gain == null ? "" : signed(r.gain) + " (" + (r.floor == null ? "?" : fmt(r.floor)) + ")"),
      el("td", {}, r.status),
      el("td", { class: "num" }, r.train_seconds == null ? "unknown" : fmt(r.train_seconds)),
      el("td", {}, r.description, r.status === "crash" ? el("span", { class: "dim" }, "  (" + r.reason + ")") : ""));
    body.append(tr);
  }
}

async function showDetail(n) {
  selected = n;
  const resp = await fetch(`api/experiment/${n}`, { headers: HEADERS });
  if (!resp.ok) return;
  const e = await resp.json();
  const sec = document.getElementById("detail");
  sec.hidden = false;
  document.getElementById("detail-title").textContent = `#${e.iteration} ${e.status}: ${e.description}`;
  const diff = el("pre", { class: "diff" });
  for (const line of (e.diff || "(no diff: nothing was changed)").split("\n")) {
    diff.append(el("span", { class: line.startsWith("+") && !line.startsWith("+++") ? "add" : line.startsWith("-") && !line.startsWith("---") ? "del" : "" }, line + "\n"));
  }
  const c = curveSeries(e.curve);
  document.getElementById("detail-body").replaceChildren(
    el("p", {}, e.explanation || ""), el("p", { class: "dim" }, e.reason || ""),
    ...(c.series.length ? [plot(c.series, { xlabel: c.xlabel, ylabel: "learning curve" })] : []),
    el("h3", {}, "diff"), diff, el("h3", {}, "log (end)"), el("pre", {}, e.log_tail || ""));
  if (lastState) renderTable(lastState);
  sec.scrollIntoView({ block: "nearest" });
}

function render(state) {
  lastState = state;
  document.getElementById("title").textContent = `autoresearch · ${state.tag}`;
  document.title = `${state.tag} · autoresearch`;
  const pill = document.getElementById("pill");
  pill.textContent = state.stop_requested && state.running ? "stopping after this iteration" : state.running ? "running" : "not running";
  pill.className = "pill " + (state.stop_requested && state.running ? "stopping" : state.running ? "running" : "");
  const c = state.counts;
  document.getElementById("eta").textContent = `${state.experiments.length} ${state.experiments.length === 1 ? "experiment" : "experiments"}: ${c.keep} keep, ${c.discard} discard, ${c.crash} crash` +
    (state.eta_seconds != null ? ` · ETA ${new Date(Date.now() + state.eta_seconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}` : "");
  document.getElementById("stop").disabled = !state.running || state.stop_requested;
  renderRuns(state); renderBest(state); renderProgress(state); renderTable(state);
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString() + " · branch " + state.branch;
}

async function poll() {
  try {
    const resp = await fetch("api/state", { headers: HEADERS, cache: "no-store" });
    if (resp.ok) render(await resp.json());
    else document.getElementById("pill").textContent = "error " + resp.status;
  } catch (err) {
    document.getElementById("pill").textContent = "dashboard server unreachable";
  }
}

document.getElementById("stop").addEventListener("click", async () => {
  if (!confirm("Stop the loop after the iteration in flight? (the run finishes and is recorded)")) return;
  await fetch("api/stop", { method: "POST", headers: { ...HEADERS, "X-Autoresearch-Stop": "1" } });
  poll();
});
poll();
setInterval(poll, 2000);
