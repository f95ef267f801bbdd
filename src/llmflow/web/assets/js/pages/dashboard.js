// Runs dashboard: every run with flow, status, start, duration, tokens and cost; filters,
// search by id, pages; rows change live from the all-runs stream.

import { api, ApiError } from "../api.js";
import { h, notice, replace } from "../dom.js";
import { clip, durationEl, fmtCost, fmtDuration, fmtInt, fmtTokens, RUN_STATUSES, runLink, statusBadge, timeEl } from "../format.js";
import * as live from "../live.js";

const PAGE_SIZE = 25;
const SEARCH_WINDOW = 500;
const GROUPS = 10; // the newest batches and sweeps shown as group rows on the first page

export function runRow(r, { showFlow = true } = {}) {
  // one line per run: long names (a sweep's overrides, a goal), models and errors are cut
  // with an ellipsis and shown in full on hover
  const label = r.name || r.goal;
  return h("tr", { dataset: { run: r.id } },
    h("td", { "data-label": "Run" }, h("span", { class: "one-line" }, runLink(r.id), label ? clip(label, "sub") : null)),
    showFlow ? h("td", { "data-label": "Flow" }, h("a", { href: `#/flows/${encodeURIComponent(r.flow)}` }, r.flow)) : null,
    h("td", { "data-label": "Status" }, h("span", { class: "one-line" }, statusBadge(r.status), r.error ? clip(r.error, "sub error-text") : null)),
    h("td", { "data-label": "Started" }, timeEl(r.started_at ?? r.created_at)),
    h("td", { "data-label": "Duration" }, durationEl(r)),
    h("td", { "data-label": "Tokens in / out", class: "num" }, fmtTokens(r.usage)),
    h("td", { "data-label": "Cost", class: "num" }, fmtCost(r.usage?.cost)));
}

export function runTable(runs, opts = {}) {
  const showFlow = opts.showFlow !== false;
  return h("div", { class: "table-scroll" },
    h("table", { class: "runs cards-on-phone" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Run"), showFlow ? h("th", { scope: "col" }, "Flow") : null, h("th", { scope: "col" }, "Status"),
        h("th", { scope: "col" }, "Started"), h("th", { scope: "col" }, "Duration"),
        h("th", { scope: "col", class: "num" }, "Tokens in / out"), h("th", { scope: "col", class: "num" }, "Cost"))),
      opts.groups || null,
      h("tbody", {}, runs.map((r) => runRow(r, { showFlow })))));
}

/** A batch (or a sweep) as one row of the runs table; its runs open under it on demand. */
function batchGroup(b, opened) {
  const body = h("tbody", { class: "batch-group", dataset: { batch: b.id } });
  const kind = String(b.id).startsWith("sweep-") ? "Sweep" : "Batch";
  const count = b.total ?? b.done ?? 0;
  const toggle = h("button", { type: "button", class: "link expand", "aria-expanded": "false", "aria-label": `Show the runs of ${kind.toLowerCase()} ${b.id}` }, "▸");
  const progress = b.total ? `${fmtInt(b.done)} of ${fmtInt(b.total)} done` : `${fmtInt(b.done)} done`;
  const head = h("tr", { class: "group-row" },
    h("td", { "data-label": kind }, h("span", { class: "one-line" }, toggle, h("a", { href: `#/batches/${encodeURIComponent(b.id)}`, class: "mono" }, b.id), clip(`${kind.toLowerCase()} of ${fmtInt(count)} runs`, "sub"))),
    h("td", { "data-label": "Flow" }, h("a", { href: `#/flows/${encodeURIComponent(b.flow)}` }, b.flow)),
    h("td", { "data-label": "Status" }, h("span", { class: "one-line" }, statusBadge(b.status), clip(b.failed ? `${progress}, ${fmtInt(b.failed)} failed` : progress, "sub"))),
    h("td", { "data-label": "Started" }, timeEl(b.created_at)),
    h("td", { "data-label": "Duration" }, b.eta_seconds != null ? clip(`ETA ${fmtDuration(b.eta_seconds)}`, "sub") : h("span", { class: "muted" }, "—")),
    h("td", { "data-label": "Tokens", class: "num" }, fmtInt(b.tokens?.total)),
    h("td", { "data-label": "Cost", class: "num" }, fmtCost(b.cost)));
  body.append(head);
  let open = false;
  const expand = async () => {
    open = !open;
    if (open) opened.add(b.id);
    else opened.delete(b.id);
    toggle.setAttribute("aria-expanded", String(open));
    toggle.textContent = open ? "▾" : "▸";
    for (const tr of [...body.querySelectorAll("tr.member, tr.more")]) tr.remove();
    if (!open) return;
    try {
      const d = await api("/api/v1/runs", { query: { batch_id: b.id, limit: 25 } });
      for (const r of d.runs || []) {
        const tr = runRow(r);
        tr.classList.add("member");
        body.append(tr);
      }
      if ((d.total ?? 0) > (d.runs || []).length) {
        body.append(h("tr", { class: "more" }, h("td", { colspan: 7 }, h("a", { href: `#/runs?batch=${encodeURIComponent(b.id)}` }, `All ${fmtInt(d.total)} runs of ${b.id}`))));
      }
    } catch (err) {
      body.append(h("tr", { class: "more" }, h("td", { colspan: 7, class: "muted" }, `Could not list its runs: ${err.message}`)));
    }
  };
  toggle.addEventListener("click", expand);
  if (opened.has(b.id)) { opened.delete(b.id); expand(); } // still open after a live reload
  return body;
}

function matches(r, f) {
  return (!f.flow || r.flow === f.flow) && (!f.status || r.status === f.status) && (!f.batch || r.batch_id === f.batch) && (!f.project || String(r.project_id) === f.project);
}

/** Without a batch filter a batch's runs are grouped under their batch, not listed one by one. */
function grouping(f) {
  return !f.batch && !f.q;
}

export function workerCard(w) {
  if (!w) return h("p", { class: "muted" }, "Worker state unknown.");
  const active = w.active_runs || [];
  return h("dl", { class: "facts" },
    h("dt", {}, "Worker"), h("dd", {}, w.running ? statusBadge("running") : statusBadge("stopped")),
    h("dt", {}, "Busy"), h("dd", {}, `${active.length} of ${w.concurrency ?? "?"} slots`),
    h("dt", {}, "Processed"), h("dd", {}, String(w.processed ?? 0)),
    h("dt", {}, "Queue check"), h("dd", {}, `every ${w.check_interval ?? "?"} s`),
    active.length ? [h("dt", {}, "Active"), h("dd", {}, active.map((id, i) => [i ? ", " : "", runLink(id)]))] : null);
}

export function render(main, { query, setQuery }) {
  const f = {
    flow: query.get("flow") || "",
    status: query.get("status") || "",
    batch: query.get("batch") || "",
    project: query.get("project") || "",
    q: query.get("q") || "",
    page: Math.max(1, Number(query.get("page")) || 1),
  };
  const msg = notice();
  const flowSel = h("select", { id: "f-flow", name: "flow" }, h("option", { value: "" }, "all flows"));
  const statusSel = h("select", { id: "f-status", name: "status" }, h("option", { value: "" }, "any status"), RUN_STATUSES.map((s) => h("option", { value: s }, s.toLowerCase())));
  const projectSel = h("select", { id: "f-project", name: "project" }, h("option", { value: "" }, "any project"));
  const batchIn = h("input", { id: "f-batch", name: "batch", type: "text", placeholder: "batch id", value: f.batch, autocomplete: "off" });
  const searchIn = h("input", { id: "f-q", name: "q", type: "search", placeholder: "run id  ( / )", value: f.q, autocomplete: "off", "data-search": "", "aria-keyshortcuts": "/" });
  statusSel.value = f.status;
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter runs" },
    h("div", { class: "filter" }, h("label", { for: "f-flow" }, "Flow"), flowSel),
    h("div", { class: "filter" }, h("label", { for: "f-status" }, "Status"), statusSel),
    h("div", { class: "filter" }, h("label", { for: "f-project" }, "Project"), projectSel),
    h("div", { class: "filter" }, h("label", { for: "f-batch" }, "Batch"), batchIn),
    h("div", { class: "filter grow" }, h("label", { for: "f-q" }, "Search by id"), searchIn),
    h("div", { class: "filter-actions" },
      h("button", { type: "submit", class: "primary" }, "Apply"),
      h("button", { type: "button", onclick: () => { Object.assign(f, { flow: "", status: "", batch: "", project: "", q: "", page: 1 }); flowSel.value = ""; statusSel.value = ""; projectSel.value = ""; batchIn.value = ""; searchIn.value = ""; apply(); } }, "Clear")));
  const info = h("p", { class: "muted", "aria-live": "polite" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  const tableBox = h("div", { class: "table-box" }, h("p", { class: "muted" }, "Loading runs…"));
  const worker = h("section", { class: "card worker", "aria-labelledby": "worker-h" }, h("h2", { id: "worker-h" }, "Worker"), h("div", {}, workerCard(null)));
  main.append(
    h("div", { class: "page-head" }, h("h1", {}, "Runs"), h("a", { href: "#/flows", class: "button primary" }, "Start a run")),
    h("div", { class: "dash" },
      h("section", { class: "runs-area", "aria-label": "Runs" }, form, msg.el, info, tableBox, pager),
      worker));

  const filters = [flowSel, statusSel, projectSel];
  filters.forEach((el) => el.addEventListener("change", () => { readForm(); f.page = 1; apply(); }));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); readForm(); f.page = 1; apply(); });
  function readForm() {
    f.flow = flowSel.value;
    f.status = statusSel.value;
    f.project = projectSel.value;
    f.batch = batchIn.value.trim();
    f.q = searchIn.value.trim();
  }

  api("/api/v1/flows").then((d) => {
    for (const fl of d.flows || []) flowSel.append(h("option", { value: fl.name }, fl.name));
    if (f.flow && ![...flowSel.options].some((o) => o.value === f.flow)) flowSel.append(h("option", { value: f.flow }, f.flow));
    flowSel.value = f.flow;
  }).catch(() => {});
  api("/api/v1/projects").then((d) => {
    for (const p of d.projects || []) projectSel.append(h("option", { value: String(p.id) }, p.name));
    projectSel.value = f.project;
  }).catch(() => {});
  api("/api/v1/worker").then((w) => replace(worker.lastChild, workerCard(w))).catch(() => {});

  let rows = new Map();
  let batches = [];
  const openGroups = new Set();
  let pending = null;
  let loading = null;

  function apply() {
    setQuery({ flow: f.flow, status: f.status, batch: f.batch, project: f.project, q: f.q, page: f.page > 1 ? f.page : "" });
    load();
  }

  async function load() {
    const ctrl = new AbortController();
    loading?.abort();
    loading = ctrl;
    const base = { flow: f.flow, status: f.status, batch_id: f.batch, project_id: f.project };
    msg.hide();
    try {
      let runs;
      let total = null;
      let note = "";
      if (f.q) {
        try {
          runs = [await api(`/api/v1/runs/${encodeURIComponent(f.q)}`, { signal: ctrl.signal })].map(summaryOf);
          note = `Run ${f.q}.`;
        } catch (err) {
          if (!(err instanceof ApiError) || err.status !== 404) throw err;
          const d = await api("/api/v1/runs", { query: { ...base, limit: SEARCH_WINDOW }, signal: ctrl.signal });
          const needle = f.q.toLowerCase();
          runs = (d.runs || []).filter((r) => r.id.toLowerCase().includes(needle));
          note = `No run has the id "${f.q}"; ${runs.length} of the ${SEARCH_WINDOW} newest runs${filterWords()} contain it.`;
        }
        pager.hidden = true;
      } else {
        const grouped = grouping(f);
        const query = { ...base, limit: PAGE_SIZE, offset: (f.page - 1) * PAGE_SIZE, in_batch: grouped ? "false" : "" };
        const [d, bd] = await Promise.all([
          api("/api/v1/runs", { query, signal: ctrl.signal }),
          grouped && f.page === 1 && !f.status && !f.project
            ? api("/api/v1/batches", { query: { limit: GROUPS }, signal: ctrl.signal }).catch(() => ({ batches: [] }))
            : Promise.resolve({ batches: [] }),
        ]);
        batches = (bd.batches || []).filter((b) => !f.flow || b.flow === f.flow);
        runs = d.runs || [];
        total = d.total;
        pager.hidden = false;
        const first = runs.length ? (f.page - 1) * PAGE_SIZE + 1 : 0;
        const last = (f.page - 1) * PAGE_SIZE + runs.length;
        note = total != null ? `${first}–${last} of ${total} runs${filterWords()}` : `${first}–${last}${filterWords()}`;
        if (grouped) note += batches.length ? `; the runs of batches and sweeps are under their ${batches.length} group row${batches.length > 1 ? "s" : ""}` : "; runs of batches are on the Batches page";
        const more = total != null ? last < total : runs.length === PAGE_SIZE;
        replace(pager,
          h("button", { type: "button", disabled: f.page <= 1, onclick: () => { f.page--; apply(); } }, "← Newer"),
          h("span", { class: "muted" }, `page ${f.page}${total != null ? ` of ${Math.max(1, Math.ceil(total / PAGE_SIZE))}` : ""}`),
          h("button", { type: "button", disabled: !more, onclick: () => { f.page++; apply(); } }, "Older →"));
      }
      info.textContent = note;
      rows = new Map();
      if (!runs.length && !batches.length) {
        replace(tableBox, h("p", { class: "empty" }, f.q || f.flow || f.status || f.batch || f.project ? "No runs match." : "No runs yet. Start one from a flow's page, or with `llmflow run`."));
        return;
      }
      const table = runTable(runs, { groups: batches.map((b) => batchGroup(b, openGroups)) });
      for (const tr of table.querySelectorAll("tbody tr[data-run]:not(.member)")) rows.set(tr.dataset.run, tr);
      replace(tableBox, table);
    } catch (err) {
      if (err.name === "AbortError") return;
      msg.show(`Could not list runs: ${err.message}`);
    }
  }

  function filterWords() {
    const bits = [];
    if (f.flow) bits.push(`flow ${f.flow}`);
    if (f.status) bits.push(`status ${f.status.toLowerCase()}`);
    if (f.project) bits.push(`project ${projectSel.selectedOptions[0]?.textContent || f.project}`);
    if (f.batch) bits.push(`batch ${f.batch}`);
    return bits.length ? ` (${bits.join(", ")})` : "";
  }

  function onRun(r) {
    if (r.batch_id && grouping(f)) {
      // a batch's run changed: its group row (progress) is redrawn with the next load
      if (f.page === 1) { clearTimeout(pending); pending = setTimeout(load, 1000); }
      return;
    }
    const tr = rows.get(r.id);
    if (tr) {
      // updated in place even if it no longer matches the filters (it goes on the next load)
      const fresh = runRow(r);
      fresh.classList.add("flash");
      tr.replaceWith(fresh);
      rows.set(r.id, fresh);
    } else if (!f.q && f.page === 1 && matches(r, f)) {
      clearTimeout(pending);
      pending = setTimeout(load, 300); // a burst of new runs: one reload
    }
  }

  const offs = [
    live.on("run", onRun),
    live.on("resync", () => load()),
    live.on("worker", (w) => replace(worker.lastChild, workerCard(w))),
  ];
  load();
  return () => {
    offs.forEach((off) => off());
    clearTimeout(pending);
    loading?.abort();
  };
}

function summaryOf(view) {
  // GET /runs/{id} (a full view) as a list row
  return { ...view, name: view.name ?? view.options?.name, goal: view.goal ?? view.options?.goal };
}
