// The dashboard's scripts are classic scripts sharing one global scope: a
// top-level name declared in two of them silently replaces the first.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

const dir = new URL("../../local/src/dashboard/", import.meta.url).pathname;

test("no two dashboard scripts declare the same top-level name", () => {
  const owner = new Map();
  const clashes = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".js"))) {
    const text = readFileSync(join(dir, file), "utf8");
    for (const m of text.matchAll(/^(?:async\s+)?(?:function\*?|const|let|var|class)\s+([A-Za-z_$][\w$]*)/gm)) {
      const name = m[1];
      if (owner.has(name) && owner.get(name) !== file) clashes.push(`${name}: ${owner.get(name)} and ${file}`);
      owner.set(name, file);
    }
  }
  assert.ok(owner.size > 20, "the scripts were read");
  assert.deepEqual(clashes, []);
});
