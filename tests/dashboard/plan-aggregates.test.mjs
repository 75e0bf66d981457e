// The dashboard's plan view and aggregates view in headless Chromium against
// a real `timeline serve` running every example of examples/: what each plan
// node says, a layout without crossings and with edges clear of the boxes
// (checked on the drawn geometry), per-node live figures, aggregates over
// time with a shared cursor, and the Aggregates tab only where it applies.
// Writes docs/plan-view.png and docs/aggregates-view.png.
//
// TIMELINE_BIN names the `timeline` binary; CHROMIUM the browser
// (default /usr/bin/chromium). Run by scripts/test-dashboard.sh.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { startServer, launchBrowser, call, example, root } from "./harness.mjs";

const docs = join(root, "docs");
const EXAMPLES = readdirSync(join(root, "examples")).filter((f) => f.endsWith(".tl")).map((f) => f.slice(0, -3)).sort();

let server, base, browser, page;

before(async () => {
  server = await startServer();
  base = server.base;
  browser = await launchBrowser();
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on("pageerror", (e) => { throw e; });
  // Every example as a job named after it, with its events.
  for (const name of EXAMPLES) {
    const { status, body: job } = await api(`/v1/jobs?name=${name}`, { method: "POST", body: example(`${name}.tl`) });
    assert.equal(status, 201, JSON.stringify(job));
    const posted = await api(job.routes.events, { method: "POST", body: example(`${name}.jsonl`) });
    assert.equal(posted.status, 200, JSON.stringify(posted.body));
  }
});

after(async () => {
  if (browser) await browser.close();
  if (server) server.stop();
});

const api = (path, options) => call(base, path, options);

// ---------------------------------------------------------------- geometry

/** The polyline of an SVG path made of M and L commands. */
function polyline(d) {
  const points = [];
  for (const [, cmd, x, y] of d.matchAll(/([ML])\s*(-?[\d.]+)[ ,](-?[\d.]+)/g)) {
    assert.ok(cmd === "M" ? points.length === 0 : points.length > 0, `path ${d}`);
    points.push([Number(x), Number(y)]);
  }
  assert.ok(points.length >= 2, `path ${d}`);
  assert.equal(d.replace(/([ML])\s*(-?[\d.]+)[ ,](-?[\d.]+)/g, "").trim(), "", `only straight segments: ${d}`);
  return points;
}

const orient = (a, b, c) => Math.sign((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]));
const onSegment = (a, b, p) => Math.min(a[0], b[0]) <= p[0] && p[0] <= Math.max(a[0], b[0]) && Math.min(a[1], b[1]) <= p[1] && p[1] <= Math.max(a[1], b[1]);

/** Whether segments ab and cd meet (touching counts). */
function meet([a, b], [c, d]) {
  const o1 = orient(a, b, c), o2 = orient(a, b, d), o3 = orient(c, d, a), o4 = orient(c, d, b);
  if (o1 !== o2 && o3 !== o4) return true;
  return (o1 === 0 && onSegment(a, b, c)) || (o2 === 0 && onSegment(a, b, d)) || (o3 === 0 && onSegment(c, d, a)) || (o4 === 0 && onSegment(c, d, b));
}

/** Whether segment ab enters the open rectangle r = {x, y, w, h}. */
function entersBox([a, b], r) {
  const inside = (p) => p[0] > r.x && p[0] < r.x + r.w && p[1] > r.y && p[1] < r.y + r.h;
  if (inside(a) || inside(b)) return true;
  const corners = [[r.x, r.y], [r.x + r.w, r.y], [r.x + r.w, r.y + r.h], [r.x, r.y + r.h]];
  const sides = corners.map((c, i) => [c, corners[(i + 1) % 4]]);
  // Crossing two sides (or a side and ending inside) means passing through.
  return sides.filter((s) => meet([a, b], s)).length >= 2 && inside([(a[0] + b[0]) / 2, (a[1] + b[1]) / 2]);
}

/** The drawn plan: boxes by node and edges as polylines. */
async function drawnPlan() {
  return page.$eval("#plan-graph", (graph) => {
    const boxes = {};
    for (const g of graph.querySelectorAll("g.plan-node")) {
      const m = g.getAttribute("transform").match(/translate\(([-\d.]+),\s*([-\d.]+)\)/);
      const rect = g.querySelector("rect");
      boxes[g.dataset.node] = { x: Number(m[1]), y: Number(m[2]), w: Number(rect.getAttribute("width")), h: Number(rect.getAttribute("height")) };
    }
    const edges = [...graph.querySelectorAll("path.plan-edge")].map((p) => ({ from: p.dataset.from, to: p.dataset.to, d: p.getAttribute("d") }));
    return { boxes, edges };
  });
}

// ---------------------------------------------------------------- plan

/** `text` without parentheses around all of it. */
function unwrap(text) {
  if (!/^\(.*\)$/s.test(text)) return text;
  let depth = 0;
  for (const c of text.slice(1, -1)) {
    if (c === "(") depth++;
    else if (c === ")" && --depth < 0) return text;
  }
  return text.slice(1, -1);
}

test("every example's plan says what each node computes and lays out without crossings", async () => {
  for (const name of EXAMPLES) {
    const { body: job } = await api(`/v1/jobs/${name}`);
    await page.goto(`${base}/#/jobs/${name}/plan`);
    await page.waitForSelector(`#plan-graph[data-job="${name}"] g.plan-node`);
    const nodes = job.plan.nodes;
    const byId = new Map(nodes.map((n) => [n.id, n]));
    // The API names large children by id; in full, each id is its node's expression.
    const full = (n) => n.children.reduce((text, c) => text.replaceAll(c, full(byId.get(c))), n.expression);
    for (const n of nodes) {
      const g = `#plan-graph g.plan-node[data-node="${n.id}"]`;
      // Whole on hover (without the parentheses around all of it).
      const title = await page.textContent(`${g} > title`);
      assert.equal(title.split("\n")[0], unwrap(full(n)), `${name} ${n.id}`);
      // In the box, what the node adds: its inputs by operator, shortened.
      const own = unwrap(n.children.reduce((text, c) => text.replaceAll(c, `‹${c.slice(0, c.lastIndexOf("-"))}›`), n.expression));
      const shown = (await page.locator(`${g} text.plan-expr tspan`).allTextContents()).join(" ");
      const squash = (s) => s.replace(/\s+/g, "");
      if (shown.endsWith("…")) assert.ok(squash(own).startsWith(squash(shown.slice(0, -1))), `${name}: ${shown} | ${own}`);
      else assert.equal(squash(shown), squash(own), `${name} ${n.id}`);
      assert.ok(!/[0-9a-f]{16}/.test(shown), `${name}: no node id in the box: ${shown}`);
      // Its worker kind and whether it is shared.
      const worker = await page.textContent(`${g} text.plan-worker`);
      assert.match(worker, new RegExp(n.worker.replace("-", " ")), `${name} ${n.id}`);
      assert.equal(worker.includes("reused"), !!n.reused, `${name} ${n.id}`);
    }
    const { boxes, edges } = await drawnPlan();
    assert.equal(edges.length, nodes.reduce((k, n) => k + n.children.length, 0), name);
    assert.deepEqual(edges.map((e) => `${e.from}>${e.to}`).sort(),
      nodes.flatMap((n) => n.children.map((c) => `${c}>${n.id}`)).sort(), name);
    const lines = edges.map((e) => polyline(e.d));
    edges.forEach((e, i) => {
      // From the input's right side to the consumer's left side.
      const [first, last] = [lines[i][0], lines[i][lines[i].length - 1]];
      const a = boxes[e.from], b = boxes[e.to];
      assert.ok(Math.abs(first[0] - (a.x + a.w)) < 0.2 && first[1] > a.y && first[1] < a.y + a.h, `${name} ${e.from} out`);
      assert.ok(Math.abs(last[0] - b.x) < 0.2 && last[1] > b.y && last[1] < b.y + b.h, `${name} ${e.to} in`);
    });
    const segments = lines.map((pts) => pts.slice(1).map((p, k) => [pts[k], p]));
    // Edges never run under boxes.
    segments.forEach((segs, i) => segs.forEach((s) => {
      for (const [id, box] of Object.entries(boxes)) {
        assert.ok(!entersBox(s, box), `${name}: edge ${edges[i].from} > ${edges[i].to} runs under ${id}`);
      }
    }));
    // No two edges cross or touch.
    for (let i = 0; i < segments.length; i++) {
      for (let j = i + 1; j < segments.length; j++) {
        for (const s of segments[i]) for (const t of segments[j]) {
          assert.ok(!meet(s, t), `${name}: ${edges[i].from} > ${edges[i].to} crosses ${edges[j].from} > ${edges[j].to}`);
        }
      }
    }
    // Boxes do not overlap.
    const all = Object.entries(boxes);
    for (let i = 0; i < all.length; i++) for (let j = i + 1; j < all.length; j++) {
      const [p, q] = [all[i][1], all[j][1]];
      assert.ok(p.x + p.w <= q.x || q.x + q.w <= p.x || p.y + p.h <= q.y || q.y + q.h <= p.y, `${name}: ${all[i][0]} overlaps ${all[j][0]}`);
    }
  }
  // CIRR's comparison on the CDN reads as written.
  await page.goto(`${base}/#/jobs/cirr/plan`);
  await page.waitForSelector('#plan-graph[data-job="cirr"] g.plan-node');
  const texts = await page.locator("#plan-graph text.plan-expr").allTextContents();
  assert.ok(texts.some((t) => t.replace(/\s+/g, "") === 'latest_event_to_state(cdnChange)=="CDN1"'), texts.join(" | "));
});

test("plan nodes show their live figures, and follow new events", async () => {
  await page.goto(`${base}/#/jobs/cirr/plan`);
  await page.waitForSelector('#plan-graph[data-job="cirr"] text.plan-stats[data-keys]');
  const { body: stats } = await api("/v1/jobs/cirr/stats");
  for (const s of stats.nodes) {
    const text = `#plan-graph g.plan-node[data-node="${s.node}"] text.plan-stats`;
    const attr = async (a) => page.getAttribute(text, a);
    assert.equal(await attr("data-events"), s.events === null ? "" : String(s.events), s.node);
    assert.equal(await attr("data-keys"), s.keys === null ? "" : String(s.keys), s.node);
    assert.equal(await attr("data-state-bytes"), String(s.state_bytes), s.node);
    assert.equal(await attr("data-latest"), s.latest === null ? "" : String(s.latest), s.node);
    const line = await page.textContent(text);
    if (s.worker === "event-processor") assert.match(line, new RegExp(`^${s.events} events in · ${s.keys} keys · `), s.node);
    else assert.match(line, new RegExp(`^${s.keys} keys · 0 B$`), s.node);
  }
  await page.screenshot({ path: join(docs, "plan-view.png") });

  const leaf = stats.nodes.find((s) => s.worker === "event-processor").node;
  await api("/v1/events", { method: "POST", body: JSON.stringify({ session_id: "plan-viewer", time: 123456, cdnChange: "CDN2" }) });
  await page.waitForFunction(([node, events]) => {
    const t = document.querySelector(`#plan-graph g.plan-node[data-node="${node}"] text.plan-stats`);
    return t && t.dataset.events === String(events);
  }, [leaf, stats.nodes.find((s) => s.node === leaf).events + 1], { timeout: 10000 });
  assert.match(await page.textContent(`#plan-graph g.plan-node[data-node="${leaf}"] text.plan-latest`), /last event/);
});

// ---------------------------------------------------------------- aggregates

test("the Aggregates tab appears only for a job with aggregates or metrics", async () => {
  for (const [name, expected] of [["cirr", "none"], ["completion-rate", "shown"], ["machine-risk", "none"]]) {
    await page.goto(`${base}/#/jobs/${name}/plan`);
    await page.waitForSelector(`nav[data-aggregates-of="${name}"][data-aggregates="${expected}"]`);
    assert.equal(await page.locator('nav a[data-tab="aggregates"]').count(), expected === "shown" ? 1 : 0, name);
  }
  await page.goto(`${base}/#/`);
  await page.waitForSelector('#jobs-table tr[data-job="cirr"]');
  assert.equal(await page.locator('#jobs-table tr[data-job="cirr"] a[href$="/aggregates"]').count(), 0);
  assert.equal(await page.locator('#jobs-table tr[data-job="completion-rate"] a[href$="/aggregates"]').count(), 1);
});

test("aggregates and metrics are plotted over time, a line per group, with one cursor for all charts", async () => {
  const job = "completion-rate";
  await page.goto(`${base}/#/jobs/${job}/aggregates`);
  await page.waitForSelector("svg.agg-chart path.agg-line");
  const { body: series } = await api(`/v1/jobs/${job}/series?points=120`);
  const charts = series.outputs.flatMap((o) => o.functions.map((fn) => [o, fn]));
  assert.equal(await page.locator("svg.agg-chart").count(), charts.length);
  for (const [o, fn] of charts) {
    const lines = await page.locator(`svg.agg-chart[data-output="${o.name}"][data-fn="${fn}"] path.agg-line`)
      .evaluateAll((ps) => ps.map((p) => p.dataset.group));
    assert.deepEqual(lines, o.groups.map((g) => (g.group === null ? "null" : String(g.group))), `${o.name} ${fn}`);
  }
  // The cursor over one chart moves every chart's, and each legend shows the
  // groups' values there: rounded, exact in the title.
  const rate = page.locator('svg.agg-chart[data-output="completion_rate"]');
  const box = await rate.boundingBox();
  await page.mouse.move(box.x + box.width * 0.55, box.y + box.height / 2);
  const t = Number(await page.getAttribute("#agg-cursor", "data-t"));
  const i = series.times.indexOf(t);
  assert.ok(i > 0 && i < series.times.length - 1, `cursor at ${t}`);
  for (const [o, fn] of charts) {
    const chart = `.agg-chart-box[data-output="${o.name}"][data-fn="${fn}"]`;
    assert.equal(await page.getAttribute(`${chart} svg.agg-chart`, "data-cursor-t"), String(t), o.name);
    for (const g of o.groups) {
      const cell = `${chart} tr[data-group="${g.group === null ? "null" : String(g.group)}"] td.agg-value`;
      const v = g.values[fn][i];
      const rounded = v === null ? "—" : Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(3)));
      assert.equal(await page.textContent(cell), rounded, `${o.name} ${g.group} at ${t}`);
      assert.equal(await page.getAttribute(cell, "title"), v === null ? "unknown" : String(v));
    }
  }
  // Values read as people read them, exactly on hover.
  assert.deepEqual(await page.evaluate(() => [0.5185185185185185, 2 / 3, 1234.5678, 42, 1e-7, -0.25].map((v) => fmtRounded(v))),
    ["0.519", "0.667", "1235", "42", "1e-7", "-0.25"]);
  await page.screenshot({ path: join(docs, "aggregates-view.png"), fullPage: true });

  // A click reads the table at the cursor's time.
  await page.mouse.click(box.x + box.width * 0.55, box.y + box.height / 2);
  await page.waitForSelector(`.output[data-output="completion_rate"][data-t="${t}"]`);
  const { body: at } = await api(`/v1/jobs/${job}/metrics/completion_rate?t=${t}`);
  for (const g of at.groups) {
    const cell = `.output[data-output="completion_rate"] tr[data-group="${g.group}"] td[data-fn="value"]`;
    assert.equal(await page.getAttribute(cell, "data-value"), JSON.stringify(g.value));
  }
});
