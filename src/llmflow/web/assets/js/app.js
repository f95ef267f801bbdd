// The console's shell: hash routes (#/runs/ID, so no server path is ever shadowed), the
// sign-in dialog, the live indicator and worker state, keyboard shortcuts.

import { getToken, onAuthNeeded, setToken, api } from "./api.js";
import { h, replace } from "./dom.js";
import { tick } from "./format.js";
import * as live from "./live.js";
import * as dashboard from "./pages/dashboard.js";
import * as runPage from "./pages/run.js";
import * as flows from "./pages/flows.js";
import * as batches from "./pages/batches.js";
import * as evals from "./pages/evals.js";
import * as projects from "./pages/projects.js";

const ROUTES = [
  { match: [], nav: "runs", page: dashboard.render },
  { match: ["runs"], nav: "runs", page: dashboard.render },
  { match: ["runs", ":id"], nav: "runs", page: runPage.render },
  { match: ["flows"], nav: "flows", page: flows.renderList },
  { match: ["flows", ":id"], nav: "flows", page: flows.renderFlow },
  { match: ["batches"], nav: "batches", page: batches.renderList },
  { match: ["batches", ":id"], nav: "batches", page: batches.renderBatch },
  { match: ["evals"], nav: "evals", page: evals.renderList },
  { match: ["evals", ":id"], nav: "evals", page: evals.renderEval },
  { match: ["projects"], nav: "projects", page: projects.renderList },
  { match: ["projects", ":id"], nav: "projects", page: projects.renderProject },
];

let cleanup = null;
let current = "";

export function parseHash(hash = location.hash) {
  const raw = hash.replace(/^#\/?/, "");
  const [path, q = ""] = raw.split("?");
  const segments = path.split("/").filter(Boolean).map((s) => decodeURIComponent(s));
  return { segments, query: new URLSearchParams(q) };
}

/** Replace the query part of the current route without re-rendering the page. */
export function setQuery(values) {
  const { segments, query } = parseHash();
  for (const [k, v] of Object.entries(values)) {
    if (v === undefined || v === null || v === "" || v === false) query.delete(k);
    else query.set(k, String(v));
  }
  const path = segments.map(encodeURIComponent).join("/");
  const qs = query.toString();
  current = `#/${path}${qs ? `?${qs}` : ""}`;
  history.replaceState(null, "", current);
}

function route() {
  if (!location.hash.startsWith("#/") && location.hash) return; // e.g. the skip link (#main)
  if (location.hash === current && cleanup) return;
  current = location.hash;
  const { segments, query } = parseHash();
  let found = null;
  let id = null;
  for (const r of ROUTES) {
    if (r.match.length !== segments.length) continue;
    const ok = r.match.every((m, i) => m === ":id" || m === segments[i]);
    if (ok) {
      found = r;
      id = r.match.includes(":id") ? segments[r.match.indexOf(":id")] : null;
      break;
    }
  }
  if (typeof cleanup === "function") cleanup();
  cleanup = null;
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (found && a.dataset.nav === found.nav) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const main = document.getElementById("main");
  replace(main);
  if (!found) {
    main.append(h("h1", {}, "Not found"), h("p", {}, "There is no page here. ", h("a", { href: "#/runs" }, "Go to the runs.")));
    return;
  }
  try {
    cleanup = found.page(main, { id, query, setQuery }) || null;
  } catch (err) {
    console.error(err);
    main.append(h("p", { class: "notice error" }, `This page failed to render: ${err.message}`));
  }
}

function rerender() {
  current = "";
  route();
}

// -- sign-in ----------------------------------------------------------------------------------
function setupAuth() {
  const dialog = document.getElementById("signin-dialog");
  const form = document.getElementById("signin-form");
  const input = document.getElementById("token-input");
  const error = document.getElementById("signin-error");
  const button = document.getElementById("auth-button");
  const showButton = () => {
    button.hidden = false;
    button.textContent = getToken() ? "Sign out" : "Sign in";
  };
  if (getToken()) showButton();
  onAuthNeeded(() => {
    showButton();
    if (dialog.open) return;
    error.textContent = getToken() ? "The server refused this token. Enter the right one." : "";
    input.value = "";
    dialog.showModal();
    input.focus();
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    setToken(token);
    try {
      await api("/api/v1/worker");
    } catch (err) {
      if (err.status === 401) {
        setToken("");
        error.textContent = "The server refused this token.";
        input.select();
        return;
      }
    }
    dialog.close();
    showButton();
    live.restart();
    rerender();
  });
  dialog.addEventListener("cancel", (ev) => ev.preventDefault()); // nothing works without it
  button.addEventListener("click", () => {
    if (getToken()) {
      setToken("");
      showButton();
      live.restart();
      rerender();
    } else {
      input.value = "";
      error.textContent = "";
      dialog.showModal();
    }
  });
}

// -- header: live state, worker ----------------------------------------------------------------
function setupHeader() {
  const liveEl = document.getElementById("live-state");
  live.on("state", (s) => {
    liveEl.textContent = s;
    liveEl.className = `live-state ${s.replace(/\s+/g, "-")}`;
  });
  const workerEl = document.getElementById("worker-state");
  live.on("worker", (w) => {
    const active = (w.active_runs || []).length;
    workerEl.textContent = w.running ? `worker on · ${active} active` : "worker off";
    workerEl.className = `worker-state ${w.running ? "on" : "off"}`;
    workerEl.title = `Worker ${w.running ? "running" : "stopped"}: ${active} of ${w.concurrency ?? "?"} slots busy, ${w.processed ?? 0} runs processed, checks the queue every ${w.check_interval ?? "?"} s`;
  });
  document.getElementById("skip").addEventListener("click", (ev) => {
    ev.preventDefault();
    document.getElementById("main").focus();
  });
}

// -- keyboard ----------------------------------------------------------------------------------
function setupKeys() {
  let pendingG = false;
  document.addEventListener("keydown", (ev) => {
    const t = ev.target;
    if (ev.ctrlKey || ev.metaKey || ev.altKey || (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName)))) return;
    if (ev.key === "/") {
      const search = document.querySelector("[data-search]");
      if (search) { ev.preventDefault(); search.focus(); }
      return;
    }
    if (pendingG) {
      pendingG = false;
      const to = { r: "#/runs", f: "#/flows", b: "#/batches", e: "#/evals", p: "#/projects" }[ev.key];
      if (to) { ev.preventDefault(); location.hash = to; }
      return;
    }
    if (ev.key === "g") {
      pendingG = true;
      setTimeout(() => { pendingG = false; }, 1200);
    }
  });
}

function main() {
  setupAuth();
  setupHeader();
  setupKeys();
  live.startLive();
  window.addEventListener("hashchange", route);
  setInterval(() => tick(), 1000);
  if (!location.hash) history.replaceState(null, "", "#/runs");
  route();
}

main();
