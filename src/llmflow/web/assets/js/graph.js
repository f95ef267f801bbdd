// A flow's step graph, drawn from the Mermaid text of GET /api/v1/flows/{name}/graph as an
// SVG of boxes laid out in layers (longest path from the first steps, then a few
// barycenter sweeps to reduce crossings). Nodes are coloured by status, show their attempt
// count, and are buttons (click, Enter or Space selects the step).

import { h, svg } from "./dom.js";

const W = 168;
const H = 50;
const GAP_X = 28;
const GAP_Y = 58;
const PAD = 16;
let uid = 0;

const NODE = /^\s*([\w.-]+)\s*(\[\[|\{\{|\[\(|\[\/|\[|\(\(|\(|>)\s*"?(.*?)"?\s*(\]\]|\}\}|\)\]|\/\]|\]|\)\)|\))\s*$/;
const EDGE = /^\s*([\w.-]+)\s*(-->|---|==>|-\.->|-\.\s*(.*?)\s*\.->)\s*(?:\|([^|]*)\|\s*)?([\w.-]+)\s*$/;
const SHAPES = { "{{": "route", "[[": "group", "((": "round", "(": "round" };

function stripTags(s) {
  return s.replace(/<[^>]*>/g, "").replace(/#quot;/g, '"').replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&").trim();
}

/** Mermaid flowchart text -> {nodes: [{key, name, kind, shape}], edges: [{from, to, label, dotted}]} */
export function parseMermaid(text) {
  const nodes = new Map();
  const edges = [];
  const ensure = (key) => {
    if (!nodes.has(key)) nodes.set(key, { key, name: key, kind: "", shape: "box" });
    return nodes.get(key);
  };
  for (const line of String(text || "").split("\n")) {
    const t = line.trim();
    if (!t || /^(flowchart|graph)\b/.test(t) || /^(style|classDef|class|linkStyle|click)\s|^%%/.test(t)) continue;
    const e = EDGE.exec(t);
    if (e) {
      ensure(e[1]);
      ensure(e[5]);
      edges.push({ from: e[1], to: e[5], label: (e[3] || e[4] || "").trim(), dotted: e[2].startsWith("-.") });
      continue;
    }
    const n = NODE.exec(t);
    if (n) {
      const node = ensure(n[1]);
      const [first, ...rest] = n[3].split(/<br\s*\/?>/i);
      node.name = stripTags(first) || n[1];
      node.kind = stripTags(rest.join(" "));
      node.shape = SHAPES[n[2]] || "box";
    }
  }
  return { nodes: [...nodes.values()], edges };
}

/** Layers and order: {pos: key -> {layer, index}, layers: [[key]], back: Set of edge indexes} */
export function layout(graph) {
  const keys = graph.nodes.map((n) => n.key);
  const out = new Map(keys.map((k) => [k, []]));
  graph.edges.forEach((e, i) => out.get(e.from)?.push(i));
  // back edges (loops: "until") found by a depth-first walk in definition order
  const back = new Set();
  const state = new Map();
  const visit = (k) => {
    state.set(k, 1);
    for (const i of out.get(k) || []) {
      const t = graph.edges[i].to;
      if (state.get(t) === 1) back.add(i);
      else if (!state.has(t)) visit(t);
    }
    state.set(k, 2);
  };
  keys.forEach((k) => { if (!state.has(k)) visit(k); });
  const fwd = graph.edges.filter((_, i) => !back.has(i));
  // longest path layering (Kahn order)
  const indeg = new Map(keys.map((k) => [k, 0]));
  fwd.forEach((e) => indeg.set(e.to, indeg.get(e.to) + 1));
  const layer = new Map(keys.map((k) => [k, 0]));
  const queue = keys.filter((k) => indeg.get(k) === 0);
  while (queue.length) {
    const k = queue.shift();
    for (const e of fwd) {
      if (e.from !== k) continue;
      layer.set(e.to, Math.max(layer.get(e.to), layer.get(k) + 1));
      indeg.set(e.to, indeg.get(e.to) - 1);
      if (indeg.get(e.to) === 0) queue.push(e.to);
    }
  }
  const layers = [];
  keys.forEach((k) => { (layers[layer.get(k)] ||= []).push(k); });
  for (let i = 0; i < layers.length; i++) layers[i] ||= [];
  // barycenter sweeps: down by predecessors, up by successors
  const index = new Map();
  const reindex = () => layers.forEach((l) => l.forEach((k, i) => index.set(k, i)));
  reindex();
  const bary = (k, dir) => {
    const near = fwd.filter((e) => (dir === "down" ? e.to === k : e.from === k)).map((e) => index.get(dir === "down" ? e.from : e.to));
    return near.length ? near.reduce((a, b) => a + b, 0) / near.length : index.get(k);
  };
  for (let sweep = 0; sweep < 4; sweep++) {
    const dir = sweep % 2 ? "up" : "down";
    const order = dir === "down" ? layers.slice(1) : layers.slice(0, -1).reverse();
    for (const l of order) {
      const b = new Map(l.map((k) => [k, bary(k, dir)]));
      l.sort((x, y) => b.get(x) - b.get(y) || index.get(x) - index.get(y));
      reindex();
    }
  }
  const pos = new Map();
  layers.forEach((l, li) => l.forEach((k, i) => pos.set(k, { layer: li, index: i })));
  return { pos, layers, back };
}

function shapeFor(node) {
  if (node.shape === "route") {
    const c = 14;
    return svg("polygon", { class: "shape", points: `${c},0 ${W - c},0 ${W},${H / 2} ${W - c},${H} ${c},${H} 0,${H / 2}` });
  }
  if (node.shape === "group") {
    return svg("g", {}, svg("rect", { class: "shape", width: W, height: H, rx: 4 }), svg("rect", { class: "inner", x: 5, y: 3, width: W - 10, height: H - 6, rx: 2 }));
  }
  return svg("rect", { class: "shape", width: W, height: H, rx: node.shape === "round" ? H / 2 : 8 });
}

function clip(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

/**
 * renderGraph(mermaid, {onSelect}) -> {el, update(statuses, selected)}.
 * statuses: step name -> {status, attempts}.
 */
export function renderGraph(mermaid, { onSelect, label = "Flow graph" } = {}) {
  const graph = parseMermaid(mermaid);
  if (!graph.nodes.length) return { el: h("p", { class: "muted" }, "This flow has no steps to draw."), update() {} };
  const { pos, layers, back } = layout(graph);
  const widest = Math.max(...layers.map((l) => l.length));
  const width = widest * (W + GAP_X) - GAP_X + PAD * 2 + (back.size ? 50 : 0);
  const height = layers.length * (H + GAP_Y) - GAP_Y + PAD * 2;
  const xy = (k) => {
    const p = pos.get(k);
    const n = layers[p.layer].length;
    const offset = ((widest - n) * (W + GAP_X)) / 2;
    return [PAD + offset + p.index * (W + GAP_X), PAD + p.layer * (H + GAP_Y)];
  };
  const marker = `arrow-${++uid}`;
  const root = svg("svg", { class: "graph", viewBox: `0 0 ${width} ${height}`, width, height, role: "group", "aria-label": label });
  root.append(svg("defs", {}, svg("marker", { id: marker, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }))));
  const edgeLayer = svg("g", { class: "edges" });
  graph.edges.forEach((e, i) => {
    const [sx, sy] = xy(e.from);
    const [tx, ty] = xy(e.to);
    let d;
    let lx;
    let ly;
    if (back.has(i)) {
      const bx = Math.max(sx, tx) + W + 34;
      d = `M${sx + W},${sy + H / 2} C${bx},${sy + H / 2} ${bx},${ty + H / 2} ${tx + W},${ty + H / 2}`;
      lx = bx - 6;
      ly = (sy + ty + H) / 2;
    } else {
      const x1 = sx + W / 2;
      const y1 = sy + H;
      const x2 = tx + W / 2;
      const y2 = ty;
      const dy = (y2 - y1) / 2;
      d = `M${x1},${y1} C${x1},${y1 + dy} ${x2},${y2 - dy} ${x2},${y2}`;
      lx = (x1 + x2) / 2;
      ly = (y1 + y2) / 2;
    }
    edgeLayer.append(svg("path", { d, class: ["edge", e.dotted && "dotted", back.has(i) && "back"], "marker-end": `url(#${marker})` }));
    if (e.label) edgeLayer.append(svg("text", { x: lx, y: ly, class: "edge-label", "text-anchor": "middle" }, e.label));
  });
  root.append(edgeLayer);
  const nodeEls = new Map();
  for (const node of graph.nodes) {
    const [x, y] = xy(node.key);
    const title = svg("title", {}, node.name);
    const meta = svg("text", { x: W / 2, y: 37, class: "node-meta", "text-anchor": "middle" }, clip(node.kind, 26));
    const g = svg("g", { class: "gnode st-none", transform: `translate(${x},${y})`, tabindex: onSelect ? 0 : null, role: onSelect ? "button" : "img", "aria-label": `step ${node.name}`, dataset: { step: node.name } },
      title, shapeFor(node),
      svg("text", { x: W / 2, y: 20, class: "node-name", "text-anchor": "middle" }, clip(node.name, 22)),
      meta);
    if (onSelect) {
      g.addEventListener("click", () => onSelect(node.name));
      g.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); onSelect(node.name); }
      });
    }
    nodeEls.set(node.name, { g, meta, title, node });
    root.append(g);
  }
  const el = h("div", { class: "graph-wrap" }, root);
  return {
    el,
    update(statuses = {}, selected = null) {
      for (const [name, { g, meta, title, node }] of nodeEls) {
        const s = statuses[name];
        const status = s?.status ? String(s.status).toLowerCase() : "none";
        g.setAttribute("class", `gnode st-${status}${selected === name ? " selected" : ""}`);
        const attempts = s?.attempts || 0;
        const bits = [node.kind, s?.status ? status : null, attempts > 1 ? `×${attempts}` : null].filter(Boolean);
        meta.textContent = clip(bits.join(" · "), 30);
        title.textContent = `${node.name}${node.kind ? ` (${node.kind})` : ""}${s?.status ? `: ${status}` : ""}${attempts ? `, ${attempts} attempt${attempts === 1 ? "" : "s"}` : ""}`;
        g.setAttribute("aria-label", title.textContent);
        if (onSelect) g.setAttribute("aria-pressed", String(selected === name));
      }
    },
  };
}
