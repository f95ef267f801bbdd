// A run's artifacts: listed with step, size and type; previewed in the page (text,
// Markdown, JSON, images) and downloaded, both through fetch() so the token goes along.

import { fetchBlob } from "../api.js";
import { actionButton, h, notice, replace } from "../dom.js";
import { fmtBytes, pretty, timeEl } from "../format.js";
import { renderMarkdown } from "../markdown.js";

const PREVIEW_LIMIT = 2 * 1024 * 1024;
const TEXTUAL = /^(text\/|application\/(json|x-yaml|yaml|xml|javascript|x-sh|toml|x-ndjson))/;

function kindOf(a) {
  const mime = a.mime || "";
  const ext = (a.path.split(".").pop() || "").toLowerCase();
  if (mime.startsWith("image/") || ["png", "jpg", "jpeg", "gif", "webp", "svg"].includes(ext)) return "image";
  if (mime === "text/markdown" || ["md", "markdown"].includes(ext)) return "markdown";
  if (mime.includes("json") || ["json", "jsonl"].includes(ext)) return "json";
  if (TEXTUAL.test(mime) || ["txt", "log", "csv", "yaml", "yml", "py", "java", "xml", "html", "toml", "sh"].includes(ext)) return "text";
  return mime ? "binary" : "text";
}

function artifactUrl(runId, a) {
  return a.url || `/api/v1/runs/${encodeURIComponent(runId)}/artifacts/${a.path.split("/").map(encodeURIComponent).join("/")}`;
}

export function artifactsSection(runId) {
  const body = h("div", {});
  const preview = h("div", { class: "artifact-preview", "aria-live": "polite" });
  const msg = notice();
  const urls = [];
  const section = h("section", { class: "card", "aria-labelledby": "art-h" }, h("h2", { id: "art-h" }, "Artifacts"), msg.el, body, preview);
  let shown = "";

  async function show(a) {
    msg.hide();
    const kind = kindOf(a);
    if (kind === "binary") {
      replace(preview, h("p", { class: "muted" }, `${a.path}: ${a.mime || "binary"}, no preview; use Download.`));
      return;
    }
    if (a.size > PREVIEW_LIMIT) {
      replace(preview, h("p", { class: "muted" }, `${a.path} is ${fmtBytes(a.size)}: too big to preview; use Download.`));
      return;
    }
    try {
      const blob = await fetchBlob(artifactUrl(runId, a));
      const head = h("h3", {}, a.path);
      if (kind === "image") {
        const u = URL.createObjectURL(blob);
        urls.push(u);
        replace(preview, head, h("img", { src: u, alt: `artifact ${a.path}`, class: "artifact-image" }));
        return;
      }
      const text = await blob.text();
      if (kind === "markdown") replace(preview, head, renderMarkdown(text));
      else if (kind === "json") {
        let shownText = text;
        try { shownText = pretty(JSON.parse(text)); } catch { /* JSON lines or broken JSON: as text */ }
        replace(preview, head, h("pre", { class: "json" }, shownText));
      } else replace(preview, head, h("pre", { class: "text" }, text));
      preview.scrollIntoView({ block: "nearest" });
    } catch (err) {
      msg.show(`Could not open ${a.path}: ${err.message}`);
    }
  }

  async function download(a) {
    msg.hide();
    try {
      const blob = await fetchBlob(artifactUrl(runId, a));
      const u = URL.createObjectURL(blob);
      const link = h("a", { href: u, download: a.path.split("/").pop() || "artifact" });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(u), 10_000);
    } catch (err) {
      msg.show(`Could not download ${a.path}: ${err.message}`);
    }
  }

  return {
    el: section,
    update(artifacts) {
      const sig = JSON.stringify((artifacts || []).map((a) => [a.path, a.sha256]));
      if (sig === shown) return;
      shown = sig;
      if (!artifacts?.length) {
        replace(body, h("p", { class: "muted" }, "No artifacts (yet)."));
        return;
      }
      replace(body, h("div", { class: "table-scroll" }, h("table", { class: "artifacts cards-on-phone" },
        h("thead", {}, h("tr", {}, ["File", "Step", "Size", "Type", "Created", ""].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, artifacts.map((a) => h("tr", {},
          h("td", { "data-label": "File", class: "mono" }, a.path),
          h("td", { "data-label": "Step" }, a.step_id ? `${a.step_id}${a.attempt ? ` #${a.attempt}` : ""}` : "—"),
          h("td", { "data-label": "Size", class: "num" }, fmtBytes(a.size)),
          h("td", { "data-label": "Type" }, a.mime || "—"),
          h("td", { "data-label": "Created" }, timeEl(a.created_at)),
          h("td", { class: "actions" },
            actionButton("Preview", () => show(a), { class: "small", "aria-label": `Preview ${a.path}` }),
            actionButton("Download", () => download(a), { class: "small", "aria-label": `Download ${a.path}` }))))))));
    },
    close() { urls.forEach((u) => URL.revokeObjectURL(u)); },
  };
}
