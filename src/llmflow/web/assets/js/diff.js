// A line diff (longest common subsequence) for comparing two attempts of a step.

import { h } from "./dom.js";

const MAX_CELLS = 4_000_000; // beyond this the middle is shown as one replaced block

/** diffLines(a, b) -> [{op: " " | "-" | "+", text}] */
export function diffLines(a, b) {
  const A = String(a ?? "").split("\n");
  const B = String(b ?? "").split("\n");
  let pre = 0;
  while (pre < A.length && pre < B.length && A[pre] === B[pre]) pre++;
  let suf = 0;
  while (suf < A.length - pre && suf < B.length - pre && A[A.length - 1 - suf] === B[B.length - 1 - suf]) suf++;
  const a2 = A.slice(pre, A.length - suf);
  const b2 = B.slice(pre, B.length - suf);
  const out = A.slice(0, pre).map((text) => ({ op: " ", text }));
  out.push(...middle(a2, b2));
  out.push(...A.slice(A.length - suf).map((text) => ({ op: " ", text })));
  return out;
}

function middle(a, b) {
  const n = a.length;
  const m = b.length;
  if (!n) return b.map((text) => ({ op: "+", text }));
  if (!m) return a.map((text) => ({ op: "-", text }));
  if ((n + 1) * (m + 1) > MAX_CELLS) {
    return [...a.map((text) => ({ op: "-", text })), ...b.map((text) => ({ op: "+", text }))];
  }
  // lcs[i][j] = LCS length of a[i:], b[j:]
  const w = m + 1;
  const lcs = new Uint32Array((n + 1) * w);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i * w + j] = a[i] === b[j] ? lcs[(i + 1) * w + j + 1] + 1 : Math.max(lcs[(i + 1) * w + j], lcs[i * w + j + 1]);
    }
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) { out.push({ op: " ", text: a[i] }); i++; j++; }
    else if (lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) out.push({ op: "-", text: a[i++] });
    else out.push({ op: "+", text: b[j++] });
  }
  while (i < n) out.push({ op: "-", text: a[i++] });
  while (j < m) out.push({ op: "+", text: b[j++] });
  return out;
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
