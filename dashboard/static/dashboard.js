// The cluster dashboard: renders the controller's /api/stream updates (Server-Sent Events), or
// polls /api/engines, /api/stats and /api/tasks while the stream is down. No framework, no build.
"use strict";

const STREAM_WINDOW_S = 60;      // the task stream shows at most the last minute...
const STREAM_MIN_WINDOW_S = 10;  // ...and zooms in to as little as this on recent work
const MAX_TASKS = 5000;          // tasks kept in the page for the task stream
const STALE_AFTER_MS = 3000;     // no stream update for this long: poll instead
const HEARTBEAT_STALE_S = 5;     // a heartbeat older than this is shown in red

const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948",
                 "#9c755f", "#e15759", "#ff9da7", "#bab0ac", "#1f77b4", "#8c564b"];

const token = new URLSearchParams(location.search).get("token");

const state = {
  engines: [],
  stats: null,
  tasks: [],                 // finished tasks, oldest first
  lastSeq: 0,
  serverNow: 0,              // controller time (s since it started) of the last update...
  receivedAt: 0,             // ...and performance.now() when it arrived
  colours: new Map(),        // function name -> colour, stable for the page's life
  lastStream: 0,
  pollTimer: null,
  bars: [],                  // what the task stream drew, for the tooltip
};

function api(path) {
  if (!token) return path;
  return path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "title") e.title = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function nowS() {
  return state.serverNow + (performance.now() - state.receivedAt) / 1000;
}

function colourOf(fn) {
  if (!state.colours.has(fn)) state.colours.set(fn, PALETTE[state.colours.size % PALETTE.length]);
  return state.colours.get(fn);
}

function fmtDuration(s) {
  if (s === null || s === undefined) return "–";
  if (s < 1) return Math.round(s * 1000) + " ms";
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return Math.floor(s / 60) + " m " + Math.floor(s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " m";
}

// An axis label for `v` seconds before now (v <= 0).
function fmtAgo(v) {
  if (v === 0) return "now";
  return v % 60 === 0 ? v / 60 + " min" : v + " s";
}

function fmtMs(ms) {
  if (ms === null || ms === undefined) return "–";
  return ms < 1 ? ms.toFixed(2) + " ms" : ms < 1000 ? ms.toFixed(1) + " ms" : (ms / 1000).toFixed(2) + " s";
}

function fmtBytes(n) {
  if (!n && n !== 0) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

function fmtCount(n) {
  return (n || 0).toLocaleString("en-US");
}

// ---- data in --------------------------------------------------------------------------------

function applyUpdate(u) {
  if (u.stats) {
    state.stats = u.stats;
    if (typeof u.stats.now === "number") {
      state.serverNow = u.stats.now;
      state.receivedAt = performance.now();
    }
  }
  if (u.engines) state.engines = u.engines;
  if (u.tasks) addTasks(u.tasks);
  render();
}

function addTasks(t) {
  const list = Array.isArray(t) ? t : (t.tasks || []);
  if (!Array.isArray(t) && typeof t.seq === "number" && t.seq < state.lastSeq) {
    // The controller restarted: its sequence numbers and clock start again.
    state.tasks = [];
    state.lastSeq = 0;
  }
  for (const task of list) {
    if (task.seq <= state.lastSeq) continue;
    state.tasks.push(task);
    state.lastSeq = task.seq;
  }
  if (!Array.isArray(t) && typeof t.seq === "number") state.lastSeq = Math.max(state.lastSeq, t.seq);
  const horizon = nowS() - STREAM_WINDOW_S * 2;
  let drop = Math.max(0, state.tasks.length - MAX_TASKS);
  while (drop < state.tasks.length && state.tasks[drop].completed < horizon) drop++;
  if (drop) state.tasks.splice(0, drop);
}

function setLink(kind, text) {
  const link = document.getElementById("link");
  link.className = "link " + kind;
  link.textContent = text;
}

function startStream() {
  if (!window.EventSource) { startPolling(); return; }
  const es = new EventSource(api("/api/stream"));
  es.addEventListener("update", (ev) => {
    state.lastStream = performance.now();
    stopPolling();
    setLink("live", "live");
    try {
      applyUpdate(JSON.parse(ev.data));
    } catch (e) {
      console.error("bad update", e);
    }
  });
  es.onerror = () => {
    // EventSource reconnects by itself; meanwhile the page polls.
    if (performance.now() - state.lastStream > STALE_AFTER_MS) startPolling();
  };
  // A stream that connects but stays silent (a proxy buffering it) also means polling.
  setInterval(() => {
    if (performance.now() - state.lastStream > STALE_AFTER_MS) startPolling();
  }, 1000);
}

function startPolling() {
  if (state.pollTimer) return;
  setLink("polling", "polling");
  const poll = async () => {
    try {
      const get = async (p) => {
        const r = await fetch(api(p), { credentials: "same-origin" });
        if (!r.ok) throw new Error(p + ": HTTP " + r.status);
        return r.json();
      };
      const [engines, stats, tasks] = await Promise.all([
        get("/api/engines"), get("/api/stats"), get("/api/tasks?since=" + state.lastSeq)]);
      if (state.pollTimer) {
        setLink("polling", "polling");
        applyUpdate({ engines, stats, tasks });
      }
    } catch (e) {
      setLink("down", "no connection to the controller");
    }
  };
  state.pollTimer = setInterval(poll, 1000);
  poll();
}

function stopPolling() {
  if (state.pollTimer) clearInterval(state.pollTimer);
  state.pollTimer = null;
}

// ---- rendering ------------------------------------------------------------------------------

function render() {
  renderTiles();
  renderEngines();
  renderCharts();
  renderFailures();
  renderFunctions();
  renderClients();
  drawStream();
}

function setText(id, text) {
  const e = document.getElementById(id);
  if (e.textContent !== text) e.textContent = text;
}

function renderTiles() {
  const s = state.stats || {};
  const c = s.counters || {};
  const byState = {};
  for (const e of state.engines) byState[e.state] = (byState[e.state] || 0) + 1;
  const alive = (byState.idle || 0) + (byState.busy || 0);
  setText("engines-count", String(alive));
  setText("engines-states", ["idle", "busy", "dead", "gone"]
    .filter((k) => byState[k]).map((k) => byState[k] + " " + k).join(" · "));
  setText("done-count", fmtCount(c.done));
  setText("submitted-count", c.submitted !== undefined ? "of " + fmtCount(c.submitted) + " submitted" : "");
  setText("rate", (s.rate_done_per_s || 0).toFixed(s.rate_done_per_s >= 100 ? 0 : 1));
  setText("running-count", fmtCount(c.running));
  setText("queued-count", fmtCount(c.queued_lb));
  setText("waiting-count", fmtCount(c.waiting_deps));
  setText("failed-count", fmtCount(c.failed));
  document.querySelector(".tile.failed").classList.toggle("nonzero", (c.failed || 0) > 0);
  if (s.uptime_s !== undefined) setText("uptime", "up " + fmtDuration(s.uptime_s));
  renderWaitingFor(s.waiting_for || []);
  const ctl = s.controller;
  if (ctl) setText("controller", "controller: CPU " + (ctl.cpu_percent || 0).toFixed(0) + " % · memory " +
                   fmtBytes(ctl.rss_bytes));
}

// Work no connected engine can run waits for one (as a task with an unmet dependency does), said
// where people look rather than only in `ipp status`.
function renderWaitingFor(waiting) {
  const box = document.getElementById("waiting-for");
  const text = waiting.map((w) => fmtCount(w.tasks) + (w.tasks === 1 ? " task waits" : " tasks wait") + " for " +
    w.reason + ": no connected engine can run " + (w.tasks === 1 ? "it" : "them") + ".");
  if (box.dataset.text === text.join("\n")) return;
  box.dataset.text = text.join("\n");
  box.replaceChildren(...text.map((t) => el("p", {}, t)));
  box.hidden = text.length === 0;
}

function renderEngines() {
  const tbody = document.querySelector("#engines tbody");
  const engines = [...state.engines].sort((a, b) => a.id - b.id);
  document.getElementById("engines-empty").hidden = engines.length > 0;
  const rows = engines.map((e) => {
    const stale = (e.state === "idle" || e.state === "busy") && e.heartbeat_age_s > HEARTBEAT_STALE_S;
    const task = e.task
      ? el("span", {}, el("span", { class: "mono" }, e.task.function || "?"), " · " + fmtDuration(e.task.running_s))
      : "";
    return el("tr", { "data-state": e.state, "data-id": e.id },
      el("td", { class: "num" }, e.id),
      el("td", {}, e.kind || "–"),
      el("td", {}, e.host || "–"),
      el("td", { class: "num" }, e.pid ?? "–"),
      el("td", {}, el("span", { class: "state " + e.state }, e.state),
         e.death ? el("span", { class: "death", title: e.death_log || "" }, e.death) : null),
      el("td", { title: e.task ? e.task.msg_id : "" }, task),
      el("td", { class: "num" }, e.queue ?? 0),
      el("td", { class: "num" }, fmtCount(e.done)),
      el("td", { class: "num" + (e.failed ? " failed-n" : "") }, fmtCount(e.failed)),
      el("td", { class: "num" + (stale ? " stale" : "") },
         e.state === "dead" || e.state === "gone" || e.heartbeat_age_s == null
           ? "–" : e.heartbeat_age_s.toFixed(1) + " s"));
  });
  tbody.replaceChildren(...rows);
}

const charts = {};

function makeChart(id, datasets, yTitle) {
  return new Chart(document.getElementById(id), {
    type: "line",
    data: { datasets },
    options: {
      animation: false,
      maintainAspectRatio: false,
      parsing: false,
      normalized: true,
      interaction: { mode: "index", intersect: false },
      elements: { point: { radius: 0 }, line: { borderWidth: 2, tension: 0.2 } },
      scales: {
        x: { type: "linear", max: 0, ticks: { callback: fmtAgo },
             grid: { color: "#eef0f3" } },
        y: { beginAtZero: true, title: { display: !!yTitle, text: yTitle }, grid: { color: "#eef0f3" },
             ticks: { precision: 0 } },
      },
      plugins: { legend: { display: datasets.length > 1, position: "top", align: "end",
                           labels: { boxWidth: 10, boxHeight: 10 } } },
    },
  });
}

function renderCharts() {
  if (!window.Chart) return;  // the page still works without the charting library
  const history = (state.stats && state.stats.history) || [];
  const now = state.stats ? state.stats.now : 0;
  if (!charts.throughput) {
    charts.throughput = makeChart("throughput-chart", [
      { label: "done/s", borderColor: "#2563eb", backgroundColor: "rgba(37,99,235,.12)", fill: true, data: [] }],
      "tasks/s");
    charts.queue = makeChart("queue-chart", [
      { label: "load-balanced queue", borderColor: "#d97706", data: [] },
      { label: "waiting on dependencies", borderColor: "#7c3aed", data: [] }], "tasks");
  }
  const x = (h) => Math.round((h.t - now) * 10) / 10;
  // The axis starts at a round number: the last minute, or as far back as the history goes.
  const span = history.length ? -x(history[0]) : 0;
  const minX = -(span <= 60 ? 60 : Math.ceil(span / 60) * 60);
  charts.throughput.data.datasets[0].data = history.map((h) => ({ x: x(h), y: h.done_per_s }));
  charts.queue.data.datasets[0].data = history.map((h) => ({ x: x(h), y: h.queued_lb }));
  charts.queue.data.datasets[1].data = history.map((h) => ({ x: x(h), y: h.waiting_deps }));
  for (const c of [charts.throughput, charts.queue]) {
    c.options.scales.x.min = minX;
    c.options.scales.x.ticks.stepSize = minX >= -60 ? 10 : minX >= -180 ? 30 : 60;
    c.update("none");
  }
}

function failureKey(f) {
  return [f.t, f.engine, f.function, f.ename].join("|");
}

function renderFailures() {
  const failures = ((state.stats && state.stats.failures) || []).slice().sort((a, b) => b.t - a.t);
  const box = document.getElementById("failures");
  document.getElementById("failures-empty").hidden = failures.length > 0;
  const key = failures.map(failureKey).join(";");
  if (box.dataset.key === key) {  // unchanged: keep what the user expanded, update the ages
    for (const age of box.querySelectorAll(".age")) age.textContent = agoText(Number(age.dataset.t));
    return;
  }
  const open = new Set([...box.querySelectorAll("details[open]")].map((d) => d.dataset.key));
  box.dataset.key = key;
  box.replaceChildren(...failures.slice(0, 50).map((f) => {
    const k = failureKey(f);
    const tb = Array.isArray(f.traceback) ? f.traceback.join("\n") : (f.traceback || "");
    const d = el("details", { "data-key": k },
      el("summary", {},
        el("span", { class: "muted age", "data-t": f.t }, agoText(f.t)),
        el("span", { class: "muted" }, " · engine " + f.engine + " · "),
        el("span", { class: "mono" }, f.function || "?"), " ",
        el("span", { class: "ename" }, f.ename || "error"), ": " + (f.evalue || "")),
      el("pre", {}, stripAnsi(tb) || "(no traceback)"));
    if (open.has(k)) d.open = true;
    return d;
  }));
}

function agoText(t) {
  const s = Math.max(0, nowS() - t);
  if (s < 1) return "just now";
  if (s < 60) return Math.floor(s) + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  return Math.floor(s / 3600) + " h ago";
}

function stripAnsi(s) {
  return s.replace(/\x1b\[[0-9;]*m/g, "");
}

function renderFunctions() {
  const fns = ((state.stats && state.stats.functions) || []).slice().sort((a, b) => b.count - a.count);
  document.querySelector("#functions tbody").replaceChildren(...fns.map((f) =>
    el("tr", {},
      el("td", {}, el("i", { class: "swatch", style: "background:" + colourOf(f.name) }),
         el("span", { class: "mono" }, f.name)),
      el("td", { class: "num" }, fmtCount(f.count)),
      el("td", { class: "num" }, fmtMs(f.mean_ms)),
      el("td", { class: "num" }, fmtMs(f.p99_ms)))));
}

function renderClients() {
  const clients = ((state.stats && state.stats.clients) || []).slice().sort((a, b) => b.tasks - a.tasks);
  const tbody = document.querySelector("#clients tbody");
  if (!clients.length) {
    tbody.replaceChildren(el("tr", {}, el("td", { class: "muted", colspan: 2 }, "No clients yet.")));
    return;
  }
  tbody.replaceChildren(...clients.map((c) =>
    el("tr", {}, el("td", { class: "mono", title: c.id }, shortId(c.id)),
       el("td", { class: "num" }, fmtCount(c.tasks)))));
}

function shortId(id) {
  id = String(id);
  return id.length > 18 ? id.slice(0, 8) + "…" + id.slice(-6) : id;
}

// ---- task stream ----------------------------------------------------------------------------
// Like Dask's task stream: time runs left to right over the last STREAM_WINDOW_S seconds, one
// lane per engine; finished tasks are solid bars, running ones are translucent bars that grow
// until "now". Gaps show idle engines; ragged right edges show stalls and imbalance.

const AXIS_H = 18, LABEL_W = 70;
// Lanes get thinner as engines get many, so that the stream stays about one screen high.
function laneHeight(n) {
  return Math.max(4, Math.min(18, Math.floor(480 / Math.max(1, n)) - 4));
}

function drawStream() {
  const canvas = document.getElementById("task-stream");
  const engines = [...state.engines].sort((a, b) => a.id - b.id);
  const lanes = new Map(engines.map((e, i) => [e.id, i]));
  const LANE_H = laneHeight(engines.length), LANE_GAP = LANE_H >= 12 ? 4 : 1;
  const labelEvery = Math.ceil(14 / (LANE_H + LANE_GAP));
  const cssH = Math.max(60, engines.length * (LANE_H + LANE_GAP) + AXIS_H + 6);
  const cssW = canvas.clientWidth || 800;
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(cssW * dpr) || canvas.height !== Math.round(cssH * dpr)) {
    canvas.width = Math.round(cssW * dpr);
    canvas.height = Math.round(cssH * dpr);
    canvas.style.height = cssH + "px";
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);
  ctx.font = "12px 'DejaVu Sans', sans-serif";
  ctx.textBaseline = "middle";

  const now = nowS();
  const win = streamWindow(now);
  const t0 = now - win;
  const plotW = cssW - LABEL_W - 8;
  const xOf = (t) => LABEL_W + ((t - t0) / win) * plotW;
  const yOf = (lane) => lane * (LANE_H + LANE_GAP);

  // Lanes and their labels.
  engines.forEach((e, i) => {
    const dead = e.state === "dead" || e.state === "gone";
    ctx.fillStyle = dead ? "#f3f4f6" : "#f8fafc";
    ctx.fillRect(LABEL_W, yOf(i), plotW, LANE_H);
    ctx.fillStyle = dead ? "#9ca3af" : "#1f2430";
    if (i % labelEvery === 0) ctx.fillText("engine " + e.id + (dead ? " \u2715" : ""), 4, yOf(i) + LANE_H / 2);
    if (dead) {
      ctx.strokeStyle = "#d1d5db";
      ctx.beginPath();
      ctx.moveTo(LABEL_W, yOf(i) + LANE_H / 2);
      ctx.lineTo(LABEL_W + plotW, yOf(i) + LANE_H / 2);
      ctx.stroke();
    }
  });

  // Time axis.
  const axisY = engines.length * (LANE_H + LANE_GAP) + 2;
  ctx.fillStyle = "#6b7280";
  ctx.strokeStyle = "#e3e6eb";
  ctx.textAlign = "center";
  const step = [1, 2, 5, 10, 15, 30].find((st) => win / st <= 8) || 60;
  for (let s = 0; s <= win; s += step) {
    const x = xOf(now - s);
    ctx.beginPath();
    ctx.moveTo(x, 0);
    ctx.lineTo(x, axisY);
    ctx.stroke();
    ctx.fillText(s === 0 ? "now" : "-" + s + " s", Math.min(x, cssW - 16), axisY + AXIS_H / 2 + 2);
  }
  ctx.textAlign = "left";

  // Bars: finished tasks, then the tasks running now.
  const bars = [];
  ctx.save();
  ctx.beginPath();
  ctx.rect(LABEL_W, 0, plotW, axisY);
  ctx.clip();
  for (const t of state.tasks) {
    if (t.completed < t0 || !lanes.has(t.engine)) continue;
    bars.push({ task: t, lane: lanes.get(t.engine), start: t.started, end: t.completed, running: false });
  }
  for (const e of engines) {
    if (e.task && (e.state === "busy" || e.state === "idle")) {
      bars.push({ task: { function: e.task.function, msg_id: e.task.msg_id, engine: e.id, status: "running" },
                  lane: lanes.get(e.id), start: now - (e.task.running_s || 0), end: now, running: true });
    }
  }
  for (const b of bars) {
    const x0 = Math.max(LABEL_W, xOf(b.start));
    // Sub-millisecond tasks still get a visible sliver.
    const w = Math.max(1.5, xOf(b.end) - x0);
    const pad = LANE_H >= 12 ? 2 : 0;
    const y = yOf(b.lane) + pad;
    ctx.globalAlpha = b.running ? 0.45 : 0.9;
    ctx.fillStyle = colourOf(b.task.function || "?");
    ctx.fillRect(x0, y, w, LANE_H - 2 * pad);
    ctx.globalAlpha = 1;
    if (b.task.status === "error" || b.task.status === "aborted") {
      ctx.strokeStyle = b.task.status === "error" ? "#dc2626" : "#6b7280";
      ctx.lineWidth = 1.5;
      ctx.strokeRect(x0 + 0.75, y + 0.75, Math.max(0, w - 1.5), Math.max(0, LANE_H - 2 * pad - 1.5));
      ctx.lineWidth = 1;
    }
    b.x0 = x0;
    b.x1 = x0 + w;
    b.y0 = y;
    b.y1 = y + LANE_H - 2 * pad;
  }
  ctx.restore();
  state.bars = bars;
  canvas.dataset.bars = String(bars.length);
  renderLegend();
}

// From the oldest task still worth showing to now, between STREAM_MIN_WINDOW_S and
// STREAM_WINDOW_S: a short burst fills the width; a long run scrolls through the last minute.
function streamWindow(now) {
  const first = state.tasks.find((t) => t.completed >= now - STREAM_WINDOW_S);
  const span = first ? now - first.started : 0;
  const nice = Math.ceil(span / 5) * 5;
  return Math.min(STREAM_WINDOW_S, Math.max(STREAM_MIN_WINDOW_S, nice));
}

function renderLegend() {
  const names = [...state.colours.keys()];
  const legend = document.getElementById("stream-legend");
  const key = names.join("|");
  if (legend.dataset.key === key) return;
  legend.dataset.key = key;
  legend.replaceChildren(...names.map((n) =>
    el("span", {}, el("i", { style: "background:" + colourOf(n) }), n)));
}

function bindStreamTooltip() {
  const canvas = document.getElementById("task-stream");
  const tip = document.getElementById("stream-tip");
  canvas.addEventListener("mousemove", (ev) => {
    const r = canvas.getBoundingClientRect();
    const x = ev.clientX - r.left, y = ev.clientY - r.top;
    let hit = null;
    for (let i = state.bars.length - 1; i >= 0 && !hit; i--) {
      const b = state.bars[i];
      if (x >= b.x0 - 1 && x <= b.x1 + 1 && y >= b.y0 && y <= b.y1) hit = b;
    }
    if (!hit) { tip.hidden = true; return; }
    tip.hidden = false;
    tip.textContent = (hit.task.function || "?") + " · engine " + hit.task.engine + " · " +
      fmtDuration(hit.end - hit.start) + " · " + hit.task.status;
    tip.style.left = Math.min(x + 12, r.width - tip.offsetWidth - 4) + "px";
    tip.style.top = (y + 14) + "px";
  });
  canvas.addEventListener("mouseleave", () => { tip.hidden = true; });
}

// The stream scrolls smoothly between updates.
function tick() {
  if (state.engines.length) drawStream();
  setTimeout(() => requestAnimationFrame(tick), 250);
}

bindStreamTooltip();
startStream();
tick();
