// A run's event timeline: one row per event, newest at the bottom; token chunks of an
// attempt (LLM_TOKENS) are gathered into one row whose text grows as the model streams.

import { h } from "../dom.js";
import { fmtClock, fmtTime, toDate } from "../format.js";

const QUIET = new Set(["LLM_TOKENS"]);
const MINOR = new Set(["LLM_LOADING_MODEL", "LLM_GENERATING", "LLM_HEARTBEAT", "ATTEMPT_STARTED", "ATTEMPT_COMPLETED", "SHELL_EXECUTING"]);

export function attemptKey(e) {
  return `${e.step_id ?? ""}|${e.unit ?? ""}|${e.attempt ?? ""}`;
}

function kindOf(type) {
  if (/FAILED|ERROR/.test(type)) return "bad";
  if (/CANCEL/.test(type)) return "warn";
  if (/COMPLETED|RECEIVED/.test(type)) return "good";
  if (/HUMAN_INPUT_REQUESTED|PAUSED|STALE|RERUN|RETRYING/.test(type)) return "attn";
  if (type === "TOOL_CALL_STARTED") return "tool";
  return "";
}

export function createTimeline() {
  const list = h("ol", { class: "timeline", "aria-label": "Events" });
  const box = h("div", { class: "timeline-box", tabindex: 0, "aria-label": "Event timeline (scrolls)" }, list);
  const showMinor = h("input", { type: "checkbox", id: "tl-minor", checked: true });
  const follow = h("input", { type: "checkbox", id: "tl-follow", checked: true });
  const count = h("span", { class: "muted" }, "0 events");
  const controls = h("div", { class: "timeline-controls" },
    h("label", { for: "tl-minor" }, showMinor, " model and attempt details"),
    h("label", { for: "tl-follow" }, follow, " follow new events"),
    count);
  const streams = new Map(); // attempt key -> {row, pre, text}
  let n = 0;

  showMinor.addEventListener("change", () => list.classList.toggle("hide-minor", !showMinor.checked));

  function atBottom() {
    return box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  }

  function row(e, body) {
    const who = e.step_id ? `${e.step_id}${e.unit ? `[${e.unit}]` : ""}${e.attempt ? ` #${e.attempt}` : ""}` : "";
    return h("li", { class: ["ev", kindOf(e.type), MINOR.has(e.type) && "minor"], dataset: { seq: String(e.seq), type: e.type } },
      h("time", { datetime: toDate(e.ts).toISOString(), title: fmtTime(e.ts) }, fmtClock(e.ts)),
      h("span", { class: "ev-type" }, e.type),
      who ? h("span", { class: "ev-step" }, who) : null,
      body);
  }

  return {
    el: h("div", {}, controls, box),
    /** Add events (in sequence order). */
    add(events) {
      const stick = follow.checked && atBottom();
      for (const e of events) {
        n++;
        if (QUIET.has(e.type)) {
          const key = attemptKey(e);
          let s = streams.get(key);
          if (!s) {
            const pre = h("pre", { class: "stream-text" });
            s = { pre, text: "", row: row({ ...e, type: "STREAMING" }, h("div", { class: "ev-msg" }, pre)) };
            s.row.classList.add("streaming");
            streams.set(key, s);
            list.append(s.row);
          }
          s.text += e.payload?.text ?? "";
          s.pre.textContent = s.text;
          continue;
        }
        if (e.type === "LLM_DONE" || e.type === "ATTEMPT_COMPLETED" || e.type === "ATTEMPT_FAILED" || e.type === "ATTEMPT_CANCELED") {
          streams.get(attemptKey(e))?.row.classList.remove("streaming");
        }
        const msg = e.message || "";
        let extra = null;
        if (e.type === "HUMAN_INPUT_REQUESTED" && e.payload?.prompt) extra = h("div", { class: "ev-detail" }, e.payload.prompt);
        else if (e.type === "TOOL_CALL_COMPLETED") {
          const r = e.payload?.result;
          const text = typeof r === "string" ? r : JSON.stringify(r);
          extra = h("div", { class: "ev-detail tool-result", dataset: { callId: e.payload?.call_id ?? "" } }, `${e.payload?.name} → ${text.length > 400 ? text.slice(0, 400) + "…" : text}`);
        } else if (e.type === "TOOL_CALL_FAILED" && e.payload?.error) {
          extra = h("div", { class: "ev-detail error-text tool-result", dataset: { callId: e.payload?.call_id ?? "" } }, `${e.payload?.name}: ${e.payload.error}${e.payload.retrying ? " (retrying)" : ""}`);
        }
        else if ((e.type === "ATTEMPT_FAILED" || e.type === "STEP_FAILED" || e.type === "RUN_FAILED") && e.payload?.error) {
          const err = typeof e.payload.error === "string" ? e.payload.error : JSON.stringify(e.payload.error);
          if (!msg.includes(err)) extra = h("div", { class: "ev-detail error-text" }, err);
        }
        list.append(row(e, h("div", { class: "ev-msg" }, msg, extra)));
      }
      count.textContent = `${n} event${n === 1 ? "" : "s"}`;
      if (stick) box.scrollTop = box.scrollHeight;
    },
    /** The text streamed so far by one attempt. */
    streamed(stepId, unit, attempt) {
      return streams.get(`${stepId ?? ""}|${unit ?? ""}|${attempt ?? ""}`)?.text ?? null;
    },
  };
}
