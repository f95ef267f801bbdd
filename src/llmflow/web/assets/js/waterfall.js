// A run as a waterfall (Gantt chart), built from its events: one bar per step, one per
// attempt (a unit's attempts are labelled with the unit), and inside an attempt its model
// calls, tool calls, shell commands and human questions, on one time axis. Bars are
// coloured by status; a bar that has not ended yet grows with the clock. Clicking a bar
// selects its step (the run page shows the step's detail).
//
//   const wf = createWaterfall({ onSelect: (stepId) => ... });
//   wf.add(events);   // any batch, in seq order; el is the chart

import { h, replace } from "./dom.js";
import { toDate } from "./format.js";

const STEP_END = { STEP_COMPLETED: "completed", STEP_FAILED: "failed", STEP_CANCELED: "canceled", STEP_SKIPPED: "skipped", STEP_STALE: "stale" };
const ATTEMPT_END = { ATTEMPT_COMPLETED: "completed", ATTEMPT_FAILED: "failed", ATTEMPT_INTERRUPTED: "canceled", ATTEMPT_CANCELED: "canceled" };
const RUN_END = new Set(["RUN_COMPLETED", "RUN_FAILED", "RUN_CANCELED"]);

function ms(e) {
  return toDate(e.ts)?.getTime() ?? Date.now();
}

function fmtDur(d) {
  if (d < 1000) return `${Math.round(d)} ms`;
  if (d < 60000) return `${(d / 1000).toFixed(d < 10000 ? 2 : 1)} s`;
  return `${Math.floor(d / 60000)} min ${Math.round((d % 60000) / 1000)} s`;
}

export function createWaterfall({ onSelect } = {}) {
  const rows = []; // {id, level, label, kind, status, start, end, step}
  const byKey = new Map();
  const steps = new Map(); // step id -> its open step row
  let runStart = null;
  let runEnd = null;
  let timer = null;
  let selected = null;

  const axis = h("div", { class: "wf-axis", "aria-hidden": "true" });
  const body = h("div", { class: "wf-rows", role: "list", "aria-label": "Steps, attempts and calls on a time axis" });
  const empty = h("p", { class: "muted" }, "No steps have started yet.");
  const el = h("div", { class: "waterfall" }, empty, axis, body);

  function open(key, row) {
    row.start = row.start ?? runStart;
    rows.push(row);
    byKey.set(key, row);
    return row;
  }

  function close(key, end, status, extra) {
    const row = byKey.get(key);
    if (!row || row.end != null) return row;
    row.end = end;
    if (status) row.status = status;
    if (extra) Object.assign(row, extra);
    byKey.delete(key);
    return row;
  }

  function attemptKey(e) {
    return `a|${e.step_id}|${e.unit ?? ""}|${e.attempt}`;
  }

  function add(events) {
    for (const e of events) {
      const t = ms(e);
      const p = e.payload || {};
      if (runStart == null || t < runStart) runStart = t;
      if (e.type === "RUN_STARTED" || e.type === "RUN_RESUMED") runEnd = null;
      if (RUN_END.has(e.type)) {
        runEnd = t;
        for (const key of [...byKey.keys()]) close(key, t, null);
      } else if (e.type === "STEP_STARTED") {
        const key = `s|${e.step_id}`;
        close(key, t, null);
        const row = open(key, { level: 0, kind: "step", label: e.step_id, step: e.step_id, status: "running", start: t, note: p.kind || "" });
        steps.set(e.step_id, row);
      } else if (STEP_END[e.type]) {
        const row = close(`s|${e.step_id}`, t, STEP_END[e.type]);
        if (!row && e.type === "STEP_SKIPPED") open(`skip|${e.step_id}|${e.seq}`, { level: 0, kind: "step", label: e.step_id, step: e.step_id, status: "skipped", start: t, end: t, note: "skipped" });
      } else if (e.type === "ATTEMPT_STARTED") {
        const label = `${e.unit ? `[${e.unit}] ` : ""}attempt ${e.attempt}`;
        open(attemptKey(e), { level: 1, kind: "attempt", label, step: e.step_id, status: "running", start: t });
      } else if (ATTEMPT_END[e.type]) {
        const key = attemptKey(e);
        for (const sub of ["llm", "shell"]) close(`${sub}|${key}`, t, ATTEMPT_END[e.type] === "completed" ? "completed" : ATTEMPT_END[e.type]);
        close(key, t, ATTEMPT_END[e.type], p.error ? { title: p.error } : null);
      } else if (e.type === "LLM_GENERATING") {
        open(`llm|${attemptKey(e)}`, { level: 2, kind: "llm", label: `model ${p.model || ""}`, step: e.step_id, status: "running", start: t });
      } else if (e.type === "LLM_DONE" || e.type === "LLM_ERROR") {
        const u = p.usage || {};
        close(`llm|${attemptKey(e)}`, t, e.type === "LLM_DONE" ? "completed" : "failed", e.type === "LLM_DONE" ? { note: `${u.input_tokens ?? 0} in / ${u.output_tokens ?? 0} out` } : { title: e.message });
      } else if (e.type === "TOOL_CALL_STARTED") {
        open(`tool|${e.step_id}|${p.call_id}`, { level: 2, kind: "tool", label: `tool ${p.name}`, step: e.step_id, status: "running", start: t });
      } else if (e.type === "TOOL_CALL_COMPLETED" || e.type === "TOOL_CALL_FAILED") {
        const key = `tool|${e.step_id}|${p.call_id}`;
        const ok = e.type === "TOOL_CALL_COMPLETED";
        if (!byKey.has(key)) open(key, { level: 2, kind: "tool", label: `tool ${p.name}`, step: e.step_id, status: "running", start: t - 1000 * (p.duration || 0) });
        close(key, t, ok ? "completed" : "failed", ok ? null : { title: p.error });
        if (!ok && p.retrying) open(key, { level: 2, kind: "tool", label: `tool ${p.name} (retry)`, step: e.step_id, status: "running", start: t });
      } else if (e.type === "SHELL_EXECUTING") {
        const key = `shell|${attemptKey(e)}`;
        close(key, t, "completed");
        open(key, { level: 2, kind: "shell", label: `shell ${p.command || ""}`.slice(0, 80), step: e.step_id, status: "running", start: t });
      } else if (e.type === "HUMAN_INPUT_REQUESTED") {
        open(`human|${p.request_id}`, { level: 2, kind: "human", label: `asks: ${p.prompt || ""}`.slice(0, 80), step: e.step_id, status: "waiting", start: t });
      } else if (e.type === "HUMAN_INPUT_RECEIVED") {
        close(`human|${p.request_id}`, t, "completed");
      }
    }
    draw();
  }

  function order() {
    // steps in start order; under each step its attempts, under each attempt its calls
    const out = [];
    const top = rows.filter((r) => r.level === 0);
    for (const s of top) {
      out.push(s);
      const mine = rows.filter((r) => r.level > 0 && r.step === s.step && r.start >= s.start && (s.end == null || r.start <= s.end));
      for (const r of mine) if (!out.includes(r)) out.push(r);
    }
    for (const r of rows) if (!out.includes(r)) out.push(r);
    return out;
  }

  function draw() {
    empty.hidden = rows.length > 0;
    if (!rows.length) return;
    const live = rows.some((r) => r.end == null) && runEnd == null;
    const now = Date.now();
    const t0 = runStart;
    const t1 = Math.max(runEnd ?? 0, ...rows.map((r) => r.end ?? (live ? now : r.start)), t0 + 1);
    const span = t1 - t0;
    const pct = (t) => `${(100 * (t - t0)) / span}%`;
    replace(axis, [0, 0.25, 0.5, 0.75, 1].map((f) => {
      const tick = h("span", { class: "wf-tick" }, fmtDur(f * span));
      tick.style.left = `${f * 100}%`;
      return tick;
    }));
    replace(body, order().map((r) => {
      const end = r.end ?? (live ? now : r.start);
      const bar = h("button", {
        type: "button",
        class: `wf-bar wf-${r.kind} wf-status-${r.status}${r.end == null ? " wf-open" : ""}`,
        "aria-label": `${r.kind} ${r.label}`,
        title: `${r.label}: ${r.status}, ${fmtDur(end - r.start)}${r.note ? ` (${r.note})` : ""}${r.title ? `\n${r.title}` : ""}`,
        dataset: { step: r.step, kind: r.kind, status: r.status, start: String(r.start), end: String(end) },
      });
      bar.style.left = pct(r.start);
      bar.style.width = `max(2px, ${(100 * (end - r.start)) / span}%)`;
      bar.addEventListener("click", () => onSelect?.(r.step));
      const track = h("div", { class: "wf-track" }, bar);
      const label = h("div", { class: `wf-label wf-level-${r.level}` },
        h("span", { class: r.kind === "step" ? "mono strong" : "mono" }, r.label), " ",
        h("span", { class: "muted small" }, fmtDur(end - r.start)));
      return h("div", { class: `wf-row wf-row-${r.kind}${r.step === selected ? " wf-selected" : ""}`, role: "listitem", dataset: { step: r.step, kind: r.kind } }, label, track);
    }));
    clearTimeout(timer);
    if (live) timer = setTimeout(draw, 500); // running bars grow with the clock
  }

  return {
    el,
    add,
    select(stepId) { selected = stepId; draw(); },
    close() { clearTimeout(timer); },
  };
}
