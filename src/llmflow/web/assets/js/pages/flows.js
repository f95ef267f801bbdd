// Flows: the list (with validation problems), and a flow's page: description, inputs,
// graph, steps, validation, and the form that starts a run (generated from the inputs).

import { api, ApiError, detailText } from "../api.js";
import { h, notice, replace } from "../dom.js";
import { pretty } from "../format.js";
import { renderGraph } from "../graph.js";

const LLM_KINDS = new Set(["llm", "broadcast", "conductor"]);

function inputsSummary(inputs) {
  const names = Object.entries(inputs || {});
  if (!names.length) return h("span", { class: "muted" }, "no inputs");
  return names.map(([k, s], i) => [i ? ", " : "", h("code", {}, k), `: ${s.type}${s.required ? " (required)" : ""}`]);
}

export function renderList(main) {
  document.title = "Flows · llmflow";
  const msg = notice();
  const box = h("div", {}, h("p", { class: "muted" }, "Loading flows…"));
  main.append(h("div", { class: "page-head" }, h("h1", {}, "Flows")), msg.el, box);
  api("/api/v1/flows").then((d) => {
    const flows = d.flows || [];
    if (!flows.length) {
      replace(box, h("p", { class: "empty" }, "This server offers no flows. Start it with --flows, or put flows in its config dir (conf/flows)."));
      return;
    }
    replace(box, h("ul", { class: "flow-list" }, flows.map((f) => h("li", { class: ["card", "flow-item", !f.valid && "invalid"] },
      h("h2", {}, h("a", { href: `#/flows/${encodeURIComponent(f.name)}` }, f.name), " ",
        f.valid ? h("span", { class: "badge st-completed" }, "valid") : h("span", { class: "badge st-failed" }, "invalid"),
        f.version ? h("small", { class: "muted" }, ` v${f.version}`) : null),
      f.description ? h("p", {}, f.description) : null,
      f.valid ? h("p", { class: "small" }, `${f.steps} step${f.steps === 1 ? "" : "s"} · inputs: `, inputsSummary(f.inputs), h("span", { class: "muted" }, ` · ${f.origin}`)) : null,
      f.error ? h("pre", { class: "error-text diag" }, f.error) : null))));
  }).catch((err) => msg.show(`Could not list flows: ${err.message}`));
}

function diagnosticsList(items, file = "") {
  return h("ul", { class: "diagnostics" }, items.map((d) => {
    if (typeof d === "string") return h("li", { class: "error-text" }, d);
    const lc = d.line != null ? `${d.line}${d.column != null ? `:${d.column}` : ""}` : "";
    const where = lc ? (file ? `${file}:${lc}` : `line ${lc}`) : "";
    const key = (d.loc || []).filter((p) => p !== "body").join(".");
    return h("li", {},
      where ? h("span", { class: "mono loc" }, where) : null, where ? " " : null,
      key ? h("code", {}, key) : null, key ? ": " : null,
      h("span", { class: "error-text" }, d.msg || JSON.stringify(d)),
      d.hint ? h("span", { class: "muted" }, ` (hint: ${d.hint})`) : null);
  }));
}

export function renderFlow(main, { id: name }) {
  document.title = `Flow ${name} · llmflow`;
  const msg = notice();
  const body = h("div", {}, h("p", { class: "muted" }, "Loading the flow…"));
  main.append(
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/flows" }, "Flows"), " / ", name),
    h("div", { class: "page-head" }, h("h1", {}, "Flow ", h("span", { class: "mono" }, name))),
    msg.el, body);
  load();

  async function load() {
    let flow;
    try {
      flow = await api(`/api/v1/flows/${encodeURIComponent(name)}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 422) return showInvalid(err);
      msg.show(err.status === 404 ? `No flow named ${name} on this server: ${err.message}` : `Could not load the flow: ${err.message}`);
      replace(body);
      return;
    }
    const graphBox = h("div", { class: "graph-box" });
    const validation = notice();
    replace(body,
      h("div", { class: "flow-grid" },
        h("div", {}, h("section", { class: "card", "aria-labelledby": "about-h" },
          h("h2", { id: "about-h" }, "About"),
          h("p", {}, flow.description || h("span", { class: "muted" }, "No description.")),
          h("dl", { class: "facts" },
            h("dt", {}, "Version"), h("dd", {}, flow.version ?? "—"),
            h("dt", {}, "Origin"), h("dd", {}, flow.origin),
            h("dt", {}, "Steps"), h("dd", {}, String(flow.steps.length))),
          h("div", { class: "button-row" },
            h("button", { type: "button", onclick: () => validate(validation) }, "Validate"),
            h("a", { class: "button", href: `#/runs?flow=${encodeURIComponent(name)}` }, "Runs of this flow")),
          validation.el,
          h("h3", {}, "Inputs"), inputsTable(flow),
          h("h3", {}, "Steps"), stepsList(flow)),
        h("section", { class: "card", "aria-labelledby": "fgraph-h" }, h("h2", { id: "fgraph-h" }, "Graph"), graphBox)),
        h("section", { class: "card", "aria-labelledby": "start-h" }, h("h2", { id: "start-h" }, "Start a run"), runForm(flow))),
      h("details", { class: "card" }, h("summary", {}, "Resolved definition"), h("pre", { class: "json" }, pretty(flow.definition))));
    api(`/api/v1/flows/${encodeURIComponent(name)}/graph`)
      .then((g) => replace(graphBox, renderGraph(g, { label: `Graph of flow ${name}` }).el))
      .catch((err) => replace(graphBox, h("p", { class: "muted" }, `No graph: ${err.message}`)));
  }

  async function showInvalid(err) {
    let where = "";
    try {
      const all = await api("/api/v1/flows");
      where = (all.flows || []).find((f) => f.name === name)?.error || "";
    } catch { /* the list is a bonus */ }
    replace(body, h("section", { class: "card invalid" },
      h("h2", {}, "This flow is invalid"),
      Array.isArray(err.detail) ? diagnosticsList(err.detail, fileOf(where)) : h("pre", { class: "error-text" }, detailText(err.detail)),
      where && !Array.isArray(err.detail) ? h("pre", { class: "error-text diag" }, where) : null,
      h("p", { class: "muted" }, "Fix the file and reload this page; the server reloads changed flows.")));
  }

  async function validate(box) {
    try {
      const r = await api("/api/v1/flows/validate", { method: "POST", body: { flow: name } });
      if (r.valid) box.show(`${r.flow} is valid.`, "ok");
      else {
        box.show("Problems found:", "error");
        box.el.append(diagnosticsList(r.diagnostics));
      }
    } catch (err) {
      box.show(`Validation failed: ${err.message}`);
      if (Array.isArray(err.detail)) box.el.append(diagnosticsList(err.detail));
    }
  }
}

/** "conf/flows/x.yaml:5:25: ..." -> "conf/flows/x.yaml" */
function fileOf(error) {
  return /^(.*?):\d+(:\d+)?:/.exec(error || "")?.[1] || "";
}

function inputsTable(flow) {
  const entries = Object.entries(flow.inputs || {});
  if (!entries.length) return h("p", { class: "muted" }, "This flow takes no inputs.");
  return h("div", { class: "table-scroll" }, h("table", { class: "cards-on-phone" },
    h("thead", {}, h("tr", {}, ["Input", "Type", "Required", "Default", "Description"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, entries.map(([k, s]) => h("tr", {},
      h("td", { "data-label": "Input" }, h("code", {}, k)),
      h("td", { "data-label": "Type" }, s.type),
      h("td", { "data-label": "Required" }, s.required ? "yes" : "no"),
      h("td", { "data-label": "Default", class: "mono" }, s.default === null || s.default === undefined ? "—" : JSON.stringify(s.default)),
      h("td", { "data-label": "Description" }, s.description || "—"))))));
}

function stepsList(flow) {
  return h("ol", { class: "step-list" }, flow.steps.map((s) => h("li", {},
    h("code", {}, s.id), ` ${s.kind}`,
    s.needs?.length ? h("span", { class: "muted" }, ` · needs ${s.needs.join(", ")}`) : null,
    s.description ? h("div", { class: "muted small" }, s.description) : null)));
}

function fieldFor(key, spec, def) {
  const id = `in-${key}`;
  const enumValues = def?.enum;
  const value = spec.default;
  let control;
  let read;
  if (Array.isArray(enumValues) && enumValues.length) {
    control = h("select", { id, name: key }, spec.required ? null : h("option", { value: "" }, "(default)"), enumValues.map((v, i) => h("option", { value: String(i) }, String(v))));
    if (value !== undefined && value !== null) control.value = String(enumValues.findIndex((v) => v === value));
    read = () => (control.value === "" ? undefined : enumValues[Number(control.value)]);
  } else if (spec.type === "boolean") {
    control = h("input", { id, name: key, type: "checkbox", checked: Boolean(value) });
    read = () => control.checked;
  } else if (spec.type === "integer" || spec.type === "number") {
    control = h("input", { id, name: key, type: "number", step: spec.type === "integer" ? "1" : "any", value: value ?? "", required: spec.required });
    read = () => (control.value === "" ? undefined : Number(control.value));
  } else if (spec.type === "string") {
    control = h("textarea", { id, name: key, rows: 3, required: spec.required }, value ?? "");
    read = () => (control.value === "" ? undefined : control.value);
  } else {
    control = h("textarea", { id, name: key, rows: 4, class: "mono", required: spec.required, placeholder: spec.type === "array" ? "[...] (JSON)" : "JSON" }, value === undefined || value === null ? "" : JSON.stringify(value, null, 2));
    read = () => {
      const t = control.value.trim();
      if (!t) return undefined;
      try { return JSON.parse(t); } catch (err) {
        if (spec.type === "any") return control.value;
        throw new Error(`${key}: not valid JSON (${err.message})`);
      }
    };
  }
  const err = h("p", { class: "field-error", id: `${id}-err`, hidden: true });
  control.setAttribute("aria-describedby", `${id}-err ${id}-help`);
  const field = h("div", { class: "field", dataset: { input: key } },
    h("label", { for: id }, h("code", {}, key), ` ${spec.type}`, spec.required ? h("abbr", { title: "required" }, " *") : null),
    control,
    h("p", { class: "help", id: `${id}-help` }, spec.description || ""),
    err);
  return { key, field, read, control, err };
}

function runForm(flow) {
  const defs = flow.definition?.inputs || {};
  const fields = Object.entries(flow.inputs || {}).map(([k, s]) => fieldFor(k, s, defs[k]));
  const msg = notice();
  const every = h("input", { id: "opt-model", name: "model", type: "text", placeholder: "provider:model, e.g. fake: or ollama:llama3.2", autocomplete: "off" });
  const perStep = flow.steps.filter((s) => LLM_KINDS.has(s.kind)).map((s) => ({ id: s.id, input: h("input", { id: `opt-model-${s.id}`, type: "text", placeholder: "default", autocomplete: "off" }) }));
  const project = h("select", { id: "opt-project" }, h("option", { value: "" }, "none (a fresh workspace)"));
  const runName = h("input", { id: "opt-name", type: "text", autocomplete: "off" });
  const timeout = h("input", { id: "opt-timeout", type: "number", min: "1", step: "any", placeholder: "none" });
  api("/api/v1/projects").then((d) => (d.projects || []).forEach((p) => project.append(h("option", { value: String(p.id) }, `${p.name} (${p.local_path})`)))).catch(() => {});
  const submit = h("button", { type: "submit", class: "primary", id: "start-run" }, "Start run");
  const form = h("form", { class: "run-form", novalidate: true },
    fields.length ? fields.map((f) => f.field) : h("p", { class: "muted" }, "No inputs to fill in."),
    h("details", { class: "options" },
      h("summary", {}, "Options: models, project, name, timeout"),
      h("div", { class: "field" }, h("label", { for: "opt-model" }, "Model for every step"), every),
      perStep.length ? h("fieldset", {}, h("legend", {}, "Model per step (wins over the above)"),
        perStep.map((p) => h("div", { class: "field inline" }, h("label", { for: p.input.id }, h("code", {}, p.id)), p.input))) : null,
      h("div", { class: "field" }, h("label", { for: "opt-project" }, "Project (runs in its directory)"), project),
      h("div", { class: "field" }, h("label", { for: "opt-name" }, "Run name"), runName),
      h("div", { class: "field" }, h("label", { for: "opt-timeout" }, "Timeout (seconds)"), timeout)),
    msg.el,
    h("div", { class: "button-row" }, submit));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    msg.hide();
    for (const box of [every, ...perStep.map((p) => p.input)]) { box.removeAttribute("aria-invalid"); box.removeAttribute("title"); }
    const inputs = {};
    let bad = false;
    for (const f of fields) {
      f.err.hidden = true;
      f.control.removeAttribute("aria-invalid");
      try {
        const v = f.read();
        if (v !== undefined) inputs[f.key] = v;
        else if (flow.inputs[f.key].required) throw new Error(`${f.key} is required`);
      } catch (err) {
        bad = true;
        markField(f, err.message);
      }
    }
    if (bad) { msg.show("Fix the marked inputs."); return; }
    const options = {};
    const models = {};
    if (every.value.trim()) models["*"] = every.value.trim();
    for (const p of perStep) if (p.input.value.trim()) models[p.id] = p.input.value.trim();
    if (Object.keys(models).length) options.models = Object.keys(models).length === 1 && models["*"] ? models["*"] : models;
    if (project.value) options.project_id = Number(project.value);
    if (runName.value.trim()) options.name = runName.value.trim();
    if (timeout.value) options.timeout_seconds = Number(timeout.value);
    submit.disabled = true;
    try {
      const run = await api("/api/v1/runs", { method: "POST", body: { flow: flow.name, inputs, options } });
      location.hash = `#/runs/${encodeURIComponent(run.id)}`;
    } catch (err) {
      msg.show(`The run was not started: ${err.message}`);
      for (const d of Array.isArray(err.detail) ? err.detail : []) {
        const loc = (d.loc || []).filter((p) => p !== "body" && p !== "inputs");
        const f = fields.find((x) => loc.includes(x.key));
        if (f) markField(f, d.msg);
        if (loc[0] === "options" && loc[1] === "models") {
          // a model that cannot work (unknown provider, no API key): mark the box it came from
          const box = perStep.find((p) => p.id === loc[2])?.input || every;
          box.setAttribute("aria-invalid", "true");
          box.title = d.hint ? `${d.msg} (${d.hint})` : d.msg;
        }
      }
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

function markField(f, text) {
  f.err.textContent = text;
  f.err.hidden = false;
  f.control.setAttribute("aria-invalid", "true");
}
