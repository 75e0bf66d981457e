// The aggregates view: a job's aggregates and metrics over time, a line per
// group with one cursor shared by every chart, and every group's figures at
// a chosen time. Values are rounded for reading, exact on hover.
// Loaded before app.js, whose helpers (el, svg, api, ...) it uses.
"use strict";

/** Whether a job's outputs (plan outputs or a job summary's) hold an aggregate or metric. */
const hasAggregates = (outputs) => (outputs || []).some((o) => o.worker === "aggregator" || o.worker === "metric");

/** A number for reading: integers as they are, others to 3 significant digits (1000 and above: to the unit). */
function fmtRounded(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v !== "number") return fmtValue(v);
  if (Number.isInteger(v)) return String(v);
  if (Math.abs(v) >= 1000) return String(Math.round(v));
  return String(Number(v.toPrecision(3)));
}

/** The exact value, as the API gave it (for titles). */
const exact = (v) => (v === null || v === undefined ? "unknown" : typeof v === "string" ? JSON.stringify(v) : String(v));

const groupLabel = (g) => (g === null ? "null" : String(g));

/** Colours told apart at a glance, given to groups in order of appearance. */
const PALETTE = ["#2f6fde", "#e0752d", "#2e9e6a", "#c8382e", "#8e5cc7", "#b8860b", "#1f9bb4", "#d4509a", "#6b7383", "#5b8c2a"];

/** Axis ticks over [lo, hi]: about `count` round values (fractions too). */
function ticks(lo, hi, count) {
  const raw = (hi - lo) / count;
  const pow = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** Adds the job's Aggregates tab to `nav` when the job has aggregates or metrics (always when it is the tab shown). */
async function aggregatesTab(nav, job, active, current) {
  const add = () => nav.append(el("a", { href: `#/jobs/${enc(job)}/aggregates`, class: active ? "active" : "", "data-tab": "aggregates" }, `Aggregates · ${job}`));
  nav.removeAttribute("data-aggregates");
  nav.removeAttribute("data-aggregates-of");
  if (active) return add();
  try {
    const body = await api(`/v1/jobs/${enc(job)}`);
    if (!current()) return;
    const shown = hasAggregates(body.plan.outputs);
    if (shown) add();
    nav.setAttribute("data-aggregates", shown ? "shown" : "none");
    nav.setAttribute("data-aggregates-of", job);
  } catch (_) { /* the view shows the error */ }
}

function aggregatesView(job) {
  const at = el("input", { id: "agg-t", value: "end", size: 16 });
  const box = el("div", { id: "aggregates" });
  const charts = el("div", { id: "agg-charts" });
  const cursorInfo = el("span", { class: "muted", id: "agg-cursor" });
  let series = null; // the last /series answer
  let cursorT = null; // the instant under the shared cursor (null: the latest)
  const drawn = []; // per chart: { move(i) }
  const colors = new Map(); // group label -> colour, the same in every chart
  const colorFor = (label) => {
    if (!colors.has(label)) colors.set(label, PALETTE[colors.size % PALETTE.length]);
    return colors.get(label);
  };

  /** The sample nearest to `t`. */
  function nearest(t) {
    const times = series.times;
    if (t === null) return times.length - 1;
    let best = 0;
    times.forEach((s, i) => { if (Math.abs(s - t) < Math.abs(times[best] - t)) best = i; });
    return best;
  }

  function moveCursor(i) {
    cursorT = series.times[i];
    cursorInfo.textContent = `cursor at ${fmtTime(cursorT)} (${cursorT}) · click a chart to read the table below at that time`;
    cursorInfo.setAttribute("data-t", cursorT);
    for (const c of drawn) c.move(i);
  }

  /** One chart: the groups' values of `fn` of `output`, a line each. */
  function chart(output, fn) {
    const { times } = series;
    const width = Math.max(520, (charts.clientWidth || 1200) - 300);
    const height = 156, L = 56, R = 14, T = 8, B = 22, PW = width - L - R, PH = height - T - B;
    const from = times[0], to = times[times.length - 1];
    const span = Math.max(1, to - from);
    const x = (t) => L + ((t - from) / span) * PW;
    const numbers = output.groups.flatMap((g) => g.values[fn].filter((v) => typeof v === "number"));
    let lo = Math.min(0, ...numbers), hi = Math.max(0, ...numbers);
    if (hi === lo) hi = lo + 1;
    const marks = ticks(lo, hi, 4);
    [lo, hi] = [Math.min(lo, marks[0]), Math.max(hi, marks[marks.length - 1])];
    const y = (v) => T + PH - ((v - lo) / (hi - lo)) * PH;
    const root = svg("svg", { class: "agg-chart", width, height, "data-output": output.name, "data-fn": fn, "data-from": from, "data-to": to });
    const axis = svg("g", { class: "axis" });
    for (const v of marks) {
      axis.append(svg("line", { x1: L, x2: L + PW, y1: y(v), y2: y(v) }),
        svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, fmtRounded(v)));
    }
    const step = niceStep(span / 6);
    for (let t = Math.ceil(from / step) * step; t <= to; t += step) {
      axis.append(svg("text", { x: x(t), y: height - 6, "text-anchor": "middle" }, fmtTime(t)));
    }
    root.append(axis);
    const dots = [];
    for (const g of output.groups) {
      const label = groupLabel(g.group), color = colorFor(label);
      // Each sample holds until the next one (aggregates change in steps).
      let d = "", last = null;
      g.values[fn].forEach((v, i) => {
        if (typeof v !== "number") { last = null; return; }
        const px = x(times[i]).toFixed(1), py = y(v).toFixed(1);
        d += last === null ? `M${px},${py} ` : `L${px},${last} L${px},${py} `;
        last = py;
      });
      root.append(svg("path", { class: "agg-line", d, stroke: color, "data-group": label }));
      const dot = svg("circle", { class: "agg-dot", r: 3.5, fill: color, visibility: "hidden" });
      dots.push([g, dot]);
      root.append(dot);
    }
    const cursor = svg("line", { class: "cursor", y1: T, y2: T + PH, visibility: "hidden" });
    root.append(cursor);
    const legend = el("table", { class: "agg-legend" }, [
      el("tr", {}, [el("th", {}, output.group_by ? `by ${output.group_by}` : "group"), el("th", {}, fn), el("th", {}, "keys")]),
      ...output.groups.map((g) => el("tr", { "data-group": groupLabel(g.group) }, [
        el("td", {}, [el("span", { class: "swatch", style: `background:${colorFor(groupLabel(g.group))}` }), groupLabel(g.group)]),
        el("td", { class: "agg-value mono" }), el("td", { class: "agg-keys mono" })])),
    ]);
    const tAt = (px) => from + ((Math.max(L, Math.min(L + PW, px)) - L) / PW) * span;
    const local = (e) => e.clientX - root.getBoundingClientRect().left;
    root.addEventListener("mousemove", (e) => moveCursor(nearest(tAt(local(e)))));
    root.addEventListener("click", (e) => {
      at.value = String(series.times[nearest(tAt(local(e)))]);
      readTable();
    });
    drawn.push({
      move(i) {
        const px = x(times[i]);
        cursor.setAttribute("x1", px); cursor.setAttribute("x2", px); cursor.setAttribute("visibility", "visible");
        root.setAttribute("data-cursor-t", times[i]);
        for (const [g, dot] of dots) {
          const v = g.values[fn][i];
          if (typeof v === "number") {
            dot.setAttribute("cx", px); dot.setAttribute("cy", y(v)); dot.setAttribute("visibility", "visible");
          } else dot.setAttribute("visibility", "hidden");
        }
        output.groups.forEach((g, k) => {
          const row = legend.rows[k + 1];
          const v = g.values[fn][i];
          row.cells[1].textContent = fmtRounded(v);
          row.cells[1].title = exact(v);
          row.cells[1].setAttribute("data-value", JSON.stringify(v));
          row.cells[2].textContent = String(g.keys[i]);
        });
      },
    });
    return el("div", { class: "agg-chart-box", "data-output": output.name, "data-fn": fn }, [
      el("h3", {}, [`${output.name}`, fn === "value" ? null : el("span", { class: "badge" }, fn), el("span", { class: "badge" }, output.worker),
        output.group_by ? el("span", { class: "badge" }, `by ${output.group_by}`) : null]),
      el("div", { class: "agg-chart-row" }, [root, legend]),
    ]);
  }

  function drawCharts() {
    drawn.length = 0;
    if (!series.times.length) return charts.replaceChildren(el("p", { class: "muted" }, "No events yet."));
    const boxes = series.outputs.flatMap((o) => o.functions.map((fn) => chart(o, fn)));
    charts.replaceChildren(...boxes);
    moveCursor(nearest(cursorT));
  }

  async function readTable() {
    const t = at.value.trim() || "end";
    let body;
    try { body = await api(`/v1/jobs/${enc(job)}/metrics?t=${enc(t)}`); } catch (e) { return box.replaceChildren(errorBox(e)); }
    const panels = body.outputs.filter((o) => o.groups).map((o) => {
      const names = o.worker === "metric" ? ["value"] : Object.keys((o.groups[0] || { values: {} }).values);
      const valueOf = (g, n) => (o.worker === "metric" ? g.value : g.values[n]);
      const max = Math.max(1e-9, ...o.groups.map((g) => Math.abs(Number(valueOf(g, names[0])) || 0)));
      return el("div", { class: "output", "data-output": o.name, "data-t": String(o.t) }, [
        el("h3", {}, [o.name, el("span", { class: "badge" }, o.worker), o.group_by ? el("span", { class: "badge" }, `by ${o.group_by}`) : null,
          el("span", { class: "muted", style: "margin-left:8px;font-weight:400" }, `t = ${o.t === null ? "no events" : `${fmtTime(o.t)} (${o.t})`}`)]),
        el("table", {}, [
          el("tr", {}, ["group", "keys", ...names, ""].map((h) => el("th", {}, h))),
          ...o.groups.map((g) => el("tr", { "data-group": groupLabel(g.group) }, [
            el("td", {}, g.group === null ? el("span", { class: "muted" }, "null") : String(g.group)),
            el("td", {}, g.keys),
            ...names.map((n) => el("td", { class: "mono", "data-fn": n, title: exact(valueOf(g, n)), "data-value": JSON.stringify(valueOf(g, n)) }, fmtRounded(valueOf(g, n)))),
            el("td", { style: "width:30%" }, svg("svg", { width: "100%", height: 14 }, svg("rect", { class: "bar", height: 12, width: `${(Math.abs(Number(valueOf(g, names[0])) || 0) / max) * 100}%` }))),
          ])),
        ]),
      ]);
    });
    box.replaceChildren(...panels);
  }

  const main = el("div", { id: "agg-main" }, [
    el("div", { class: "panel" }, [el("h3", {}, "Over time"), el("div", { class: "toolbar" }, cursorInfo), charts]),
    el("div", { class: "panel" }, [
      el("div", { class: "toolbar" }, [el("b", {}, "Every group at"), at, el("button", { id: "agg-refresh", onclick: () => readTable() }, "Show"),
        el("span", { class: "muted" }, "end, milliseconds or an RFC 3339 time")]),
      box,
    ]),
  ]);
  const root = el("div", {}, [el("h2", {}, `Aggregates of ${job}`), main]);
  return {
    root,
    async refresh() {
      try {
        const [body, read] = await Promise.all([api(`/v1/jobs/${enc(job)}`), api(`/v1/jobs/${enc(job)}/series?points=120`)]);
        if (!hasAggregates(body.plan.outputs)) {
          return main.replaceChildren(el("div", { class: "panel", id: "agg-none" }, [
            el("p", {}, `${job} has no aggregates or metrics: its results are per key. See the `),
            el("a", { href: `#/jobs/${enc(job)}/keys` }, "key view")]));
        }
        series = read;
      } catch (e) {
        return charts.replaceChildren(errorBox(e));
      }
      drawCharts();
      await readTable();
    },
  };
}
