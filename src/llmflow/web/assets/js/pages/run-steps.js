// A run's steps: the table of steps and the detail of one step (inputs, prompt, output,
// error, attempts side by side with a diff, re-run buttons).

import { h } from "../dom.js";
import { diffView } from "../diff.js";
import { clip, durationEl, fmtCost, fmtInt, pretty, statusBadge, timeEl } from "../format.js";
import { looksLikeMarkdown, renderMarkdown } from "../markdown.js";

let tabs = 0;

/** A value as the reader wants it: Markdown rendered (with the raw text a tab away), JSON
 * pretty-printed, plain text as text. */
export function valueView(value, { empty = "none" } = {}) {
  if (value === null || value === undefined || value === "") return h("p", { class: "muted" }, empty);
  if (typeof value !== "string") return h("pre", { class: "json" }, pretty(value));
  if (!looksLikeMarkdown(value)) return h("pre", { class: "text" }, value);
  const id = ++tabs;
  const rendered = renderMarkdown(value);
  const raw = h("pre", { class: "text", hidden: true }, value);
  const bRendered = h("button", { type: "button", role: "tab", "aria-selected": "true", id: `tab-r${id}` }, "Rendered");
  const bRaw = h("button", { type: "button", role: "tab", "aria-selected": "false", id: `tab-m${id}` }, "Markdown");
  const pick = (showRaw) => {
    raw.hidden = !showRaw;
    rendered.hidden = showRaw;
    bRaw.setAttribute("aria-selected", String(showRaw));
    bRendered.setAttribute("aria-selected", String(!showRaw));
  };
  bRendered.addEventListener("click", () => pick(false));
  bRaw.addEventListener("click", () => pick(true));
  return h("div", { class: "value" }, h("div", { class: "tabs small", role: "tablist", "aria-label": "Show as" }, bRendered, bRaw), rendered, raw);
}

export function stepsTable(steps, selected, onSelect) {
  return h("div", { class: "table-scroll" },
    h("table", { class: "steps cards-on-phone" },
      h("thead", {}, h("tr", {}, ["Step", "Kind", "Status", "Attempts", "Duration", "Model", "Tokens in / out"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, steps.map((s) => {
        const btn = h("button", { type: "button", class: "link", "aria-pressed": String(selected === s.id), onclick: () => onSelect(s.id) }, s.id);
        return h("tr", { class: selected === s.id ? "selected" : null, dataset: { step: s.id } },
          h("td", { "data-label": "Step" }, btn),
          h("td", { "data-label": "Kind" }, s.kind),
          h("td", { "data-label": "Status" }, statusBadge(s.status)),
          h("td", { "data-label": "Attempts", class: "num" }, String((s.attempts || []).length)),
          h("td", { "data-label": "Duration" }, durationEl(s)),
          h("td", { "data-label": "Model", class: "mono" }, s.model ? clip(s.model) : "—"),
          h("td", { "data-label": "Tokens in / out", class: "num" }, s.tokens_in || s.tokens_out ? `${fmtInt(s.tokens_in)} / ${fmtInt(s.tokens_out)}` : "—"));
      }))));
}

function attemptLabel(a) {
  return `${a.unit ? `${a.unit} ` : ""}#${a.attempt}`;
}

function attemptCard(a, ctx) {
  const streamed = a.status === "RUNNING" ? ctx.streamed(a) : null;
  return h("article", { class: "attempt", "aria-label": `Attempt ${attemptLabel(a)}` },
    h("header", {}, h("strong", {}, `Attempt ${attemptLabel(a)}`), " ", statusBadge(a.status)),
    h("dl", { class: "facts tight" },
      h("dt", {}, "Started"), h("dd", {}, timeEl(a.started_at)),
      h("dt", {}, "Duration"), h("dd", {}, durationEl(a)),
      h("dt", {}, "Model"), h("dd", { class: "mono" }, a.model || "—"),
      h("dt", {}, "Tokens"), h("dd", {}, a.tokens_in || a.tokens_out ? `${fmtInt(a.tokens_in)} in / ${fmtInt(a.tokens_out)} out · ${fmtCost(a.cost)}` : "—"),
      a.info?.rerun ? [h("dt", {}, "Why"), h("dd", {}, "re-run")] : null),
    promptView(a, ctx),
    streamed != null ? [h("h4", {}, "Streaming"), h("pre", { class: "text stream-text live-output", dataset: { key: ctx.key(a) } }, streamed)] : null,
    a.status !== "RUNNING" ? [h("h4", {}, "Output"), valueView(a.output)] : null,
    a.error ? [h("h4", {}, "Error"), h("pre", { class: "error-text" }, pretty(a.error))] : null);
}

function promptView(a, ctx) {
  const info = a.info || {};
  const recorded = info.prompt ?? info.messages ?? ctx.prompt(a);
  const inputs = info.inputs ?? info.vars ?? ctx.vars(a);
  return [
    inputs && Object.keys(inputs).length ? [h("h4", {}, "Inputs"), h("pre", { class: "json" }, pretty(inputs))] : null,
    recorded != null
      ? [h("h4", {}, "Prompt (as rendered)"), Array.isArray(recorded)
        ? h("div", { class: "messages" }, recorded.map((m) => h("div", { class: "message" }, h("span", { class: "role" }, m.role ?? m[0]), h("pre", { class: "text" }, m.content ?? m[1]))))
        : h("pre", { class: "text" }, pretty(recorded))]
      : null,
  ];
}

/**
 * The detail of one step. ctx: {key(attempt), streamed(attempt), prompt(attempt), vars(attempt),
 * rerunButton(stepId, downstream, label), forkButton(stepId)}.
 */
export function stepDetail(step, ctx) {
  if (!step) return h("div", { class: "muted step-empty" }, "Select a step in the graph or the table to see its inputs, prompt, output and attempts.");
  const attempts = step.attempts || [];
  const reruns = h("div", { class: "button-row" },
    ctx.rerunButton(step.id, false, "Re-run step"),
    ctx.rerunButton(step.id, true, "Re-run with downstream"),
    ctx.forkButton(step.id));
  const out = h("section", { class: "step-detail", "aria-labelledby": "step-h" },
    h("header", { class: "step-head" },
      h("h2", { id: "step-h", tabindex: -1 }, step.id, " ", h("small", { class: "muted" }, step.kind)), statusBadge(step.status)),
    h("dl", { class: "facts" },
      h("dt", {}, "Started"), h("dd", {}, timeEl(step.started_at)),
      h("dt", {}, "Ended"), h("dd", {}, timeEl(step.ended_at)),
      h("dt", {}, "Duration"), h("dd", {}, durationEl(step)),
      h("dt", {}, "Model"), h("dd", { class: "mono" }, step.model || "—"),
      h("dt", {}, "Tokens"), h("dd", {}, step.tokens_in || step.tokens_out ? `${fmtInt(step.tokens_in)} in / ${fmtInt(step.tokens_out)} out` : "—"),
      step.reason ? [h("dt", {}, "Reason"), h("dd", {}, step.reason)] : null),
    reruns);
  if (step.error) out.append(h("h3", {}, "Error"), h("pre", { class: "error-text" }, pretty(step.error)));
  out.append(h("h3", {}, "Output"), valueView(step.output, { empty: step.status === "RUNNING" ? "running…" : "no output" }));
  if (!attempts.length) {
    out.append(h("p", { class: "muted" }, "No attempts yet."));
    return out;
  }
  const single = attempts.length === 1;
  out.append(h("h3", {}, single ? "Attempt" : `Attempts (${attempts.length}), side by side`));
  if (!attempts.some((a) => a.info?.prompt || a.info?.messages || ctx.prompt(a)) && ["llm", "broadcast", "conductor"].includes(step.kind)) {
    out.append(h("p", { class: "muted small" }, "The rendered prompt is not in this run's events (this server does not record it)."));
  }
  out.append(h("div", { class: single ? "attempts" : "attempts side-by-side" }, attempts.map((a) => attemptCard(a, ctx))));
  if (attempts.length > 1) out.append(compare(attempts));
  return out;
}

function compare(attempts) {
  const opts = attempts.map((a, i) => h("option", { value: String(i) }, attemptLabel(a)));
  // default: the last attempt against the one before it of the same unit
  const last = attempts.length - 1;
  const unit = attempts[last].unit;
  let prev = last - 1;
  for (let i = last - 1; i >= 0; i--) if (attempts[i].unit === unit) { prev = i; break; }
  const selA = h("select", { id: "diff-a" }, opts.map((o) => o.cloneNode(true)));
  const selB = h("select", { id: "diff-b" }, opts);
  selA.value = String(prev);
  selB.value = String(last);
  const box = h("div", {});
  const draw = () => {
    const a = attempts[Number(selA.value)];
    const b = attempts[Number(selB.value)];
    box.replaceChildren(diffView(pretty(a.output ?? a.error ?? ""), pretty(b.output ?? b.error ?? ""), { labelA: attemptLabel(a), labelB: attemptLabel(b) }));
  };
  selA.addEventListener("change", draw);
  selB.addEventListener("change", draw);
  draw();
  return h("section", { class: "compare" },
    h("h3", {}, "Diff of outputs"),
    h("div", { class: "inline-form" }, h("label", { for: "diff-a" }, "From "), selA, h("label", { for: "diff-b" }, " to "), selB),
    box);
}
