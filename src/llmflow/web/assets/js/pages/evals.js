// Evaluations: the list (pass rate, score per evaluation), one evaluation (per-variant table:
// pass rate, score, every metric, tokens, cost, latency p50/p95; per-record scores linking
// to each record's run) and the regressions between two evaluations. Reads
// GET /api/v1/evals[/{id}[/compare/{other}]].

import { api, ApiError } from "../api.js";
import { h, notice, replace } from "../dom.js";
import { fmtCost, fmtInt, runLink, statusBadge, timeEl } from "../format.js";
import * as live from "../live.js";

const MISSING = "Evaluations are not available on this server (no /api/v1/evals routes). Run them with `llmflow eval` and list them with `llmflow evals list`.";

function unavailable(err) {
  return err instanceof ApiError && ((err.status === 404 && err.message === "Not Found") || err.status === 405);
}

export function pct(rate) {
  return rate == null ? "—" : `${(rate * 100).toFixed(1)}%`;
}

function num(x, digits = 3) {
  return x == null ? "—" : Number(x).toFixed(digits);
}

function secs(x) {
  return x == null ? "—" : `${Number(x).toFixed(2)} s`;
}

function variantName(v) {
  const p = v.parameters || {};
  const keys = Object.keys(p);
  if (keys.length) return keys.map((k) => `${k}=${typeof p[k] === "string" ? p[k] : JSON.stringify(p[k])}`).join(", ");
  return v.label || v.variant || "(default)";
}

function rateBar(rate) {
  const value = rate == null ? 0 : Math.round(rate * 100);
  return h("span", { class: "progress-wrap" },
    h("progress", { max: 100, value, "aria-label": `pass rate ${pct(rate)}` }),
    h("span", { class: "small" }, pct(rate)));
}

function short(value, n = 80) {
  const t = typeof value === "string" ? value : JSON.stringify(value);
  if (t == null) return "—";
  return t.length > n ? `${t.slice(0, n)}…` : t;
}

export function renderList(main) {
  document.title = "Evaluations · llmflow";
  const msg = notice();
  const box = h("div", {}, h("p", { class: "muted" }, "Loading evaluations…"));
  const pick = { a: null, b: null };
  const compareBox = h("div", { id: "eval-compare" });
  main.append(h("div", { class: "page-head" }, h("h1", {}, "Evaluations")), msg.el, box,
    h("section", { class: "card", "aria-labelledby": "cmp-h" }, h("h2", { id: "cmp-h" }, "Compare two evaluations"),
      h("p", { class: "muted small" }, "Pick a baseline (A) and a candidate (B) in the table: the records that passed in A and fail in B, or scored lower, are regressions."),
      compareBox));
  let timer = null;

  async function showCompare() {
    if (!pick.a || !pick.b || pick.a === pick.b) {
      replace(compareBox, h("p", { class: "muted" }, "Choose A and B."));
      return;
    }
    try {
      const c = await api(`/api/v1/evals/${encodeURIComponent(pick.a)}/compare/${encodeURIComponent(pick.b)}`);
      replace(compareBox, comparison(c));
    } catch (err) {
      replace(compareBox, h("p", { class: "notice error" }, `Could not compare: ${err.message}`));
    }
  }

  async function load() {
    try {
      const d = await api("/api/v1/evals", { query: { limit: 100 } });
      const rows = d.evals || [];
      if (!rows.length) {
        replace(box, h("p", { class: "empty" }, "No evaluations yet. Run one with `llmflow eval FLOW --data FILE --metric exact`."));
        return;
      }
      replace(box, h("div", { class: "table-scroll" }, h("table", { class: "cards-on-phone", id: "evals-table" },
        h("thead", {}, h("tr", {}, ["Evaluation", "Flow", "Status", "Passed", "Pass rate", "Score", "Variants", "Created", "A", "B"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, rows.map((e) => h("tr", {},
          h("td", { "data-label": "Evaluation" }, h("a", { href: `#/evals/${encodeURIComponent(e.id)}`, class: "mono" }, e.id)),
          h("td", { "data-label": "Flow" }, e.flow),
          h("td", { "data-label": "Status" }, statusBadge(e.status)),
          h("td", { "data-label": "Passed", class: "num" }, e.total == null ? "—" : `${fmtInt(e.passed)}/${fmtInt(e.total)}`),
          h("td", { "data-label": "Pass rate" }, rateBar(e.pass_rate)),
          h("td", { "data-label": "Score", class: "num" }, num(e.score)),
          h("td", { "data-label": "Variants", class: "num" }, fmtInt((e.variants || []).length)),
          h("td", { "data-label": "Created" }, timeEl(e.created_at)),
          h("td", { "data-label": "A" }, h("input", { type: "radio", name: "cmp-a", value: e.id, "aria-label": `baseline ${e.id}`, checked: pick.a === e.id, onchange: () => { pick.a = e.id; showCompare(); } })),
          h("td", { "data-label": "B" }, h("input", { type: "radio", name: "cmp-b", value: e.id, "aria-label": `candidate ${e.id}`, checked: pick.b === e.id, onchange: () => { pick.b = e.id; showCompare(); } }))))))));
      showCompare();
    } catch (err) {
      if (unavailable(err)) replace(box, h("p", { class: "notice info", id: "evals-missing" }, MISSING));
      else msg.show(`Could not list evaluations: ${err.message}`);
    }
  }
  const off = live.on("run", (r) => {
    if (r.batch_id && r.batch_id.startsWith("eval-")) { clearTimeout(timer); timer = setTimeout(load, 1000); }
  });
  load();
  return () => { off(); clearTimeout(timer); };
}

function comparison(c) {
  return h("div", {},
    h("p", {}, "A ", h("a", { href: `#/evals/${encodeURIComponent(c.a)}`, class: "mono" }, c.a), " → B ", h("a", { href: `#/evals/${encodeURIComponent(c.b)}`, class: "mono" }, c.b)),
    c.variants.length
      ? h("div", { class: "table-scroll" }, h("table", { id: "compare-variants" },
        h("thead", {}, h("tr", {}, ["Variant", "Pass rate A", "Pass rate B", "Δ", "Score A", "Score B", "Δ"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, c.variants.map((v) => h("tr", {},
          h("td", {}, v.name),
          h("td", { class: "num" }, pct(v.pass_rate.a)), h("td", { class: "num" }, pct(v.pass_rate.b)),
          h("td", { class: ["num", v.pass_rate.delta < 0 ? "error-text" : null] }, `${v.pass_rate.delta >= 0 ? "+" : ""}${(v.pass_rate.delta * 100).toFixed(1)} pts`),
          h("td", { class: "num" }, num(v.score.a)), h("td", { class: "num" }, num(v.score.b)),
          h("td", { class: ["num", v.score.delta < 0 ? "error-text" : null] }, `${v.score.delta >= 0 ? "+" : ""}${num(v.score.delta)}`))))))
      : h("p", { class: "muted" }, "No variants in common."),
    h("h3", {}, `Regressions (${c.regressed.length})`),
    c.regressed.length
      ? h("div", { class: "table-scroll" }, h("table", { id: "compare-regressed" },
        h("thead", {}, h("tr", {}, ["Record", "Variant", "A", "B", "Why", "Runs"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, c.regressed.map((r) => h("tr", {},
          h("td", { class: "mono" }, r.record_id),
          h("td", {}, r.variant || "—"),
          h("td", {}, `${r.a.passed ? "pass" : "fail"} ${num(r.a.score)}`),
          h("td", { class: "error-text" }, `${r.b.passed ? "pass" : "fail"} ${num(r.b.score)}`),
          h("td", {}, r.b.reason || "—"),
          h("td", {}, runLink(r.a.run_id), " → ", runLink(r.b.run_id)))))))
      : h("p", { class: "muted" }, "No record regressed."),
    h("p", { class: "muted small" }, `${c.improved.length} record(s) improved.`));
}

export function renderEval(main, { id }) {
  document.title = `Evaluation ${id} · llmflow`;
  const msg = notice();
  const head = h("div", {});
  const variants = h("div", {});
  const records = h("div", {});
  const filter = h("select", { id: "records-filter", "aria-label": "Which records" },
    h("option", { value: "all" }, "All records"), h("option", { value: "failed" }, "Failed only"));
  main.append(
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/evals" }, "Evaluations"), " / ", h("span", { class: "mono" }, id)),
    h("div", { class: "page-head" }, h("h1", {}, "Evaluation ", h("span", { class: "mono" }, id)),
      h("div", { class: "button-row" }, h("a", { class: "button", href: `#/runs?batch=${encodeURIComponent(id)}` }, "All its runs"))),
    msg.el, head,
    h("section", { class: "card", "aria-labelledby": "var-h" }, h("h2", { id: "var-h" }, "Variants"), variants),
    h("section", { class: "card", "aria-labelledby": "rec-h" }, h("div", { class: "page-head" }, h("h2", { id: "rec-h" }, "Records"), filter), records));
  let view = null;
  let timer = null;

  function drawRecords() {
    if (!view) return;
    const metrics = view.summary.metrics || [];
    const rows = view.results.filter((r) => filter.value === "all" || !r.passed);
    replace(records, rows.length
      ? h("div", { class: "table-scroll" }, h("table", { class: "cards-on-phone", id: "records-table" },
        h("thead", {}, h("tr", {}, ["Record", "Variant", "Result", "Score", ...metrics, "Output", "Expected", "Reason", "Run"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, rows.map((r) => h("tr", { class: r.passed ? null : "failed-row" },
          h("td", { "data-label": "Record", class: "mono" }, r.record_id),
          h("td", { "data-label": "Variant" }, r.variant ? variantName(r) : "—"),
          h("td", { "data-label": "Result" }, statusBadge(r.passed ? "PASSED" : r.status === "COMPLETED" ? "FAILED" : r.status)),
          h("td", { "data-label": "Score", class: "num" }, num(r.score)),
          ...metrics.map((m) => {
            const s = (r.scores || {})[m];
            return h("td", { "data-label": m, class: "num", title: s ? s.reason : "" },
              s ? num(s.score) : "—",
              s && s.judge_run_id ? h("div", { class: "sub" }, h("a", { href: `#/runs/${encodeURIComponent(s.judge_run_id)}` }, "judge")) : null);
          }),
          h("td", { "data-label": "Output" }, h("span", { class: "mono small" }, short(r.output))),
          h("td", { "data-label": "Expected" }, h("span", { class: "mono small" }, short(r.expected))),
          h("td", { "data-label": "Reason" }, r.reason || "—"),
          h("td", { "data-label": "Run" }, runLink(r.run_id)))))))
      : h("p", { class: "muted" }, filter.value === "failed" ? "No failed records." : "No records scored yet."));
  }
  filter.addEventListener("change", drawRecords);

  async function load() {
    try {
      view = await api(`/api/v1/evals/${encodeURIComponent(id)}`);
    } catch (err) {
      if (unavailable(err)) replace(head, h("p", { class: "notice info", id: "evals-missing" }, MISSING));
      else msg.show(`Could not load the evaluation: ${err.message}`);
      return;
    }
    const ov = view.summary.overall;
    replace(head, h("section", { class: "card" }, h("dl", { class: "facts" },
      h("dt", {}, "Status"), h("dd", {}, statusBadge(view.status)),
      h("dt", {}, "Flow"), h("dd", {}, h("a", { href: `#/flows/${encodeURIComponent(view.flow)}` }, view.flow)),
      h("dt", {}, "Passed"), h("dd", { id: "eval-passed" }, `${fmtInt(ov.passed)}/${fmtInt(ov.total)} (${pct(ov.pass_rate)})`),
      h("dt", {}, "Mean score"), h("dd", {}, num(ov.score)),
      h("dt", {}, "Metrics"), h("dd", {}, (view.metrics || []).map((m) => `${m.name} (${m.type}, ≥ ${m.threshold})`).join(", ")),
      h("dt", {}, "Data"), h("dd", { class: "mono" }, view.source || "—"),
      h("dt", {}, "Created"), h("dd", {}, timeEl(view.created_at)),
      view.reason ? [h("dt", {}, "Stopped"), h("dd", {}, view.reason)] : null)));
    const metrics = view.summary.metrics || [];
    replace(variants, h("div", { class: "table-scroll" }, h("table", { id: "variants-table" },
      h("thead", {}, h("tr", {}, ["Variant", "Passed", "Pass rate", "Score", ...metrics, "Tokens", "Cost", "p50", "p95"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, view.summary.variants.map((v) => h("tr", {},
        h("td", {}, variantName(v)),
        h("td", { class: "num" }, `${fmtInt(v.passed)}/${fmtInt(v.total)}`),
        h("td", {}, rateBar(v.pass_rate)),
        h("td", { class: "num" }, num(v.score)),
        ...metrics.map((m) => h("td", { class: "num" }, num((v.metrics[m] || {}).mean))),
        h("td", { class: "num" }, fmtInt(v.tokens)),
        h("td", { class: "num" }, fmtCost(v.cost)),
        h("td", { class: "num" }, secs(v.latency_p50)),
        h("td", { class: "num" }, secs(v.latency_p95))))))));
    drawRecords();
  }
  const off = live.on("run", (r) => {
    if (r.batch_id === id && view && view.status === "RUNNING") { clearTimeout(timer); timer = setTimeout(load, 1000); }
  });
  load();
  return () => { off(); clearTimeout(timer); };
}
