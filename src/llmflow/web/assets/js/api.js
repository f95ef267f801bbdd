// The console's only way to the server: the public JSON API (/api/v1), with the tab's
// bearer token, and Server-Sent Events read through fetch() (EventSource cannot send an
// Authorization header, and a token in a URL ends up in logs).

const TOKEN_KEY = "llmflow.token";
const listeners = { auth: new Set() };

export class ApiError extends Error {
  constructor(status, detail, path) {
    super(detailText(detail) || `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
    this.path = path;
  }
}

export function getToken() {
  try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch { return ""; }
}

export function setToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch { /* storage disabled: the token lives until reload */ }
}

/** Called with no argument whenever the server answers 401. */
export function onAuthNeeded(fn) {
  listeners.auth.add(fn);
  return () => listeners.auth.delete(fn);
}

function authNeeded() {
  for (const fn of listeners.auth) fn();
}

function headers(extra = {}) {
  const h = { Accept: "application/json", ...extra };
  const t = getToken();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

export function url(path, query) {
  const u = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") u.searchParams.set(k, v);
  }
  return u.pathname + u.search;
}

/** The API's `detail` as one readable text: a string, or FastAPI's [{loc, msg, hint, line}]. */
export function detailText(detail) {
  if (detail == null) return "";
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => {
      if (typeof d !== "object" || d === null) return String(d);
      const loc = (d.loc || []).filter((p) => p !== "body").join(".");
      const where = d.line != null ? ` (line ${d.line}${d.column != null ? `, column ${d.column}` : ""})` : "";
      return `${loc ? loc + ": " : ""}${d.msg || JSON.stringify(d)}${where}${d.hint ? ` (hint: ${d.hint})` : ""}`;
    }).join("\n");
  }
  return JSON.stringify(detail);
}

async function detailOf(res) {
  const text = await res.text();
  try { return JSON.parse(text).detail ?? text; } catch { return text || res.statusText; }
}

/** JSON request. Throws ApiError (with the server's `detail`) on any non-2xx answer. */
export async function api(path, { method = "GET", body, query, signal } = {}) {
  const init = { method, headers: headers(body !== undefined ? { "Content-Type": "application/json" } : {}), signal };
  if (body !== undefined) init.body = JSON.stringify(body);
  let res;
  try {
    res = await fetch(url(path, query), init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, `cannot reach the server: ${err.message}`, path);
  }
  if (res.status === 401) authNeeded();
  if (!res.ok) throw new ApiError(res.status, await detailOf(res), path);
  if (res.status === 204) return null;
  const type = res.headers.get("content-type") || "";
  return type.includes("json") ? res.json() : res.text();
}

/** A file from the API as a Blob (artifacts: previews and downloads need the token too). */
export async function fetchBlob(path) {
  const res = await fetch(path, { headers: headers({ Accept: "*/*" }) });
  if (res.status === 401) authNeeded();
  if (!res.ok) throw new ApiError(res.status, await detailOf(res), path);
  return res.blob();
}

/**
 * Follow an SSE endpoint. handlers: onEvent(name, data, id), onOpen(), onEnd() (the server
 * closed the stream), onError(err). With `reconnect`, a dropped or ended stream is opened
 * again after a growing delay, sending Last-Event-ID. Returns {close(), lastId()}.
 */
export function stream(path, handlers, { lastId = null, reconnect = false, query } = {}) {
  let closed = false;
  let controller = null;
  let delay = 1000;
  let cursor = lastId;
  let timer = null;

  async function open() {
    controller = new AbortController();
    const h = headers({ Accept: "text/event-stream" });
    if (cursor != null) h["Last-Event-ID"] = String(cursor);
    let res;
    try {
      res = await fetch(url(path, query), { headers: h, signal: controller.signal, cache: "no-store" });
    } catch (err) {
      if (closed || err.name === "AbortError") return;
      handlers.onError?.(new ApiError(0, `stream lost: ${err.message}`, path));
      return retry();
    }
    if (res.status === 401) { authNeeded(); handlers.onError?.(new ApiError(401, await detailOf(res), path)); return; }
    if (!res.ok) { handlers.onError?.(new ApiError(res.status, await detailOf(res), path)); if (res.status >= 500) retry(); return; }
    delay = 1000;
    handlers.onOpen?.();
    try {
      await read(res.body);
    } catch (err) {
      if (closed || err.name === "AbortError") return;
      handlers.onError?.(new ApiError(0, `stream lost: ${err.message}`, path));
      return retry();
    }
    if (closed) return;
    handlers.onEnd?.();
    if (reconnect) retry();
  }

  async function read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let cut;
      while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut).replace(/^\r?\n\r?\n/, "");
        dispatch(block);
        if (closed) return;
      }
    }
  }

  function dispatch(block) {
    let name = "message";
    const data = [];
    let id = null;
    for (const line of block.split(/\r?\n/)) {
      if (!line || line.startsWith(":")) continue;
      const i = line.indexOf(":");
      const field = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
      if (field === "event") name = value;
      else if (field === "data") data.push(value);
      else if (field === "id") id = value;
    }
    if (id !== null) cursor = id;
    if (!data.length) return;
    let parsed = data.join("\n");
    try { parsed = JSON.parse(parsed); } catch { /* plain text data */ }
    handlers.onEvent?.(name, parsed, id);
  }

  function retry() {
    if (closed || !reconnect) return;
    clearTimeout(timer);
    timer = setTimeout(open, delay);
    delay = Math.min(delay * 2, 15000);
  }

  open();
  return {
    close() { closed = true; clearTimeout(timer); controller?.abort(); },
    lastId() { return cursor; },
  };
}
