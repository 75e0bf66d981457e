// Golem Timeline dashboard: jobs, plans, every worker's timeline for a key,
// aggregates, a job's changes as they come. Plain JS and SVG, served by `timeline serve`; no dependencies.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const SVG = "http://www.w3.org/2000/svg";
const main = $("#main");
let view = null; // the current view: { refresh() } re-reads its data

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, body) {
    const error = body && body.error ? body.error : {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.error = error;
    this.body = body;
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  const token = localStorage.getItem("timelineToken");
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = text; }
  if (response.status === 401) askForToken();
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

function askForToken() {
  const button = $("#token-button");
  button.hidden = false;
  if (!$("#token-form")) {
    const form = el("div", { id: "token-form", class: "panel" }, [
      el("b", {}, "This server needs a token. "),
      el("input", { id: "token-input", type: "password", placeholder: "bearer token" }),
      el("button", { onclick: () => { localStorage.setItem("timelineToken", $("#token-input").value); location.reload(); } }, "Use"),
    ]);
    main.prepend(form);
  }
}

// ---------------------------------------------------------------- helpers

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const child of [].concat(children)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}, children = []) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, v);
  for (const child of [].concat(children)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const enc = encodeURIComponent;
const operatorOf = (id) => id.slice(0, id.lastIndexOf("-"));
const fmtValue = (v) => v === null || v === undefined ? "unknown" : typeof v === "string" ? JSON.stringify(v) : String(v);

/** Times from 2000 on are epoch milliseconds; smaller ones are offsets. */
const isEpoch = (t) => t >= 946684800000;

/** A time for reading: an epoch with its date (2026-12-05 07:16:11.250 UTC),
 * a small time as milliseconds or seconds. */
function fmtTime(t) {
  if (isEpoch(t)) return new Date(t).toISOString().replace("T", " ").replace("Z", " UTC");
  return Math.abs(t) >= 10000 ? `${(t / 1000).toFixed(t % 1000 ? 1 : 0)}s` : `${t}ms`;
}

function colorOf(value) {
  const text = String(value);
  let h = 0;
  for (let i = 0; i < text.length; i++) h = (h * 31 + text.charCodeAt(i)) >>> 0;
  return `hsl(${h % 360}, 52%, 46%)`;
}

function errorBox(e) {
  return el("div", { class: "error-box" }, e.message || String(e));
}

/** The value of a timeline (its spans) at `t`; null is Unknown. */
function valueAt(spans, t) {
  for (const s of spans) {
    if (s.start <= t && (s.end === null || t < s.end)) {
      if (s.value === null) return null;
      const slope = slopeOf(s);
      return slope === 0 ? s.value : s.value + slope * (t - s.start);
    }
  }
  return null;
}

// ---------------------------------------------------------------- routing

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "jobs" && parts[1]) {
    const job = parts[1];
    if (parts[2] === "plan") return show(planView(job), job, "plan");
    if (parts[2] === "keys") return show(keyView(job, parts[3] || ""), job, "keys");
    if (parts[2] === "aggregates") return show(aggregatesView(job), job, "aggregates");
    if (parts[2] === "changes") return show(changesView(job, parts[3] || ""), job, "changes");
  }
  if (parts[0] === "streams") return show(streamsView(parts[1] || ""), null, "streams");
  show(jobsView(), null, "jobs");
}

function show(next, job, tab) {
  // The view shown until now lets go of what it holds open (a feed of changes).
  if (view && view.close) view.close();
  view = next;
  const nav = $("#nav");
  nav.replaceChildren(
    el("a", { href: "#/", class: tab === "jobs" ? "active" : "" }, "Jobs"),
    el("a", { href: "#/streams", class: tab === "streams" ? "active" : "", "data-tab": "streams" }, "Streams"),
  );
  if (job) {
    for (const [name, label] of [["plan", "Plan"], ["keys", "Key view"], ["changes", "Changes"]]) {
      nav.append(el("a", { href: `#/jobs/${enc(job)}/${name}`, class: tab === name ? "active" : "", "data-tab": name }, `${label} · ${job}`));
    }
    aggregatesTab(nav, job, tab === "aggregates", () => view === next);
  }
  main.replaceChildren(next.root);
  next.refresh();
}

// ---------------------------------------------------------------- jobs

const CIRR = `// Connection-induced rebuffering on CDN1
duration_where(
  has_existed(playerStateChange == "play")
  && !has_existed_within(userAction == "seek", 5s)
  && latest_event_to_state(playerStateChange) == "buffer"
  && latest_event_to_state(cdnChange) == "CDN1")`;

function jobsView() {
  const list = el("div", { id: "jobs" });
  const name = el("input", { id: "job-name", placeholder: "job name (required)" });
  const query = el("textarea", { id: "job-query", spellcheck: "false", placeholder: "a query in the Timeline DSL" });
  const gutter = el("div", { class: "gutter", id: "gutter" });
  const result = el("div", { id: "job-result" });
  const changes = el("input", { id: "job-changes", type: "checkbox" });
  const lines = () => {
    const n = query.value.split("\n").length;
    if (gutter.children.length !== n) {
      gutter.replaceChildren(...Array.from({ length: n }, (_, i) => el("div", { "data-line": i + 1 }, i + 1)));
    }
  };
  query.addEventListener("input", () => { lines(); gutter.querySelectorAll(".error").forEach((g) => g.classList.remove("error")); });
  query.addEventListener("scroll", () => { gutter.scrollTop = query.scrollTop; });
  const submit = async () => {
    result.replaceChildren();
    const request = { query: query.value, changes: changes.checked };
    if (name.value.trim()) request.name = name.value.trim();
    try {
      const job = await api("/v1/jobs", { method: "POST", body: JSON.stringify(request), headers: { "content-type": "application/json" } });
      result.replaceChildren(el("div", { class: "ok-box", id: "job-ok" }, [
        job.created ? "Job " : "Job already running: ", el("b", {}, job.name), " on stream ",
        el("a", { href: `#/streams/${enc(job.stream.name)}` }, job.stream.name), " — ",
        el("a", { href: `#/jobs/${enc(job.name)}/plan` }, "plan"), " · ",
        el("a", { href: `#/jobs/${enc(job.name)}/keys` }, "key view"), " · ",
        el("a", { href: `#/jobs/${enc(job.name)}/changes` }, job.changes ? "changes" : "changes (not recorded)"),
      ]), ...warningBoxes(job.warnings));
      await root.refresh();
    } catch (e) {
      const error = e.error || {};
      // The diagnostic says what, where and what to do; other errors have a message.
      const box = el("div", { class: "error-box", id: "job-error", "data-line": error.line, "data-column": error.column }, [
        el("b", {}, error.line ? `line ${error.line}, column ${error.column}` : "refused"),
        error.diagnostic ? el("pre", {}, error.diagnostic) : el("div", {}, e.message),
      ]);
      result.replaceChildren(box);
      if (error.line) {
        lines();
        const mark = gutter.querySelector(`[data-line="${error.line}"]`);
        if (mark) mark.classList.add("error");
        // Put the caret on the error.
        const rows = query.value.split("\n");
        let offset = 0;
        for (let i = 0; i < error.line - 1 && i < rows.length; i++) offset += rows[i].length + 1;
        offset += Math.max(0, error.column - 1);
        query.focus();
        query.setSelectionRange(offset, offset + 1);
      }
    }
  };
  const root = {
    root: el("div", {}, [
      el("div", { class: "panel" }, [el("h2", {}, "Jobs"), list]),
      el("div", { class: "panel" }, [
        el("h2", {}, "Submit a job"),
        el("div", { class: "toolbar" }, [name,
          el("button", { class: "quiet", id: "load-example", onclick: () => { query.value = CIRR; name.value = name.value || "cirr"; lines(); } }, "CIRR example")]),
        el("div", { class: "editor" }, [gutter, query]),
        el("div", { class: "toolbar", style: "margin-top:10px" }, [el("button", { id: "job-submit", onclick: submit }, "Submit"),
          el("label", { class: "check", title: "record every change of the job's result, to follow on its Changes tab or GET /v1/jobs/{job}/changes" },
            [changes, " record changes"])]),
        result,
      ]),
    ]),
    async refresh() {
      lines();
      try {
        const { jobs } = await api("/v1/jobs");
        if (!jobs.length) return list.replaceChildren(el("p", { class: "muted" }, "No job yet: submit one below."));
        list.replaceChildren(el("table", { id: "jobs-table" }, [
          el("tr", {}, ["name", "stream", "outputs", "nodes", "query", ""].map((h) => el("th", {}, h))),
          ...jobs.map((j) => el("tr", { "data-job": j.name }, [
            el("td", {}, [el("b", {}, j.name),
              j.changes ? el("a", { href: `#/jobs/${enc(j.name)}/changes`, class: "badge records-changes", title: "records every change of its result" }, "changes") : null]),
            el("td", {}, el("a", { href: `#/streams/${enc(j.stream.name)}`, "data-stream": j.stream.name }, j.stream.name)),
            el("td", {}, (j.outputs || []).map((o) => el("span", { class: "badge" }, `${o.name} (${o.worker})`))),
            el("td", {}, j.nodes),
            el("td", {}, el("code", {}, j.query.length > 140 ? `${j.query.slice(0, 140)}…` : j.query)),
            el("td", {}, el("div", { class: "row-actions" }, [
              el("a", { href: `#/jobs/${enc(j.name)}/plan` }, "plan"),
              el("a", { href: `#/jobs/${enc(j.name)}/keys` }, "keys"),
              el("a", { href: `#/jobs/${enc(j.name)}/changes` }, "changes"),
              hasAggregates(j.outputs) ? el("a", { href: `#/jobs/${enc(j.name)}/aggregates` }, "aggregates") : null,
              el("button", { class: "danger", "data-delete": j.name, onclick: async () => {
                if (!confirm(`Delete job ${j.name}? Workers no other job uses are dropped.`)) return;
                try { await api(`/v1/jobs/${enc(j.name)}`, { method: "DELETE" }); } catch (e) { list.prepend(errorBox(e)); }
                root.refresh();
              } }, "delete"),
            ])),
          ])),
        ]));
      } catch (e) {
        list.replaceChildren(errorBox(e));
      }
    },
  };
  return root;
}

// The plan view is in plan.js.

// ---------------------------------------------------------------- key view: keys.js

function niceStep(raw) {
  const pow = Math.pow(10, Math.floor(Math.log10(Math.max(1, raw))));
  for (const m of [1, 2, 5, 10]) if (m * pow >= raw) return m * pow;
  return 10 * pow;
}

// The aggregates view is in aggregates.js.

// ---------------------------------------------------------------- streams

/// A job's warnings (a column no event carried, a literal of another type), each with its diagnostic.
function warningBoxes(warnings) {
  return (warnings || []).map((w) => el("div", { class: "warning-box", "data-line": w.line, "data-column": w.column }, [
    el("b", {}, `warning · line ${w.line}, column ${w.column}`),
    el("pre", {}, w.diagnostic || w.message),
  ]));
}

function streamsView(selected) {
  const list = el("div", { id: "streams" });
  const detail = el("div", { id: "stream-detail" });
  return {
    root: el("div", {}, [el("div", { class: "panel" }, [el("h2", {}, "Streams"), list]), detail]),
    async refresh() {
      let streams;
      try { ({ streams } = await api("/v1/streams")); } catch (e) { return list.replaceChildren(errorBox(e)); }
      list.replaceChildren(el("table", { id: "streams-table" }, [
        el("tr", {}, ["stream", "key", "time", "id", "events", "keys", "latest", "columns", "jobs"].map((h) => el("th", {}, h))),
        ...streams.map((s) => el("tr", { "data-stream": s.name, class: s.name === selected ? "selected" : "" }, [
          el("td", {}, el("a", { href: `#/streams/${enc(s.name)}` }, el("b", {}, s.name))),
          el("td", {}, el("code", {}, s.key)), el("td", {}, el("code", {}, s.time)), el("td", {}, el("code", {}, s.id)),
          el("td", {}, s.events), el("td", {}, s.keys), el("td", {}, s.latest === null ? "—" : fmtTime(s.latest)),
          el("td", {}, s.columns),
          el("td", {}, s.jobs.map((j) => el("a", { href: `#/jobs/${enc(j)}/plan`, class: "badge" }, j))),
        ])),
      ]));
      const name = selected || (streams[0] && streams[0].name);
      if (!name) return detail.replaceChildren();
      let stream;
      try { stream = await api(`/v1/streams/${enc(name)}`); } catch (e) { return detail.replaceChildren(errorBox(e)); }
      detail.replaceChildren(el("div", { class: "panel" }, [
        el("h2", {}, `Columns of ${name}`),
        stream.columns.length
          ? el("table", { id: "columns-table", "data-stream": name }, [
            el("tr", {}, ["column", "types", "events", "first seen", "last seen"].map((h) => el("th", {}, h))),
            ...stream.columns.map((c) => el("tr", { "data-column": c.name }, [
              el("td", {}, el("code", {}, c.name)),
              el("td", {}, c.types.map((t) => el("span", { class: "badge" }, t))),
              el("td", {}, `${c.events} (${Math.round((100 * c.events) / Math.max(1, stream.events))}%)`),
              el("td", {}, fmtTime(c.first)), el("td", {}, fmtTime(c.last)),
            ])),
          ])
          : el("p", { class: "muted" }, `No event yet: post them to /v1/streams/${name}/events.`),
      ]));
    },
  };
}

// ---------------------------------------------------------------- live

let lastEvents = null;
let lastJobs = null;
async function poll() {
  try {
    const health = await api("/v1/health");
    $("#status").textContent = `${health.events} events · ${health.keys} keys · ${health.jobs} jobs`;
    $("#status").setAttribute("data-events", health.events);
    // New events, or a job submitted or deleted elsewhere: the view reads its data again.
    const moved = (lastEvents !== null && health.events !== lastEvents) || (lastJobs !== null && health.jobs !== lastJobs);
    lastEvents = health.events;
    lastJobs = health.jobs;
    if (moved && view) await view.refresh();
  } catch (e) {
    const degraded = e.body && e.body.status === "degraded";
    $("#status").textContent = degraded ? `storage failing: ${e.body.storage}` : "server unreachable";
  }
}

$("#token-button").addEventListener("click", askForToken);
window.addEventListener("hashchange", route);
window.addEventListener("resize", () => { if (view) view.refresh(); });
route();
poll();
setInterval(poll, 1500);
