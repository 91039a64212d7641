// bms-bridge status page: renders /api/state (polled at the daemon's poll interval) and
// /api/history (CSV, once a minute) into the DOM. No libraries, no network beyond this daemon.
"use strict";

const NEAR_LIMIT_V = 0.05; // a cell this close to the configured min or max cell voltage is highlighted
let pollMs = 1000;
let lastGood = 0; // Date.now() of the last state received
let history = {}; // battery id -> array of rows (objects keyed by the CSV header)

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}
const fmt = (v, digits, unit) => (typeof v === "number" && isFinite(v) ? v.toFixed(digits) + " " + unit : "—");
const words = (name) => name.replace(/_/g, " ");
function duration(s) {
  if (typeof s !== "number" || !isFinite(s)) return "—";
  if (s < 120) return s.toFixed(0) + " s";
  if (s < 7200) return (s / 60).toFixed(0) + " min";
  if (s < 172800) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " d";
}

function statusOf(b) {
  if (b.stale) return ["stale", "STALE: no update for " + duration(b.age_s)];
  if (!b.state.connected) return ["lost", "LOST: BMS not answering"];
  return ["online", "online"];
}

function cellBars(b) {
  const s = b.state;
  const cells = s.cells || [];
  if (!cells.length) return "";
  const box = el("div", { class: "cells measure" });
  const vs = cells.map((c) => c.voltage);
  const w = b.cell_window;
  const minV = Math.min(...vs), maxV = Math.max(...vs);
  // Scaled to the spread, so that 5 mV between cells is visible; the exact value is on each bar.
  const lo = minV - Math.max(0.02, 2 * (maxV - minV)), hi = maxV + 0.005;
  cells.forEach((c, i) => {
    const classes = ["cell"];
    if (c.voltage === minV) classes.push("min");
    if (c.voltage === maxV) classes.push("max");
    if (c.balance) classes.push("balancing");
    if (w && c.voltage >= w.max_v - NEAR_LIMIT_V) classes.push("near-high");
    if (w && c.voltage <= w.min_v + NEAR_LIMIT_V) classes.push("near-low");
    const bar = el("span", { class: "bar" });
    bar.style.height = Math.max(2, ((c.voltage - lo) / (hi - lo)) * 100) + "%";
    const title = "cell " + (i + 1) + ": " + c.voltage.toFixed(3) + " V" + (c.balance ? ", balancing" : "");
    box.append(el("div", { class: classes.join(" "), "data-cell": i + 1, "data-v": c.voltage, title },
      bar, el("span", { class: "v" }, c.voltage.toFixed(3)), el("span", { class: "n" }, String(i + 1))));
  });
  return box;
}

function summary(b) {
  const s = b.state;
  const item = (key, label, text) => el("div", { "data-field": key }, el("span", { class: "k" }, label), el("b", {}, text));
  const temps = Object.keys(s).filter((k) => /^temperature_/.test(k))
    .map((k) => words(k.replace("temperature_", "")) + ": " + s[k].toFixed(1) + " °C");
  const fet = (v) => (v === undefined ? "?" : v ? "on" : "OFF");
  return el("div", { class: "summary measure" },
    item("soc", "SoC", fmt(s.soc, 1, "%")),
    item("voltage", "Voltage", fmt(s.voltage, 2, "V")),
    item("current", "Current", fmt(s.current, 1, "A")),
    item("power", "Power", fmt(s.power, 0, "W")),
    item("cell_min", "Lowest cell", fmt(s.cell_min, 3, "V")),
    item("cell_max", "Highest cell", fmt(s.cell_max, 3, "V")),
    item("cell_delta", "Spread", typeof s.cell_delta === "number" ? (s.cell_delta * 1000).toFixed(0) + " mV" : "—"),
    item("fets", "FETs chg/dis/bal", fet(s.charge_fet) + " / " + fet(s.discharge_fet) + " / " + fet(s.balance_fet)),
    el("div", { "data-field": "temperatures", class: "wide" }, el("span", { class: "k" }, "Temperatures"),
      el("b", {}, temps.length ? temps.join(", ") : "—")));
}

function limits(b) {
  const s = b.state, c = b.control || {};
  // A bank's pack publishes no limits of its own: the bank's apply.
  const why = (v, reason) => (typeof v !== "number" && b.kind === "pack" ? "not published: the bank's limits apply" : reason || "");
  const row = (key, label, value, reason) =>
    el("tr", { "data-limit": key }, el("th", {}, label), el("td", { class: "value" }, value), el("td", { class: "reason" }, reason));
  return el("table", { class: "limits" },
    row("cvl", "CVL", fmt(s.cvl, 2, "V"), why(s.cvl, s.charge_phase)),
    row("ccl", "CCL", fmt(s.ccl, 1, "A"), why(s.ccl, s.charge_limitation)),
    row("dcl", "DCL", fmt(s.dcl, 1, "A"), why(s.dcl, s.discharge_limitation)),
    row("timers", "Timers", "", "since full charge " + duration(c.since_full_charge_s) +
      (typeof c.time_to_go_s === "number" ? ", time to go " + duration(c.time_to_go_s) : "")));
}

function alarms(b) {
  const p = b.state.protection || {};
  const box = el("div", { class: "alarms" });
  for (const [name, level] of Object.entries(p)) {
    if (level > 0) box.append(el("span", { class: "alarm " + (level >= 2 ? "alarm" : "warning"), "data-alarm": name },
      words(name) + (level >= 2 ? " (alarm)" : " (warning)")));
  }
  if (!box.childElementCount) box.append(el("span", { class: "k" }, "no alarms"));
  return box;
}

function link(b) {
  const l = b.link;
  if (!l) return el("div", { class: "sub link" }, b.connection);
  return el("div", { class: "sub link", "data-errors": l.errors_last_hour },
    b.connection + " · last good reply " + (l.last_good_age_s === null ? "never" : duration(l.last_good_age_s) + " ago") +
    " · " + l.errors_last_hour + " errors in the last hour" + (l.last_error ? " · last: " + l.last_error : ""));
}

function packs(b) {
  if (!b.packs || !b.packs.length) return "";
  const total = b.packs.reduce((a, p) => a + (p.member && typeof p.current === "number" ? Math.abs(p.current) : 0), 0);
  const rated = b.packs.reduce((a, p) => a + (p.member && p.charge_rating ? p.charge_rating : 0), 0);
  const t = el("table", { class: "packs" }, el("tr", {}, el("th", {}, "Pack"), el("th", {}, "Current"), el("th", {}, "Share vs rating")));
  for (const p of b.packs) {
    const share = total > 0 && typeof p.current === "number" ? Math.abs(p.current) / total : 0;
    const ratingShare = rated > 0 && p.charge_rating ? p.charge_rating / rated : null;
    const track = el("span", { class: "track" }, el("i"));
    track.firstChild.style.width = (share * 100).toFixed(1) + "%";
    if (ratingShare !== null) { const u = el("u"); u.style.left = (ratingShare * 100).toFixed(1) + "%"; track.append(u); }
    t.append(el("tr", { "data-pack": p.name }, el("td", {}, p.name + (p.member ? "" : " (out)")),
      el("td", { class: "value" }, fmt(p.current, 1, "A")),
      el("td", {}, el("span", { class: "share" }, track, (share * 100).toFixed(0) + "%" +
        (ratingShare === null ? "" : " / " + (ratingShare * 100).toFixed(0) + "% of rating")))));
  }
  return t;
}

const SVG = "http://www.w3.org/2000/svg";
function chart(rows, series, unit) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 400 90");
  svg.setAttribute("preserveAspectRatio", "none");
  const pts = rows.map((r) => series.map((s) => r[s.key]));
  const all = pts.flat().filter((v) => isFinite(v));
  if (rows.length < 1 || !all.length) return el("div", { class: "legend" }, "no history yet");
  const t0 = rows[0].unix_time, t1 = Math.max(rows[rows.length - 1].unix_time, t0 + 60);
  let lo = Math.min(...all), hi = Math.max(...all);
  if (hi - lo < 1e-6) { lo -= 1; hi += 1; }
  const x = (t) => ((t - t0) / (t1 - t0)) * 400, y = (v) => 85 - ((v - lo) / (hi - lo)) * 80;
  series.forEach((s, i) => {
    let d = "", pen = "M";
    rows.forEach((r, j) => {
      const v = pts[j][i];
      if (isFinite(v)) { d += pen + x(r.unix_time).toFixed(1) + " " + y(v).toFixed(1) + " "; pen = "L"; } else pen = "M";
    });
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", d); path.setAttribute("fill", "none"); path.setAttribute("stroke", s.color);
    path.setAttribute("stroke-width", "1.5"); path.setAttribute("vector-effect", "non-scaling-stroke");
    path.setAttribute("data-series", s.key);
    svg.append(path);
  });
  const legend = el("div", { class: "legend" }, series.map((s) => s.label).join(", ") + " · " +
    lo.toFixed(2) + " to " + hi.toFixed(2) + " " + unit + " · " + ((t1 - t0) / 3600).toFixed(1) + " h");
  return el("div", {}, svg, legend);
}

function charts(b) {
  const rows = history[b.id] || [];
  return el("div", { class: "charts" },
    chart(rows, [{ key: "voltage_v", label: "pack V", color: "#1976d2" }, { key: "cvl_v", label: "CVL", color: "#c62828" }], "V"),
    chart(rows, [{ key: "current_a", label: "current", color: "#1976d2" }, { key: "ccl_a", label: "CCL", color: "#2e7d32" },
      { key: "dcl_a", label: "−DCL", color: "#ef6c00" }], "A"),
    chart(rows, [{ key: "cell_min_v", label: "lowest cell", color: "#5c6bc0" }, { key: "cell_max_v", label: "highest cell", color: "#00897b" }], "V"),
    chart(rows, [{ key: "soc_percent", label: "SoC", color: "#6a1b9a" }], "%"));
}

function render(data) {
  const main = document.getElementById("batteries");
  const sections = data.batteries.map((b) => {
    const [status, text] = statusOf(b);
    return el("section", { class: "battery", "data-id": b.id, "data-kind": b.kind, "data-status": status },
      el("h2", {}, el("span", { class: "name" }, b.name), el("span", { class: "status" }, text)),
      link(b), summary(b), cellBars(b), alarms(b), limits(b), packs(b), charts(b));
  });
  if (!sections.length) sections.push(el("p", { class: "hint" }, "No battery has reported yet."));
  main.replaceChildren(...sections);
}

function setLive(state, text) {
  const live = document.getElementById("live");
  live.dataset.live = state;
  live.textContent = text;
}

async function pollState() {
  try {
    const r = await fetch("/api/state", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    const data = await r.json();
    pollMs = Math.max(250, data.poll_interval_ms || 1000);
    lastGood = Date.now();
    render(data);
    setLive("live", "live · every " + (pollMs / 1000).toFixed(2) + " s");
  } catch (e) {
    // The daemon does not answer: everything shown is old, and says so.
    if (Date.now() - lastGood > 3 * pollMs) {
      setLive("lost", "no answer from bms-bridge since " + (lastGood ? new Date(lastGood).toLocaleTimeString() : "the start"));
      document.querySelectorAll("section.battery").forEach((s) => (s.dataset.status = "stale"));
    }
  }
  setTimeout(pollState, pollMs);
}

function parseCsv(text) {
  const lines = text.trim().split("\n");
  const head = (lines.shift() || "").split(",");
  const out = {};
  for (const line of lines) {
    const cells = line.split(","), row = {};
    head.forEach((h, i) => (row[h] = h === "battery" || h === "utc" ? cells[i] : cells[i] === "" ? NaN : Number(cells[i])));
    row.dcl_a = -row.dcl_a; // drawn below zero, with the current
    (out[row.battery] = out[row.battery] || []).push(row);
  }
  return out;
}

async function pollHistory() {
  try {
    const r = await fetch("/api/history?hours=24", { cache: "no-store" });
    if (r.ok) history = parseCsv(await r.text());
  } catch (e) { /* the state poll reports a lost daemon */ }
  setTimeout(pollHistory, 60000);
}

pollHistory().then(pollState);
