// The dashboard's Changes view beyond dashboard.test.mjs: the picture for
// docs/dashboard.md (docs/changes-view.png), a duration's trend, a feed
// that reconnects by itself across a restart of the server and closes when
// its job is deleted, the long polls a page with a token uses (the
// browser's EventSource cannot send one), and the list's cap of 500 rows.
// Each on a server of its own.
// Run by scripts/test-dashboard.sh.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { startServer, launchBrowser, call, example, root, shots } from "./harness.mjs";

const servers = [];
let browser;

async function server(options) {
  const s = await startServer(options);
  servers.push(s);
  return s;
}

async function newPage(base, token) {
  browser = browser || await launchBrowser();
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  page.on("pageerror", (e) => { throw e; });
  if (token) await page.addInitScript((t) => localStorage.setItem("timelineToken", t), token);
  return page;
}

after(async () => {
  if (browser) await browser.close();
  for (const s of servers) s.stop();
});

/** Every change of `job`, newest first, as the feed's rows say them. */
async function changesOf(base, job, headers = {}) {
  const { status, body } = await call(base, `/v1/jobs/${job}/changes?after=0`, { headers });
  assert.equal(status, 200, JSON.stringify(body));
  return body.changes.reverse().map((c) => ({ id: c.id, key: c.key, from: c.from, until: c.until, old: c.old, new: c.new }));
}

async function feedRows(page) {
  return page.$$eval("#changes-rows tr", (rows) => rows.map((r) => ({
    id: Number(r.dataset.id), key: r.dataset.key, from: Number(r.dataset.from),
    until: r.dataset.until === "" ? null : Number(r.dataset.until), old: JSON.parse(r.dataset.old), new: JSON.parse(r.dataset.new),
  })));
}

const feedLength = (page, n) => page.waitForFunction((n) => document.querySelectorAll("#changes-rows tr").length === n, n, { timeout: 15000 });
const stateIs = (page, state) => page.waitForSelector(`#changes-state[data-state="${state}"]`, { timeout: 15000 });
const swipe = (card, time, id, suburb) => JSON.stringify({ card, time, event_id: id, kind: "swipe", suburb });
const IN_ORDER = [swipe("card-2", "2024-03-01T10:00:00Z", "d3", "Newtown"), swipe("card-2", "2024-03-01T10:05:00Z", "d4", "Parramatta")].join("\n");
const LATE = swipe("card-2", "2024-03-01T09:05:00Z", "d5", "Parramatta");

async function submitSwipes(base, headers = {}) {
  const { status, body } = await call(base, "/v1/jobs", {
    method: "POST", headers, body: JSON.stringify({ name: "swipes", query: example("card-swipes.tl"), changes: true }),
  });
  assert.equal(status, 201, JSON.stringify(body));
  assert.equal(body.changes, true);
}

async function post(base, body, headers = {}) {
  const { status } = await call(base, "/v1/streams/cards/events", { method: "POST", headers, body });
  assert.equal(status, 200);
}

test("docs/changes-view.png shows the card swipes' changes as they came, the late one marked", async () => {
  const { base } = await server();
  await submitSwipes(base);
  const page = await newPage(base);
  await page.goto(`${base}/#/jobs/swipes/changes`);
  await stateIs(page, "live");
  for (const batch of [example("card-swipes.jsonl"), IN_ORDER, LATE]) {
    await post(base, batch);
    const changes = await changesOf(base, "swipes");
    await feedLength(page, changes.length);
    assert.deepEqual(await feedRows(page), changes);
  }
  assert.equal(await page.locator('#changes-rows tr[data-late="true"]').count(), 1);
  assert.equal(await page.getAttribute("#changes-rows tr >> nth=0", "data-late"), "true");
  const { body: health } = await call(base, "/v1/health");
  const counts = `${health.events} events · ${health.keys} keys · ${health.jobs} jobs`;
  await page.waitForFunction((text) => document.querySelector("#status").textContent === text, counts, { timeout: 10000 });
  await page.screenshot({ path: join(root, "docs", "changes-view.png"), fullPage: true });
  await page.close();
});

test("a duration's changes are marked rising or falling, as the API says", async () => {
  const { base } = await server();
  const { status } = await call(base, "/v1/jobs", { method: "POST", body: JSON.stringify({ name: "cirr", query: example("cirr.tl"), changes: true }) });
  assert.equal(status, 201);
  const page = await newPage(base);
  await page.goto(`${base}/#/jobs/cirr/changes`);
  await stateIs(page, "live");
  await call(base, "/v1/events", { method: "POST", body: example("cirr.jsonl") });
  const { body } = await call(base, "/v1/jobs/cirr/changes?after=0");
  const trends = body.changes.reverse().map((c) => [c.id, [c.old_trend, c.new_trend].filter(Boolean)]);
  assert.ok(trends.some(([, t]) => t.includes("rising")), JSON.stringify(body.changes));
  await feedLength(page, trends.length);
  const shown = await page.$$eval("#changes-rows tr", (rows) => rows.map((r) => [Number(r.dataset.id), [...r.querySelectorAll(".trend")].map((t) => t.dataset.trend)]));
  assert.deepEqual(shown, trends);
  const rising = trends.find(([, t]) => t.includes("rising"))[0];
  assert.match(await page.textContent(`#changes-rows tr[data-id="${rising}"]`), /↗ rising/);
  // A duration reads as one too.
  const total = body.changes.find((c) => c.new === 13000);
  assert.ok(total, JSON.stringify(body.changes));
  assert.match(await page.textContent(`#changes-rows tr[data-id="${total.id}"]`), /→ 13000 \(13s\)/);
  await page.screenshot({ path: join(shots, "changes-trend.png"), fullPage: true });
  await page.close();
});

test("the feed reconnects by itself when the server comes back, missing nothing and nothing twice; it closes when the job goes", async () => {
  const first = await server();
  const { base, dir } = first;
  await submitSwipes(base);
  const page = await newPage(base);
  await page.goto(`${base}/#/jobs/swipes/changes`);
  await stateIs(page, "live");
  await post(base, example("card-swipes.jsonl"));
  const before = await changesOf(base, "swipes");
  await feedLength(page, before.length);

  first.stop("SIGKILL");
  await first.stopped();
  await stateIs(page, "reconnecting");
  const again = await server({ dir, listen: new URL(base).host });
  assert.equal(again.base, base);
  await post(base, IN_ORDER);
  await post(base, LATE);
  const now = await changesOf(base, "swipes");
  assert.equal(now.length, before.length + 2);
  await feedLength(page, now.length);
  await stateIs(page, "live");
  assert.deepEqual(await feedRows(page), now);
  assert.equal(await page.getAttribute(`#changes-rows tr[data-id="${now[0].id}"]`, "data-late"), "true");

  assert.equal((await call(base, "/v1/jobs/swipes", { method: "DELETE" })).status, 204);
  await stateIs(page, "closed");
  assert.match(await page.textContent("#changes-state"), /swipes/);
  assert.deepEqual(await feedRows(page), now, "what was shown stays");
  await page.close();
});

test("with a token, the feed long-polls the changes (EventSource cannot send it)", async () => {
  const { base } = await server({ args: ["--token", "s3cret"] });
  const auth = { authorization: "Bearer s3cret" };
  assert.equal((await call(base, "/v1/jobs/none/changes")).status, 401);
  await submitSwipes(base, auth);
  const page = await newPage(base, "s3cret");
  const asked = [];
  page.on("request", (r) => { if (r.url().includes("/changes?")) asked.push([r.url(), r.headers().accept || "", r.headers().authorization || ""]); });
  await page.goto(`${base}/#/jobs/swipes/changes`);
  await stateIs(page, "live");
  await post(base, example("card-swipes.jsonl"), auth);
  await post(base, IN_ORDER, auth);
  const changes = await changesOf(base, "swipes", auth);
  await feedLength(page, changes.length);
  assert.deepEqual(await feedRows(page), changes);
  assert.ok(asked.some(([url]) => url.includes("wait=")), JSON.stringify(asked));
  assert.ok(asked.every(([, accept, authorization]) => !accept.includes("text/event-stream") && authorization === "Bearer s3cret"), JSON.stringify(asked));
  await page.close();
});

test("the list keeps the newest 500 changes", async () => {
  const { base } = await server();
  await submitSwipes(base);
  const page = await newPage(base);
  await page.goto(`${base}/#/jobs/swipes/changes`);
  await stateIs(page, "live");
  // 600 cards, one swipe each: a change each, from Unknown.
  const swipes = Array.from({ length: 600 }, (_, i) => swipe(`card-${String(i).padStart(3, "0")}`, 1709283600000 + i * 1000, `s${i}`, "Newtown"));
  await post(base, swipes.join("\n"));
  const { body } = await call(base, "/v1/jobs/swipes/changes?after=0&limit=10000");
  assert.equal(body.changes.length, 600);
  await page.waitForFunction(() => document.querySelector("#changes-info").dataset.received === "600", null, { timeout: 15000 });
  const ids = await page.$$eval("#changes-rows tr", (rows) => rows.map((r) => Number(r.dataset.id)));
  assert.deepEqual(ids, body.changes.map((c) => c.id).reverse().slice(0, 500));
  assert.match(await page.textContent("#changes-info"), /^600 changes · the newest 500 shown/);
  await page.close();
});
