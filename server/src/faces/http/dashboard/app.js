// The SPUD dashboard: a chart per group of keys (a key's prefix up to its last dot: box.cpu.*
// is one chart, a line per key), grouped by job (the key's first part), drawn with uPlot.
// A range picker (live from memory, or 1 h to a year from /api/range, which reads the
// archive beyond memory), drag to zoom, the minimum and maximum of each step as a band,
// alert thresholds and states on the charts they concern, and the table of keys one click
// away. Charts load when they scroll into view; live ones follow the server-sent events.
"use strict";

const $ = (sel) => document.querySelector(sel);
// Live: the last ten minutes, which the samples in memory hold.
const LIVE_SPAN = 600;
// About this many steps across a chart.
const STEPS = 300;
const NICE_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
  21600, 43200, 86400, 172800, 604800];
const COLOURS = ["#2b6cb0", "#d9480f", "#2f9e44", "#ae3ec9", "#e8590c", "#1098ad", "#c2255c",
  "#5c940d", "#364fc7", "#a61e4d", "#0b7285", "#862e9c"];
const SEVERITY = { critical: 4, warning: 3, nodata: 2, flapping: 2, pending: 1 };
// Collectors' metadata (munin's graph_title, a field's label; Nagios' warn and crit) names
// and marks charts; it is not charted itself.
const META = /\.(graph_[a-z]+|label|type|cdef|info|warning|critical|warn|crit)$/;

// On a server with tokens: asked for once, kept for this tab only.
let token = sessionStorage.getItem("spud-token");

async function api(path) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const reply = await fetch(path, { headers });
  if (reply.status === 401 || reply.status === 403) {
    const given = prompt("This SPUD server needs a token with the read role:");
    if (given) {
      token = given.trim();
      sessionStorage.setItem("spud-token", token);
      return fetch(path, { headers: { Authorization: `Bearer ${token}` } });
    }
  }
  return reply;
}

function withToken(path) {
  return token ? `${path}&access_token=${encodeURIComponent(token)}` : path;
}

const when = (t) => new Date(t * 1000).toLocaleString();
const now = () => Math.floor(Date.now() / 1000);
const groupOf = (key) => (key.includes(".") ? key.slice(0, key.lastIndexOf(".")) : key);
const jobOf = (key) => key.split(".")[0];

const view = {
  // "live", a span in seconds ending now, or { from, to } (a zoom).
  range: "live",
  // The range before a zoom, for a double-click to go back to.
  before: [],
  charts: new Map(), // group -> chart
  texts: new Map(), // key -> newest text, for metadata
  thresholds: [], // the rules' thresholds (/api/alerts)
  alerts: [], // the instances that are not ok
  jobs: new Map(), // job name -> plugin
  generation: 0, // bumped at each range change: late answers are dropped
};

// The range asked of the API now.
function span() {
  let from, to;
  if (view.range === "live") [from, to] = [now() - LIVE_SPAN, now() + 1];
  else if (typeof view.range === "number") [from, to] = [now() - view.range, now() + 1];
  else ({ from, to } = view.range);
  const want = Math.max(1, (to - from) / STEPS);
  const step = NICE_STEPS.find((s) => s >= want) ?? Math.ceil(want);
  return { from, to, step };
}

function showSpan() {
  const { from, to, step } = span();
  $("#span").textContent = view.range === "live" ? "last 10 minutes, live"
    : `${when(from)} – ${when(to)}, ${step} s steps`;
}

// Ranges a collector published beside a key (munin's `warning`/`critical`, Nagios'
// `warn`/`crit`), as lines at their finite ends.
function metaLines(key) {
  const lines = [];
  for (const [suffixes, name, colour] of [[["warning", "warn"], "warn", "#d08c00"],
    [["critical", "crit"], "crit", "#c62828"]]) {
    const text = suffixes.map((s) => view.texts.get(`${key}.${s}`)).find((t) => t !== undefined);
    if (!text) continue;
    const bare = text.replace(/^@/, "");
    const ends = bare.includes(":") ? bare.split(":") : ["", bare];
    for (const v of ends) {
      if (v !== "" && v !== "~" && !isNaN(Number(v))) lines.push({ name, value: Number(v), colour });
    }
  }
  return lines;
}

// The thresholds to draw on a chart: its keys' rules', and its keys' own metadata.
function thresholdsOf(chart) {
  const lines = [];
  for (const t of view.thresholds) {
    const re = new RegExp(t.regex);
    if (!chart.keys.some((k) => re.test(k))) continue;
    if (t.warn !== null) lines.push({ name: `${t.name} warn`, value: t.warn, colour: "#d08c00" });
    if (t.crit !== null) lines.push({ name: `${t.name} crit`, value: t.crit, colour: "#c62828" });
  }
  for (const k of chart.keys) lines.push(...metaLines(k));
  return lines;
}

function alertsOf(chart) {
  return view.alerts.filter((a) => chart.keys.includes(a.key));
}

// --- charts -----------------------------------------------------------------------------

function makeChart(group, keys) {
  const job = jobOf(group);
  let section = document.querySelector(`section.job[data-job="${CSS.escape(job)}"]`);
  if (!section) {
    section = document.createElement("section");
    section.className = "job";
    section.dataset.job = job;
    section.innerHTML = '<h2></h2><div class="grid"></div>';
    const plugin = view.jobs.get(job);
    section.querySelector("h2").textContent = plugin ? `${job} — ${plugin}` : job;
    $("#charts").appendChild(section);
  }
  const el = document.createElement("div");
  el.className = "chart";
  el.dataset.group = group;
  el.innerHTML = '<h3><span class="title"></span> <span class="states"></span></h3><div class="plot"></div>';
  const title = view.texts.get(`${group}.graph_title`);
  el.querySelector(".title").textContent = title ? `${title} (${group})` : group;
  section.querySelector(".grid").appendChild(el);
  const chart = { group, keys, el, plot: null, points: new Map(), loaded: -1, visible: false };
  el.addEventListener("dblclick", back);
  observer.observe(el);
  return chart;
}

// Loads a chart's range when it is in view and not loaded for this range yet.
async function load(chart) {
  if (!chart.visible || chart.loaded === view.generation || chart.el.hidden) return;
  const generation = view.generation;
  chart.loaded = generation;
  const { from, to, step } = span();
  const reply = await api(`api/range?group=${encodeURIComponent(chart.group)}&from=${from}&to=${to}&step=${step}`)
    .catch(() => null);
  if (!reply || !reply.ok || generation !== view.generation) {
    if (generation === view.generation) chart.loaded = -1;
    return;
  }
  const body = await reply.json();
  chart.points = new Map(body.series.map((s) => [s.key, s.points]));
  draw(chart);
}

// The chart's points as uPlot's columns: one time axis, then per key avg, and beside them
// (not series of their own) min and max for the band.
function columns(chart) {
  const times = new Set();
  for (const points of chart.points.values()) for (const p of points) times.add(p[0]);
  const xs = [...times].sort((a, b) => a - b);
  const at = new Map(xs.map((t, i) => [t, i]));
  const avg = [], lo = [], hi = [];
  for (const key of chart.keys) {
    const a = new Array(xs.length).fill(null), l = a.slice(), h = a.slice();
    for (const [t, v, mn, mx] of chart.points.get(key) ?? []) {
      const i = at.get(t);
      [a[i], l[i], h[i]] = [v, mn, mx];
    }
    avg.push(a); lo.push(l); hi.push(h);
  }
  return { data: [xs, ...avg], lo, hi };
}

function draw(chart) {
  const { data, lo, hi } = columns(chart);
  chart.band = { lo, hi };
  chart.lines = thresholdsOf(chart);
  const { from, to } = span();
  const states = chart.el.querySelector(".states");
  states.replaceChildren(...alertsOf(chart).map((a) => {
    const s = document.createElement("span");
    s.className = `sev ${a.state}`;
    s.textContent = a.state;
    s.title = a.summary;
    return s;
  }));
  if (!chart.plot) {
    chart.plot = new uPlot(options(chart), data, chart.el.querySelector(".plot"));
  } else {
    chart.plot.setData(data);
  }
  chart.plot.setScale("x", { min: from, max: to });
  // What a reader (or a test) can check without reading pixels.
  chart.el.dataset.points = String(data.slice(1).reduce((n, c) => n + c.filter((v) => v !== null).length, 0));
  chart.el.dataset.thresholds = String(chart.lines.length);
  chart.el.dataset.drawn = String(view.generation);
  drawn();
}

function options(chart) {
  const width = Math.max(280, chart.el.clientWidth - 16);
  const unit = view.texts.get(`${chart.group}.graph_vlabel`);
  return {
    width,
    height: 170,
    legend: { live: true },
    cursor: { sync: { key: "spud" }, drag: { x: true, y: false, setScale: false } },
    scales: {
      x: { time: true },
      y: { range: (u, min, max) => yRange(chart, min, max) },
    },
    axes: [{}, { label: unit || undefined, size: 50, values: (u, ticks) => ticks.map(short) }],
    series: [{}, ...chart.keys.map((key, i) => ({
      label: key.slice(chart.group.length + 1) || key,
      stroke: COLOURS[i % COLOURS.length],
      width: 1.5,
      value: (u, v) => (v === null ? "–" : short(v)),
    }))],
    hooks: {
      drawSeries: [(u, i) => band(u, chart, i)],
      draw: [(u) => marks(u, chart)],
      setSelect: [(u) => zoom(u)],
    },
  };
}

// A number in a few characters: 1.2M, 350k, 0.25.
function short(v) {
  const a = Math.abs(v);
  for (const [n, s] of [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
    if (a >= n) return `${+(v / n).toPrecision(3)}${s}`;
  }
  return String(+v.toPrecision(3));
}

// The y range: the data's, widened to the bands and the thresholds.
function yRange(chart, min, max) {
  let lo = min, hi = max;
  for (const column of chart.band?.lo ?? []) for (const v of column) if (v !== null) lo = lo === null ? v : Math.min(lo, v);
  for (const column of chart.band?.hi ?? []) for (const v of column) if (v !== null) hi = hi === null ? v : Math.max(hi, v);
  for (const t of chart.lines ?? []) { lo = Math.min(lo ?? t.value, t.value); hi = Math.max(hi ?? t.value, t.value); }
  if (lo === null || hi === null) return [0, 1];
  return uPlot.rangeNum(lo, hi, 0.1, true);
}

// The minimum to maximum of each step, under series `i`'s line (where a step consolidated
// more than one sample).
function band(u, chart, i) {
  const k = i - 1;
  const lo = chart.band?.lo[k], hi = chart.band?.hi[k];
  if (!lo || !u.series[i].show) return;
  const xs = u.data[0], ctx = u.ctx;
  ctx.save();
  ctx.fillStyle = `${COLOURS[k % COLOURS.length]}33`;
  let run = [];
  const flush = () => {
    if (run.length > 1 && run.some((j) => lo[j] !== hi[j])) {
      ctx.beginPath();
      run.forEach((j, n) => {
        const x = u.valToPos(xs[j], "x", true), y = u.valToPos(hi[j], "y", true);
        n ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
      });
      for (const j of run.slice().reverse()) ctx.lineTo(u.valToPos(xs[j], "x", true), u.valToPos(lo[j], "y", true));
      ctx.closePath();
      ctx.fill();
    }
    run = [];
  };
  xs.forEach((_, j) => (lo[j] === null || hi[j] === null ? flush() : run.push(j)));
  flush();
  ctx.restore();
}

// Thresholds as dashed lines; alert states as a strip along the top from when they began.
function marks(u, chart) {
  const ctx = u.ctx, { left, top, width, height } = u.bbox;
  ctx.save();
  ctx.font = `${Math.round(11 * devicePixelRatio)}px system-ui`;
  ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
  for (const t of chart.lines) {
    const y = u.valToPos(t.value, "y", true);
    if (y < top || y > top + height) continue;
    ctx.strokeStyle = ctx.fillStyle = t.colour;
    ctx.beginPath();
    ctx.moveTo(left, y);
    ctx.lineTo(left + width, y);
    ctx.stroke();
    const label = `${t.name} ${t.value}`;
    ctx.fillText(label, left + width - ctx.measureText(label).width - 4, y - 3);
  }
  ctx.setLineDash([]);
  for (const a of alertsOf(chart)) {
    const x = Math.max(left, u.valToPos(a.since, "x", true));
    if (x >= left + width) continue;
    ctx.fillStyle = { critical: "#c62828", warning: "#f4b400" }[a.state] ?? "#6b5b95";
    ctx.fillRect(x, top, left + width - x, 4 * devicePixelRatio);
  }
  ctx.restore();
}

// A drag across a chart: that span, on every chart.
function zoom(u) {
  if (u.select.width < 5) return;
  const from = Math.floor(u.posToVal(u.select.left, "x"));
  const to = Math.ceil(u.posToVal(u.select.left + u.select.width, "x"));
  u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
  if (to - from < 2) return;
  view.before.push(view.range);
  setRange({ from, to });
}

function back() {
  if (view.before.length) setRange(view.before.pop());
}

function setRange(range) {
  view.range = range;
  view.generation += 1;
  document.querySelectorAll("#ranges button").forEach((b) => {
    b.classList.toggle("on", String(range) === b.dataset.range);
  });
  showSpan();
  view.charts.forEach(load);
}

// The first time every chart in view has drawn: how long the page took (the benchmark
// reads it).
let painted = false;
function drawn() {
  if (painted) return;
  const waiting = [...view.charts.values()].some((c) => c.visible && !c.el.hidden && c.plot === null);
  if (waiting) return;
  painted = true;
  document.body.dataset.firstPaintMs = String(Math.round(performance.now()));
}

const observer = new IntersectionObserver((entries) => {
  for (const e of entries) {
    const chart = view.charts.get(e.target.dataset.group);
    if (!chart) continue;
    chart.visible = e.isIntersecting;
    if (chart.visible && chart.plot && dirty.delete(chart)) draw(chart);
    load(chart);
  }
}, { rootMargin: "200px" });

// Every numeric key into its chart; keys the charts do not have yet make new ones.
function place(keys) {
  const groups = new Map();
  for (const k of keys) {
    if (META.test(k)) continue;
    const g = groupOf(k);
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(k);
  }
  for (const g of [...groups.keys()].sort()) {
    const existing = view.charts.get(g);
    const keys = groups.get(g).sort();
    if (!existing) view.charts.set(g, makeChart(g, keys));
    else if (keys.some((k) => !existing.keys.includes(k))) {
      existing.keys = [...new Set([...existing.keys, ...keys])].sort();
      existing.plot?.destroy();
      existing.plot = null;
      existing.loaded = -1;
      load(existing);
    }
  }
}

async function charts() {
  const reply = await api("api/keys?limit=100000&match=*").catch(() => null);
  if (!reply || !reply.ok) {
    $("#charts-note").textContent = "Could not read the keys.";
    return;
  }
  const body = await reply.json();
  const numeric = [];
  for (const s of body.keys) {
    if (s.number === undefined) view.texts.set(s.key, s.value);
    else if (META.test(s.key)) view.texts.set(s.key, s.value);
    else numeric.push(s.key);
  }
  $("#charts-note").textContent = numeric.length ? "" : "No numeric keys yet.";
  place(numeric);
  filter();
  showSpan();
  follow();
}

// Live: each key's newest value once a second, appended to its chart, redrawn at most once
// a second.
let source = null;
const dirty = new Set();
function follow() {
  source?.close();
  source = new EventSource(withToken("api/stream?every=1s&match=*"));
  source.onopen = () => { $("#live").className = "on"; };
  source.onerror = () => { $("#live").className = "off"; };
  source.onmessage = (e) => {
    const s = JSON.parse(e.data);
    showRow(s, true);
    if (s.number === undefined || META.test(s.key)) {
      view.texts.set(s.key, s.value);
      return;
    }
    const chart = view.charts.get(groupOf(s.key));
    if (!chart || !chart.keys.includes(s.key)) {
      place([s.key]);
      filter();
      return;
    }
    if (view.range !== "live" || chart.loaded !== view.generation) return;
    const points = chart.points.get(s.key) ?? [];
    const { step } = span();
    const t = s.time - (s.time - span().from) % step;
    const last = points[points.length - 1];
    if (last && last[0] === t) {
      last[1] = s.number; last[2] = Math.min(last[2], s.number); last[3] = Math.max(last[3], s.number);
    } else if (!last || last[0] < t) points.push([t, s.number, s.number, s.number]);
    const from = now() - LIVE_SPAN;
    while (points.length && points[0][0] < from) points.shift();
    chart.points.set(s.key, points);
    dirty.add(chart);
  };
}

// Only charts in view are drawn; the others when they come into view.
setInterval(() => {
  if (view.range !== "live") return;
  for (const chart of dirty) {
    if (!chart.visible) continue;
    if (chart.plot) draw(chart);
    dirty.delete(chart);
  }
}, 1000);

// The search: charts whose group or keys contain the text (a `*` matches anything).
function filter() {
  const text = $("#search").value.trim().toLowerCase();
  const re = text.includes("*")
    ? new RegExp(text.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*"))
    : null;
  const shows = (s) => (re ? re.test(s) : s.includes(text));
  for (const chart of view.charts.values()) {
    chart.el.hidden = text !== "" && !shows(chart.group.toLowerCase())
      && !chart.keys.some((k) => shows(k.toLowerCase()));
    if (!chart.el.hidden) load(chart);
  }
  document.querySelectorAll("section.job").forEach((s) => {
    s.hidden = !s.querySelector(".chart:not([hidden])");
  });
}

// --- the table ----------------------------------------------------------------------------

let tableSource = null;

function row(key) {
  let tr = document.querySelector(`#keys tr[data-key="${CSS.escape(key)}"]`);
  if (!tr) {
    tr = document.createElement("tr");
    tr.dataset.key = key;
    tr.innerHTML = '<td class="key"></td><td class="value"></td><td class="time"></td>';
    tr.querySelector(".key").textContent = key;
    tr.addEventListener("click", () => {
      $("#search").value = groupOf(key);
      setView("charts");
      filter();
    });
    $("#keys tbody").appendChild(tr);
  }
  return tr;
}

function showRow(sample, flash) {
  if ($("#table-section").hidden) return;
  const tr = document.querySelector(`#keys tr[data-key="${CSS.escape(sample.key)}"]`);
  if (!tr && flash) return; // not in the table's pattern
  const r = tr ?? row(sample.key);
  r.querySelector(".value").textContent = sample.value;
  r.querySelector(".time").textContent = new Date(sample.time * 1000).toLocaleTimeString();
  if (flash) {
    r.classList.remove("flash");
    void r.offsetWidth; // restart the animation
    r.classList.add("flash");
  }
}

async function find(pattern) {
  tableSource?.close();
  $("#keys tbody").replaceChildren();
  const reply = await api(`api/keys?limit=500&match=${encodeURIComponent(pattern)}`);
  const body = await reply.json();
  if (!reply.ok) {
    $("#count").textContent = body.error;
    return;
  }
  body.keys.forEach((s) => showRow(s, false));
  $("#count").textContent = body.total > body.keys.length
    ? `${body.keys.length} of ${body.total} keys` : `${body.total} keys`;
  tableSource = new EventSource(withToken(`api/stream?every=500ms&match=${encodeURIComponent(pattern)}`));
  tableSource.onmessage = (e) => showRow(JSON.parse(e.data), true);
}

function setView(name) {
  document.querySelectorAll("#views button").forEach((b) => b.classList.toggle("on", b.dataset.view === name));
  $("#charts").hidden = name !== "charts";
  $("#table-section").hidden = name !== "table";
  if (name === "table") find($("#pattern").value || "*");
  else tableSource?.close();
}

// --- alerts, jobs, uptime -----------------------------------------------------------------

async function alerts() {
  const reply = await api("api/alerts").catch(() => null);
  if (!reply || !reply.ok) return;
  const body = await reply.json();
  if (!body.enabled) return; // no rules on this server
  view.thresholds = body.thresholds ?? [];
  view.alerts = body.alerts.sort((a, b) => (SEVERITY[b.state] ?? 0) - (SEVERITY[a.state] ?? 0));
  $("#alerts-section").hidden = false;
  const firing = body.alerts.filter((a) => a.firing).length;
  $("#alerts-count").textContent = body.alerts.length
    ? `${firing} firing, ${body.alerts.length - firing} pending` : "all ok";
  const tbody = $("#alerts tbody");
  tbody.replaceChildren();
  for (const a of body.alerts) {
    const tr = document.createElement("tr");
    tr.dataset.alert = `${a.name}/${a.key}`;
    for (const [cls, text] of [[`sev ${a.state}`, a.state], ["name", a.name], ["key", a.key],
      ["value", a.value ?? "-"], ["since", when(a.since)], ["summary", a.summary]]) {
      const td = document.createElement("td");
      td.className = cls;
      td.textContent = text;
      tr.appendChild(td);
    }
    tr.addEventListener("click", () => {
      $("#search").value = groupOf(a.key);
      setView("charts");
      filter();
    });
    tbody.appendChild(tr);
  }
  for (const chart of view.charts.values()) if (chart.plot && chart.visible) draw(chart);
}

async function jobs() {
  const reply = await api("api/jobs").catch(() => null);
  if (!reply || !reply.ok) return; // not embedded in spud-host
  $("#jobs-section").hidden = false;
  const body = $("#jobs tbody");
  body.replaceChildren();
  for (const job of await reply.json()) {
    view.jobs.set(job.name, job.plugin);
    const tr = document.createElement("tr");
    tr.dataset.job = job.name;
    for (const [field, text] of [["name", job.name], ["state", job.state], ["plugin", job.plugin],
      ["generation", job.generation], ["every", job.every], ["errors", job.errors],
      ["error", job.last_error || ""]]) {
      const td = document.createElement("td");
      td.className = field === "state" ? `state ${text}` : field;
      td.textContent = text;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

async function uptime() {
  const reply = await api("api/uptime").catch(() => null);
  if (!reply || !reply.ok) return;
  const u = await reply.json();
  $("#uptime").textContent = `up ${u.uptime_seconds} s, ${u.keys} keys`;
}

// --- wiring -------------------------------------------------------------------------------

document.querySelectorAll("#ranges button").forEach((b) => b.addEventListener("click", () => {
  view.before = [];
  setRange(b.dataset.range === "live" ? "live" : Number(b.dataset.range));
}));
document.querySelectorAll("#views button").forEach((b) => b.addEventListener("click", () => setView(b.dataset.view)));
$("#search").addEventListener("input", filter);
$("#find").addEventListener("submit", (e) => {
  e.preventDefault();
  find($("#pattern").value || "*");
});
$("#search").value = decodeURIComponent(location.hash.slice(1));
// Live charts slide; others stay where they were asked for.
setInterval(() => {
  if (view.range !== "live") return;
  const { from, to } = span();
  for (const chart of view.charts.values()) {
    if (chart.visible) chart.plot?.setScale("x", { min: from, max: to });
  }
}, 1000);

// A page left (or kept in the back-forward cache) lets go of its streams: a browser has six
// connections to a server, and each stream holds one.
addEventListener("pagehide", () => {
  source?.close();
  tableSource?.close();
});
addEventListener("pageshow", (e) => {
  if (e.persisted) follow();
});

Promise.all([jobs(), alerts()]).then(charts);
uptime();
setInterval(jobs, 5000);
setInterval(alerts, 5000);
setInterval(uptime, 5000);
