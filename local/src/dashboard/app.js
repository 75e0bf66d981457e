// Golem Timeline dashboard: jobs, plans, every worker's timeline for a key,
// aggregates. Plain JS and SVG, served by `timeline serve`; no dependencies.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const SVG = "http://www.w3.org/2000/svg";
const main = $("#main");
let view = null; // the current view: { refresh() } re-reads its data

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, body) {
    const error = body && body.error ? body.error : {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.error = error;
    this.body = body;
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  const token = localStorage.getItem("timelineToken");
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = text; }
  if (response.status === 401) askForToken();
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

function askForToken() {
  const button = $("#token-button");
  button.hidden = false;
  if (!$("#token-form")) {
    const form = el("div", { id: "token-form", class: "panel" }, [
      el("b", {}, "This server needs a token. "),
      el("input", { id: "token-input", type: "password", placeholder: "bearer token" }),
      el("button", { onclick: () => { localStorage.setItem("timelineToken", $("#token-input").value); location.reload(); } }, "Use"),
    ]);
    main.prepend(form);
  }
}

// ---------------------------------------------------------------- helpers

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const child of [].concat(children)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}, children = []) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, v);
  for (const child of [].concat(children)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const enc = encodeURIComponent;
const operatorOf = (id) => id.slice(0, id.lastIndexOf("-"));
const NUMERIC = new Set(["duration_where", "duration_in_cur_state", "count_where"]);
const rowKind = (id) => NUMERIC.has(operatorOf(id)) ? "numeric" : operatorOf(id) === "latest_event_to_state" ? "state" : "bool";
const fmtValue = (v) => v === null || v === undefined ? "unknown" : typeof v === "string" ? JSON.stringify(v) : String(v);

function fmtTime(t) {
  if (Math.abs(t) > 1e11) {
    const d = new Date(t);
    return d.toISOString().slice(11, 23);
  }
  return Math.abs(t) >= 10000 ? `${(t / 1000).toFixed(t % 1000 ? 1 : 0)}s` : `${t}ms`;
}

function colorOf(value) {
  const text = String(value);
  let h = 0;
  for (let i = 0; i < text.length; i++) h = (h * 31 + text.charCodeAt(i)) >>> 0;
  return `hsl(${h % 360}, 52%, 46%)`;
}

function errorBox(e) {
  return el("div", { class: "error-box" }, e.message || String(e));
}

/** The value of a timeline (its spans) at `t`; null is Unknown. */
function valueAt(spans, t) {
  for (const s of spans) {
    if (s.start <= t && (s.end === null || t < s.end)) {
      if (s.value === null) return null;
      return s.rising ? s.value + (t - s.start) : s.value;
    }
  }
  return null;
}

// ---------------------------------------------------------------- routing

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "jobs" && parts[1]) {
    const job = parts[1];
    if (parts[2] === "plan") return show(planView(job), job, "plan");
    if (parts[2] === "keys") return show(keyView(job, parts[3] || ""), job, "keys");
    if (parts[2] === "aggregates") return show(aggregatesView(job), job, "aggregates");
  }
  if (parts[0] === "streams") return show(streamsView(parts[1] || ""), null, "streams");
  show(jobsView(), null, "jobs");
}

function show(next, job, tab) {
  view = next;
  const nav = $("#nav");
  nav.replaceChildren(
    el("a", { href: "#/", class: tab === "jobs" ? "active" : "" }, "Jobs"),
    el("a", { href: "#/streams", class: tab === "streams" ? "active" : "", "data-tab": "streams" }, "Streams"),
  );
  if (job) {
    for (const [name, label] of [["plan", "Plan"], ["keys", "Key view"]]) {
      nav.append(el("a", { href: `#/jobs/${enc(job)}/${name}`, class: tab === name ? "active" : "", "data-tab": name }, `${label} · ${job}`));
    }
    aggregatesTab(nav, job, tab === "aggregates", () => view === next);
  }
  main.replaceChildren(next.root);
  next.refresh();
}

// ---------------------------------------------------------------- jobs

const CIRR = `// Connection-induced rebuffering on CDN1
duration_where(
  has_existed(playerStateChange == "play")
  && !has_existed_within(userAction == "seek", 5s)
  && latest_event_to_state(playerStateChange) == "buffer"
  && latest_event_to_state(cdnChange) == "CDN1")`;

function jobsView() {
  const list = el("div", { id: "jobs" });
  const name = el("input", { id: "job-name", placeholder: "name (optional)" });
  const query = el("textarea", { id: "job-query", spellcheck: "false", placeholder: "a query in the Timeline DSL" });
  const gutter = el("div", { class: "gutter", id: "gutter" });
  const result = el("div", { id: "job-result" });
  const lines = () => {
    const n = query.value.split("\n").length;
    if (gutter.children.length !== n) {
      gutter.replaceChildren(...Array.from({ length: n }, (_, i) => el("div", { "data-line": i + 1 }, i + 1)));
    }
  };
  query.addEventListener("input", () => { lines(); gutter.querySelectorAll(".error").forEach((g) => g.classList.remove("error")); });
  query.addEventListener("scroll", () => { gutter.scrollTop = query.scrollTop; });
  const submit = async () => {
    result.replaceChildren();
    const path = `/v1/jobs${name.value.trim() ? `?name=${enc(name.value.trim())}` : ""}`;
    try {
      const job = await api(path, { method: "POST", body: query.value, headers: { "content-type": "text/plain" } });
      result.replaceChildren(el("div", { class: "ok-box", id: "job-ok" }, [
        job.created ? "Job " : "Job already running: ", el("b", {}, job.name), " on stream ",
        el("a", { href: `#/streams/${enc(job.stream.name)}` }, job.stream.name), " — ",
        el("a", { href: `#/jobs/${enc(job.name)}/plan` }, "plan"), " · ",
        el("a", { href: `#/jobs/${enc(job.name)}/keys` }, "key view"),
      ]), ...warningBoxes(job.warnings));
      await root.refresh();
    } catch (e) {
      const error = e.error || {};
      // The diagnostic says what, where and what to do; other errors have a message.
      const box = el("div", { class: "error-box", id: "job-error", "data-line": error.line, "data-column": error.column }, [
        el("b", {}, error.line ? `line ${error.line}, column ${error.column}` : "refused"),
        error.diagnostic ? el("pre", {}, error.diagnostic) : el("div", {}, e.message),
      ]);
      result.replaceChildren(box);
      if (error.line) {
        lines();
        const mark = gutter.querySelector(`[data-line="${error.line}"]`);
        if (mark) mark.classList.add("error");
        // Put the caret on the error.
        const rows = query.value.split("\n");
        let offset = 0;
        for (let i = 0; i < error.line - 1 && i < rows.length; i++) offset += rows[i].length + 1;
        offset += Math.max(0, error.column - 1);
        query.focus();
        query.setSelectionRange(offset, offset + 1);
      }
    }
  };
  const root = {
    root: el("div", {}, [
      el("div", { class: "panel" }, [el("h2", {}, "Jobs"), list]),
      el("div", { class: "panel" }, [
        el("h2", {}, "Submit a job"),
        el("div", { class: "toolbar" }, [name,
          el("button", { class: "quiet", id: "load-example", onclick: () => { query.value = CIRR; name.value = name.value || "cirr"; lines(); } }, "CIRR example")]),
        el("div", { class: "editor" }, [gutter, query]),
        el("div", { class: "toolbar", style: "margin-top:10px" }, [el("button", { id: "job-submit", onclick: submit }, "Submit")]),
        result,
      ]),
    ]),
    async refresh() {
      lines();
      try {
        const { jobs } = await api("/v1/jobs");
        if (!jobs.length) return list.replaceChildren(el("p", { class: "muted" }, "No job yet: submit one below."));
        list.replaceChildren(el("table", { id: "jobs-table" }, [
          el("tr", {}, ["name", "stream", "outputs", "nodes", "query", ""].map((h) => el("th", {}, h))),
          ...jobs.map((j) => el("tr", { "data-job": j.name }, [
            el("td", {}, el("b", {}, j.name)),
            el("td", {}, el("a", { href: `#/streams/${enc(j.stream.name)}`, "data-stream": j.stream.name }, j.stream.name)),
            el("td", {}, (j.outputs || []).map((o) => el("span", { class: "badge" }, `${o.name} (${o.worker})`))),
            el("td", {}, j.nodes),
            el("td", {}, el("code", {}, j.query.length > 140 ? `${j.query.slice(0, 140)}…` : j.query)),
            el("td", {}, el("div", { class: "row-actions" }, [
              el("a", { href: `#/jobs/${enc(j.name)}/plan` }, "plan"),
              el("a", { href: `#/jobs/${enc(j.name)}/keys` }, "keys"),
              hasAggregates(j.outputs) ? el("a", { href: `#/jobs/${enc(j.name)}/aggregates` }, "aggregates") : null,
              el("button", { class: "danger", "data-delete": j.name, onclick: async () => {
                if (!confirm(`Delete job ${j.name}? Workers no other job uses are dropped.`)) return;
                try { await api(`/v1/jobs/${enc(j.name)}`, { method: "DELETE" }); } catch (e) { list.prepend(errorBox(e)); }
                root.refresh();
              } }, "delete"),
            ])),
          ])),
        ]));
      } catch (e) {
        list.replaceChildren(errorBox(e));
      }
    },
  };
  return root;
}

// The plan view is in plan.js.

// ---------------------------------------------------------------- key view

function keyView(job, initialKey) {
  const keyInput = el("input", { id: "key-input", list: "key-options", placeholder: "key", value: initialKey });
  const options = el("datalist", { id: "key-options" });
  const recent = el("span", { id: "recent-keys" });
  const zoomInfo = el("span", { class: "muted", id: "zoom-info" });
  const chart = el("div", { id: "chart" });
  const values = el("div", { id: "cursor-values", class: "cursor-values" });
  let zoom = null; // [from, to) when zoomed
  let plan = null;
  let stream = null;
  let data = null; // { rows: [{node, kind, spans, expression}], events, from, to }
  let hoverT = null; // the instant under the mouse: a live redraw keeps the cursor table there
  let drawn = null; // what the chart shows, to redraw only on a change

  const go = () => {
    const key = keyInput.value.trim();
    if (key) location.hash = `#/jobs/${enc(job)}/keys/${enc(key)}`;
  };
  keyInput.addEventListener("keydown", (e) => { if (e.key === "Enter") go(); });

  function remember(key) {
    const keys = JSON.parse(localStorage.getItem("recentKeys") || "[]").filter((k) => k !== key);
    keys.unshift(key);
    localStorage.setItem("recentKeys", JSON.stringify(keys.slice(0, 8)));
  }

  function renderRecent() {
    const keys = JSON.parse(localStorage.getItem("recentKeys") || "[]");
    recent.replaceChildren(...keys.map((k) => el("a", { href: `#/jobs/${enc(job)}/keys/${enc(k)}`, class: "badge" }, k)));
  }

  async function load() {
    const key = initialKey;
    if (!plan) {
      const body = await api(`/v1/jobs/${enc(job)}`);
      plan = body.plan;
      stream = body.stream.name;
    }
    const nodes = plan.nodes.filter((n) => n.worker === "event-processor" || n.worker === "timeline-processor");
    const range = zoom ? `?from=${zoom[0]}&to=${zoom[1]}` : "";
    // Events first: the timelines, read after them, have taken in every
    // event shown (never a tick that its rows do not reflect yet).
    const events = await api(`/v1/streams/${enc(stream)}/keys/${enc(key)}/events${range}`);
    const timelines = await Promise.all(nodes.map((n) => api(`/v1/workers/${enc(n.id)}/${enc(key)}/timeline${range}`)));
    let from, to;
    if (zoom) { [from, to] = zoom; } else {
      const origin = Math.min(...timelines.map((t) => t.origin).filter((t) => t !== null));
      const latest = Math.max(...timelines.map((t) => t.latest).filter((t) => t !== null));
      const pad = Math.max(1000, Math.round((latest - origin) * 0.06));
      from = origin - Math.round(pad / 3);
      to = latest + pad;
    }
    return {
      rows: nodes.map((n, i) => ({ node: n.id, kind: rowKind(n.id), expression: n.expression, spans: timelines[i].spans, result: n.id === plan.result })),
      events: events.events,
      from, to,
    };
  }

  function render() {
    const width = Math.max(700, chart.clientWidth || 1100);
    const L = 290, R = 20, CW = width - L - R;
    const heights = data.rows.map((r) => (r.kind === "numeric" ? 64 : 34));
    const top = 46;
    const height = top + heights.reduce((a, b) => a + b + 8, 0) + 10;
    const { from, to } = data;
    const x = (t) => L + ((Math.max(from, Math.min(to, t)) - from) / (to - from)) * CW;
    const tAt = (px) => Math.round(from + ((px - L) / CW) * (to - from));
    const root = svg("svg", { class: "timeline-chart", width, height, "data-from": from, "data-to": to });
    root.append(svg("defs", {}, svg("pattern", { id: "unknown-hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" },
      [svg("rect", { width: 6, height: 6, fill: "#f3f4f7" }), svg("line", { x1: 0, y1: 0, x2: 0, y2: 6, stroke: "#c9ced8", "stroke-width": 2 })])));
    // Axis.
    const axis = svg("g", { class: "axis" });
    const step = niceStep((to - from) / 8);
    for (let t = Math.ceil(from / step) * step; t <= to; t += step) {
      axis.append(svg("line", { x1: x(t), x2: x(t), y1: 30, y2: height - 6 }), svg("text", { x: x(t) + 3, y: 12 }, fmtTime(t)));
    }
    root.append(axis);
    // Raw events as ticks.
    const ticks = svg("g", { class: "events", "data-count": data.events.length });
    ticks.append(svg("text", { x: 8, y: 34, class: "row-label" }, `events (${data.events.length})`));
    for (const e of data.events) {
      ticks.append(svg("line", { class: "event-tick", x1: x(e.time), x2: x(e.time), y1: 24, y2: 40, "data-time": e.time }, svg("title", {}, JSON.stringify(e))));
    }
    root.append(ticks);
    // One row per node.
    let y = top;
    data.rows.forEach((row, i) => {
      const h = heights[i];
      const g = svg("g", { class: `row row-${row.kind}`, "data-node": row.node, "data-kind": row.kind });
      g.append(svg("text", { x: 8, y: y + h / 2 - 2, class: "row-label", "font-weight": row.result ? 700 : 400 }, [
        svg("title", {}, row.expression), operatorOf(row.node) + (row.result ? "  (result)" : "")]));
      g.append(svg("text", { x: 8, y: y + h / 2 + 12, class: "row-label", fill: "#6b7383", "font-size": 10 },
        row.expression.length > 44 ? `${row.expression.slice(0, 43)}…` : row.expression));
      const numericMax = Math.max(1, ...row.spans.filter((s) => s.value !== null && typeof s.value === "number")
        .map((s) => s.rising ? s.value + ((s.end === null ? to : Math.min(s.end, to)) - s.start) : s.value));
      const yNum = (v) => y + h - 4 - (v / numericMax) * (h - 10);
      const line = [];
      for (const s of row.spans) {
        const end = s.end === null ? to : s.end;
        const x0 = x(s.start), x1 = x(end), w = Math.max(0.5, x1 - x0);
        const attrs = { "data-start": s.start, "data-end": s.end === null ? "" : s.end, "data-value": JSON.stringify(s.value), "data-rising": String(s.rising) };
        let rect;
        if (s.value === null) {
          rect = svg("rect", Object.assign({ class: "span span-unknown", x: x0, y: y + 3, width: w, height: h - 6 }, attrs));
          line.push(null);
        } else if (row.kind === "bool") {
          rect = s.value === true
            ? svg("rect", Object.assign({ class: "span span-true", x: x0, y: y + 4, width: w, height: h - 8 }, attrs))
            : svg("rect", Object.assign({ class: "span span-false", x: x0, y: y + h - 10, width: w, height: 6 }, attrs));
        } else if (row.kind === "state") {
          rect = svg("rect", Object.assign({ class: "span span-state", x: x0, y: y + 4, width: w, height: h - 8, fill: colorOf(s.value) }, attrs));
          if (w > 34) g.append(svg("text", { class: "span-state-label", x: x0 + 4, y: y + h / 2 + 4 }, String(s.value)));
        } else {
          rect = svg("rect", Object.assign({ class: "span span-numeric", x: x0, y: y + 2, width: w, height: h - 4, fill: "transparent" }, attrs));
          const v1 = s.rising ? s.value + (Math.min(end, to) - s.start) : s.value;
          line.push([x0, yNum(s.value)], [x1, yNum(v1)]);
        }
        g.insertBefore(rect, g.firstChild);
      }
      if (row.kind === "numeric") {
        let d = "";
        let pen = false;
        for (const p of line) {
          if (p === null) { pen = false; continue; }
          d += `${pen ? "L" : "M"}${p[0]},${p[1]} `;
          pen = true;
        }
        if (d) g.append(svg("path", { class: "numeric-line", d }));
        g.append(svg("text", { x: L - 6, y: y + 10, "text-anchor": "end", "font-size": 10, fill: "#6b7383" }, fmtTime(numericMax)));
      }
      root.append(g);
      y += h + 8;
    });
    // Cursor, hover values and zoom by dragging.
    const cursor = svg("line", { class: "cursor", y1: 20, y2: height, visibility: "hidden" });
    const brush = svg("rect", { class: "brush", y: 20, height: height - 20, visibility: "hidden" });
    root.append(cursor, brush);
    let dragFrom = null;
    const localX = (e) => e.clientX - root.getBoundingClientRect().left;
    root.addEventListener("mousemove", (e) => {
      const px = localX(e);
      if (px < L || px > L + CW) { cursor.setAttribute("visibility", "hidden"); return; }
      const t = tAt(px);
      cursor.setAttribute("x1", px); cursor.setAttribute("x2", px); cursor.setAttribute("visibility", "visible");
      hoverT = t;
      showValues(t);
      const hovered = e.target.closest ? e.target.closest("g.row") : null;
      const tip = $("#tooltip");
      if (hovered) {
        const row = data.rows.find((r) => r.node === hovered.getAttribute("data-node"));
        tip.textContent = `${operatorOf(row.node)} at ${fmtTime(t)}: ${fmtValue(valueAt(row.spans, t))}`;
        tip.style.left = `${e.clientX + 14}px`; tip.style.top = `${e.clientY + 10}px`; tip.hidden = false;
      } else tip.hidden = true;
      if (dragFrom !== null) {
        brush.setAttribute("x", Math.min(dragFrom, px)); brush.setAttribute("width", Math.abs(px - dragFrom)); brush.setAttribute("visibility", "visible");
      }
    });
    root.addEventListener("mouseleave", () => { hoverT = null; $("#tooltip").hidden = true; cursor.setAttribute("visibility", "hidden"); });
    root.addEventListener("mousedown", (e) => { const px = localX(e); if (px >= L) { dragFrom = px; e.preventDefault(); } });
    root.addEventListener("mouseup", (e) => {
      if (dragFrom === null) return;
      const px = localX(e);
      brush.setAttribute("visibility", "hidden");
      const [a, b] = [Math.min(dragFrom, px), Math.max(dragFrom, px)];
      dragFrom = null;
      if (b - a > 5) setZoom([tAt(a), tAt(b)]);
    });
    root.addEventListener("wheel", (e) => {
      const px = localX(e);
      if (px < L) return;
      e.preventDefault();
      const t = tAt(px), f = e.deltaY > 0 ? 1.4 : 1 / 1.4;
      setZoom([Math.round(t - (t - from) * f), Math.round(t + (to - t) * f)]);
    }, { passive: false });
    chart.replaceChildren(root);
    zoomInfo.textContent = zoom ? `zoomed to [${fmtTime(zoom[0])}, ${fmtTime(zoom[1])})` : "drag across the chart to zoom in";
    showValues(hoverT === null ? to : hoverT);
  }

  function showValues(t) {
    values.replaceChildren(el("table", {}, [
      el("tr", {}, [el("th", {}, `at ${fmtTime(t)} (${t})`), el("th", {}, "value")]),
      ...data.rows.map((r) => el("tr", { "data-node": r.node }, [el("td", {}, operatorOf(r.node)), el("td", { class: "value" }, fmtValue(valueAt(r.spans, t)))])),
    ]));
    values.setAttribute("data-t", t);
  }

  async function setZoom(range) {
    if (range && range[1] - range[0] < 2) return;
    zoom = range;
    await refresh();
  }

  let generation = 0;
  async function refresh() {
    // Refreshes may overlap (a poll, a zoom): only the latest one draws.
    const mine = ++generation;
    renderRecent();
    try {
      const keys = await api(`/v1/jobs/${enc(job)}/keys?limit=500`);
      options.replaceChildren(...keys.keys.map((k) => el("option", { value: k })));
      if (!initialKey) {
        chart.replaceChildren(el("p", { class: "muted" }, keys.keys.length ? "Pick a key." : "No events yet."));
        return;
      }
      const loaded = await load();
      if (mine !== generation) return;
      // A refresh that changes nothing keeps the chart (and the cursor) as is.
      const drawing = JSON.stringify([loaded, chart.clientWidth]);
      if (drawing === drawn) return;
      drawn = drawing;
      data = loaded;
      remember(initialKey);
      renderRecent();
      render();
    } catch (e) {
      drawn = null;
      chart.replaceChildren(errorBox(e));
    }
  }

  return {
    root: el("div", {}, [
      el("h2", {}, `Key view of ${job}`),
      el("div", { class: "panel" }, [
        el("div", { class: "toolbar" }, [keyInput, options, el("button", { id: "key-show", onclick: go }, "Show"),
          el("button", { class: "quiet", id: "zoom-reset", onclick: () => setZoom(null) }, "Reset zoom"), zoomInfo]),
        el("div", { class: "toolbar" }, [el("span", { class: "muted" }, "recent:"), recent]),
        chart,
      ]),
      el("div", { class: "panel" }, [el("h3", {}, "Every node at the cursor"), values]),
    ]),
    refresh,
  };
}

function niceStep(raw) {
  const pow = Math.pow(10, Math.floor(Math.log10(Math.max(1, raw))));
  for (const m of [1, 2, 5, 10]) if (m * pow >= raw) return m * pow;
  return 10 * pow;
}

// The aggregates view is in aggregates.js.

// ---------------------------------------------------------------- streams

/// A job's warnings (a column no event carried, a literal of another type), each with its diagnostic.
function warningBoxes(warnings) {
  return (warnings || []).map((w) => el("div", { class: "warning-box", "data-line": w.line, "data-column": w.column }, [
    el("b", {}, `warning · line ${w.line}, column ${w.column}`),
    el("pre", {}, w.diagnostic || w.message),
  ]));
}

function streamsView(selected) {
  const list = el("div", { id: "streams" });
  const detail = el("div", { id: "stream-detail" });
  return {
    root: el("div", {}, [el("div", { class: "panel" }, [el("h2", {}, "Streams"), list]), detail]),
    async refresh() {
      let streams;
      try { ({ streams } = await api("/v1/streams")); } catch (e) { return list.replaceChildren(errorBox(e)); }
      list.replaceChildren(el("table", { id: "streams-table" }, [
        el("tr", {}, ["stream", "key", "time", "id", "events", "keys", "latest", "columns", "jobs"].map((h) => el("th", {}, h))),
        ...streams.map((s) => el("tr", { "data-stream": s.name, class: s.name === selected ? "selected" : "" }, [
          el("td", {}, el("a", { href: `#/streams/${enc(s.name)}` }, el("b", {}, s.name))),
          el("td", {}, el("code", {}, s.key)), el("td", {}, el("code", {}, s.time)), el("td", {}, el("code", {}, s.id)),
          el("td", {}, s.events), el("td", {}, s.keys), el("td", {}, s.latest === null ? "—" : fmtTime(s.latest)),
          el("td", {}, s.columns),
          el("td", {}, s.jobs.map((j) => el("a", { href: `#/jobs/${enc(j)}/plan`, class: "badge" }, j))),
        ])),
      ]));
      const name = selected || (streams[0] && streams[0].name);
      if (!name) return detail.replaceChildren();
      let stream;
      try { stream = await api(`/v1/streams/${enc(name)}`); } catch (e) { return detail.replaceChildren(errorBox(e)); }
      detail.replaceChildren(el("div", { class: "panel" }, [
        el("h2", {}, `Columns of ${name}`),
        stream.columns.length
          ? el("table", { id: "columns-table", "data-stream": name }, [
            el("tr", {}, ["column", "types", "events", "first seen", "last seen"].map((h) => el("th", {}, h))),
            ...stream.columns.map((c) => el("tr", { "data-column": c.name }, [
              el("td", {}, el("code", {}, c.name)),
              el("td", {}, c.types.map((t) => el("span", { class: "badge" }, t))),
              el("td", {}, `${c.events} (${Math.round((100 * c.events) / Math.max(1, stream.events))}%)`),
              el("td", {}, fmtTime(c.first)), el("td", {}, fmtTime(c.last)),
            ])),
          ])
          : el("p", { class: "muted" }, `No event yet: post them to /v1/streams/${name}/events.`),
      ]));
    },
  };
}

// ---------------------------------------------------------------- live

let lastEvents = null;
async function poll() {
  try {
    const health = await api("/v1/health");
    $("#status").textContent = `${health.events} events · ${health.keys} keys · ${health.jobs} jobs`;
    $("#status").setAttribute("data-events", health.events);
    if (lastEvents !== null && health.events !== lastEvents && view) await view.refresh();
    lastEvents = health.events;
  } catch (e) {
    const degraded = e.body && e.body.status === "degraded";
    $("#status").textContent = degraded ? `storage failing: ${e.body.storage}` : "server unreachable";
  }
}

$("#token-button").addEventListener("click", askForToken);
window.addEventListener("hashchange", route);
window.addEventListener("resize", () => { if (view) view.refresh(); });
route();
poll();
setInterval(poll, 1500);
