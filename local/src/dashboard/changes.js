// The Changes view: a job's changes as the server stores them, live and
// newest on top, from GET /v1/jobs/{job}/changes as Server-Sent Events (the
// browser's EventSource, which reconnects and resumes with Last-Event-ID by
// itself), or as long polls where the page sends a token (EventSource cannot
// send headers). A `where` filter, a followed key (with that key's timelines
// under the feed), pause and resume, the connection's state, and a mark on a
// change that rewrote the past. Loaded before app.js, whose helpers (api, el,
// enc, fmtTime, fmtValue, ...) it uses at call time.
"use strict";

/** Changes the list keeps: the newest. */
const CHANGES_KEPT = 500;
/** How far back the feed opens, in change ids: the job's last this many
 * changes, or, with a filter or a followed key, the matches among its last
 * FILTERED_HISTORY changes (what the server looks through in one read). */
const FEED_HISTORY = CHANGES_KEPT;
const FILTERED_HISTORY = 100000;
/** Seconds a long poll waits for a change. */
const CHANGES_WAIT = 25;
/** Milliseconds before a feed the browser gave up on is opened again. */
const REOPEN_AFTER = 3000;
/** Keys whose latest instant the feed remembers (for the late mark), at most. */
const LATE_KEYS = 100000;
/** The filter typed for each job, kept while its follows come and go. */
const changesFilters = new Map();

/** `text` as a string literal of the DSL (its escapes: \\ \" \n \r \t). */
function dslString(text) {
  return `"${String(text).replace(/[\\"]/g, "\\$&").replace(/\n/g, "\\n").replace(/\r/g, "\\r").replace(/\t/g, "\\t")}"`;
}

/** The condition the feed asks for: the followed key's and the filter, both. */
function changesCondition(follow, filter) {
  if (!follow) return filter;
  const key = `key == ${dslString(follow)}`;
  // On lines of its own, so that a comment in the filter ends with it.
  return filter ? `${key} && (\n${filter}\n)` : key;
}

/** The changes of `job` that match `where`, after id `after`, as they come:
 * `onChange(change)` for each, in id order; `onState(state, error)` with
 * `connecting`, `live`, `reconnecting` or `closed` (then `error`, if the
 * server said why). `close()` stops it. */
function changesSource(job, where, after, onChange, onState) {
  const path = `/v1/jobs/${enc(job)}/changes`;
  const query = (from, extra) => {
    const params = new URLSearchParams({ after: String(from) });
    if (where) params.set("where", where);
    for (const [k, v] of Object.entries(extra || {})) params.set(k, v);
    return `${path}?${params}`;
  };
  let closed = false;
  let last = after;
  /** Why the server refuses the feed (an ApiError), or null if it does not. */
  const why = async () => {
    try { await api(query(last, { limit: "1", after: String(Number.MAX_SAFE_INTEGER) })); return null; } catch (e) { return e; }
  };
  onState("connecting");

  if (!localStorage.getItem("timelineToken")) {
    let source = null, timer = null;
    const open = () => {
      source = new EventSource(query(last));
      source.addEventListener("open", () => { if (!closed) onState("live"); });
      source.addEventListener("change", (e) => {
        if (closed) return;
        const change = JSON.parse(e.data);
        last = Math.max(last, change.id);
        onChange(change);
      });
      source.addEventListener("error", async () => {
        if (closed) return;
        // CONNECTING: the browser reconnects by itself, resuming after the
        // last id it got. CLOSED: the server refused the stream.
        if (source.readyState !== EventSource.CLOSED) return onState("reconnecting");
        source.close();
        const error = await why();
        if (closed) return;
        const final = error && error.status && error.status < 500 && error.status !== 408 && error.status !== 429;
        if (final) return onState("closed", error);
        onState("reconnecting", error);
        timer = setTimeout(() => { if (!closed) open(); }, REOPEN_AFTER);
      });
    };
    open();
    return { close() { closed = true; clearTimeout(timer); if (source) source.close(); } };
  }

  // With a token: long polls, each resuming after the last change.
  (async () => {
    let failures = 0;
    let answered = false; // the last ask was answered: the next may wait
    while (!closed) {
      try {
        // The first ask answers at once (so the feed is live at once), the next wait for a change.
        const page = await api(query(last, answered ? { wait: String(CHANGES_WAIT) } : {}));
        if (closed) return;
        failures = 0;
        answered = true;
        onState("live");
        for (const change of page.changes) onChange(change);
        last = Math.max(last, page.next);
      } catch (e) {
        if (closed) return;
        if (e.status && e.status < 500 && e.status !== 408 && e.status !== 429) return onState("closed", e);
        answered = false;
        onState("reconnecting", e);
        await new Promise((resolve) => setTimeout(resolve, Math.min(15000, 1000 * 2 ** failures++)));
      }
    }
  })();
  return { close() { closed = true; } };
}

/** A value of a change as the dashboard shows values (Unknown as unknown),
 * a duration's with its reading (13s), its trend (a duration that rises or
 * falls by 1 per ms) marked. */
function changeValue(value, trend, unit) {
  const unknown = value === null || value === undefined;
  return el("span", { class: `change-value${unknown ? " unknown" : ""}${value === true ? " is-true" : ""}`, title: exact(value) }, [
    fmtValue(value),
    unit === "duration" && typeof value === "number" ? el("span", { class: "muted reading" }, ` (${fmtDuration(value)})`) : null,
    trend ? el("span", { class: `trend ${trend}`, "data-trend": trend, title: `${trend}: ${trend === "rising" ? "grows" : "falls"} by 1 per ms from here` },
      trend === "rising" ? " ↗ rising" : " ↘ falling") : null,
  ]);
}

function changesView(job, follow) {
  const path = `/v1/jobs/${enc(job)}/changes`;
  const filter = el("input", { id: "changes-where", type: "search", size: 40, spellcheck: "false", autocomplete: "off",
    placeholder: "a condition: value == true && old != true", value: changesFilters.get(job) || "" });
  const followInput = el("input", { id: "changes-follow", type: "search", size: 18, autocomplete: "off", placeholder: "follow key", value: follow });
  const state = el("span", { id: "changes-state", class: "conn", "data-state": "connecting" }, "connecting…");
  const pause = el("button", { class: "quiet", id: "changes-pause", hidden: "" }, "Pause");
  const info = el("span", { class: "muted", id: "changes-info" });
  const problem = el("div", { id: "changes-problem" });
  const body = el("tbody", { id: "changes-rows" });
  const table = el("table", { id: "changes-table", class: "changes-table" }, [
    el("thead", {}, el("tr", {}, ["id", "key", "output", "from → until", "old → new", ""].map((h) => el("th", {}, h)))),
    body,
  ]);
  const feed = el("div", { id: "changes-feed" }, [el("p", { class: "muted", id: "changes-empty" }, "Loading…")]);
  const keyPanel = el("div", { id: "changes-key" });
  let applied = filter.value.trim(); // the filter the feed runs with
  let source = null;
  let paused = false;
  let last = 0; // the newest id shown
  let received = 0;
  let pending = []; // changes not drawn yet
  let flushing = null;
  const latest = new Map(); // output and key -> the latest `from` seen
  let started = false;
  let closed = false;
  let keys = null; // the followed key's view, when a key is followed
  let units = new Map(); // output -> what its numbers are (count, duration, number)

  function setState(name, error) {
    const text = { connecting: "connecting…", live: "● live", reconnecting: "reconnecting…", paused: "paused", closed: "closed" }[name];
    state.textContent = error && name === "closed" ? `closed: ${error.message}` : text;
    state.setAttribute("data-state", name);
    state.className = `conn conn-${name}`;
    state.title = error ? error.message : name === "live" ? "new changes show as they are stored" : "";
  }

  /** Whether `change` starts before the latest instant the feed has seen
   * for its key (and output): it rewrote the past, a late event's doing. */
  function late(change) {
    if (change.key === undefined) return false;
    const id = JSON.stringify([change.output, change.key]);
    const seen = latest.get(id);
    if (seen === undefined || change.from > seen) {
      latest.delete(id); // to the end: the key forgotten first is the one quiet the longest
      latest.set(id, change.from);
      if (latest.size > LATE_KEYS) latest.delete(latest.keys().next().value);
    }
    return seen !== undefined && change.from < seen;
  }

  function row(change, isLate) {
    const who = change.key !== undefined
      ? el("a", { href: `#/jobs/${enc(job)}/changes/${enc(change.key)}`, class: "follow-key mono", "data-follow": change.key, title: `follow ${change.key}` }, change.key)
      : el("span", {}, [el("span", { class: "muted" }, "group "), groupLabel(change.group),
        change.function ? el("span", { class: "badge" }, change.function) : null]);
    return el("tr", {
      "data-id": change.id, "data-key": change.key, "data-output": change.output,
      "data-old": JSON.stringify(change.old === undefined ? null : change.old), "data-new": JSON.stringify(change.new === undefined ? null : change.new),
      "data-from": change.from, "data-until": change.until === null ? "" : change.until, "data-late": String(isLate),
      class: isLate ? "late" : "",
    }, [
      el("td", { class: "mono" }, change.id),
      el("td", {}, who),
      el("td", {}, el("code", {}, change.output)),
      el("td", { class: "mono", title: `from ${change.from} until ${change.until === null ? "for ever" : change.until}` }, [
        fmtTime(change.from), el("span", { class: "muted" }, " → "), change.until === null ? "∞" : fmtTime(change.until)]),
      el("td", { class: "mono" }, [changeValue(change.old, change.old_trend, units.get(change.output)), el("span", { class: "muted" }, " → "),
        changeValue(change.new, change.new_trend, units.get(change.output))]),
      el("td", {}, isLate ? el("span", { class: "badge late-badge", title: "earlier than the latest instant seen for this key: a late event rewrote the past" }, "late") : null),
    ]);
  }

  /** Draws the changes come since the last draw, newest on top, keeping
   * CHANGES_KEPT (every one counts for the late marks; only those kept are drawn). */
  function flush() {
    flushing = null;
    if (closed || !pending.length) return;
    const marks = pending.map(late);
    const from = Math.max(0, pending.length - CHANGES_KEPT);
    const rows = pending.slice(from).map((change, i) => row(change, marks[from + i]));
    pending = [];
    if (!table.isConnected) feed.replaceChildren(table);
    body.prepend(...rows.reverse());
    while (body.rows.length > CHANGES_KEPT) body.lastElementChild.remove();
    describe();
  }

  function describe() {
    const shown = body.rows.length;
    info.textContent = `${received} change${received === 1 ? "" : "s"}${shown < received ? ` · the newest ${shown} shown` : ""}` +
      `${follow ? ` · of ${follow}` : ""}${applied ? " · filtered" : ""}`;
    info.setAttribute("data-received", received);
  }

  function onChange(change) {
    if (change.id <= last) return; // seen already
    last = change.id;
    received++;
    pending.push(change);
    if (!flushing) flushing = setTimeout(flush, 30);
  }

  function open(after) {
    if (source) source.close();
    source = changesSource(job, changesCondition(follow, applied), after, onChange, (name, error) => {
      if (!paused) setState(name, error);
      if (name === "closed") {
        pause.hidden = true;
        if (error) problem.replaceChildren(errorBox(error));
      }
    });
  }

  /** Checks a filter with the server: the error at its line and column, or the job's newest id. */
  async function check(text) {
    const params = new URLSearchParams({ after: String(Number.MAX_SAFE_INTEGER), limit: "1" });
    if (text) params.set("where", text);
    return api(`${path}?${params}`);
  }

  /** (Re)starts the feed with the filter typed: its history, then live. */
  async function apply() {
    const text = filter.value.trim();
    let page;
    try {
      page = await check(text);
    } catch (e) {
      const error = e.error || {};
      problem.replaceChildren(el("div", { class: "error-box", id: "changes-error", "data-line": error.line, "data-column": error.column }, [
        el("b", {}, error.line ? `line ${error.line}, column ${error.column}` : "refused"),
        el("div", {}, e.message),
        error.diagnostic ? el("pre", {}, error.diagnostic) : null,
        error.help ? el("div", { class: "muted" }, error.help) : null,
        el("div", { class: "muted" }, applied === text ? "" : `The feed still runs with ${applied ? `the filter ${applied}` : "no filter"}.`),
      ]));
      return;
    }
    if (closed) return;
    problem.replaceChildren();
    applied = text;
    changesFilters.set(job, text);
    const history = follow || applied ? FILTERED_HISTORY : FEED_HISTORY;
    last = Math.max(0, page.last - history);
    received = 0;
    pending = [];
    latest.clear();
    body.replaceChildren();
    feed.replaceChildren(el("p", { class: "muted", id: "changes-empty" },
      follow || applied ? "No change matches yet: they show here as they come." : "No change yet: they show here as events change the job's results."));
    describe();
    paused = false;
    pause.textContent = "Pause";
    pause.hidden = false;
    open(last);
  }

  function followKey(key) {
    const hash = `#/jobs/${enc(job)}/changes${key ? `/${enc(key)}` : ""}`;
    if (location.hash !== hash) location.hash = hash;
  }

  filter.addEventListener("keydown", (e) => { if (e.key === "Enter") apply(); });
  followInput.addEventListener("keydown", (e) => { if (e.key === "Enter") followKey(followInput.value.trim()); });
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    if (paused) {
      if (source) source.close();
      source = null;
      setState("paused");
      state.textContent = `paused after change ${last}`;
    } else open(last); // resumes after the last change shown: nothing missed
  });
  body.addEventListener("click", (e) => {
    const link = e.target.closest("a[data-follow]");
    if (!link) return;
    e.preventDefault();
    followKey(link.getAttribute("data-follow"));
  });

  const controls = el("div", { class: "toolbar", id: "changes-controls" }, [
    el("b", {}, "where"), filter,
    el("button", { id: "changes-apply", onclick: () => apply() }, "Filter"),
    el("span", { class: "spacer" }),
    followInput,
    el("button", { class: "quiet", id: "changes-follow-button", onclick: () => followKey(followInput.value.trim()) }, "Follow"),
    follow ? el("button", { class: "quiet", id: "changes-unfollow", onclick: () => followKey("") }, "All keys") : null,
    pause, state,
  ]);
  const panel = el("div", { class: "panel", id: "changes-panel" }, [controls, problem, el("div", { class: "toolbar" }, info), feed]);
  const root = el("div", {}, [el("h2", {}, follow ? `Changes of ${job} · following ${follow}` : `Changes of ${job}`), panel, keyPanel]);

  async function start() {
    let described;
    try { described = await api(`/v1/jobs/${enc(job)}`); } catch (e) { return panel.replaceChildren(errorBox(e)); }
    if (closed) return;
    if (!described.changes) {
      return panel.replaceChildren(el("div", { id: "changes-off" }, [
        el("p", {}, [el("b", {}, job), " does not record its changes, so there is none to show."]),
        el("p", {}, ["To see a job's changes here, submit it with ", el("b", {}, "record changes"), " ticked (on the ",
          el("a", { href: "#/" }, "Jobs"), " page), or with ", el("code", {}, "\"changes\": true"), " through the API; delete this one first, or use another name. ",
          "A job records its changes from its submission on."]),
      ]));
    }
    pause.hidden = false;
    units = new Map((described.plan.outputs || []).map((o) => [o.name, unitOf(o.node)]));
    if (follow) {
      keys = keyView(job, follow);
      keyPanel.replaceChildren(el("div", { class: "followed-key" }, [
        el("div", { class: "toolbar" }, [el("span", { class: "muted" }, `${follow}'s timelines, as its changes come:`),
          el("a", { href: `#/jobs/${enc(job)}/keys/${enc(follow)}`, id: "changes-open-key" }, "open in the key view")]),
        keys.root,
      ]));
      keys.refresh();
    }
    await apply();
  }

  /** A job deleted (elsewhere) closes its feed: the server's stream of it
   * may stay open, silent, until another change is stored. */
  let checking = false;
  async function checkJob() {
    if (checking || !source) return;
    checking = true;
    try {
      await api(`/v1/jobs/${enc(job)}`);
    } catch (e) {
      if (e.status === 404 && source && !closed) {
        source.close();
        source = null;
        pause.hidden = true;
        setState("closed", e);
        problem.replaceChildren(errorBox(e));
      }
    } finally {
      checking = false;
    }
  }

  return {
    root,
    refresh() {
      if (!started) { started = true; return start(); }
      checkJob();
      if (keys) return keys.refresh();
    },
    close() {
      closed = true;
      clearTimeout(flushing);
      if (source) source.close();
    },
  };
}
