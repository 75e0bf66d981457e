// The dashboard in headless Chromium against a real `timeline serve`:
// submitting a job in the editor, DSL errors at their line and column, the
// plan graph, the key view's plotted spans against the API's timelines
// (whole and zoomed), the cursor's values, live updates, aggregates, a job's
// changes as they come (against the API's), and streams with their columns
// and a job's warnings.
// Screenshots go to target/dashboard/.
//
// TIMELINE_BIN names the `timeline` binary; CHROMIUM the browser
// (default /usr/bin/chromium). Run by scripts/test-dashboard.sh.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { startServer, launchBrowser, call, example, shots } from "./harness.mjs";

let server, base, browser, page;

before(async () => {
  server = await startServer();
  base = server.base;
  browser = await launchBrowser();
  page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on("pageerror", (e) => { throw e; });
});

after(async () => {
  if (browser) await browser.close();
  if (server) server.stop();
});

const api = (path, options) => call(base, path, options);

/** The spans a chart row plots, as the API writes them. */
async function plotted(node) {
  return page.$$eval(`g.row[data-node="${node}"] rect.span`, (rects) => rects
    .map((r) => ({
      start: Number(r.dataset.start),
      end: r.dataset.end === "" ? null : Number(r.dataset.end),
      value: JSON.parse(r.dataset.value),
      rising: r.dataset.rising === "true",
      // As the API writes it: only when true.
      ...(r.dataset.falling === "true" ? { falling: true } : {}),
    }))
    .sort((a, b) => a.start - b.start));
}

async function assertRowsMatchTheApi(plan, key, range) {
  const perKey = plan.nodes.filter((n) => n.worker === "event-processor" || n.worker === "timeline-processor");
  assert.equal(await page.locator("g.row").count(), perKey.length);
  for (const node of perKey) {
    const query = range ? `?from=${range[0]}&to=${range[1]}` : "";
    const { body } = await api(`/v1/workers/${node.id}/${key}/timeline${query}`);
    assert.deepEqual(await plotted(node.id), body.spans, `${node.id} ${query}`);
  }
}

test("a job submitted in the editor runs, and its plan is drawn", async () => {
  await page.goto(base + "/");
  await page.click("#load-example");
  await page.fill("#job-name", "cirr");
  await page.click("#job-submit");
  await page.waitForSelector("#job-ok");
  await page.waitForSelector('#jobs-table tr[data-job="cirr"]');
  await page.screenshot({ path: join(shots, "jobs.png"), fullPage: true });

  await page.goto(base + "/#/jobs/cirr/plan");
  await page.waitForSelector("#plan-graph g.plan-node");
  const { body: job } = await api("/v1/jobs/cirr");
  const drawn = await page.$$eval("#plan-graph g.plan-node", (gs) => gs.map((g) => [g.dataset.node, g.dataset.worker]).sort());
  assert.deepEqual(drawn, job.plan.nodes.map((n) => [n.id, n.worker]).sort());
  assert.equal(await page.locator('#plan-graph g.plan-node[data-worker="event-processor"]').count(), 4);
  assert.equal(await page.locator("#plan-graph path.plan-edge").count(),
    job.plan.nodes.reduce((n, node) => n + node.children.length, 0));
  await page.screenshot({ path: join(shots, "plan.png"), fullPage: true });
});

test("a second job shows the nodes it reuses", async () => {
  const buffering = `duration_where(latest_event_to_state(playerStateChange) == "buffer")`;
  const { status } = await api("/v1/jobs?name=buffering", { method: "POST", body: buffering });
  assert.equal(status, 201);
  await page.goto(base + "/#/jobs/buffering/plan");
  await page.waitForSelector("#plan-graph g.plan-node");
  const reused = await page.$$eval('#plan-graph g.plan-node[data-reused="true"]', (gs) => gs.map((g) => g.dataset.node));
  assert.equal(reused.length, 2, "latest_event_to_state and the comparison are cirr's");
});

test("an invalid query shows its error at the right line and column", async () => {
  await page.goto(base + "/");
  await page.fill("#job-query", "duration_where(\n  has_existd(playerStateChange == \"play\"))");
  await page.click("#job-submit");
  const box = await page.waitForSelector("#job-error");
  const { body } = await api("/v1/jobs?name=bad", { method: "POST", body: "duration_where(\n  has_existd(playerStateChange == \"play\"))" });
  assert.equal(await box.getAttribute("data-line"), String(body.error.line));
  assert.equal(await box.getAttribute("data-column"), String(body.error.column));
  assert.equal(body.error.line, 2);
  assert.equal(body.error.column, 3);
  assert.match(await box.textContent(), /unknown function `has_existd`/);
  assert.match(await box.textContent(), /did you mean `has_existed`/);
  assert.equal(await page.locator('#gutter div.error[data-line="2"]').count(), 1);
  // The caret sits on the error.
  const caret = await page.$eval("#job-query", (t) => t.selectionStart);
  assert.equal(caret, "duration_where(\n  ".length);
  await page.screenshot({ path: join(shots, "dsl-error.png"), fullPage: true });
});

test("the key view plots every node's timeline as the API gives it", async () => {
  const { status } = await api("/v1/events", { method: "POST", body: example("cirr.jsonl") });
  assert.equal(status, 200);
  const key = "afsal-mando-1";
  await page.goto(`${base}/#/jobs/cirr/keys/${key}`);
  await page.waitForSelector("g.row rect.span");
  const { body: job } = await api("/v1/jobs/cirr");
  await assertRowsMatchTheApi(job.plan, key, null);
  // The raw events, once each (the example repeats one), as ticks.
  const { body: events } = await api(`/v1/keys/${key}/events`);
  assert.equal(events.events.length, 10);
  assert.equal(await page.locator("line.event-tick").count(), 10);
  // Booleans as bands, states as labelled segments, durations as lines.
  assert.ok(await page.locator('g.row[data-kind="bool"] rect.span-true').count() > 0);
  assert.ok(await page.locator('g.row[data-kind="state"] text.span-state-label').count() > 0);
  assert.equal(await page.locator('g.row[data-kind="numeric"] path.numeric-line').count(), 1);
  await page.screenshot({ path: join(shots, "key-view.png"), fullPage: true });

  // The cursor shows every node's value at one instant: 26 s into the session.
  const chart = page.locator("svg.timeline-chart");
  const [from, to] = [Number(await chart.getAttribute("data-from")), Number(await chart.getAttribute("data-to"))];
  const boxOf = await chart.boundingBox();
  const L = Number(await chart.getAttribute("data-left")), CW = boxOf.width - L - 20;
  const px = L + ((26000 - from) / (to - from)) * CW;
  await page.mouse.move(boxOf.x + px, boxOf.y + 60);
  const t = Number(await page.getAttribute("#cursor-values", "data-t"));
  assert.ok(Math.abs(t - 26000) <= (to - from) / CW + 1, `cursor at ${t}`);
  for (const node of job.plan.nodes) {
    const { body: result } = await api(`/v1/workers/${node.id}/${key}/result?t=${t}`);
    const shown = await page.textContent(`#cursor-values tr[data-node="${node.id}"] td.value`);
    const expected = result.value === null ? "unknown" : typeof result.value === "string" ? JSON.stringify(result.value) : String(result.value);
    assert.equal(shown, expected, `${node.id} at ${t}`);
  }
  // Hovering a row shows that node's value in a tooltip.
  const result = job.plan.result;
  const rowBox = await page.locator(`g.row[data-node="${result}"] rect.span`).first().boundingBox();
  await page.mouse.move(boxOf.x + px, rowBox.y + rowBox.height / 2);
  const tip = await page.waitForSelector("#tooltip:not([hidden])");
  const { body: at } = await api(`/v1/workers/${result}/${key}/result?t=${await page.getAttribute("#cursor-values", "data-t")}`);
  assert.match(await tip.textContent(), new RegExp(`^duration_where at .*: ${at.value}$`));
});

test("zooming asks the API for clipped timelines", async () => {
  const key = "afsal-mando-1";
  await page.goto(`${base}/#/jobs/cirr/keys/${key}`);
  await page.waitForSelector("g.row rect.span");
  const chart = page.locator("svg.timeline-chart");
  const b = await chart.boundingBox();
  const clipped = [];
  page.on("request", (r) => { if (r.url().includes("/timeline?from=")) clipped.push(r.url()); });
  await page.mouse.move(b.x + 300 + (b.width - 310) * 0.3, b.y + 80);
  await page.mouse.down();
  await page.mouse.move(b.x + 300 + (b.width - 310) * 0.6, b.y + 80, { steps: 5 });
  await page.mouse.up();
  await page.waitForFunction(() => document.querySelector("#zoom-info").textContent.startsWith("zoomed"));
  const [from, to] = [Number(await chart.getAttribute("data-from")), Number(await chart.getAttribute("data-to"))];
  assert.ok(clipped.length >= 6, `clipped requests: ${clipped.length}`);
  const { body: job } = await api("/v1/jobs/cirr");
  await assertRowsMatchTheApi(job.plan, key, [from, to]);
  await page.screenshot({ path: join(shots, "key-view-zoomed.png"), fullPage: true });
  await page.click("#zoom-reset");
  await page.waitForFunction(() => document.querySelector("#zoom-info").textContent.startsWith("drag"));
});

test("the key view follows new events without a reload", async () => {
  const key = "live-viewer";
  await api("/v1/events", { method: "POST", body: JSON.stringify({ session_id: key, time: 0, cdnChange: "CDN1" }) });
  await page.goto(`${base}/#/jobs/cirr/keys/${key}`);
  await page.waitForSelector("g.row");
  const ticks = await page.locator("line.event-tick").count();
  assert.equal(ticks, 1);
  const lines = [
    { session_id: key, time: 1000, playerStateChange: "play" },
    { session_id: key, time: 5000, playerStateChange: "buffer" },
  ].map((e) => JSON.stringify(e)).join("\n");
  await api("/v1/events", { method: "POST", body: lines });
  await page.waitForFunction(() => document.querySelectorAll("line.event-tick").length === 3, null, { timeout: 10000 });
  const { body: job } = await api("/v1/jobs/cirr");
  await assertRowsMatchTheApi(job.plan, key, null);
});

test("aggregates show each group's figures at a chosen time", async () => {
  const { status } = await api("/v1/jobs?name=rate", { method: "POST", body: example("completion-rate.tl") });
  assert.equal(status, 201);
  await api("/v1/streams/completions/events", { method: "POST", body: example("completion-rate.jsonl") });
  for (const t of ["end", "10000"]) {
    await page.goto(`${base}/#/jobs/rate/aggregates`);
    await page.fill("#agg-t", t);
    const { body } = await api(`/v1/jobs/rate/metrics?t=${t}`);
    const rate = body.outputs.find((o) => o.name === "completion_rate");
    await page.click("#agg-refresh");
    // The table drawn for this t, not the one still shown for the last.
    await page.waitForSelector(`.output[data-output="completion_rate"][data-t="${rate.t}"] tr[data-group]`);
    for (const output of body.outputs) {
      for (const g of output.groups) {
        const row = `.output[data-output="${output.name}"] tr[data-group="${g.group}"]`;
        const value = output.worker === "metric" ? g.value : Object.values(g.values)[0];
        const fn = output.worker === "metric" ? "value" : Object.keys(g.values)[0];
        assert.equal(await page.textContent(`${row} td[data-fn="${fn}"]`), String(value), `${output.name} ${g.group} at ${t}`);
      }
    }
    if (t === "end") await page.screenshot({ path: join(shots, "aggregates.png"), fullPage: true });
  }
});

// ---------------------------------------------------------------- changes

/** The changes the feed shows, top to bottom, as the API writes them. */
async function feedRows() {
  return page.$$eval("#changes-rows tr", (rows) => rows.map((r) => ({
    id: Number(r.dataset.id),
    key: r.dataset.key,
    from: Number(r.dataset.from),
    until: r.dataset.until === "" ? null : Number(r.dataset.until),
    old: JSON.parse(r.dataset.old),
    new: JSON.parse(r.dataset.new),
  })));
}

/** Every change of `job` that matches `where`, newest first, as feedRows gives them. */
async function changesOf(job, where) {
  const all = [];
  let after = 0;
  for (;;) {
    const query = new URLSearchParams({ after: String(after), limit: "2" });
    if (where) query.set("where", where);
    const { status, body } = await api(`/v1/jobs/${job}/changes?${query}`);
    assert.equal(status, 200, JSON.stringify(body));
    all.push(...body.changes);
    if (body.next >= body.last) break;
    after = body.next;
  }
  return all.reverse().map((c) => ({ id: c.id, key: c.key, from: c.from, until: c.until, old: c.old, new: c.new }));
}

const feedLength = (n) => page.waitForFunction((n) => document.querySelectorAll("#changes-rows tr").length === n, n, { timeout: 10000 });
const live = () => page.waitForSelector('#changes-state[data-state="live"]', { timeout: 10000 });
const swipe = (card, time, id, suburb, kind = "swipe") => JSON.stringify({ card, time, event_id: id, kind, suburb });
const postCards = async (lines) => {
  const { status, body } = await api("/v1/streams/cards/events", { method: "POST", body: lines.join("\n") });
  assert.equal(status, 200, JSON.stringify(body));
};

test("a job submitted with record changes shows its changes live, as the API gives them, a late one marked", async () => {
  await page.goto(`${base}/#/`);
  await page.fill("#job-name", "swipes");
  await page.fill("#job-query", example("card-swipes.tl"));
  await page.check("#job-changes");
  await page.click("#job-submit");
  await page.waitForSelector("#job-ok");
  const { body: job } = await api("/v1/jobs/swipes");
  assert.equal(job.changes, true);
  assert.equal(job.stream.name, "cards");

  // The jobs table marks the jobs that record their changes.
  await page.waitForSelector('#jobs-table tr[data-job="swipes"] .records-changes');
  assert.equal(await page.locator('#jobs-table tr[data-job="cirr"] .records-changes').count(), 0);
  await page.click('#jobs-table tr[data-job="swipes"] .row-actions a[href="#/jobs/swipes/changes"]');
  await live();
  assert.equal(await page.locator("#changes-rows tr").count(), 0);
  assert.match(await page.textContent("#changes-empty"), /No change yet/);

  await postCards([example("card-swipes.jsonl")]);
  const first = await changesOf("swipes");
  assert.ok(first.length >= 3, JSON.stringify(first));
  await feedLength(first.length);
  assert.deepEqual(await feedRows(), first, "newest on top, each as the API has it");
  // Each key's first change is from Unknown, shown as the dashboard shows Unknown; times as everywhere else.
  const card1 = first.filter((c) => c.key === "card-1").pop();
  const text = await page.textContent(`#changes-rows tr[data-id="${card1.id}"]`);
  assert.ok(text.includes(`${new Date(card1.from).toISOString().replace("T", " ").replace("Z", " UTC")}`), text);
  assert.ok(text.includes(`unknown → ${card1.new}`), text);
  assert.equal(await page.locator(`#changes-rows tr[data-id="${card1.id}"] .change-value.unknown`).count(), 1);

  // In order: card-2's swipes overlap an hour later.
  await postCards([swipe("card-2", "2024-03-01T10:00:00Z", "d3", "Newtown"), swipe("card-2", "2024-03-01T10:05:00Z", "d4", "Parramatta")]);
  const inOrder = await changesOf("swipes");
  assert.equal(inOrder.length, first.length + 1);
  await feedLength(inOrder.length);
  assert.deepEqual(await feedRows(), inOrder);
  // Late: a swipe at 09:05 rewrites card-2's past, from 09:05 until the change at 10:05.
  await postCards([swipe("card-2", "2024-03-01T09:05:00Z", "d5", "Parramatta")]);
  const withLate = await changesOf("swipes");
  assert.equal(withLate.length, inOrder.length + 1);
  const late = withLate[0];
  assert.deepEqual([late.key, late.from, late.until, late.old, late.new],
    ["card-2", Date.parse("2024-03-01T09:05:00Z"), Date.parse("2024-03-01T10:05:00Z"), false, true]);
  await feedLength(withLate.length);
  assert.deepEqual(await feedRows(), withLate);
  const flags = await page.$$eval("#changes-rows tr", (rows) => rows.map((r) => [Number(r.dataset.id), r.dataset.late]));
  assert.deepEqual(flags, withLate.map((c) => [c.id, String(c.id === late.id)]), "only the late change is marked");
  assert.equal(await page.textContent(`#changes-rows tr[data-id="${late.id}"] .late-badge`), "late");
  assert.match(await page.textContent("#changes-state"), /live/);
  await page.screenshot({ path: join(shots, "changes.png"), fullPage: true });
});

test("pausing holds the feed; resuming brings what came meanwhile, nothing twice", async () => {
  await page.goto(`${base}/#/jobs/swipes/changes`);
  await live();
  const before = await changesOf("swipes");
  await feedLength(before.length);
  await page.click("#changes-pause");
  assert.equal(await page.getAttribute("#changes-state", "data-state"), "paused");
  // card-3's swipes overlap now.
  await postCards([swipe("card-3", "2024-03-01T10:05:00Z", "g3", "Parramatta")]);
  const after = await changesOf("swipes");
  assert.equal(after.length, before.length + 1);
  await page.waitForTimeout(800);
  assert.deepEqual(await feedRows(), before, "paused: nothing new drawn");
  await page.click("#changes-pause");
  await feedLength(after.length);
  await live();
  assert.deepEqual(await feedRows(), after);
});

test("following a key shows only its changes, with the filter, and its timelines", async () => {
  await page.goto(`${base}/#/jobs/swipes/changes`);
  await live();
  await page.click('#changes-rows a[data-follow="card-1"] >> nth=0');
  await page.waitForFunction(() => location.hash === "#/jobs/swipes/changes/card-1");
  await live();
  const card1 = await changesOf("swipes", 'key == "card-1"');
  assert.ok(card1.length >= 2);
  await feedLength(card1.length);
  assert.deepEqual(await feedRows(), card1);
  assert.deepEqual(card1, (await changesOf("swipes")).filter((c) => c.key === "card-1"));
  // The key's timelines under the feed, as in the key view.
  await page.waitForSelector("#changes-key g.row rect.span");
  assert.equal(await page.getAttribute("#changes-open-key", "href"), "#/jobs/swipes/keys/card-1");
  // Another key's change does not show.
  const last = (await changesOf("swipes"))[0].id;
  await postCards([swipe("card-4", "2024-03-01T11:00:00Z", "h1", "Newtown")]);
  assert.equal((await changesOf("swipes"))[0].id, last + 1);
  await page.waitForTimeout(800);
  assert.deepEqual(await feedRows(), card1);

  // A key typed in, with a filter: both hold.
  await page.fill("#changes-where", "value == true");
  await page.press("#changes-where", "Enter");
  await live();
  await feedLength((await changesOf("swipes", 'key == "card-1" && value == true')).length);
  await page.fill("#changes-follow", "card-2");
  await page.press("#changes-follow", "Enter");
  await page.waitForFunction(() => location.hash === "#/jobs/swipes/changes/card-2");
  await live();
  const shown = await changesOf("swipes", 'key == "card-2" && value == true');
  assert.ok(shown.length >= 2, JSON.stringify(shown));
  await feedLength(shown.length);
  assert.deepEqual(await feedRows(), shown);
  assert.equal(await page.inputValue("#changes-where"), "value == true", "the filter stays");
  await page.screenshot({ path: join(shots, "changes-follow.png"), fullPage: true });
  await page.click("#changes-unfollow");
  await page.waitForFunction(() => location.hash === "#/jobs/swipes/changes");
  await live();
  await feedLength((await changesOf("swipes", "value == true")).length);
  assert.deepEqual(await feedRows(), await changesOf("swipes", "value == true"));
});

test("an invalid filter shows the server's error at its line and column; the feed runs on", async () => {
  await page.goto(`${base}/#/jobs/swipes/changes`);
  await page.fill("#changes-where", "");
  await page.press("#changes-where", "Enter");
  await live();
  const all = await changesOf("swipes");
  await feedLength(all.length);
  const bad = "value == true && old !== false";
  await page.fill("#changes-where", bad);
  await page.click("#changes-apply");
  const box = await page.waitForSelector("#changes-error");
  const { status, body } = await api(`/v1/jobs/swipes/changes?where=${encodeURIComponent(bad)}`);
  assert.equal(status, 400);
  assert.equal(body.error.code, "bad_condition");
  assert.deepEqual([body.error.line, body.error.column], [1, 24]);
  assert.equal(await box.getAttribute("data-line"), String(body.error.line));
  assert.equal(await box.getAttribute("data-column"), String(body.error.column));
  const text = await box.textContent();
  assert.ok(text.includes(`line ${body.error.line}, column ${body.error.column}`), text);
  assert.ok(text.includes(body.error.message), text);
  assert.ok(text.includes("to compare, write `==`"), text);
  assert.deepEqual(await feedRows(), all, "the feed still runs unfiltered");
  await page.screenshot({ path: join(shots, "changes-bad-filter.png"), fullPage: true });
});

test("a job that does not record changes says how to record them", async () => {
  const { status, body } = await api("/v1/jobs/cirr/changes");
  assert.equal(status, 409);
  assert.equal(body.error.code, "changes_not_recorded");
  await page.goto(`${base}/#/jobs/cirr/changes`);
  const note = await page.waitForSelector("#changes-off");
  assert.match(await note.textContent(), /cirr does not record its changes/);
  assert.match(await note.textContent(), /submit it with record changes ticked/);
  assert.equal(await page.locator("#changes-rows tr").count(), 0);
});

test("streams list their fields and counts, and a stream's columns", async () => {
  const { status } = await api("/v1/jobs?name=cards", { method: "POST", body: example("card-swipes.tl") });
  assert.equal(status, 201);
  await api("/v1/streams/cards/events", { method: "POST", body: example("card-swipes.jsonl") });
  await page.goto(`${base}/#/jobs/cards/keys/card-1`);
  await page.waitForSelector("g.row rect.span");
  // The key view's events are the job's stream's, not the default stream's.
  assert.equal(await page.locator("line.event-tick").count(), 2);

  await page.goto(`${base}/#/streams/cards`);
  const { body: list } = await api("/v1/streams");
  await page.waitForSelector('#columns-table[data-stream="cards"]');
  for (const s of list.streams) {
    const cells = await page.locator(`#streams-table tr[data-stream="${s.name}"] td`).allTextContents();
    assert.deepEqual(cells.slice(0, 6), [s.name, s.key, s.time, s.id, String(s.events), String(s.keys)], s.name);
  }
  const { body: cards } = await api("/v1/streams/cards");
  const shown = await page.locator("#columns-table tr[data-column]").evaluateAll((rows) => rows.map((r) => r.dataset.column));
  assert.deepEqual(shown, cards.columns.map((c) => c.name));
  for (const c of cards.columns) {
    const cells = await page.locator(`#columns-table tr[data-column="${c.name}"] td`).allTextContents();
    assert.equal(cells[1], c.types.join(""));
    assert.ok(cells[2].startsWith(`${c.events} `), cells[2]);
  }
  await page.screenshot({ path: join(shots, "streams.png"), fullPage: true });
});

test("a job's warnings show in the editor and on its plan", async () => {
  await page.goto(`${base}/#/`);
  await page.fill("#job-name", "typo");
  await page.fill("#job-query", 'from cards key card;\nhas_existed(suburbb == "Newtown")');
  await page.click("#job-submit");
  const box = await page.waitForSelector(".warning-box");
  assert.equal(await box.getAttribute("data-line"), "2");
  assert.equal(await box.getAttribute("data-column"), "13");
  assert.match(await box.textContent(), /did you mean `suburb`/);
  assert.equal(await page.textContent('#jobs-table tr[data-job="typo"] a[data-stream]'), "cards");
  await page.goto(`${base}/#/jobs/typo/plan`);
  await page.waitForSelector("#plan-stream");
  assert.match(await page.textContent("#plan-stream"), /cards.*key card/);
  assert.match(await page.textContent(".warning-box"), /suburbb/);
});
