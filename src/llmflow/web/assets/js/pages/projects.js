// Projects (Agent Runner's workspaces): list, create, and a project's runs.

import { api } from "../api.js";
import { h, notice, replace, toast } from "../dom.js";
import { timeEl } from "../format.js";
import * as live from "../live.js";
import { runTable } from "./dashboard.js";

export function renderList(main) {
  document.title = "Projects · llmflow";
  const msg = notice();
  const box = h("div", {}, h("p", { class: "muted" }, "Loading projects…"));
  const name = h("input", { id: "p-name", name: "name", type: "text", required: true, autocomplete: "off" });
  const path = h("input", { id: "p-path", name: "local_path", type: "text", required: true, autocomplete: "off", placeholder: "my-project (inside the projects root)" });
  const formMsg = notice();
  const form = h("form", { class: "card project-form", "aria-labelledby": "newp-h" },
    h("h2", { id: "newp-h" }, "New project"),
    h("div", { class: "field" }, h("label", { for: "p-name" }, "Name"), name),
    h("div", { class: "field" }, h("label", { for: "p-path" }, "Directory"), path,
      h("p", { class: "help" }, "A relative path is taken from the server's projects root (LLMFLOW_PROJECTS_ROOT); file and shell steps of the project's runs work there.")),
    formMsg.el,
    h("div", { class: "button-row" }, h("button", { type: "submit", class: "primary" }, "Create project")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    formMsg.hide();
    if (!name.value.trim() || !path.value.trim()) { formMsg.show("Give a name and a directory."); return; }
    try {
      const p = await api("/api/v1/projects", { method: "POST", body: { name: name.value.trim(), local_path: path.value.trim() } });
      toast(`Project ${p.name} created`);
      name.value = "";
      path.value = "";
      load();
    } catch (err) {
      formMsg.show(`The project was not created: ${err.message}`);
    }
  });
  main.append(h("div", { class: "page-head" }, h("h1", {}, "Projects")), msg.el, h("div", { class: "two-col" }, box, form));

  async function load() {
    try {
      const d = await api("/api/v1/projects");
      const rows = d.projects || [];
      replace(box, rows.length
        ? h("div", { class: "table-scroll" }, h("table", { class: "cards-on-phone projects" },
          h("thead", {}, h("tr", {}, ["Project", "Directory", "Created"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, rows.map((p) => h("tr", {},
            h("td", { "data-label": "Project" }, h("a", { href: `#/projects/${p.id}` }, p.name), h("span", { class: "muted" }, ` #${p.id}`)),
            h("td", { "data-label": "Directory", class: "mono" }, p.local_path || "—"),
            h("td", { "data-label": "Created" }, timeEl(p.created_at)))))))
        : h("p", { class: "empty" }, "No projects yet."));
    } catch (err) {
      msg.show(`Could not list projects: ${err.message}`);
    }
  }
  load();
}

export function renderProject(main, { id }) {
  document.title = `Project ${id} · llmflow`;
  const msg = notice();
  const head = h("div", {});
  const runsBox = h("div", {}, h("p", { class: "muted" }, "Loading runs…"));
  main.append(
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/projects" }, "Projects"), " / ", `#${id}`),
    msg.el, head,
    h("section", { class: "card", "aria-labelledby": "prun-h" }, h("h2", { id: "prun-h" }, "Runs in this project"), runsBox));
  let timer = null;

  async function load() {
    try {
      const d = await api("/api/v1/projects");
      const p = (d.projects || []).find((x) => String(x.id) === String(id));
      if (!p) {
        replace(head, h("h1", {}, "No such project"), h("p", {}, h("a", { href: "#/projects" }, "Back to the projects.")));
        return;
      }
      replace(head, h("div", { class: "page-head" }, h("h1", {}, "Project ", p.name), h("a", { class: "button primary", href: "#/flows" }, "Start a run")),
        h("section", { class: "card" }, h("dl", { class: "facts" },
          h("dt", {}, "Id"), h("dd", {}, String(p.id)),
          h("dt", {}, "Directory"), h("dd", { class: "mono" }, p.local_path || "—"),
          h("dt", {}, "Created"), h("dd", {}, timeEl(p.created_at))),
          h("p", { class: "muted small" }, "To run a flow here, pick this project under Options on the flow's page.")));
      const r = await api("/api/v1/runs", { query: { project_id: id, limit: 100 } });
      replace(runsBox, r.runs?.length ? runTable(r.runs) : h("p", { class: "muted" }, "No runs in this project yet."));
    } catch (err) {
      msg.show(`Could not load the project: ${err.message}`);
    }
  }
  const off = live.on("run", (r) => {
    if (String(r.project_id) === String(id)) { clearTimeout(timer); timer = setTimeout(load, 500); }
  });
  load();
  return () => { off(); clearTimeout(timer); };
}
