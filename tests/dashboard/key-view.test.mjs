// The key view in headless Chromium against a `timeline serve` of its own:
// the key list (first key opened, search, pages), rows and cursor table
// labelled with their sub-expressions, counts read as counts, the cursor
// after a zoom, epoch times with their date, state labels on a phone-wide
// screen, windowed durations (falling spans), and the CSV/JSON export checked
// against the API.
// Run by scripts/test-dashboard.sh.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { startServer, launchBrowser, call, example, parseCsv, shots } from "./harness.mjs";

let server, browser, page;
const api = (path, options) => call(server.base, path, options);
const KEY = "afsal-mando-1";
/** The CIRR job's per-key nodes (the rows the key view draws). */
let cirr;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
  page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on("pageerror", (e) => { throw e; });
  assert.equal((await api("/v1/jobs?name=cirr", { method: "POST", body: example("cirr.tl") })).status, 201);
  assert.equal((await api("/v1/events", { method: "POST", body: example("cirr.jsonl") })).status, 200);
  const { body } = await api("/v1/jobs/cirr");
  cirr = body.plan.nodes.filter((n) => n.worker === "event-processor" || n.worker === "timeline-processor");
});

after(async () => {
  if (browser) await browser.close();
  if (server) server.stop();
});

/** Every axis label lies inside the chart. */
async function assertTicksInside(on) {
  const ticks = await on.$$eval("svg.timeline-chart .axis text.tick", (ts) => ts.map((t) => {
    const b = t.getBBox();
    return { text: t.textContent, left: b.x, right: b.x + b.width, width: t.ownerSVGElement.width.baseVal.value };
  }));
  assert.ok(ticks.length >= 2);
  for (const t of ticks) assert.ok(t.left >= 0 && t.right <= t.width, `${t.text} at [${t.left}, ${t.right}] of ${t.width}`);
}

async function openKey(key, job = "cirr") {
  await page.goto(`${server.base}/#/jobs/${job}/keys/${key}`);
  await page.waitForSelector("g.row rect.span");
}

/** What the cursor table shows for `node`, and what the API says at `t`. */
async function cursorValue(node, t) {
  const { body } = await api(`/v1/workers/${node}/${KEY}/result?t=${t}`);
  const expected = body.value === null ? "unknown" : typeof body.value === "string" ? JSON.stringify(body.value) : String(body.value);
  return [await page.textContent(`#cursor-values tr[data-node="${node}"] td.value`), expected];
}

test("the key view lists the job's keys, opens on the first, pages and searches them", async () => {
  const viewers = Array.from({ length: 60 }, (_, i) => JSON.stringify({ session_id: `viewer-${String(i).padStart(2, "0")}`, time: 0, cdnChange: "CDN2" }));
  assert.equal((await api("/v1/events", { method: "POST", body: viewers.join("\n") })).status, 200);
  const { body: all } = await api("/v1/jobs/cirr/keys");
  assert.equal(all.keys.length, 62);

  await page.goto(`${server.base}/#/jobs/cirr/keys`);
  // Opens on the first key: no "Pick a key.", the rows drawn, the address says which.
  await page.waitForSelector("g.row rect.span");
  assert.equal(await page.textContent("#key-list a.selected"), all.keys[0]);
  assert.equal(new URL(page.url()).hash, `#/jobs/cirr/keys/${all.keys[0]}`);
  assert.doesNotMatch(await page.textContent("main"), /Pick a key/);
  // A visible list, a page at a time.
  assert.ok(await page.locator("#key-list").isVisible());
  assert.deepEqual(await page.locator("#key-list a").allTextContents(), all.keys.slice(0, 50));
  await page.click("#key-more");
  await page.waitForFunction(() => document.querySelectorAll("#key-list a").length === 62);
  assert.deepEqual(await page.locator("#key-list a").allTextContents(), all.keys);
  assert.ok(await page.locator("#key-more").isHidden());

  // Searched by the server: a substring, ignoring case.
  const searched = page.waitForRequest((r) => r.url().includes("contains=CDN2"));
  await page.fill("#key-search", "CDN2");
  await searched;
  await page.waitForFunction(() => document.querySelectorAll("#key-list a").length === 1);
  assert.deepEqual(await page.locator("#key-list a").allTextContents(), ["cdn2-viewer"]);
  await page.fill("#key-search", "viewer-5");
  await page.waitForFunction(() => document.querySelectorAll("#key-list a").length === 10);

  // A click shows that key, and the list stays as searched.
  await page.click('#key-list a[data-key="viewer-57"]');
  await page.waitForSelector('#key-list a.selected[data-key="viewer-57"]');
  await page.waitForFunction(() => document.querySelectorAll("line.event-tick").length === 1);
  assert.equal(new URL(page.url()).hash, "#/jobs/cirr/keys/viewer-57");
  assert.equal(await page.inputValue("#key-search"), "viewer-5");
  // The arrows in the search box move through the keys listed.
  await page.press("#key-search", "ArrowDown");
  await page.waitForSelector('#key-list a.selected[data-key="viewer-58"]');
  await page.press("#key-search", "ArrowUp");
  await page.press("#key-search", "ArrowUp");
  await page.waitForSelector('#key-list a.selected[data-key="viewer-56"]');
  await page.press("#key-search", "Enter");
  await page.waitForSelector('#key-list a.selected[data-key="viewer-50"]');
  await page.click('#key-list a[data-key="viewer-57"]');
  await page.waitForSelector('#key-list a.selected[data-key="viewer-57"]');
  const state = cirr.find((n) => n.id.startsWith("latest_event_to_state") && n.expression.includes("cdnChange"));
  assert.deepEqual(await page.$$eval(`g.row[data-node="${state.id}"] rect.span`, (rs) => rs.map((r) => JSON.parse(r.dataset.value))), ["CDN2"]);
  // Its CIRR is 0 throughout, and its scale says so.
  const result = cirr.find((n) => n.id.startsWith("duration_where")).id;
  assert.equal(await page.textContent(`g.row[data-node="${result}"] text.numeric-max`), "0ms");
  await assertTicksInside(page);
  await page.screenshot({ path: join(shots, "key-list.png"), fullPage: true });
});

test("rows and the cursor table are labelled with their sub-expression", async () => {
  await openKey(KEY);
  const room = Number(await page.getAttribute("svg.timeline-chart", "data-label-width"));
  const labels = new Map();
  for (const node of cirr) {
    const label = page.locator(`g.row[data-node="${node.id}"] text.row-expression`);
    const full = await label.getAttribute("data-full");
    const shown = await label.locator("tspan").textContent();
    labels.set(node.id, { full, shown });
    // The whole expression: no child written by its node id.
    assert.doesNotMatch(full, /[a-z_]+-[0-9a-f]{16}/, node.id);
    assert.equal(await label.locator("title").textContent(), full);
    // Shortened with an ellipsis when it does not fit beside the chart.
    if (shown !== full) {
      const [head, tail] = shown.split("…");
      assert.ok(full.startsWith(head) && full.endsWith(tail), `${shown} of ${full}`);
    }
    assert.ok(await label.locator("tspan").evaluate((t) => t.getComputedTextLength()) <= room, shown);
    // The cursor table's row: the expression whole (the cell cuts it with CSS).
    assert.equal(await page.textContent(`#cursor-values tr[data-node="${node.id}"] td.expression`), full);
  }
  const compare = cirr.find((n) => n.expression === '(latest_event_to_state(cdnChange) == "CDN1")');
  assert.equal(labels.get(compare.id).shown, 'latest_event_to_state(cdnChange) == "CDN1"');
  // The three `and`s read differently, none as "and".
  const ands = cirr.filter((n) => n.id.startsWith("and-")).map((n) => labels.get(n.id).shown);
  assert.equal(ands.length, 3);
  assert.equal(new Set(ands).size, 3, ands.join(" | "));
  // The result's expression is the query itself: submitted again, it is the same node.
  const result = cirr.find((n) => n.id.startsWith("duration_where"));
  const { status, body } = await api("/v1/jobs?name=again", { method: "POST", body: labels.get(result.id).full });
  assert.equal(status, 201, JSON.stringify(body));
  assert.equal(body.plan.result, result.id);
  await api("/v1/jobs/again", { method: "DELETE" });
});

test("count_where reads as a count, durations as durations", async () => {
  const query = 'count_where(latest_event_to_state(playerStateChange) == "buffer")';
  assert.equal((await api("/v1/jobs?name=buffers", { method: "POST", body: query })).status, 201);
  await openKey(KEY, "buffers");
  const { body: job } = await api("/v1/jobs/buffers");
  const { body: at } = await api(`/v1/workers/${job.plan.result}/${KEY}/result`);
  assert.equal(at.value, 3, "afsal-mando-1 buffers three times");
  const count = `g.row[data-node="${job.plan.result}"]`;
  // The row's scale: its largest value, drawn at its top left.
  assert.equal(await page.textContent(`${count} text[text-anchor="end"]`), "3");
  assert.equal(await page.getAttribute(count, "data-unit"), "count");
  assert.equal(await page.textContent(`#cursor-values tr[data-node="${job.plan.result}"] td.value`), "3");
  assert.equal(await page.textContent(`#cursor-values tr[data-node="${job.plan.result}"] td.reading`), "times");

  await openKey(KEY);
  const duration = cirr.find((n) => n.id.startsWith("duration_where")).id;
  assert.equal(await page.textContent(`g.row[data-node="${duration}"] text.numeric-max`), "13s");
  assert.equal(await page.textContent(`#cursor-values tr[data-node="${duration}"] td.value`), "13000");
  assert.equal(await page.textContent(`#cursor-values tr[data-node="${duration}"] td.reading`), "13s");
});

test("windowed durations are drawn rising, flat and falling, as the API gives them", async () => {
  const query = [
    'let buffering = latest_event_to_state(playerStateChange) == "buffer";',
    "last_5s = duration_where(buffering, sliding(5s));",
    "per_10s = duration_where(buffering, tumbling(10s));",
  ].join("\n");
  assert.equal((await api("/v1/jobs?name=windows", { method: "POST", body: query })).status, 201);
  await openKey(KEY, "windows");
  const { body: job } = await api("/v1/jobs/windows");
  const nodes = job.plan.nodes.filter((n) => n.worker === "event-processor" || n.worker === "timeline-processor");
  let falling = 0;
  for (const node of nodes) {
    const { body } = await api(`/v1/workers/${node.id}/${KEY}/timeline`);
    const drawn = await page.$$eval(`g.row[data-node="${node.id}"] rect.span`, (rects) => rects
      .map((r) => ({
        start: Number(r.dataset.start),
        end: r.dataset.end === "" ? null : Number(r.dataset.end),
        value: JSON.parse(r.dataset.value),
        rising: r.dataset.rising === "true",
        falling: r.dataset.falling === "true",
      }))
      .sort((a, b) => a.start - b.start));
    assert.deepEqual(drawn, body.spans.map((s) => ({ ...s, falling: Boolean(s.falling) })), node.id);
    falling += body.spans.filter((s) => s.falling).length;
  }
  assert.ok(falling > 0, "the sliding duration falls somewhere");
  // The sliding row's scale is its peak: 5 s of buffering at most.
  const sliding = job.plan.outputs.find((o) => o.name === "last_5s").node;
  assert.equal(await page.textContent(`g.row[data-node="${sliding}"] text.numeric-max`), "5s");
  await page.screenshot({ path: join(shots, "key-view-windows.png"), fullPage: true });
});

test("after a drag-zoom the cursor table shows the values at the cursor", async () => {
  await openKey(KEY);
  const chart = page.locator("svg.timeline-chart");
  const b = await chart.boundingBox();
  const left = Number(await chart.getAttribute("data-left"));
  const px = (f) => b.x + left + (b.width - left - 20) * f;
  await page.mouse.move(px(0.3), b.y + 80);
  await page.mouse.down();
  await page.mouse.move(px(0.6), b.y + 80, { steps: 5 });
  await page.mouse.up();
  await page.waitForFunction(() => document.querySelector("#zoom-info").textContent.startsWith("zoomed"));
  const [from, to] = [Number(await chart.getAttribute("data-from")), Number(await chart.getAttribute("data-to"))];
  // Right after the zoom: the values at an instant inside the range.
  let t = Number(await page.getAttribute("#cursor-values", "data-t"));
  assert.ok(from <= t && t < to, `${t} in [${from}, ${to})`);
  const known = [];
  for (const node of cirr) {
    const [shown, expected] = await cursorValue(node.id, t);
    assert.equal(shown, expected, `${node.id} at ${t}`);
    if (shown !== "unknown") known.push(node.id);
  }
  assert.equal(known.length, cirr.length, "every node is known inside the session");
  // And wherever the cursor goes in the zoomed chart, the right edge included.
  for (const f of [0.5, 1]) {
    await page.mouse.move(px(f), b.y + 60);
    t = Number(await page.getAttribute("#cursor-values", "data-t"));
    assert.ok(from <= t && t < to, `${t} in [${from}, ${to})`);
    for (const node of cirr) {
      const [shown, expected] = await cursorValue(node.id, t);
      assert.equal(shown, expected, `${node.id} at ${t}`);
    }
  }
  await page.click("#zoom-reset");
  await page.waitForFunction(() => document.querySelector("#zoom-info").textContent.startsWith("drag"));
});

test("epoch-millisecond times show with their date, small times as durations", async () => {
  const t0 = Date.UTC(2026, 11, 5, 7, 16, 11, 250);
  const events = [[0, "play"], [4000, "buffer"], [9000, "play"]]
    .map(([dt, state], i) => JSON.stringify({ session_id: "epoch-viewer", time: t0 + dt, event_id: `x${i}`, playerStateChange: state, cdnChange: "CDN1" }));
  assert.equal((await api("/v1/events", { method: "POST", body: events.join("\n") })).status, 200);
  await openKey("epoch-viewer");
  const header = await page.textContent("#cursor-values th");
  const t = Number(await page.getAttribute("#cursor-values", "data-t"));
  const dated = new Date(t).toISOString().replace("T", " ").replace("Z", " UTC");
  assert.equal(header, `at ${dated} (${t})`);
  assert.match(dated, /^2026-12-05 07:16:2\d\.\d{3} UTC$/);
  const ticks = await page.locator("svg.timeline-chart .axis text.tick").allTextContents();
  assert.match(ticks[0], /^2026-12-05 07:16:\d\d$/, ticks.join(" | "));
  assert.ok(ticks.slice(1).every((l) => /^07:16:\d\d$/.test(l)), ticks.join(" | "));
  await assertTicksInside(page);
  // The tooltip's time too.
  const row = await page.locator("g.row rect.span").first().boundingBox();
  await page.mouse.move(row.x + row.width / 2, row.y + row.height / 2);
  assert.match(await page.textContent("#tooltip"), / at 2026-12-05 07:16:\d\d\.\d{3} UTC: /);
  await page.screenshot({ path: join(shots, "key-view-epochs.png"), fullPage: true });

  // Times from the session's start stay short.
  await openKey(KEY);
  const small = await page.locator("svg.timeline-chart .axis text.tick").allTextContents();
  assert.ok(small.every((l) => /^-?\d+(\.\d+)?m?s$/.test(l)), small.join(" | "));
});

test("state labels fit their segments on a phone-wide screen", async () => {
  const phone = await browser.newPage({ viewport: { width: 390, height: 844 } });
  phone.on("pageerror", (e) => { throw e; });
  try {
    await phone.goto(`${server.base}/#/jobs/cirr/keys/${KEY}`);
    await phone.waitForSelector("g.row rect.span");
    const chart = await phone.locator("svg.timeline-chart").boundingBox();
    assert.ok(chart.x + chart.width <= 390, `the chart ends at ${chart.x + chart.width}`);
    await assertTicksInside(phone);
    const labels = await phone.$$eval("text.span-state-label", (ts) => ts.map((t) => {
      const box = t.getBBox();
      return { text: t.textContent, full: t.dataset.full, x: box.x, right: box.x + box.width, segment: Number(t.dataset.width), x0: Number(t.getAttribute("x")) - 4 };
    }));
    assert.ok(labels.length > 0);
    for (const l of labels) {
      assert.ok(l.text === l.full || (l.text.endsWith("…") && l.full.startsWith(l.text.slice(0, -1))), `${l.text} of ${l.full}`);
      assert.ok(l.right <= l.x0 + l.segment, `"${l.text}" ends at ${l.right}, its segment at ${l.x0 + l.segment}`);
    }
    // Some are shortened at this width, and none is cut to nothing readable.
    assert.ok(labels.some((l) => l.text !== l.full), labels.map((l) => l.text).join(" | "));
    await phone.screenshot({ path: join(shots, "key-view-phone.png"), fullPage: true });
  } finally {
    await phone.close();
  }
});

test("a key's timelines export as CSV and JSON, as the API gives them", async () => {
  await openKey(KEY);
  const spans = new Map();
  for (const node of cirr) spans.set(node.id, (await api(`/v1/workers/${node.id}/${KEY}/timeline`)).body.spans);
  const expressions = new Map(await page.$$eval("g.row", (gs) => gs.map((g) => [g.dataset.node, g.querySelector("text.row-expression").dataset.full])));

  const [csvDownload] = await Promise.all([page.waitForEvent("download"), page.click("#export-csv")]);
  assert.equal(csvDownload.suggestedFilename(), `cirr-${KEY}.csv`);
  const [header, ...rows] = parseCsv(readFileSync(await csvDownload.path(), "utf8"));
  assert.deepEqual(header, ["node", "expression", "from", "to", "value", "rising", "falling"]);
  assert.equal(rows.length, [...spans.values()].reduce((n, s) => n + s.length, 0));
  for (const [node, expected] of spans) {
    const mine = rows.filter((r) => r[0] === node);
    assert.ok(mine.every((r) => r[1] === expressions.get(node)), node);
    const parsed = mine.map((r) => ({
      start: Number(r[2]), end: r[3] === "" ? null : Number(r[3]),
      value: r[4] === "" ? null : r[4] === "true" ? true : r[4] === "false" ? false : /^-?\d+$/.test(r[4]) ? Number(r[4]) : r[4],
      rising: r[5] === "true",
      falling: r[6] === "true",
    }));
    assert.deepEqual(parsed, expected.map((s) => ({ start: s.start, end: s.end, value: s.value, rising: s.rising, falling: Boolean(s.falling) })), node);
  }

  const [jsonDownload] = await Promise.all([page.waitForEvent("download"), page.click("#export-json")]);
  assert.equal(jsonDownload.suggestedFilename(), `cirr-${KEY}.json`);
  const json = JSON.parse(readFileSync(await jsonDownload.path(), "utf8"));
  assert.equal(json.job, "cirr");
  assert.equal(json.key, KEY);
  assert.equal(json.events.length, 10);
  assert.deepEqual(json.timelines.map((t) => t.node), cirr.map((n) => n.id));
  for (const t of json.timelines) {
    assert.deepEqual(t.spans, spans.get(t.node), t.node);
    assert.equal(t.expression, expressions.get(t.node));
  }
});
