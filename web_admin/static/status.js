// Status page: refresh the figures from /status.json and draw two small SVG charts.
// No libraries: the admin serves everything itself and runs under a strict CSP.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  // The plot takes the top of the chart; the time axis and its labels the AXIS px below.
  const W = 400, H = 136, PAD = 4, AXIS = 16, PLOT = H - AXIS;
  // Every fetch is built from the page's origin, which never holds credentials: a page
  // opened as http://user:pass@host:8081/ would otherwise resolve "/status.json" to a URL
  // with the credentials in it, which browsers refuse to fetch. The browser still sends
  // the login it was given for this origin (credentials: "same-origin").
  const STATUS_URL = new URL("/status.json", window.location.origin).href;

  function fmt(value, kind) {
    if (value === null || value === undefined) return "–";
    if (kind === "text") return String(value);
    if (kind === "ratio") return (value * 100).toFixed(1) + " %";
    if (kind === "rate") return value < 10 ? value.toFixed(2) : value.toFixed(0);
    if (kind === "bytes") {
      const units = ["B", "KiB", "MiB", "GiB", "TiB"];
      let i = 0;
      while (value >= 1024 && i < units.length - 1) { value /= 1024; i++; }
      return (i ? value.toFixed(1) : value) + " " + units[i];
    }
    return Number(value).toLocaleString();
  }

  function lookup(doc, path) {
    return path.split(".").reduce((o, k) => (o === null || o === undefined ? o : o[k]), doc);
  }

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Draw points [{age_s, value}] as a line over the window; fixedMax pins the scale (ratio).
  function chart(svg, points, windowS, fixedMax, kind) {
    svg.replaceChildren();
    const values = points.filter((p) => p.value !== null);
    const max = fixedMax || Math.max(1, ...values.map((p) => p.value)) * 1.15;
    const x = (age) => W - PAD - ((-age) / windowS) * (W - 2 * PAD);
    const y = (v) => PLOT - PAD - (v / max) * (PLOT - 2 * PAD);
    timeAxis(svg, windowS, x);
    for (const f of [0.25, 0.5, 0.75]) {
      svg.appendChild(el("line", { x1: 0, x2: W, y1: y(max * f), y2: y(max * f), class: "grid" }));
    }
    if (values.length === 0) {
      svg.appendChild(el("text", { x: W / 2, y: PLOT / 2, class: "nodata" }, "collecting samples…"));
      return;
    }
    // A null value (no traffic to the cache) breaks the line instead of drawing zero.
    let segment = [];
    const flush = () => {
      if (segment.length > 1) {
        const d = segment.map((p, i) => (i ? "L" : "M") + x(p.age_s).toFixed(1) + "," + y(p.value).toFixed(1)).join(" ");
        const area = d + " L" + x(segment[segment.length - 1].age_s).toFixed(1) + "," + (PLOT - PAD) + " L" + x(segment[0].age_s).toFixed(1) + "," + (PLOT - PAD) + " Z";
        svg.appendChild(el("path", { d: area, class: "area" }));
        svg.appendChild(el("path", { d, class: "line" }));
      } else if (segment.length === 1) {
        svg.appendChild(el("circle", { cx: x(segment[0].age_s), cy: y(segment[0].value), r: 2, class: "dot" }));
      }
      segment = [];
    };
    for (const p of points) { if (p.value === null) flush(); else segment.push(p); }
    flush();
    const last = values[values.length - 1].value;
    svg.appendChild(el("text", { x: W - PAD - 2, y: 14, class: "label" }, fmt(last, kind)));
    svg.appendChild(el("text", { x: PAD + 2, y: 14, class: "scale" }, "max " + fmt(max, kind)));
  }

  // The time axis: a base line and five ticks over the window, each labelled with the
  // clock time it stands for (the last one "now").
  function timeAxis(svg, windowS, x) {
    svg.appendChild(el("line", { x1: PAD, x2: W - PAD, y1: PLOT, y2: PLOT, class: "axis" }));
    const now = Date.now();
    const ticks = [1, 0.75, 0.5, 0.25, 0];
    ticks.forEach((f, i) => {
      const age = -windowS * f;
      const at = x(age);
      svg.appendChild(el("line", { x1: at, x2: at, y1: PLOT, y2: PLOT + 3, class: "axis" }));
      const when = f === 0 ? "now" : new Date(now + age * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      const anchor = i === 0 ? "start" : i === ticks.length - 1 ? "end" : "middle";
      svg.appendChild(el("text", { x: at, y: H - 2, class: "tick tick-" + anchor, "data-axis": "time" }, when));
    });
  }

  function originsTable(tbody, origins) {
    const rows = origins.map((o) => {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      const code = document.createElement("code");
      code.textContent = o.origin;
      td.appendChild(code);
      tr.appendChild(td);
      for (const key of ["idle", "in_use", "created", "reused", "expired", "h2_connections",
        "h2_streams_in_flight", "waiting", "h2_goaways", "h2_unprocessed", "h2_window_stalls"]) {
        const cell = document.createElement("td");
        cell.className = "num";
        cell.textContent = o[key] === undefined ? "" : fmt(o[key], "int");
        tr.appendChild(cell);
      }
      return tr;
    });
    if (rows.length === 0) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 12; td.className = "empty"; td.textContent = "No origin connections yet.";
      tr.appendChild(td);
      rows.push(tr);
    }
    tbody.replaceChildren(...rows);
  }

  function eventsTable(tbody, events) {
    const rows = (events || []).map((e) => {
      const tr = document.createElement("tr");
      const cells = [
        e.at, e.origin, e.message, String(e.repeats),
      ];
      cells.forEach((text, i) => {
        const td = document.createElement("td");
        if (i === 1) {
          const code = document.createElement("code");
          code.textContent = text;
          td.appendChild(code);
        } else {
          td.textContent = text;
        }
        if (i === 0) td.className = "muted";
        if (i === 3) td.className = "num";
        tr.appendChild(td);
      });
      return tr;
    });
    if (rows.length === 0) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 4; td.className = "empty";
      td.textContent = "No cap was hit: no idle list full, eviction, queueing or timeout.";
      tr.appendChild(td);
      rows.push(tr);
    }
    tbody.replaceChildren(...rows);
  }

  function render(doc) {
    for (const node of document.querySelectorAll("[data-stat]")) {
      node.textContent = fmt(lookup(doc, node.dataset.stat), node.dataset.format);
    }
    const windowS = doc.window_s;
    chart(document.getElementById("chart-rps"),
      doc.series.map((p) => ({ age_s: p.age_s, value: p.rps })), windowS, 0, "rate");
    chart(document.getElementById("chart-hit"),
      doc.series.map((p) => ({ age_s: p.age_s, value: p.hit_ratio })), windowS, 1, "ratio");
    originsTable(document.getElementById("origins"), doc.pool.origins);
    eventsTable(document.getElementById("pool-events"), doc.pool.events);
  }

  async function refresh() {
    const live = document.getElementById("live");
    try {
      const res = await fetch(STATUS_URL, { credentials: "same-origin", cache: "no-store" });
      if (!res.ok) throw new Error("HTTP " + res.status);
      render(await res.json());
      live.textContent = "live · " + new Date().toLocaleTimeString();
      live.classList.remove("stale");
    } catch (err) {
      live.textContent = "not updating (" + err.message + ")";
      live.classList.add("stale");
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const interval = Number(document.getElementById("live").dataset.interval) || 5;
    refresh();
    setInterval(refresh, interval * 1000);
  });
})();
