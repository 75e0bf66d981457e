// The README's picture of the key view, docs/key-view.png, taken from a real
// run: the CIRR example on a server of its own, a few sessions, the key list
// showing, the header's counts as /v1/health gives them. The only test that
// writes the file: a fixed viewport and deterministic data.
// Run by scripts/test-dashboard.sh.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { startServer, launchBrowser, call, example, root } from "./harness.mjs";

let server, browser;
const api = (path, options) => call(server.base, path, options);

/** Two more sessions beside the example's two. */
const MORE = [
  ["bea-tablet-7", 0, "cdnChange", "CDN1"], ["bea-tablet-7", 500, "playerStateChange", "play"],
  ["bea-tablet-7", 8000, "playerStateChange", "buffer"], ["bea-tablet-7", 11000, "playerStateChange", "play"],
  ["bea-tablet-7", 30000, "playerStateChange", "stop"],
  ["zoe-tv-3", 0, "cdnChange", "CDN2"], ["zoe-tv-3", 1000, "playerStateChange", "play"],
  ["zoe-tv-3", 6000, "playerStateChange", "buffer"], ["zoe-tv-3", 7000, "cdnChange", "CDN1"],
  ["zoe-tv-3", 9000, "playerStateChange", "play"],
].map(([key, time, column, value], i) => JSON.stringify({ session_id: key, time, event_id: `m${i}`, [column]: value })).join("\n");

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (server) server.stop();
});

test("docs/key-view.png shows the key view of a real run", async () => {
  assert.equal((await api("/v1/jobs?name=cirr", { method: "POST", body: example("cirr.tl") })).status, 201);
  assert.equal((await api("/v1/events", { method: "POST", body: `${example("cirr.jsonl")}\n${MORE}` })).status, 200);
  const { body: health } = await api("/v1/health");
  assert.deepEqual([health.keys, health.jobs], [4, 1]);
  assert.ok(health.events > 0);

  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("pageerror", (e) => { throw e; });
  await page.goto(`${server.base}/#/jobs/cirr/keys`);
  await page.waitForSelector('#key-list a.selected[data-key="afsal-mando-1"]');
  await page.waitForSelector("g.row rect.span");
  assert.equal(await page.locator("#key-list a").count(), 4);
  // The header says what the server holds, not what it held at the first poll.
  const counts = `${health.events} events · ${health.keys} keys · ${health.jobs} jobs`;
  await page.waitForFunction((text) => document.querySelector("#status").textContent === text, counts, { timeout: 10000 });
  assert.equal(await page.locator("line.event-tick").count(), 10);

  // The cursor 26 s into the session, on the result's row, as a user would hold it.
  const chart = page.locator("svg.timeline-chart");
  const box = await chart.boundingBox();
  const [from, to, left] = await Promise.all(["data-from", "data-to", "data-left"].map(async (a) => Number(await chart.getAttribute(a))));
  const x = box.x + left + ((26000 - from) / (to - from)) * (box.width - left - 20);
  const { body: job } = await api("/v1/jobs/cirr");
  const row = await page.locator(`g.row[data-node="${job.plan.result}"] rect.span`).first().boundingBox();
  await page.mouse.move(x, row.y + row.height / 2);
  await page.waitForSelector("#tooltip:not([hidden])");
  assert.equal(await page.textContent("#status"), counts);
  await page.screenshot({ path: join(root, "docs", "key-view.png"), fullPage: true });
  await page.close();
});
