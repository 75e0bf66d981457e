// The key view: a job's keys (searchable, paged) and, for the selected key,
// every per-key node's timeline as a row labelled with its sub-expression,
// the raw events as ticks, a cursor with every node's value, drag-zoom and
// CSV/JSON export. A classic script loaded before app.js; it uses app.js's
// helpers (api, el, svg, enc, fmtTime, fmtValue, valueAt, ...) at call time.
"use strict";

/** Keys asked for per page of the key list. */
const KEY_PAGE = 50;

// ---------------------------------------------------------------- text

const measureContext = document.createElement("canvas").getContext("2d");

/** Width in pixels of `text` drawn in CSS font `font`. */
function textWidth(text, font) {
  measureContext.font = font;
  return measureContext.measureText(text).width;
}

/** `text` shortened to `maxPx` with an ellipsis in the middle, so that both
 * the start and the end (where `a && b && c` chains differ) stay readable. */
function shortenMiddle(text, maxPx, font) {
  if (textWidth(text, font) <= maxPx) return text;
  const cut = (n) => {
    const head = Math.ceil(n * 0.4);
    return `${text.slice(0, head)}…${text.slice(text.length - (n - head))}`;
  };
  return cut(longestFitting(text.length, (n) => textWidth(cut(n), font) <= maxPx));
}

/** `text` shortened to `maxPx` with an ellipsis at the end; "" if not even
 * one character and the ellipsis fit. */
function shortenEnd(text, maxPx, font) {
  if (textWidth(text, font) <= maxPx) return text;
  const n = longestFitting(text.length, (k) => textWidth(`${text.slice(0, k)}…`, font) <= maxPx);
  return n === 0 ? "" : `${text.slice(0, n)}…`;
}

/** The largest n in [0, max) with fits(n) (fits is monotone), 0 if none. */
function longestFitting(max, fits) {
  let lo = 0, hi = max - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (fits(mid)) lo = mid; else hi = mid - 1;
  }
  return lo;
}

/** Each node's expression in full: the plan writes a node's children by id
 * (`(and-47b1… && …)`); their expressions are put in their place. */
function fullExpressions(nodes) {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const full = new Map();
  const expand = (node, depth) => {
    if (full.has(node.id)) return full.get(node.id);
    let text = node.expression || node.id;
    if (depth < 64) {
      for (const child of node.children || []) {
        if (byId.has(child)) text = text.split(child).join(expand(byId.get(child), depth + 1));
      }
    }
    full.set(node.id, text);
    return text;
  };
  nodes.forEach((n) => expand(n, 0));
  for (const [id, text] of full) full.set(id, tidyExpression(text));
  return full;
}

// The DSL's binary operators by precedence, loosest first (as its parser).
const PRECEDENCE = { "||": 1, "&&": 2, "==": 3, "!=": 3, "<": 3, "<=": 3, ">": 3, ">=": 3, "+": 4, "-": 4, "*": 5, "/": 5 };
const TOKEN = /\s+|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|&&|\|\||==|!=|<=|>=|[<>!+\-*\/(),.]|[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?[A-Za-z]*/y;

/** `text` (an expression of the DSL) with only the parentheses its
 * precedence needs: `((a && b) && (c == "x"))` reads `a && b && c == "x"`.
 * The same tree, so the same query; `text` as it is if it does not parse. */
function tidyExpression(text) {
  const tokens = [];
  TOKEN.lastIndex = 0;
  while (TOKEN.lastIndex < text.length) {
    const at = TOKEN.lastIndex, m = TOKEN.exec(text);
    if (!m || m.index !== at) return text;
    if (m[0].trim()) tokens.push(m[0]);
  }
  let i = 0;
  const peek = () => tokens[i];
  const expect = (t) => { if (tokens[i++] !== t) throw new Error(`expected ${t}`); };
  const binary = (min) => {
    let left = unary();
    while (PRECEDENCE[peek()] >= min) {
      const op = tokens[i++], p = PRECEDENCE[op];
      // Comparisons do not chain; the others group to the left.
      const right = binary(p + 1);
      left = { p, text: `${wrap(left, p, false)} ${op} ${wrap(right, p, true)}` };
      if (p === 3 && PRECEDENCE[peek()] === 3) throw new Error("chained comparison");
    }
    return left;
  };
  const wrap = (e, p, right) => (e.p < p || (e.p === p && (right || p === 3)) ? `(${e.text})` : e.text);
  const unary = () => {
    if (peek() === "!" || peek() === "-") {
      const op = tokens[i++], e = unary();
      return { p: 6, text: `${op}${e.p < 6 ? `(${e.text})` : e.text}` };
    }
    return postfix();
  };
  const postfix = () => {
    let e = primary();
    for (;;) {
      if (peek() === "(") {
        i++;
        const args = [];
        while (peek() !== ")") {
          args.push(binary(1).text);
          if (peek() === ",") i++; else break;
        }
        expect(")");
        e = { p: 7, text: `${e.text}(${args.join(", ")})` };
      } else if (peek() === ".") {
        i++;
        e = { p: 7, text: `${e.text}.${tokens[i++]}` };
      } else return e;
    }
  };
  const primary = () => {
    const t = tokens[i++];
    if (t === "(") { const e = binary(1); expect(")"); return e; }
    if (t === undefined || /^[()<>!=&|+\-*\/,.]/.test(t)) throw new Error(`unexpected ${t}`);
    return { p: 7, text: t };
  };
  try {
    const e = binary(1);
    return i === tokens.length ? e.text : text;
  } catch (_) {
    return text;
  }
}

// ---------------------------------------------------------------- numbers and times

const COUNTS = new Set(["count_where"]);
const DURATIONS = new Set(["duration_where", "duration_in_cur_state", "time_since"]);

/** What a row's numbers are: "count", "duration" or "number". */
const unitOf = (id) => COUNTS.has(operatorOf(id)) ? "count" : DURATIONS.has(operatorOf(id)) ? "duration" : "number";

/** How a row is drawn: "numeric" (a line), "state" (labelled segments) or
 * "bool" (bands), from its operator or else from its values. */
function kindOf(id, spans) {
  if (unitOf(id) !== "number") return "numeric";
  if (operatorOf(id) === "latest_event_to_state") return "state";
  const value = (spans.find((s) => s.value !== null) || {}).value;
  return typeof value === "number" ? "numeric" : typeof value === "string" ? "state" : "bool";
}

/** A duration in milliseconds for reading: 850ms, 4.5s, 2m 05s, 3h 20m. */
function fmtDuration(ms) {
  const sign = ms < 0 ? "-" : "", a = Math.abs(ms);
  if (a < 1000) return `${sign}${a}ms`;
  if (a < 60000) return `${sign}${+(a / 1000).toFixed(a % 1000 ? 1 : 0)}s`;
  if (a < 3600000) return `${sign}${Math.floor(a / 60000)}m ${String(Math.floor((a % 60000) / 1000)).padStart(2, "0")}s`;
  return `${sign}${Math.floor(a / 3600000)}h ${String(Math.floor((a % 3600000) / 60000)).padStart(2, "0")}m`;
}

/** A number of a row for reading (axis, cursor table). */
function fmtNumber(value, unit) {
  if (typeof value !== "number") return fmtValue(value);
  if (unit === "duration") return fmtDuration(value);
  return Number.isInteger(value) ? String(value) : String(+value.toPrecision(4));
}

const TIME_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 15e3, 3e4, 6e4, 12e4, 3e5, 6e5, 9e5, 18e5,
  36e5, 72e5, 108e5, 216e5, 432e5, 864e5, 1728e5, 6048e5];

/** A step between axis ticks of at least `raw` milliseconds that reads well. */
function timeStep(raw) {
  return TIME_STEPS.find((s) => s >= raw) || niceStep(raw);
}

/** An axis tick's label: epochs as time of day, with the date on the first
 * tick and wherever the day changes; small times as durations. */
function fmtTick(t, step, previous) {
  if (!isEpoch(t)) return fmtTime(t);
  const iso = new Date(t).toISOString();
  const day = iso.slice(0, 10);
  const time = step >= 1000 ? iso.slice(11, 19) : iso.slice(11, 23);
  return previous === null || new Date(previous).toISOString().slice(0, 10) !== day ? `${day} ${time}` : time;
}

// ---------------------------------------------------------------- export

function csvField(value) {
  const text = value === null || value === undefined ? "" : String(value);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, "\"\"")}"` : text;
}

/** How a span's value moves per ms: 1 rising, -1 falling, 0 constant. */
function slopeOf(s) {
  return s.rising ? 1 : s.falling ? -1 : 0;
}

/** The rows shown as CSV: one line per span, `value` at `from` (a rising
 * span grows by 1 per millisecond from there), empty for Unknown. */
function timelinesCsv(data) {
  const lines = [["node", "expression", "from", "to", "value", "rising", "falling"].join(",")];
  for (const row of data.rows) {
    for (const s of row.spans) {
      lines.push([row.node, row.expression, s.start, s.end, s.value, s.rising, Boolean(s.falling)].map(csvField).join(","));
    }
  }
  return `${lines.join("\n")}\n`;
}

function timelinesJson(job, key, data, zoomed) {
  return `${JSON.stringify({
    job, key, from: data.from, to: data.to, zoomed,
    events: data.events,
    timelines: data.rows.map((r) => ({ node: r.node, expression: r.expression, spans: r.spans })),
  }, null, 2)}\n`;
}

function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// ---------------------------------------------------------------- the view

function keyView(job, initialKey) {
  let key = initialKey;
  const search = el("input", { id: "key-search", type: "search", placeholder: "search keys", autocomplete: "off" });
  const list = el("ul", { id: "key-list", class: "key-list" });
  const more = el("button", { class: "quiet", id: "key-more", hidden: "" }, "more keys");
  const listInfo = el("div", { class: "muted", id: "key-list-info" });
  const title = el("h2", {}, `Key view of ${job}`);
  const zoomInfo = el("span", { class: "muted", id: "zoom-info" });
  const chart = el("div", { id: "chart" });
  const values = el("div", { id: "cursor-values", class: "cursor-values" });
  let zoom = null; // [from, to) when zoomed
  let cursorT = null; // where the cursor was last
  let plan = null;
  let expressions = null; // node id -> its full expression
  let stream = null;
  let data = null; // { rows: [{node, kind, unit, spans, expression, result}], events, from, to }
  let keys = []; // the keys listed
  let nextAfter = null;

  // The key list: a page of the keys that match the search, more on demand.
  async function loadKeys(append) {
    const contains = search.value.trim();
    const limit = append ? KEY_PAGE : Math.max(KEY_PAGE, keys.length);
    const params = new URLSearchParams({ limit: String(limit) });
    if (contains) params.set("contains", contains);
    if (append && nextAfter !== null) params.set("after", nextAfter);
    const page = await api(`/v1/jobs/${enc(job)}/keys?${params}`);
    if (contains !== search.value.trim()) return; // a newer search is under way
    keys = append ? keys.concat(page.keys) : page.keys;
    nextAfter = page.next_after;
    renderKeys();
  }

  function renderKeys() {
    list.replaceChildren(...keys.map((k) => el("li", {}, el("a", {
      href: `#/jobs/${enc(job)}/keys/${enc(k)}`, "data-key": k, title: k, class: k === key ? "selected" : "",
      onclick: (e) => { e.preventDefault(); select(k, true); },
    }, k))));
    more.hidden = nextAfter === null;
    const searched = search.value.trim();
    listInfo.textContent = keys.length
      ? `${keys.length}${nextAfter === null ? "" : "+"} key${keys.length === 1 && nextAfter === null ? "" : "s"}${searched ? ` containing "${searched}"` : ""}`
      : searched ? `no key contains "${searched}"` : "no key has events yet";
  }

  let searchTimer = null;
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => loadKeys(false).catch((e) => list.replaceChildren(el("li", {}, errorBox(e)))), 150);
  });
  // From the search box: Enter shows the first match, the arrows the next or previous key.
  search.addEventListener("keydown", (e) => {
    if (!keys.length || !["Enter", "ArrowDown", "ArrowUp"].includes(e.key)) return;
    e.preventDefault();
    const at = keys.indexOf(key);
    const next = e.key === "Enter" ? 0 : e.key === "ArrowDown" ? Math.min(keys.length - 1, at + 1) : Math.max(0, at < 0 ? 0 : at - 1);
    if (keys[next] !== key) select(keys[next], true);
  });
  more.addEventListener("click", () => loadKeys(true).catch((e) => list.replaceChildren(el("li", {}, errorBox(e)))));

  /** Shows `next`; `push` adds it to the history (a click), else replaces. */
  function select(next, push) {
    const hash = `#/jobs/${enc(job)}/keys/${enc(next)}`;
    if (location.hash !== hash) history[push ? "pushState" : "replaceState"](null, "", hash);
    if (next !== key) { key = next; zoom = null; cursorT = null; }
    renderKeys();
    refresh();
  }

  async function load() {
    if (!plan) {
      const body = await api(`/v1/jobs/${enc(job)}`);
      plan = body.plan;
      stream = body.stream.name;
      expressions = fullExpressions(plan.nodes);
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
      rows: nodes.map((n, i) => ({
        node: n.id, kind: kindOf(n.id, timelines[i].spans), unit: unitOf(n.id), expression: expressions.get(n.id),
        worker: n.worker, spans: timelines[i].spans, result: n.id === plan.result,
      })),
      events: events.events,
      from, to,
    };
  }

  function render() {
    const width = Math.max(300, chart.clientWidth || 1100);
    // On a narrow screen each row's label goes above its row, across the chart.
    const stacked = width < 560, lh = stacked ? 16 : 0;
    const L = stacked ? 10 : Math.round(Math.min(340, Math.max(110, width * 0.3))), R = stacked ? 10 : 20, CW = width - L - R;
    const labelWidth = stacked ? width - 16 : L - 18;
    const heights = data.rows.map((r) => (r.kind === "numeric" ? 64 : 34));
    const top = 46;
    const height = top + heights.reduce((a, b) => a + lh + b + 8, 0) + 10;
    const { from, to } = data;
    const x = (t) => L + ((Math.max(from, Math.min(to, t)) - from) / (to - from)) * CW;
    // The last instant of [from, to) at most: the values at `to` are past the range.
    const tAt = (px) => Math.min(to - 1, Math.max(from, Math.round(from + ((px - L) / CW) * (to - from))));
    const root = svg("svg", { class: "timeline-chart", width, height, "data-from": from, "data-to": to, "data-left": L, "data-label-width": labelWidth });
    root.append(svg("defs", {}, svg("pattern", { id: "unknown-hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" },
      [svg("rect", { width: 6, height: 6, fill: "#f3f4f7" }), svg("line", { x1: 0, y1: 0, x2: 0, y2: 6, stroke: "#c9ced8", "stroke-width": 2 })])));
    // Axis: about one tick per 120 px.
    const axis = svg("g", { class: "axis" });
    const epochs = isEpoch(from) || isEpoch(to);
    if (!stacked) axis.append(svg("text", { x: 8, y: 12, class: "axis-title" }, epochs ? "time (UTC)" : "time"));
    const step = timeStep((to - from) / Math.max(2, Math.floor(CW / (epochs ? 130 : 90))));
    let previous = null;
    for (let t = Math.ceil(from / step) * step; t <= to; t += step) {
      const label = fmtTick(t, step, previous);
      // Right of its line, or left of it where it would run off the chart.
      const fits = x(t) + 3 + textWidth(label, "11px system-ui, sans-serif") <= width;
      axis.append(svg("line", { x1: x(t), x2: x(t), y1: 30, y2: height - 6 }),
        svg("text", { x: fits ? x(t) + 3 : x(t) - 3, y: 12, class: "tick", "data-t": t, "text-anchor": fits ? "start" : "end" }, label));
      previous = t;
    }
    root.append(axis);
    // Raw events as ticks.
    const ticks = svg("g", { class: "events", "data-count": data.events.length });
    if (!stacked) ticks.append(svg("text", { x: 8, y: 34, class: "row-label" }, `events (${data.events.length})`));
    for (const e of data.events) {
      ticks.append(svg("line", { class: "event-tick", x1: x(e.time), x2: x(e.time), y1: 24, y2: 40, "data-time": e.time }, svg("title", {}, JSON.stringify(e))));
    }
    root.append(ticks);
    // One row per node, labelled with what it computes.
    const labelFont = "12px system-ui, sans-serif", stateFont = "11px system-ui, sans-serif";
    let y = top;
    data.rows.forEach((row, i) => {
      const h = heights[i];
      const labelY = stacked ? y + 11 : y + h / 2 - 2;
      y += lh; // the row's band
      const g = svg("g", { class: `row row-${row.kind}`, "data-node": row.node, "data-kind": row.kind, "data-unit": row.unit });
      g.append(svg("text", { x: 8, y: labelY, class: "row-label row-expression", "font-weight": row.result ? 700 : 400, "data-full": row.expression }, [
        svg("title", {}, row.expression), svg("tspan", {}, shortenMiddle(row.expression, labelWidth, row.result ? `700 ${labelFont}` : labelFont))]));
      if (!stacked) {
        g.append(svg("text", { x: 8, y: y + h / 2 + 12, class: "row-label row-operator", fill: "#6b7383", "font-size": 10 },
          `${operatorOf(row.node)}${row.unit === "number" ? "" : ` · ${row.unit}`}${row.result ? " · result" : ""}`));
      }
      const peak = Math.max(0, ...row.spans.filter((s) => s.value !== null && typeof s.value === "number")
        .map((s) => Math.max(s.value, s.value + slopeOf(s) * ((s.end === null ? to : Math.min(s.end, to)) - s.start))));
      const numericMax = Math.max(1, peak);
      const yNum = (v) => y + h - 4 - (v / numericMax) * (h - 10);
      const line = [];
      for (const s of row.spans) {
        const end = s.end === null ? to : s.end;
        const x0 = x(s.start), x1 = x(end), w = Math.max(0.5, x1 - x0);
        const attrs = { "data-start": s.start, "data-end": s.end === null ? "" : s.end, "data-value": JSON.stringify(s.value), "data-rising": String(s.rising), "data-falling": String(Boolean(s.falling)) };
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
          // The value if it fits in the segment, else shortened; the tooltip has it whole.
          const label = shortenEnd(String(s.value), w - 8, stateFont);
          if (label) g.append(svg("text", { class: "span-state-label", x: x0 + 4, y: y + h / 2 + 4, "data-full": String(s.value), "data-width": w }, label));
        } else {
          rect = svg("rect", Object.assign({ class: "span span-numeric", x: x0, y: y + 2, width: w, height: h - 4, fill: "transparent" }, attrs));
          const v1 = s.value + slopeOf(s) * (Math.min(end, to) - s.start);
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
        g.append(svg("text", { x: stacked ? width - R : L - 6, y: y + 10, "text-anchor": "end", "font-size": 10, fill: "#6b7383", class: "numeric-max" },
          fmtNumber(peak, row.unit)));
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
    root.addEventListener("mouseleave", () => { $("#tooltip").hidden = true; cursor.setAttribute("visibility", "hidden"); });
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
    // Where the cursor was if still shown, else the last instant shown.
    showValues(cursorT !== null && cursorT >= from && cursorT < to ? cursorT : to - 1);
  }

  function showValues(t) {
    cursorT = t;
    values.replaceChildren(el("table", {}, [
      el("tr", {}, [el("th", {}, `at ${fmtTime(t)} (${t})`), el("th", {}, "value"), el("th", {}, "")]),
      ...data.rows.map((r) => {
        const v = valueAt(r.spans, t);
        return el("tr", { "data-node": r.node }, [
          el("td", { class: "expression", title: `${r.expression}\n${r.node}` }, r.expression),
          el("td", { class: "value" }, fmtValue(v)),
          el("td", { class: "reading muted" }, typeof v === "number" && r.unit !== "number" ? (r.unit === "count" ? "times" : fmtDuration(v)) : ""),
        ]);
      }),
    ]));
    values.setAttribute("data-t", t);
  }

  async function setZoom(range) {
    if (range && range[1] - range[0] < 2) return;
    zoom = range;
    await refresh();
  }

  let generation = 0;
  let lastDrawn = null; // what the chart shows: key, data and width
  async function refresh() {
    // Refreshes may overlap (a poll, a zoom, a click): only the latest draws.
    const mine = ++generation;
    try {
      await loadKeys(false);
      if (mine !== generation) return;
      if (!key) {
        if (!keys.length) {
          chart.replaceChildren(el("p", { class: "muted", id: "no-keys" }, search.value.trim() ? "No key matches the search." : "No events yet."));
          return;
        }
        return select(keys[0], false); // opens on the first key
      }
      title.textContent = `Key view of ${job} · ${key}`;
      const loaded = await load();
      if (mine !== generation) return;
      // A poll that brought nothing new for this key leaves the chart (and
      // the pointer on it) alone.
      const drawn = JSON.stringify([key, loaded, chart.clientWidth]);
      if (drawn === lastDrawn && chart.querySelector("svg.timeline-chart")) return;
      data = loaded;
      render();
      lastDrawn = drawn;
    } catch (e) {
      if (mine === generation) chart.replaceChildren(errorBox(e));
    }
  }

  const exportAs = (kind) => {
    if (!data || !key) return;
    const name = `${job}-${key}`.replace(/[^A-Za-z0-9._-]+/g, "_");
    if (kind === "csv") download(`${name}.csv`, "text/csv", timelinesCsv(data));
    else download(`${name}.json`, "application/json", timelinesJson(job, key, data, zoom !== null));
  };

  return {
    root: el("div", {}, [
      title,
      el("div", { class: "key-view" }, [
        el("aside", { class: "panel key-list-panel" }, [search, listInfo, list, more]),
        el("div", { class: "key-main" }, [
          el("div", { class: "panel" }, [
            el("div", { class: "toolbar" }, [
              el("button", { class: "quiet", id: "zoom-reset", onclick: () => setZoom(null) }, "Reset zoom"), zoomInfo,
              el("span", { class: "spacer" }),
              el("button", { class: "quiet", id: "export-csv", title: "this key's timelines as shown: node, expression, from, to, value, rising", onclick: () => exportAs("csv") }, "CSV"),
              el("button", { class: "quiet", id: "export-json", title: "this key's timelines and events as shown", onclick: () => exportAs("json") }, "JSON"),
            ]),
            chart,
          ]),
          el("div", { class: "panel" }, [el("h3", {}, "Every node at the cursor"), values]),
        ]),
      ]),
    ]),
    refresh,
  };
}
