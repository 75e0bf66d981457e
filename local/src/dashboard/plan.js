// The plan view: a job's nodes as a layered graph (inputs on the left, the
// result on the right), each box saying what it computes, which worker
// computes it, whether another job shares it, and its live figures.
// Loaded before app.js, whose helpers (el, svg, api, ...) it uses.
"use strict";

// ---------------------------------------------------------------- layout

/**
 * Lays a plan out in columns without crossings where it can: a node's column
 * is one right of its rightmost input (leaves in the first); an edge that
 * spans columns passes through a free slot in each column between (so it
 * never runs under a box); nodes are ordered in their column by barycenter
 * sweeps, then by swapping neighbours while that removes crossings.
 * Returns { columns: [[item]], edges: [{from, to, path: [item]}] }, an item
 * being { id, node } for a node and { id, edge } for a pass-through slot.
 */
function layoutPlan(nodes) {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const layer = new Map();
  const depth = (n) => {
    if (layer.has(n.id)) return layer.get(n.id);
    const children = n.children.filter((c) => byId.has(c));
    const d = children.length ? 1 + Math.max(...children.map((c) => depth(byId.get(c)))) : 0;
    layer.set(n.id, d);
    return d;
  };
  nodes.forEach(depth);
  const count = Math.max(0, ...layer.values()) + 1;
  const columns = Array.from({ length: count }, () => []);
  for (const n of nodes) columns[layer.get(n.id)].push({ id: n.id, node: n });
  // Every edge, child to parent, through a pass-through slot per column between.
  const edges = [];
  for (const n of nodes) {
    n.children.forEach((c, i) => {
      if (!byId.has(c)) return;
      const edge = { from: c, to: n.id, index: i, path: [] };
      for (let l = layer.get(c) + 1; l < layer.get(n.id); l++) {
        const item = { id: `${c}>${n.id}#${i}@${l}`, edge };
        columns[l].push(item);
        edge.path.push(item);
      }
      edges.push(edge);
    });
  }
  // Links between neighbouring columns: [left item id, right item id, edge].
  const links = [];
  const itemOf = new Map();
  columns.forEach((col, l) => col.forEach((item) => itemOf.set(item.id, { item, l })));
  for (const e of edges) {
    const chain = [e.from, ...e.path.map((p) => p.id), e.to];
    for (let i = 0; i + 1 < chain.length; i++) links.push([chain[i], chain[i + 1], e]);
  }
  const linksBetween = (l) => links.filter(([a]) => itemOf.get(a).l === l);
  const pos = () => {
    const p = new Map();
    columns.forEach((col) => col.forEach((item, i) => p.set(item.id, i)));
    return p;
  };
  const crossings = () => {
    const p = pos();
    let total = 0;
    for (let l = 0; l + 1 < count; l++) {
      const ls = linksBetween(l);
      for (let i = 0; i < ls.length; i++) {
        for (let j = i + 1; j < ls.length; j++) {
          const [a1, b1] = ls[i], [a2, b2] = ls[j];
          if (a1 === a2 || b1 === b2) continue; // ports keep these apart
          if ((p.get(a1) - p.get(a2)) * (p.get(b1) - p.get(b2)) < 0) total++;
        }
      }
    }
    return total;
  };
  const neighbours = (id, side) => links.filter((k) => k[side === "left" ? 1 : 0] === id).map((k) => k[side === "left" ? 0 : 1]);
  const sortBy = (l, side) => {
    const p = pos();
    const key = new Map(columns[l].map((item, i) => {
      const ns = neighbours(item.id, side);
      return [item.id, ns.length ? ns.reduce((s, n) => s + p.get(n), 0) / ns.length : i];
    }));
    columns[l].sort((a, b) => key.get(a.id) - key.get(b.id));
  };
  let best = columns.map((c) => c.slice());
  let fewest = crossings();
  for (let round = 0; round < (links.length <= 2000 ? 12 : 2) && fewest > 0; round++) {
    if (round % 2 === 0) for (let l = 1; l < count; l++) sortBy(l, "left");
    else for (let l = count - 2; l >= 0; l--) sortBy(l, "right");
    const c = crossings();
    if (c < fewest) { fewest = c; best = columns.map((col) => col.slice()); }
  }
  best.forEach((col, l) => { columns[l] = col; });
  // Swap neighbours while that removes crossings (on plans of a readable size:
  // each try recounts every crossing).
  for (let improved = fewest > 0 && links.length <= 400; improved;) {
    improved = false;
    for (const col of columns) {
      for (let i = 0; i + 1 < col.length && fewest > 0; i++) {
        [col[i], col[i + 1]] = [col[i + 1], col[i]];
        const c = crossings();
        if (c < fewest) { fewest = c; improved = true; } else [col[i], col[i + 1]] = [col[i + 1], col[i]];
      }
    }
  }
  return { columns, edges, crossings: fewest };
}

// ---------------------------------------------------------------- figures

function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let v = n / 1024, u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

const fmtCount = (n) => (n === null || n === undefined ? "—" : n.toLocaleString("en-US"));

/** A node's live figures as one line ("events in" for leaves only). */
function figuresLine(s) {
  if (!s) return "";
  const parts = [];
  if (s.events !== null) parts.push(`${fmtCount(s.events)} events in`);
  if (s.keys !== null) parts.push(`${fmtCount(s.keys)} keys`);
  if (s.groups !== null) parts.push(`${fmtCount(s.groups)} groups`);
  parts.push(fmtBytes(s.state_bytes));
  return parts.join(" · ");
}

/** Figure `name` of node figures `s` as an attribute ("" when none). */
const figure = (s, name) => (s && s[name] !== null && s[name] !== undefined ? String(s[name]) : "");

/** An expression without the parentheses around all of it. */
function bare(expression) {
  if (!expression.startsWith("(") || !expression.endsWith(")")) return expression;
  let depth = 0, quoted = false;
  for (let i = 0; i < expression.length; i++) {
    if (quoted) { if (expression[i] === "\\") i++; else if (expression[i] === '"') quoted = false; continue; }
    if (expression[i] === '"') quoted = true;
    else if (expression[i] === "(") depth++;
    else if (expression[i] === ")" && --depth === 0 && i < expression.length - 1) return expression;
  }
  return expression.slice(1, -1);
}

/**
 * Each node's expression two ways: `full`, its children named by id replaced
 * by their own full expressions (while that stays under a bound), and
 * `own`, those children shortened to their operator: what the node adds.
 */
function expressions(nodes) {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const full = new Map();
  const fullOf = (n) => {
    if (full.has(n.id)) return full.get(n.id);
    let text = n.expression;
    for (const c of new Set(n.children)) {
      if (!byId.has(c) || !text.includes(c)) continue;
      const sub = fullOf(byId.get(c));
      if (text.length + sub.length <= 4000) text = text.split(c).join(sub);
    }
    full.set(n.id, text);
    return text;
  };
  return new Map(nodes.map((n) => {
    let own = n.expression;
    for (const c of new Set(n.children)) own = own.split(c).join(`‹${operatorOf(c)}›`);
    return [n.id, { full: bare(fullOf(n)), own: bare(own) }];
  }));
}

/** `text` cut to at most `n` characters, with an ellipsis when cut. */
const cut = (text, n) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

/** `text` in at most `lines` lines of `width` characters (the last cut). */
function wrap(text, width, lines) {
  const out = [];
  let rest = text;
  while (rest.length && out.length < lines) {
    if (out.length === lines - 1 || rest.length <= width) { out.push(cut(rest, width)); break; }
    // Break at the last space, or after the last opening parenthesis or
    // comma, that fits; inside a word only when there is none.
    let at = Math.max(rest.lastIndexOf(" ", width), rest.lastIndexOf("(", width - 1) + 1, rest.lastIndexOf(",", width - 1) + 1);
    if (at < 4) at = width;
    out.push(rest.slice(0, at).trimEnd());
    rest = rest.slice(at).trimStart();
  }
  return out;
}

// ---------------------------------------------------------------- view

const WORKER_LABEL = { "event-processor": "event processor", "timeline-processor": "timeline processor", aggregator: "aggregator", metric: "metric" };

function planView(job) {
  const box = el("div", { class: "panel" }, el("p", { class: "muted" }, "loading…"));
  const NW = 212, NH = 124, GAP = 44, VGAP = 18, PASS = 16;

  function draw(body, stats) {
    const nodes = body.plan.nodes;
    const figures = new Map(((stats && stats.nodes) || []).map((s) => [s.node, s]));
    const outputs = new Map((body.plan.outputs || []).map((o) => [o.node, o.name]));
    const { columns, edges } = layoutPlan(nodes);
    const texts = expressions(nodes);
    // Column heights: boxes and the thinner pass-through slots.
    const slot = (item) => (item.node ? NH + VGAP : PASS);
    const heights = columns.map((col) => col.reduce((h, item) => h + slot(item), 0));
    const height = Math.max(...heights, NH) + 20;
    const at = new Map(); // item id -> { x, y (top), h }
    columns.forEach((col, l) => {
      let y = 10 + (height - 20 - heights[l]) / 2;
      for (const item of col) {
        at.set(item.id, { x: 10 + l * (NW + GAP), y, h: item.node ? NH : PASS });
        y += slot(item);
      }
    });
    const width = columns.length * (NW + GAP) - GAP + 20;
    const graph = svg("svg", { id: "plan-graph", "data-job": body.name, width, height, viewBox: `0 0 ${width} ${height}`, "data-layout": "layered" });
    // Ports: a box's inputs spread down its left side, its outputs down its
    // right side, each in the order of the other end (so edges into or out of
    // one box never cross each other).
    const ports = new Map();
    const spread = (id, side, ends) => {
      const b = at.get(id);
      if (!ends.length) return;
      const sorted = ends.slice().sort((p, q) => p.y - q.y || p.k - q.k);
      sorted.forEach((end, i) => ports.set(`${side}:${end.key}`, b.y + (NH * (i + 1)) / (sorted.length + 1)));
    };
    const centre = (id) => { const b = at.get(id); return b.y + b.h / 2; };
    const firstHop = (e) => (e.path.length ? e.path[0].id : e.to);
    const lastHop = (e) => (e.path.length ? e.path[e.path.length - 1].id : e.from);
    const key = (e) => `${e.from}>${e.to}#${e.index}`;
    for (const n of nodes) {
      spread(n.id, "out", edges.filter((e) => e.from === n.id).map((e, k) => ({ key: key(e), y: centre(firstHop(e)), k })));
      spread(n.id, "in", edges.filter((e) => e.to === n.id).map((e, k) => ({ key: key(e), y: centre(lastHop(e)), k })));
    }
    for (const e of edges) {
      const points = [[at.get(e.from).x + NW, ports.get(`out:${key(e)}`)]];
      for (const p of e.path) {
        const b = at.get(p.id);
        points.push([b.x, b.y + PASS / 2], [b.x + NW, b.y + PASS / 2]);
      }
      points.push([at.get(e.to).x, ports.get(`in:${key(e)}`)]);
      const d = points.map(([x, y], i) => `${i ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
      graph.append(svg("path", { class: "plan-edge", d, "data-from": e.from, "data-to": e.to }));
    }
    for (const n of nodes) {
      const p = at.get(n.id);
      const s = figures.get(n.id);
      const output = outputs.get(n.id);
      const title = output ? `${operatorOf(n.id)}  → ${output}` : operatorOf(n.id);
      const text = texts.get(n.id);
      const expr = wrap(text.own, 29, 3);
      const g = svg("g", {
        class: `plan-node kind-${n.worker}${n.reused ? " reused" : ""}`, transform: `translate(${p.x},${p.y})`,
        "data-node": n.id, "data-worker": n.worker, "data-reused": String(!!n.reused),
      }, [
        svg("title", {}, `${text.full}\n${n.id}`),
        svg("rect", { width: NW, height: NH, rx: 6 }),
        svg("text", { x: 10, y: 18, "font-weight": 600, "font-size": 13 }, cut(title, 27)),
        svg("text", { class: "plan-expr", x: 10, y: 36, "font-size": 11, "font-family": "monospace", fill: "#1d2430" },
          expr.map((line, i) => svg("tspan", { x: 10, dy: i ? 14 : 0 }, line))),
        svg("text", { class: "plan-worker", x: 10, y: 82, "font-size": 11, fill: "#3a4a66" },
          [WORKER_LABEL[n.worker] || n.worker, n.reused ? svg("tspan", { class: "plan-reused", "font-weight": 600, fill: "#8a5a00" }, " · reused") : null]),
        svg("text", {
          class: "plan-stats", x: 10, y: 98, "font-size": 11, fill: "#6b7383",
          "data-events": figure(s, "events"), "data-keys": figure(s, "keys"), "data-groups": figure(s, "groups"),
          "data-state-bytes": figure(s, "state_bytes"), "data-latest": figure(s, "latest"),
        }, figuresLine(s)),
        svg("text", { class: "plan-latest", x: 10, y: 113, "font-size": 11, fill: "#6b7383" },
          s && s.latest !== null ? `last event ${fmtTime(s.latest)}` : "no event yet"),
      ]);
      graph.append(g);
    }
    return graph;
  }

  return {
    root: el("div", {}, [el("h2", {}, `Plan of ${job}`), box]),
    async refresh() {
      let body, stats;
      try {
        [body, stats] = await Promise.all([api(`/v1/jobs/${enc(job)}`), api(`/v1/jobs/${enc(job)}/stats`)]);
      } catch (e) {
        return box.replaceChildren(errorBox(e));
      }
      const nodes = body.plan.nodes;
      const figures = new Map(stats.nodes.map((s) => [s.node, s]));
      const legend = el("p", { class: "muted" }, "Inputs on the left, the result on the right. Leaves (blue) run in event processors, one per key; derived nodes in timeline processors; aggregates and metrics (purple) across keys. Yellow nodes were already running for another job. A box shows what its node adds (‹and› stands for an input node); hover it for the full expression. State sizes are estimates: a leaf's state per key with what it holds on the heap, an aggregate's arenas and key index; derived nodes are computed on demand and hold none.");
      const stream = body.stream;
      const reads = el("p", { id: "plan-stream" }, ["Reads stream ", el("a", { href: `#/streams/${enc(stream.name)}` }, el("b", {}, stream.name)),
        el("span", { class: "muted" }, ` · key ${stream.key} · time ${stream.time} · id ${stream.id}`),
        el("span", { class: "muted", id: "plan-totals" }, ` · ${fmtCount(stats.events)} events · ${fmtCount(stats.keys)} keys${stats.latest === null ? "" : ` · last event ${fmtTime(stats.latest)}`}`)]);
      box.replaceChildren(reads, ...warningBoxes(body.warnings), el("div", { class: "plan-scroll" }, draw(body, stats)), legend,
        el("h3", {}, "Nodes"),
        el("table", { id: "plan-nodes" }, [el("tr", {}, ["node", "worker", "expression", "events in", "keys", "state", "last event", ""].map((h) => el("th", {}, h))),
          ...nodes.map((n) => {
            const s = figures.get(n.id) || {};
            return el("tr", { "data-node": n.id }, [el("td", {}, el("code", {}, n.id)), el("td", {}, n.worker),
              el("td", {}, el("code", {}, n.expression)), el("td", {}, fmtCount(s.events)), el("td", {}, fmtCount(s.keys)),
              el("td", { title: `${s.state_bytes} bytes` }, fmtBytes(s.state_bytes)),
              el("td", {}, s.latest === null || s.latest === undefined ? "—" : fmtTime(s.latest)),
              el("td", {}, n.reused ? el("span", { class: "badge reused" }, "reused") : "")]);
          })]));
    },
  };
}
