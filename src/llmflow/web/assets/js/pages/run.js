// Run detail: the flow's graph coloured by step status, the steps, the selected step's
// detail, human-input requests, the live event timeline (SSE), artifacts, and the
// controls (cancel, pause, resume, re-run a step, fork).

import { api, ApiError, stream } from "../api.js";
import { actionButton, copyButton, h, notice, replace, toast } from "../dom.js";
import { durationEl, fmtCost, fmtTokens, statusBadge, TERMINAL, timeEl } from "../format.js";
import { renderGraph } from "../graph.js";
import * as live from "../live.js";
import { artifactsSection } from "./artifacts.js";
import { stepDetail, stepsTable, valueView } from "./run-steps.js";
import { attemptKey, createTimeline } from "./run-timeline.js";
import { createWaterfall } from "../waterfall.js";

const STRUCTURAL = /^(RUN_|STEP_|ATTEMPT_|HUMAN_|ARTIFACT_|WORKFLOW_|CHILD_RUN|LLM_DONE)/;

function chainGraph(steps) {
  // the run's flow is not served (a posted document, or renamed): its steps in order
  const nodes = steps.map((s) => ({ key: s.id, name: s.id, kind: s.kind, shape: "box" }));
  const edges = steps.slice(1).map((s, i) => ({ from: steps[i].id, to: s.id }));
  return { nodes, edges };
}

export function render(main, { id, query, setQuery }) {
  const enc = encodeURIComponent(id);
  document.title = `Run ${id} · llmflow`;
  let view = null;
  let selected = query.get("step") || null;
  let lastSeq = 0;
  let conn = null;
  let closed = false;
  let retryTimer = null;
  let graph = null;
  let graphFor = "";
  const pendingHuman = new Map();
  const prompts = new Map();
  const unitVars = new Map();
  const queue = [];
  let flushScheduled = false;

  const msg = notice();
  const runIdEl = h("span", { class: "mono run-id" }, id);
  const badge = h("span", {}, statusBadge("…"));
  const facts = h("dl", { class: "facts run-facts" });
  const errorBox = h("div", {});
  const humanBox = h("section", { class: "card human", "aria-labelledby": "human-h", hidden: true });
  const graphBox = h("div", { class: "graph-box" }, h("p", { class: "muted" }, "Loading the graph…"));
  const graphNote = h("p", { class: "muted small", hidden: true });
  const stepsBox = h("div", {});
  const detailBox = h("div", { class: "detail-box" });
  const ioBox = h("div", { class: "io" });
  const timeline = createTimeline();
  const waterfall = createWaterfall({ onSelect: (stepId) => { if (stepId && stepId !== selected) select(stepId); } });
  const artifacts = artifactsSection(id);

  const controls = h("div", { class: "button-row controls", role: "group", "aria-label": "Run controls" },
    actionButton("Cancel", () => control("cancel"), { class: "danger", id: "btn-cancel" }),
    actionButton("Pause", () => control("pause"), { id: "btn-pause" }),
    actionButton("Resume", () => control("resume"), { id: "btn-resume" }));

  main.append(
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/runs" }, "Runs"), " / ", h("span", { class: "mono" }, id)),
    h("div", { class: "page-head" }, h("h1", {}, "Run ", runIdEl, " ", badge, " ", copyButton(id, runIdEl, "Copy id")), controls),
    msg.el,
    h("section", { class: "card", "aria-label": "Run facts" }, facts, errorBox),
    humanBox,
    h("div", { class: "run-grid" },
      h("section", { class: "card", "aria-labelledby": "graph-h" }, h("h2", { id: "graph-h" }, "Steps"), graphNote, graphBox, stepsBox),
      h("section", { class: "card", "aria-label": "Selected step" }, detailBox)),
    h("section", { class: "card", "aria-labelledby": "io-h" }, h("h2", { id: "io-h" }, "Inputs and outputs"), ioBox),
    h("section", { class: "card", "aria-labelledby": "wf-h", id: "waterfall" }, h("h2", { id: "wf-h" }, "Waterfall"), waterfall.el),
    h("section", { class: "card", "aria-labelledby": "tl-h" }, h("h2", { id: "tl-h" }, "Timeline ", h("small", { class: "muted", id: "tl-state" }, "")), timeline.el),
    artifacts.el);

  // -- data -------------------------------------------------------------------------------------
  let refreshing = null;
  let dirty = false;
  async function refresh() {
    if (refreshing) { dirty = true; return; }
    refreshing = (async () => {
      try {
        view = await api(`/api/v1/runs/${enc}`);
        draw();
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) {
          replace(main, h("h1", {}, "Run not found"), h("p", {}, `There is no run ${id}. `, h("a", { href: "#/runs" }, "Back to the runs.")));
          closed = true;
          conn?.close();
          return;
        }
        msg.show(`Could not load the run: ${err.message}`);
      }
    })();
    await refreshing;
    refreshing = null;
    if (dirty && !closed) {
      dirty = false;
      setTimeout(refresh, 250);
    }
  }

  async function loadGraph() {
    if (!view || graphFor === view.flow) return;
    graphFor = view.flow;
    let shape;
    try {
      shape = await api(`/api/v1/flows/${encodeURIComponent(view.flow)}/graph`);
      const names = new Set(view.steps.map((s) => s.id));
      if (!shape.nodes.some((n) => names.has(n.name))) throw new Error("the served flow has other steps");
    } catch (err) {
      shape = chainGraph(view.steps);
      graphNote.hidden = false;
      graphNote.textContent = `The flow "${view.flow}" is not served under that name now (${err.message}); its steps are shown in order.`;
    }
    graph = renderGraph(shape, { onSelect: select, label: `Graph of flow ${view.flow}` });
    replace(graphBox, graph.el);
    drawGraph();
  }

  function select(stepId) {
    selected = selected === stepId ? null : stepId;
    setQuery({ step: selected });
    waterfall.select(selected);
    drawGraph();
    drawSteps();
    drawDetail();
    if (selected) detailBox.querySelector("h2")?.focus?.();
  }

  // -- drawing ----------------------------------------------------------------------------------
  function draw() {
    replace(badge, statusBadge(view.status));
    drawControls();
    drawFacts();
    loadGraph();
    drawGraph();
    drawSteps();
    drawDetail();
    drawIo();
    drawHuman();
    artifacts.update(view.artifacts);
    document.getElementById("tl-state").textContent = conn ? "live" : TERMINAL.has(view.status) ? "finished" : "";
  }

  function drawFacts() {
    const v = view;
    const link = (href, text) => h("a", { href }, text);
    const models = v.options?.models && Object.keys(v.options.models).length ? Object.entries(v.options.models).map(([k, m]) => `${k === "*" ? "every step" : k}: ${m}`).join(", ") : null;
    replace(facts,
      h("dt", {}, "Flow"), h("dd", {}, link(`#/flows/${encodeURIComponent(v.flow)}`, v.flow)),
      h("dt", {}, "Created"), h("dd", {}, timeEl(v.created_at)),
      h("dt", {}, "Started"), h("dd", {}, timeEl(v.started_at)),
      h("dt", {}, "Ended"), h("dd", {}, timeEl(v.ended_at)),
      h("dt", {}, "Duration"), h("dd", {}, durationEl(v)),
      h("dt", {}, "Tokens in / out"), h("dd", {}, fmtTokens(v.usage)),
      h("dt", {}, "Cost"), h("dd", {}, fmtCost(v.usage?.cost)),
      v.project_id != null ? [h("dt", {}, "Project"), h("dd", {}, link(`#/projects/${v.project_id}`, `#${v.project_id}`))] : null,
      v.batch_id ? [h("dt", {}, "Batch"), h("dd", {}, link(`#/batches/${encodeURIComponent(v.batch_id)}`, v.batch_id))] : null,
      v.parent_run_id ? [h("dt", {}, "Parent run"), h("dd", {}, link(`#/runs/${encodeURIComponent(v.parent_run_id)}`, v.parent_run_id))] : null,
      v.options?.metadata?.forked_from ? [h("dt", {}, "Forked from"), h("dd", {}, link(`#/runs/${encodeURIComponent(v.options.metadata.forked_from)}`, v.options.metadata.forked_from))] : null,
      models ? [h("dt", {}, "Models"), h("dd", { class: "mono" }, models)] : null,
      h("dt", {}, "Workspace"), h("dd", { class: "mono" }, v.workspace || "—"));
    replace(errorBox, v.error ? [h("h3", {}, "Error"), h("pre", { class: "error-text" }, v.error)] : null);
  }

  function drawControls() {
    // what the run's state allows: nothing on a finished run, Resume only when paused
    const st = view.status;
    const done = TERMINAL.has(st);
    controls.querySelector("#btn-cancel").hidden = done;
    controls.querySelector("#btn-pause").hidden = done || st === "PAUSED";
    controls.querySelector("#btn-resume").hidden = st !== "PAUSED";
    controls.hidden = done;
  }

  function statuses() {
    const out = {};
    for (const s of view?.steps || []) out[s.id] = { status: s.status, attempts: (s.attempts || []).length };
    return out;
  }

  function drawGraph() {
    graph?.update(statuses(), selected);
  }

  function drawSteps() {
    if (!view) return;
    replace(stepsBox, view.steps.length ? stepsTable(view.steps, selected, select) : h("p", { class: "muted" }, "No steps."));
  }

  let detailSig = "";
  function drawDetail(force = false) {
    const step = view?.steps.find((s) => s.id === selected) || null;
    const sig = JSON.stringify([step, view?.status]);
    if (!force && sig === detailSig) return;
    detailSig = sig;
    replace(detailBox, stepDetail(step, stepCtx));
  }

  const stepCtx = {
    key: (a) => `${selected ?? ""}|${a.unit || ""}|${a.attempt}`,
    streamed: (a) => timeline.streamed(selected, a.unit || null, a.attempt) ?? "",
    prompt: (a) => prompts.get(`${selected ?? ""}|${a.unit || ""}|${a.attempt}`) ?? null,
    vars: (a) => unitVars.get(`${selected ?? ""}|${a.unit || ""}|${a.attempt}`) ?? null,
    rerunButton: (stepId, downstream, label) => actionButton(label, () => rerun(stepId, downstream), { class: downstream ? null : "primary", "data-action": downstream ? "rerun-downstream" : "rerun" }),
    forkButton: (stepId) => actionButton("Fork from here", () => fork(stepId), { title: "A new run that reuses the outputs before this step" }),
  };

  function drawIo() {
    const kv = (obj, none) => (obj && Object.keys(obj).length
      ? h("dl", { class: "kv" }, Object.entries(obj).map(([k, val]) => [h("dt", {}, k), h("dd", {}, valueView(val))]))
      : h("p", { class: "muted" }, none));
    replace(ioBox,
      h("div", {}, h("h3", {}, "Inputs"), kv(view.inputs, "No inputs.")),
      h("div", {}, h("h3", {}, "Outputs"), kv(view.outputs, TERMINAL.has(view.status) ? "No outputs." : "Not finished yet.")));
  }

  let humanSig = "";
  function drawHuman() {
    const open = view && !TERMINAL.has(view.status) ? [...pendingHuman.values()] : [];
    const sig = open.map((e) => `${e.seq}:${e.payload?.request_id}`).join(",");
    if (sig === humanSig) return; // keep what the person is typing
    humanSig = sig;
    humanBox.hidden = !open.length;
    if (!open.length) { replace(humanBox); return; }
    replace(humanBox, h("h2", { id: "human-h" }, "Your input is needed"), open.map(humanCard));
  }

  function humanCard(e) {
    const p = e.payload || {};
    const rid = p.request_id;
    const fail = notice();
    const send = async (answer) => {
      try {
        const r = await api(`/api/v1/runs/${enc}/answer`, { method: "POST", body: { request_id: rid, answer } });
        toast(`Answer sent: ${r.result}`);
        ensureStream();
      } catch (err) {
        fail.show(`The answer was not accepted: ${err.message}`);
      }
    };
    let inputs;
    if (p.input === "confirm") {
      inputs = h("div", { class: "button-row" },
        actionButton("Confirm", () => send(true), { class: "primary", "data-answer": "confirm" }),
        actionButton("Reject", () => send(false), { class: "danger", "data-answer": "reject" }));
    } else if (p.input === "choice" && Array.isArray(p.options)) {
      inputs = h("div", { class: "button-row" }, p.options.map((o) => actionButton(String(o), () => send(o))));
    } else {
      const ta = h("textarea", { id: `answer-${rid}`, rows: 3, placeholder: p.default != null ? `default: ${p.default}` : "" });
      const form = h("form", { class: "answer-form" },
        h("label", { for: `answer-${rid}` }, "Your answer"), ta,
        h("div", { class: "button-row" }, h("button", { type: "submit", class: "primary" }, "Send")));
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const b = form.querySelector("button");
        b.disabled = true;
        await send(ta.value);
        b.disabled = false;
      });
      inputs = form;
    }
    return h("article", { class: "human-request", dataset: { request: rid } },
      h("h3", {}, `Step ${e.step_id ?? "?"}${e.unit ? `[${e.unit}]` : ""} asks`),
      h("p", { class: "prompt" }, p.prompt || ""),
      p.default != null ? h("p", { class: "muted small" }, `Default: ${JSON.stringify(p.default)}`) : null,
      inputs, fail.el);
  }

  // -- actions ----------------------------------------------------------------------------------
  async function control(action) {
    msg.hide();
    try {
      const r = await api(`/api/v1/runs/${enc}/${action}`, { method: "POST" });
      toast(`${action}: ${r.result}; the run is ${String(r.status).toLowerCase()}`);
      ensureStream();
      refresh();
    } catch (err) {
      msg.show(`${action[0].toUpperCase()}${action.slice(1)} is not possible now: ${err.message}`);
    }
  }

  async function rerun(stepId, downstream) {
    msg.hide();
    try {
      const r = await api(`/api/v1/runs/${enc}/rerun`, { method: "POST", body: { step: stepId, downstream } });
      toast(`Re-running ${stepId}${r.stale?.length ? `; stale: ${r.stale.join(", ")}` : ""}`);
      ensureStream();
      refresh();
    } catch (err) {
      msg.show(`Re-run of ${stepId} is not possible now: ${err.message}`);
    }
  }

  async function fork(stepId) {
    msg.hide();
    try {
      const r = await api(`/api/v1/runs/${enc}/fork`, { method: "POST", body: { from_step: stepId } });
      toast(`Forked as run ${r.id}`);
      location.hash = `#/runs/${encodeURIComponent(r.id)}`;
    } catch (err) {
      msg.show(`Fork from ${stepId} is not possible: ${err.message}`);
    }
  }

  // -- events -----------------------------------------------------------------------------------
  function onEvent(e) {
    queue.push(e);
    if (!flushScheduled) {
      flushScheduled = true;
      requestAnimationFrame(flush);
    }
  }

  function flush() {
    flushScheduled = false;
    const batch = queue.splice(0).filter((e) => e.seq > lastSeq);
    if (!batch.length) return;
    lastSeq = batch[batch.length - 1].seq;
    let structural = false;
    let human = false;
    for (const e of batch) {
      const p = e.payload || {};
      if (e.type === "HUMAN_INPUT_REQUESTED") { pendingHuman.set(p.request_id, e); human = true; }
      else if (e.type === "HUMAN_INPUT_RECEIVED") { pendingHuman.delete(p.request_id); human = true; }
      else if (e.type === "ATTEMPT_STARTED" && p.vars) unitVars.set(attemptKey(e), p.vars);
      else if ((e.type === "LLM_GENERATING" || e.type === "ATTEMPT_STARTED") && (p.messages || p.prompt)) prompts.set(attemptKey(e), p.messages || p.prompt);
      if (STRUCTURAL.test(e.type)) structural = true;
    }
    timeline.add(batch);
    waterfall.add(batch);
    for (const pre of detailBox.querySelectorAll(".live-output[data-key]")) {
      const [step, unit, attempt] = pre.dataset.key.split("|");
      pre.textContent = timeline.streamed(step, unit || null, Number(attempt)) ?? pre.textContent;
    }
    if (human && view) drawHuman();
    if (structural) refresh();
  }

  function ensureStream() {
    if (conn || closed) return;
    clearTimeout(retryTimer);
    document.getElementById("tl-state").textContent = "live";
    conn = stream(`/api/v1/runs/${enc}/events/stream`, {
      onEvent(name, data) { if (data && typeof data === "object" && data.seq) onEvent(data); },
      onEnd() {
        conn = null;
        const el = document.getElementById("tl-state");
        if (el) el.textContent = "finished";
        refresh();
      },
      onError(err) {
        conn?.close();
        conn = null;
        if (closed || err.status === 404 || err.status === 401) return;
        retryTimer = setTimeout(ensureStream, 2000);
      },
    }, { query: { after: lastSeq } });
  }

  // a re-run or resume from elsewhere (CLI, another tab) reopens the finished stream
  const offs = [
    live.on("run", (r) => { if (r.id === id && !conn && r.last_seq > lastSeq) ensureStream(); }),
  ];

  refresh();
  ensureStream();
  return () => {
    closed = true;
    conn?.close();
    clearTimeout(retryTimer);
    offs.forEach((off) => off());
    artifacts.close();
    waterfall.close();
  };
}
