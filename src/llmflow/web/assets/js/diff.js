// A line diff for comparing two attempts of a step: jsdiff (vendor/diff) computes it, this
// module draws it.

import { diffLines as lineDiff } from "../vendor/diff/diff/line.js";
import { h } from "./dom.js";

/** diffLines(a, b) -> [{op: " " | "-" | "+", text}], one row per line (jsdiff's line diff). */
export function diffLines(a, b) {
  // every line ends with a newline, so the last line of one text matches the same line
  // in the middle of the other
  const eol = (t) => (t.endsWith("\n") ? t : `${t}\n`);
  const rows = [];
  for (const part of lineDiff(eol(String(a ?? "")), eol(String(b ?? "")))) {
    const op = part.added ? "+" : part.removed ? "-" : " ";
    const lines = part.value.split("\n");
    lines.pop(); // the empty piece after the part's last newline
    for (const text of lines) rows.push({ op, text });
  }
  return rows;
}

/** The diff as a <pre>: removed lines red with "-", added green with "+". */
export function diffView(a, b, { labelA = "before", labelB = "after" } = {}) {
  const rows = diffLines(a, b);
  const added = rows.filter((r) => r.op === "+").length;
  const removed = rows.filter((r) => r.op === "-").length;
  const summary = added || removed ? `${removed} line${removed === 1 ? "" : "s"} removed, ${added} added` : "identical";
  return h("figure", { class: "diff" },
    h("figcaption", {}, `${labelA} → ${labelB}: ${summary}`),
    h("pre", { class: "diff-body" }, rows.map((r) => h("span", { class: r.op === "+" ? "add" : r.op === "-" ? "del" : "same" }, `${r.op} ${r.text}\n`))));
}
