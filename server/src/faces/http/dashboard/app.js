// The SPUD dashboard: keys by pattern with values updating live (server-sent events,
// coalesced to one update per key every half second), a plot of the selected key's
// history, the alerts that are not ok (click one to plot its key with the rule's thresholds),
// and spud-host's jobs when the server is embedded in it. No libraries.
"use strict";

const $ = (sel) => document.querySelector(sel);
const HISTORY = 100;
let source = null;
let selected = null;
let history = [];
// The thresholds drawn on the plot: set when the key was picked from the alerts panel.
let thresholds = [];
// The y axis' unit, from the collector's metadata.
let unit = "";

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

function when(t) {
  return new Date(t * 1000).toLocaleTimeString();
}

function row(key) {
  let tr = document.querySelector(`#keys tr[data-key="${CSS.escape(key)}"]`);
  if (!tr) {
    tr = document.createElement("tr");
    tr.dataset.key = key;
    tr.innerHTML = '<td class="key"></td><td class="value"></td><td class="time"></td>';
    tr.querySelector(".key").textContent = key;
    tr.addEventListener("click", () => select(key));
    $("#keys tbody").appendChild(tr);
  }
  return tr;
}

function show(sample, flash) {
  const tr = row(sample.key);
  tr.querySelector(".value").textContent = sample.value;
  tr.querySelector(".time").textContent = when(sample.time);
  if (flash) {
    tr.classList.remove("flash");
    void tr.offsetWidth; // restart the animation
    tr.classList.add("flash");
  }
}

async function find(pattern) {
  location.hash = encodeURIComponent(pattern);
  if (source) source.close();
  $("#keys tbody").replaceChildren();
  const reply = await api(`api/keys?limit=500&match=${encodeURIComponent(pattern)}`);
  const body = await reply.json();
  if (!reply.ok) {
    $("#count").textContent = body.error;
    return;
  }
  body.keys.forEach((s) => show(s, false));
  $("#count").textContent = body.total > body.keys.length
    ? `${body.keys.length} of ${body.total} keys` : `${body.total} keys`;
  source = new EventSource(withToken(`api/stream?every=500ms&match=${encodeURIComponent(pattern)}`));
  source.onopen = () => { $("#live").className = "on"; };
  source.onerror = () => { $("#live").className = "off"; };
  source.onmessage = (e) => {
    const sample = JSON.parse(e.data);
    show(sample, true);
    if (sample.key === selected) {
      history.push(sample);
      if (history.length > HISTORY) history.shift();
      plot();
    }
  };
}

// The newest text of a key, or null (metadata that may not exist).
async function newestText(key) {
  const reply = await api(`api/history/${encodeURIComponent(key)}`).catch(() => null);
  if (!reply || !reply.ok) return null;
  const body = await reply.json();
  return body.history.length ? body.history[0].value : null;
}

// Ranges a collector published beside the key (munin's `warning`/`critical`, Nagios'
// `warn`/`crit`), as lines at their finite ends.
function rangeLines(text, name, colour) {
  if (!text) return [];
  const [lo, hi] = text.replace(/^@/, "").includes(":") ? text.replace(/^@/, "").split(":") : ["", text];
  return [lo, hi].filter((v) => v !== "" && v !== "~" && !isNaN(Number(v)))
    .map((v) => ({ name, value: Number(v), colour }));
}

async function select(key, lines = []) {
  selected = key;
  thresholds = lines;
  unit = "";
  document.querySelectorAll("#keys tr.selected").forEach((tr) => tr.classList.remove("selected"));
  row(key).classList.add("selected");
  $("#plot-title").textContent = key;
  const reply = await api(`api/history/${encodeURIComponent(key)}`);
  if (!reply.ok) return;
  history = (await reply.json()).history.reverse();
  plot();
  // A collector's graph metadata (munin's graph_title, field label, vlabel) names the plot.
  const graph = key.includes(".") ? key.slice(0, key.lastIndexOf(".")) : key;
  const [title, label, vlabel, warning, critical] = await Promise.all([
    newestText(`${graph}.graph_title`), newestText(`${key}.label`), newestText(`${graph}.graph_vlabel`),
    newestText(`${key}.warning`).then((w) => w ?? newestText(`${key}.warn`)),
    newestText(`${key}.critical`).then((c) => c ?? newestText(`${key}.crit`)),
  ]);
  if (selected !== key) return;
  if (title) $("#plot-title").textContent = `${title}${label ? ` — ${label}` : ""} (${key})`;
  unit = vlabel || "";
  if (!lines.length) {
    thresholds = rangeLines(warning, "warning", "#d08c00").concat(rangeLines(critical, "critical", "#c62828"));
  }
  plot();
}

function plot() {
  const canvas = $("#plot");
  const g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 44;
  g.clearRect(0, 0, w, h);
  const points = history.filter((s) => s.number !== undefined);
  g.fillStyle = "#555";
  g.font = "12px system-ui";
  if (points.length === 0) {
    g.fillText(history.length ? "not a number" : "no history", pad, h / 2);
    return;
  }
  const t0 = points[0].time, t1 = points[points.length - 1].time;
  const levels = points.map((p) => p.number).concat(thresholds.map((t) => t.value));
  let lo = Math.min(...levels);
  let hi = Math.max(...levels);
  if (lo === hi) { lo -= 1; hi += 1; }
  const x = (t) => pad + (t1 === t0 ? (w - 2 * pad) / 2 : (t - t0) / (t1 - t0) * (w - 2 * pad));
  const y = (v) => h - pad + (pad - h + pad) * (v - lo) / (hi - lo);
  g.strokeStyle = "#ccc";
  g.strokeRect(pad, pad / 2, w - 2 * pad, h - 1.5 * pad);
  g.fillText(String(hi), 2, y(hi) + 4);
  if (unit) g.fillText(unit, 2, pad / 2 - 4);
  g.fillText(String(lo), 2, y(lo));
  g.fillText(when(t0), pad, h - pad / 3);
  g.fillText(when(t1), w - pad - 60, h - pad / 3);
  g.strokeStyle = "#2b6cb0";
  g.lineWidth = 2;
  g.beginPath();
  points.forEach((p, i) => (i ? g.lineTo(x(p.time), y(p.number)) : g.moveTo(x(p.time), y(p.number))));
  g.stroke();
  g.fillStyle = "#2b6cb0";
  points.forEach((p) => g.fillRect(x(p.time) - 2, y(p.number) - 2, 4, 4));
  g.setLineDash([6, 4]);
  g.lineWidth = 1.5;
  for (const t of thresholds) {
    g.strokeStyle = g.fillStyle = t.colour;
    g.beginPath();
    g.moveTo(pad, y(t.value));
    g.lineTo(w - pad, y(t.value));
    g.stroke();
    g.fillText(`${t.name} ${t.value}`, pad + 4, y(t.value) - 4);
  }
  g.setLineDash([]);
}

async function alerts() {
  const reply = await api("api/alerts").catch(() => null);
  if (!reply || !reply.ok) return;
  const body = await reply.json();
  if (!body.enabled) return; // no rules on this server
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
    const lines = [];
    if (a.warn_threshold !== null) lines.push({ name: "warn", value: a.warn_threshold, colour: "#d08c00" });
    if (a.crit_threshold !== null) lines.push({ name: "crit", value: a.crit_threshold, colour: "#c62828" });
    tr.addEventListener("click", () => select(a.key, lines));
    tbody.appendChild(tr);
  }
}

async function jobs() {
  const reply = await api("api/jobs").catch(() => null);
  if (!reply || !reply.ok) return; // not embedded in spud-host
  $("#jobs-section").hidden = false;
  const body = $("#jobs tbody");
  body.replaceChildren();
  for (const job of await reply.json()) {
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
  $("#uptime").textContent = `up ${u.uptime_seconds} s, ${u.keys} keys, ${u.subscriptions} subscriptions`;
}

$("#find").addEventListener("submit", (e) => {
  e.preventDefault();
  find($("#pattern").value || "*");
});
$("#pattern").value = decodeURIComponent(location.hash.slice(1)) || "*";
find($("#pattern").value);
jobs();
uptime();
alerts();
setInterval(jobs, 2000);
setInterval(alerts, 2000);
setInterval(uptime, 5000);
