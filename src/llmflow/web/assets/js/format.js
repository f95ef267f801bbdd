// How values read on screen: times in the viewer's timezone and locale, durations,
// tokens, cost, statuses, JSON.

import { h } from "./dom.js";

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const timeOnly = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const number = new Intl.NumberFormat();

export const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELED"]);
export const RUN_STATUSES = ["QUEUED", "RUNNING", "PAUSED", "COMPLETED", "FAILED", "CANCELED"];

/** A time from the API as a Date: ISO 8601 text (what the API sends), or Unix seconds. */
export function toDate(ts) {
  if (ts == null || ts === "") return null;
  return typeof ts === "number" ? new Date(ts * 1000) : new Date(ts);
}

/** An API time -> "22 Nov 2026, 10:04:05" in the viewer's timezone. */
export function fmtTime(ts) {
  const d = toDate(ts);
  return d == null ? "—" : dateTime.format(d);
}

export function fmtClock(ts) {
  const d = toDate(ts);
  return d == null ? "" : timeOnly.format(d);
}

/** A <time> element: local text, ISO datetime, full text as its title. */
export function timeEl(ts) {
  const d = toDate(ts);
  if (d == null) return h("span", { class: "muted" }, "—");
  return h("time", { datetime: d.toISOString(), title: `${dateTime.format(d)} (${Intl.DateTimeFormat().resolvedOptions().timeZone})` }, dateTime.format(d));
}

export function fmtDuration(sec) {
  if (sec == null || Number.isNaN(sec)) return "—";
  if (sec < 1) return `${Math.round(sec * 1000)} ms`;
  if (sec < 60) return `${sec.toFixed(1)} s`;
  const s = Math.round(sec);
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/** A run's or step's duration; a running one counts up from its start (data-since). */
export function durationEl(item) {
  if (item.duration != null) return h("span", { class: "num" }, fmtDuration(item.duration));
  if (item.started_at != null && !TERMINAL.has(item.status) && item.status !== "QUEUED") {
    const since = toDate(item.started_at).getTime() / 1000;
    return h("span", { class: "num ticking", dataset: { since: String(since) } }, fmtDuration(Date.now() / 1000 - since));
  }
  return h("span", { class: "muted" }, "—");
}

/** Update every counting-up duration on the page (called once a second, no network). */
export function tick(root = document) {
  const now = Date.now() / 1000;
  for (const el of root.querySelectorAll(".ticking[data-since]")) {
    el.textContent = fmtDuration(Math.max(0, now - Number(el.dataset.since)));
  }
}

export function fmtInt(n) {
  return n == null ? "—" : number.format(Math.round(n));
}

export function fmtTokens(usage) {
  if (!usage) return "—";
  const i = usage.input_tokens ?? usage.tokens_in ?? usage.input ?? 0;
  const o = usage.output_tokens ?? usage.tokens_out ?? usage.output ?? 0;
  if (!i && !o) return "—";
  return `${fmtInt(i)} / ${fmtInt(o)}`;
}

export function fmtCost(cost) {
  if (cost == null) return "—";
  if (cost === 0) return "$0";
  return cost < 0.01 ? `$${cost.toFixed(4)}` : `$${cost.toFixed(2)}`;
}

export function fmtBytes(n) {
  if (n == null) return "—";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function statusBadge(status, extra) {
  const s = String(status || "UNKNOWN").toUpperCase();
  return h("span", { class: ["badge", `st-${s.toLowerCase()}`] }, s.toLowerCase(), extra ? ` ${extra}` : "");
}

export function pretty(value) {
  if (typeof value === "string") return value;
  try { return JSON.stringify(value, null, 2); } catch { return String(value); }
}

export function shortId(id) {
  return id && id.length > 28 ? `${id.slice(0, 26)}…` : id;
}

export function runLink(id) {
  return h("a", { href: `#/runs/${encodeURIComponent(id)}`, class: "mono", title: id }, shortId(id));
}

/** Text kept to one line: cut with an ellipsis by CSS, the full text on hover. */
export function clip(text, cls = "") {
  if (text == null || text === "") return null;
  return h("span", { class: `clip ${cls}`.trim(), title: String(text) }, String(text));
}
