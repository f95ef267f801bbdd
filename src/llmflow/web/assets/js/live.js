// One live connection per tab to GET /api/v1/events/stream (every run's changes and the
// worker's state), shared by all pages. It is open only while the tab is visible; when the
// tab comes back it reconnects with Last-Event-ID, so nothing is missed. A server without
// that route gets a modest fallback: one GET /api/v1/runs every 5 s, only while visible.

import { api, stream } from "./api.js";

const subscribers = { run: new Set(), worker: new Set(), state: new Set(), resync: new Set() };
let conn = null;
let lastId = null;
let mode = "off"; // "stream" | "poll" | "off"
let pollTimer = null;
let pollSeen = new Map();
let state = "connecting";

/** on("run" | "worker" | "state" | "resync", fn) -> unsubscribe */
export function on(kind, fn) {
  subscribers[kind].add(fn);
  if (kind === "state") fn(state);
  return () => subscribers[kind].delete(fn);
}

function emit(kind, data) {
  for (const fn of subscribers[kind]) {
    try { fn(data); } catch (err) { console.error(err); }
  }
}

function setState(s) {
  state = s;
  emit("state", s);
}

function openStream() {
  conn = stream("/api/v1/events/stream", {
    onOpen() { setState("live"); },
    onEvent(name, data) {
      if (name === "hello") {
        if (data?.worker) emit("worker", data.worker);
        emit("resync", data);
      } else if (name === "run") emit("run", data);
      else if (name === "worker") emit("worker", data);
    },
    onError(err) {
      if (err.status === 404 || err.status === 405) {
        conn?.close();
        conn = null;
        startPolling();
      } else if (err.status === 401) setState("signed out");
      else setState("reconnecting");
    },
  }, { lastId, reconnect: true });
}

async function pollOnce() {
  try {
    const [runs, worker] = await Promise.all([api("/api/v1/runs", { query: { limit: 50 } }), api("/api/v1/worker").catch(() => null)]);
    if (worker) emit("worker", worker);
    const seen = new Map();
    for (const r of runs.runs || []) {
      const sig = `${r.status}:${r.last_seq}`;
      seen.set(r.id, sig);
      if (pollSeen.size && pollSeen.get(r.id) !== sig) emit("run", r);
    }
    pollSeen = seen;
    setState("polling");
  } catch {
    setState("reconnecting");
  }
}

function startPolling() {
  mode = "poll";
  clearInterval(pollTimer);
  if (document.visibilityState !== "visible") return;
  pollOnce();
  pollTimer = setInterval(pollOnce, 5000);
}

function stop() {
  if (conn) {
    lastId = conn.lastId();
    conn.close();
    conn = null;
  }
  clearInterval(pollTimer);
  pollTimer = null;
  setState("paused");
}

function start() {
  if (mode === "poll") startPolling();
  else if (!conn) openStream();
}

/** Start following (call once). Restart after signing in with restart(). */
export function startLive() {
  mode = "stream";
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") start();
    else stop();
  });
  if (document.visibilityState === "visible") start();
}

export function restart() {
  stop();
  start();
}
