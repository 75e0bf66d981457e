// What the dashboard's browser tests share: a `timeline serve` of their own
// on a fresh data dir, headless Chromium, and the API over HTTP.
// TIMELINE_BIN names the `timeline` binary; CHROMIUM the browser.

import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const shots = join(root, "target", "dashboard");
mkdirSync(shots, { recursive: true });
export const example = (name) => readFileSync(join(root, "examples", name), "utf8");

/** Starts `timeline serve` on a temporary data dir (or `dir`), on a port of
 * its own (or `listen`), with `args` besides; resolves to
 * `{ base, dir, stop(signal) }` once it listens. `stopped()` resolves when
 * it has exited. */
export async function startServer({ dir = mkdtempSync(join(tmpdir(), "timeline-dashboard-")), listen = "127.0.0.1:0", args = [] } = {}) {
  const bin = process.env.TIMELINE_BIN || join(root, "target", "debug", "timeline");
  const server = spawn(bin, ["serve", "--listen", listen, "--data-dir", dir, ...args], { stdio: ["ignore", "ignore", "pipe"] });
  const exited = new Promise((resolve) => server.on("exit", resolve));
  const base = await new Promise((resolve, reject) => {
    let log = "";
    server.stderr.on("data", (chunk) => {
      log += chunk;
      const m = log.match(/serving on (http:\/\/[^\s]+)/);
      if (m) resolve(m[1]);
    });
    server.on("exit", (code) => reject(new Error(`timeline serve exited (${code}): ${log}`)));
  });
  return { base, dir, stop: (signal) => server.kill(signal), stopped: () => exited };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
}

/** A request to the server at `base`: its status and JSON body. */
export async function call(base, path, options = {}) {
  const response = await fetch(base + path, options);
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** The CSV text as rows of fields (quoted fields with "" for a quote). */
export function parseCsv(text) {
  const rows = [];
  let row = [], field = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === "\"" && text[i + 1] === "\"") { field += "\""; i++; } else if (c === "\"") quoted = false; else field += c;
    } else if (c === "\"") quoted = true;
    else if (c === ",") { row.push(field); field = ""; } else if (c === "\n") { row.push(field); rows.push(row); row = []; field = ""; } else field += c;
  }
  if (field !== "" || row.length) { row.push(field); rows.push(row); }
  return rows;
}
