// Markdown for step outputs and artifacts: parsed by marked (vendor/marked), then sanitised
// by DOMPurify (vendor/dompurify). Raw HTML in the text is shown as text, never as markup;
// DOMPurify then keeps only a fixed set of tags and attributes, and links keep only
// http(s), mailto and same-site targets. (The page's CSP forbids inline scripts besides.)

import { Marked } from "../vendor/marked/marked.esm.js";
import DOMPurify from "../vendor/dompurify/purify.es.js";

const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESC[c]);
}

const SAFE_URL = /^(https?:\/\/|mailto:|#|\/(?!\/)|\.\.?\/)/i;

const marked = new Marked({
  gfm: true,
  renderer: {
    // raw HTML blocks and inline tags are text here
    html({ text }) {
      return escapeHtml(text);
    },
    // images would load from anywhere: shown as links (the CSP allows only the page's own)
    image({ href, text }) {
      return SAFE_URL.test(href || "") ? `<a href="${escapeHtml(href)}">${escapeHtml(text || href)}</a>` : escapeHtml(text || "");
    },
    table(token) {
      return `<div class="table-scroll">${this.constructor.prototype.table.call(this, token)}</div>`;
    },
  },
});

const ALLOWED_TAGS = ["a", "blockquote", "br", "code", "del", "div", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "input", "li", "ol", "p", "pre", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul"];
const ALLOWED_ATTR = ["href", "class", "data-lang", "align", "type", "checked", "disabled", "start"];

const purify = DOMPurify(window);
purify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    if (!SAFE_URL.test(node.getAttribute("href") || "")) node.removeAttribute("href");
    node.setAttribute("rel", "noopener noreferrer");
    node.setAttribute("target", "_blank");
  }
  if (node.tagName === "INPUT" && node.getAttribute("type") !== "checkbox") node.remove();
});

/** Markdown text -> sanitised HTML. */
export function markdownToHtml(text) {
  const html = marked.parse(String(text ?? "").replace(/\r\n?/g, "\n"), { async: false });
  return purify.sanitize(html, { ALLOWED_TAGS, ALLOWED_ATTR, ADD_ATTR: ["target", "rel"] });
}

/** Markdown text -> a <div class="md"> element. */
export function renderMarkdown(text) {
  const div = document.createElement("div");
  div.className = "md";
  div.innerHTML = markdownToHtml(text);
  return div;
}

/** Does this text look like Markdown worth rendering (rather than plain text)? */
export function looksLikeMarkdown(text) {
  return typeof text === "string" && /(^|\n)\s*(#{1,6}\s|[-*+]\s|\d+[.)]\s|>|```|\|.*\|)|\*\*[^*]+\*\*|\[[^\]]+\]\([^)]+\)|`[^`]+`/.test(text);
}
