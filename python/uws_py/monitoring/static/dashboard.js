// The uws-py live dashboard: polls <base>/data every second with the dashboard token and
// draws the figures on plain canvases. No framework, no build step, nothing from elsewhere.
"use strict";

(function () {
  const base = document.body.dataset.base;
  const POLL_MS = 1000;
  const KEEP = 60; // points per chart: one minute
  const history = { time: [], connections: [], inRate: [], outRate: [], p50: [], p95: [], p99: [], workers: {} };
  let previous = null;
  let token = null;

  const $ = (id) => document.getElementById(id);
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const fmt = (n, digits = 0) => (n === null || n === undefined) ? "–"
    : Number(n).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
  const ms = (n) => n === null ? "> 2500" : fmt(n, n < 1 ? 3 : 1);

  function readToken() {
    const params = new URLSearchParams(location.search);
    const given = params.get("token");
    if (given) {
      sessionStorage.setItem("uws-py-dashboard-token", given);
      params.delete("token");
      const rest = params.toString();
      history_replace(location.pathname + (rest ? "?" + rest : "") + location.hash);
    }
    return sessionStorage.getItem("uws-py-dashboard-token");
  }

  function history_replace(url) {
    try { window.history.replaceState(null, "", url); } catch (e) { /* file:// or sandboxed */ }
  }

  function setNumber(id, value, digits = 0) {
    const el = $(id);
    el.dataset.value = String(value);
    el.textContent = fmt(value, digits);
  }

  function push(series, value) {
    series.push(value);
    if (series.length > KEEP) series.shift();
  }

  function rate(now, before, key, seconds) {
    if (!before || seconds <= 0) return 0;
    return Math.max(now[key] - before[key], 0) / seconds;
  }

  function row(cells) {
    const tr = document.createElement("tr");
    for (const cell of cells) {
      const td = document.createElement("td");
      td.textContent = cell;
      tr.appendChild(td);
    }
    return tr;
  }

  function fill(tableId, rows) {
    const body = $(tableId).querySelector("tbody");
    body.replaceChildren(...rows.map(row));
  }

  function chart(canvasId, lines) {
    const canvas = $(canvasId);
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || canvas.width, height = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(width * ratio)) { canvas.width = Math.round(width * ratio); canvas.height = Math.round(height * ratio); }
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const left = 48, right = 8, top = 8, bottom = 18;
    let max = 0;
    for (const line of lines) for (const v of line.values) if (v !== null && isFinite(v)) max = Math.max(max, v);
    max = max > 0 ? niceCeiling(max) : 1;
    g.strokeStyle = css("--line"); g.fillStyle = css("--muted"); g.lineWidth = 1; g.font = "11px system-ui, sans-serif";
    for (let i = 0; i <= 4; i++) {
      const y = top + (height - top - bottom) * (1 - i / 4);
      g.beginPath(); g.moveTo(left, y); g.lineTo(width - right, y); g.stroke();
      g.textAlign = "right"; g.fillText(fmt(max * i / 4, max < 4 ? 2 : (max % 4 ? 1 : 0)), left - 4, y + 4);
    }
    g.textAlign = "left"; g.fillText(`last ${Math.round(KEEP * POLL_MS / 1000)} s`, left, height - 4);
    for (const line of lines) {
      const n = line.values.length;
      if (n < 2) continue;
      g.strokeStyle = line.color; g.lineWidth = 2; g.beginPath();
      let started = false;
      line.values.forEach((v, i) => {
        if (v === null || !isFinite(v)) { started = false; return; }
        const x = left + (width - left - right) * (i + KEEP - n) / (KEEP - 1);
        const y = top + (height - top - bottom) * (1 - v / max);
        if (started) g.lineTo(x, y); else { g.moveTo(x, y); started = true; }
      });
      g.stroke();
    }
  }

  function niceCeiling(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  const WORKER_COLORS = ["#2f6fdf", "#e2731c", "#2e9b5f", "#8e44ad", "#c43d3d", "#16a2b8", "#7f8c8d", "#d9a21b"];

  function render(data) {
    const t = data.totals;
    const seconds = previous ? data.time - previous.data.time : 0;
    const inRate = rate(t, previous && previous.data.totals, "messages_in", seconds);
    const outRate = rate(t, previous && previous.data.totals, "messages_out", seconds);
    setNumber("connections", t.connections);
    setNumber("messages-in", t.messages_in);
    setNumber("messages-out", t.messages_out);
    $("messages-in-rate").textContent = previous ? fmt(inRate, 1) : "…";
    $("messages-out-rate").textContent = previous ? fmt(outRate, 1) : "…";
    setNumber("drops", t.drops);
    setNumber("backpressure-events", t.backpressure_events);
    setNumber("rate-limited", t.rate_limited);
    $("rate-limited-rate").textContent = fmt(rate(t, previous && previous.data.totals, "rate_limited", seconds), 1);
    setNumber("auth-failures", t.auth_failures);
    setNumber("refused-connections", t.refused_connections);
    setNumber("recoveries", t.recoveries);
    const outcomes = Object.entries(t.recoveries_by_outcome).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${fmt(v)}`);
    $("recoveries-by-outcome").textContent = outcomes.length ? outcomes.join(", ") : "none yet";
    setNumber("errors", t.errors);

    const all = data.latency["*"];
    push(history.connections, t.connections);
    push(history.inRate, previous ? inRate : null);
    push(history.outRate, previous ? outRate : null);
    push(history.p50, all.count ? all.p50 : null);
    push(history.p95, all.count ? all.p95 : null);
    push(history.p99, all.count ? all.p99 : null);
    const workerRows = [];
    for (const w of data.workers) {
      const before = previous && previous.workers[w.worker];
      const series = history.workers[w.worker] || (history.workers[w.worker] = []);
      push(series, w.connections);
      workerRows.push([w.worker, w.live ? String(w.pid) : "gone", fmt(w.connections),
        fmt(rate(w, before, "messages_in", seconds), 1), fmt(rate(w, before, "messages_out", seconds), 1), fmt(w.restarts)]);
    }
    fill("workers", workerRows);
    fill("latency", Object.entries(data.latency).filter(([k]) => k !== "*")
      .map(([k, v]) => [k, fmt(v.count), ms(v.p50), ms(v.p95), ms(v.p99)]));
    fill("topics", data.topics.map(([topic, n]) => [topic, fmt(n)]));

    chart("chart-connections", [{ values: history.connections, color: css("--in") }]);
    chart("chart-messages", [{ values: history.inRate, color: css("--in") }, { values: history.outRate, color: css("--out") }]);
    chart("chart-latency", [{ values: history.p50, color: css("--p50") }, { values: history.p95, color: css("--p95") },
      { values: history.p99, color: css("--p99") }]);
    chart("chart-workers", Object.keys(history.workers).sort().map((k, i) => ({ values: history.workers[k], color: WORKER_COLORS[i % WORKER_COLORS.length] })));

    const live = data.workers.filter((w) => w.live).length;
    $("status").textContent = `${live} worker${live === 1 ? "" : "s"} · updated ${new Date(data.time * 1000).toLocaleTimeString()}`;
    $("status").dataset.updated = String(data.time);
    previous = { data, workers: Object.fromEntries(data.workers.map((w) => [w.worker, w])) };
  }

  function showLogin(message) {
    $("board").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("status").textContent = "token needed";
  }

  async function poll() {
    if (!token) { showLogin(); return; }
    try {
      const response = await fetch(base + "/data", { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
      if (response.status === 401) {
        sessionStorage.removeItem("uws-py-dashboard-token");
        token = null;
        showLogin("that token was refused");
        return;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const data = await response.json();
      $("login").hidden = true;
      $("board").hidden = false;
      render(data);
    } catch (error) {
      $("status").textContent = `no answer (${error.message}); retrying`;
    }
    setTimeout(poll, POLL_MS);
  }

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token").value.trim();
    if (token) { sessionStorage.setItem("uws-py-dashboard-token", token); poll(); }
  });

  token = readToken();
  poll();
})();
