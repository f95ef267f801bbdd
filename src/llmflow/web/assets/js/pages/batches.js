// Batches: progress (done / failed / remaining, rate, ETA, tokens, cost), failed jobs with
// their errors, resume and retry-failed. Reads GET /api/v1/batches[/{id}] and POSTs
// /api/v1/batches/{id}/resume or /retry-failed; a server without those routes gets a clear
// "not available".

import { api, ApiError } from "../api.js";
import { actionButton, h, notice, replace, toast } from "../dom.js";
import { fmtCost, fmtDuration, fmtInt, runLink, statusBadge, timeEl } from "../format.js";
import * as live from "../live.js";

const MISSING = "Batches are not available on this server: it has no /api/v1/batches routes. Start and follow batches with `llmflow batch` and `llmflow batches list` meanwhile; their runs are listed on the Runs page (filter by batch).";

function unavailable(err) {
  // the framework's own answers for a route that does not exist (a missing batch says more)
  return err instanceof ApiError && ((err.status === 404 && err.message === "Not Found") || err.status === 405);
}

function progress(b) {
  const total = b.total ?? null;
  const pct = total ? Math.min(100, Math.round((100 * (b.done ?? 0)) / total)) : null;
  return h("div", { class: "progress-wrap" },
    h("progress", { max: total || 1, value: total ? (b.done ?? 0) : 0, "aria-label": `Batch ${b.id} progress` }),
    h("span", { class: "small" }, total ? `${fmtInt(b.done)} of ${fmtInt(total)} (${pct}%)` : `${fmtInt(b.done)} done, total unknown`));
}

function numbers(b) {
  const tokens = b.tokens || {};
  return h("dl", { class: "facts" },
    h("dt", {}, "Status"), h("dd", {}, statusBadge(b.status)),
    h("dt", {}, "Completed"), h("dd", {}, fmtInt(b.completed)),
    h("dt", {}, "Failed"), h("dd", {}, fmtInt(b.failed)),
    h("dt", {}, "Running"), h("dd", {}, fmtInt(b.running)),
    h("dt", {}, "Remaining"), h("dd", {}, b.remaining == null ? "—" : fmtInt(b.remaining)),
    h("dt", {}, "Rate"), h("dd", {}, b.rate == null ? "—" : `${b.rate.toFixed(2)} jobs/s`),
    h("dt", {}, "ETA"), h("dd", {}, b.eta_seconds == null ? "—" : fmtDuration(b.eta_seconds)),
    h("dt", {}, "Tokens"), h("dd", {}, tokens.total != null ? `${fmtInt(tokens.total)} (${fmtInt(tokens.input)} in / ${fmtInt(tokens.output)} out)` : "—"),
    h("dt", {}, "Cost"), h("dd", {}, fmtCost(b.cost)));
}

export function renderList(main) {
  document.title = "Batches · llmflow";
  const msg = notice();
  const box = h("div", {}, h("p", { class: "muted" }, "Loading batches…"));
  main.append(h("div", { class: "page-head" }, h("h1", {}, "Batches")), msg.el, box);
  let timer = null;
  async function load() {
    try {
      const d = await api("/api/v1/batches", { query: { limit: 50 } });
      const rows = Array.isArray(d) ? d : d.batches || [];
      if (!rows.length) {
        replace(box, h("p", { class: "empty" }, "No batches yet. Start one with `llmflow batch FLOW --data FILE`."));
        return;
      }
      replace(box, h("div", { class: "table-scroll" }, h("table", { class: "cards-on-phone" },
        h("thead", {}, h("tr", {}, ["Batch", "Flow", "Status", "Progress", "Failed", "Remaining", "ETA", "Cost", "Created"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, rows.map((b) => h("tr", {},
          h("td", { "data-label": "Batch" }, h("a", { href: `#/batches/${encodeURIComponent(b.id)}`, class: "mono" }, b.id)),
          h("td", { "data-label": "Flow" }, b.flow),
          h("td", { "data-label": "Status" }, statusBadge(b.status)),
          h("td", { "data-label": "Progress" }, progress(b)),
          h("td", { "data-label": "Failed", class: "num" }, fmtInt(b.failed)),
          h("td", { "data-label": "Remaining", class: "num" }, b.remaining == null ? "—" : fmtInt(b.remaining)),
          h("td", { "data-label": "ETA" }, b.eta_seconds == null ? "—" : fmtDuration(b.eta_seconds)),
          h("td", { "data-label": "Cost", class: "num" }, fmtCost(b.cost)),
          h("td", { "data-label": "Created" }, timeEl(b.created_at))))))));
    } catch (err) {
      if (unavailable(err)) replace(box, h("p", { class: "notice info", id: "batches-missing" }, MISSING));
      else msg.show(`Could not list batches: ${err.message}`);
    }
  }
  const off = live.on("run", (r) => {
    if (r.batch_id) { clearTimeout(timer); timer = setTimeout(load, 1000); }
  });
  load();
  return () => { off(); clearTimeout(timer); };
}

export function renderBatch(main, { id }) {
  document.title = `Batch ${id} · llmflow`;
  const enc = encodeURIComponent(id);
  const msg = notice();
  const head = h("div", {});
  const failedBox = h("div", {});
  main.append(
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/batches" }, "Batches"), " / ", h("span", { class: "mono" }, id)),
    h("div", { class: "page-head" }, h("h1", {}, "Batch ", h("span", { class: "mono" }, id)),
      h("div", { class: "button-row" },
        actionButton("Resume", () => resume(false), { id: "btn-batch-resume" }),
        actionButton("Retry failed", () => resume(true), { id: "btn-batch-retry" }),
        h("a", { class: "button", href: `#/runs?batch=${enc}` }, "All its runs"))),
    msg.el, head,
    h("section", { class: "card", "aria-labelledby": "failed-h" }, h("h2", { id: "failed-h" }, "Failed jobs"), failedBox));
  let timer = null;

  async function load() {
    try {
      const b = await api(`/api/v1/batches/${enc}`);
      replace(head, h("section", { class: "card" },
        progress(b), numbers(b),
        h("dl", { class: "facts" },
          h("dt", {}, "Flow"), h("dd", {}, h("a", { href: `#/flows/${encodeURIComponent(b.flow)}` }, b.flow)),
          h("dt", {}, "Created"), h("dd", {}, timeEl(b.created_at)),
          h("dt", {}, "Updated"), h("dd", {}, timeEl(b.updated_at)),
          h("dt", {}, "Ended"), h("dd", {}, timeEl(b.ended_at)),
          b.data ? [h("dt", {}, "Data"), h("dd", { class: "mono" }, String(b.data))] : null,
          b.output ? [h("dt", {}, "Output"), h("dd", { class: "mono" }, String(b.output))] : null,
          b.reason ? [h("dt", {}, "Stopped"), h("dd", {}, b.reason)] : null)));
    } catch (err) {
      if (unavailable(err)) replace(head, h("p", { class: "notice info", id: "batches-missing" }, MISSING));
      else msg.show(`Could not load the batch: ${err.message}`);
    }
    try {
      const [failed, canceled] = await Promise.all(["FAILED", "CANCELED"].map((status) => api("/api/v1/runs", { query: { batch_id: id, status, limit: 200 } })));
      const runs = [...(failed.runs || []), ...(canceled.runs || [])];
      replace(failedBox, runs.length
        ? h("div", { class: "table-scroll" }, h("table", { class: "cards-on-phone" },
          h("thead", {}, h("tr", {}, ["Run", "Status", "Error", "Ended"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, runs.map((r) => h("tr", {},
            h("td", { "data-label": "Run" }, runLink(r.id), r.name ? h("div", { class: "sub" }, r.name) : null),
            h("td", { "data-label": "Status" }, statusBadge(r.status)),
            h("td", { "data-label": "Error" }, h("pre", { class: "error-text small" }, r.error || "—")),
            h("td", { "data-label": "Ended" }, timeEl(r.ended_at)))))))
        : h("p", { class: "muted" }, "No failed jobs."));
    } catch (err) {
      replace(failedBox, h("p", { class: "muted" }, `Could not list failed jobs: ${err.message}`));
    }
  }

  async function resume(retryFailed) {
    msg.hide();
    try {
      const b = await api(`/api/v1/batches/${enc}/${retryFailed ? "retry-failed" : "resume"}`, { method: "POST", body: {} });
      toast(retryFailed ? `Re-running the failed jobs of ${id}` : `Resumed ${id}: ${b.remaining ?? "the remaining"} jobs to run`);
      load();
    } catch (err) {
      if (unavailable(err)) msg.show(`${retryFailed ? "Retry failed" : "Resume"} is not available on this server (no POST /api/v1/batches/{id}/${retryFailed ? "retry-failed" : "resume"}). From a terminal: llmflow batch --resume ${id}${retryFailed ? " --retry-failed" : ""}`, "info");
      else msg.show(`${retryFailed ? "Retry failed" : "Resume"} is not possible now: ${err.message}`);
    }
  }

  const off = live.on("run", (r) => {
    if (r.batch_id === id) { clearTimeout(timer); timer = setTimeout(load, 1000); }
  });
  load();
  return () => { off(); clearTimeout(timer); };
}
