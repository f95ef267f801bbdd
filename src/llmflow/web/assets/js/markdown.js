// A small, safe Markdown renderer for step outputs and artifacts. Every piece of text is
// HTML-escaped before any Markdown rule runs, the rules only add a fixed set of tags, and
// links keep only http(s), mailto and same-site targets. (The page's CSP forbids inline
// scripts besides.) Supported: headings, paragraphs, emphasis, strong, strikethrough,
// inline code, fenced code, block quotes, nested lists, tables, rules, links.

const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESC[c]);
}

const SAFE_URL = /^(https?:\/\/|mailto:|#|\/(?!\/)|\.\.?\/)/i;

function emphasis(s) {
  s = s.replace(/\*\*(?=\S)([^*]+?)\*\*/g, "<strong>$1</strong>");
  s = s.replace(/(^|[^\w])__(?=\S)([^_]+?)__(?!\w)/g, "$1<strong>$2</strong>");
  s = s.replace(/(^|[^*\w])\*(?=[^\s*])([^*\n]+?)\*(?!\*)/g, "$1<em>$2</em>");
  s = s.replace(/(^|[^\w])_(?=[^\s_])([^_\n]+?)_(?!\w)/g, "$1<em>$2</em>");
  return s.replace(/~~(?=\S)([^~]+?)~~/g, "<del>$1</del>");
}

function inline(raw) {
  // code spans and links become placeholders first, so no later rule reaches inside them
  const held = [];
  const hold = (html) => { held.push(html); return `\u0000${held.length - 1}\u0000`; };
  let s = escapeHtml(raw).replace(/\u0000/g, "").replace(/`([^`\n]+)`/g, (_, c) => hold(`<code>${c}</code>`));
  s = s.replace(/!?\[([^\]\n]+)\]\(([^)\s]+)\)/g, (m, label, href) =>
    SAFE_URL.test(href) ? hold(`<a href="${href}" rel="noopener noreferrer" target="_blank">${emphasis(label)}</a>`) : m);
  s = emphasis(s);
  for (let round = 0; round < 2; round++) s = s.replace(/\u0000(\d+)\u0000/g, (_, i) => held[Number(i)]);
  return s;
}

const LIST_ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const TABLE_SEP = /^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$/;

function cells(line) {
  return line.trim().replace(/^\||\|$/g, "").split("|").map((c) => c.trim());
}

function list(lines, start) {
  // lines[start] is an item; take the items at its indent (and deeper lines as children)
  const first = LIST_ITEM.exec(lines[start]);
  const indent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const items = [];
  let i = start;
  while (i < lines.length) {
    const m = LIST_ITEM.exec(lines[i]);
    if (m && m[1].length === indent) {
      items.push({ text: [m[3]], children: [] });
      i++;
    } else if (lines[i].trim() && items.length && (lines[i].match(/^\s*/)[0].length > indent)) {
      items[items.length - 1].children.push(lines[i]);
      i++;
    } else break;
  }
  const html = items.map((it) => {
    let inner = inline(it.text.join(" "));
    if (it.children.length) {
      const nested = it.children.some((l) => LIST_ITEM.test(l));
      inner += nested ? blocks(dedent(it.children)) : " " + inline(it.children.map((l) => l.trim()).join(" "));
    }
    return `<li>${inner}</li>`;
  }).join("");
  const tag = ordered ? "ol" : "ul";
  return { html: `<${tag}>${html}</${tag}>`, next: i };
}

function dedent(lines) {
  const n = Math.min(...lines.filter((l) => l.trim()).map((l) => l.match(/^\s*/)[0].length));
  return lines.map((l) => l.slice(n));
}

function blocks(lines) {
  const out = [];
  let para = [];
  const flush = () => {
    if (para.length) out.push(`<p>${inline(para.join("\n"))}</p>`);
    para = [];
  };
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = /^\s*(```|~~~)\s*([\w+-]*)/.exec(line);
    if (fence) {
      flush();
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
      i++;
      const lang = fence[2] ? ` data-lang="${escapeHtml(fence[2])}"` : "";
      out.push(`<pre${lang}><code>${escapeHtml(body.join("\n"))}</code></pre>`);
      continue;
    }
    if (!line.trim()) { flush(); i++; continue; }
    const heading = /^(#{1,6})\s+(.*?)\s*#*\s*$/.exec(line);
    if (heading) {
      flush();
      const n = heading[1].length;
      out.push(`<h${n}>${inline(heading[2])}</h${n}>`);
      i++;
      continue;
    }
    if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) { flush(); out.push("<hr>"); i++; continue; }
    if (/^\s*>/.test(line)) {
      flush();
      const quoted = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) quoted.push(lines[i++].replace(/^\s*>\s?/, ""));
      out.push(`<blockquote>${blocks(quoted)}</blockquote>`);
      continue;
    }
    if (LIST_ITEM.test(line) && (!para.length || !/^\s/.test(line))) {
      flush();
      const l = list(lines, i);
      out.push(l.html);
      i = l.next;
      continue;
    }
    if (line.includes("|") && i + 1 < lines.length && TABLE_SEP.test(lines[i + 1])) {
      flush();
      const head = cells(line);
      i += 2;
      const rows = [];
      while (i < lines.length && lines[i].includes("|") && lines[i].trim()) rows.push(cells(lines[i++]));
      const th = head.map((c) => `<th>${inline(c)}</th>`).join("");
      const tb = rows.map((r) => `<tr>${r.map((c) => `<td>${inline(c)}</td>`).join("")}</tr>`).join("");
      out.push(`<div class="table-scroll"><table><thead><tr>${th}</tr></thead><tbody>${tb}</tbody></table></div>`);
      continue;
    }
    para.push(line);
    i++;
  }
  flush();
  return out.join("\n");
}

/** Markdown text -> HTML (a string made only of escaped text and the tags above). */
export function markdownToHtml(text) {
  return blocks(String(text ?? "").replace(/\r\n?/g, "\n").split("\n"));
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
