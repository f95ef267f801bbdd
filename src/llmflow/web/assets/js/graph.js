// A flow's step graph as an SVG: the server sends the nodes and edges
// (GET /api/v1/flows/{name}/graph, see llmflow.model.graph.to_json), dagre
// (vendor/dagre) places them in layers, this module draws them. Nodes are coloured by
// status, show their attempt count, and are buttons (click, Enter or Space selects the step).

import dagre from "../vendor/dagre/dagre.esm.js";
import { h, svg } from "./dom.js";

const W = 168;
const H = 50;
const GAP_X = 28;
const GAP_Y = 58;
const PAD = 16;
let uid = 0;

/** {nodes, edges} -> {pos: key -> {x, y} (top left), points: [[{x, y}]] per edge, width, height} */
export function layout(graph) {
  const g = new dagre.graphlib.Graph({ multigraph: true });
  g.setGraph({ rankdir: "TB", nodesep: GAP_X, ranksep: GAP_Y, marginx: PAD, marginy: PAD });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of graph.nodes) g.setNode(n.key, { width: W, height: H });
  graph.edges.forEach((e, i) => {
    if (g.hasNode(e.from) && g.hasNode(e.to)) g.setEdge(e.from, e.to, e.label ? { label: e.label, width: 40, height: 14 } : {}, `e${i}`);
  });
  dagre.layout(g);
  const pos = new Map(graph.nodes.map((n) => {
    const { x, y } = g.node(n.key);
    return [n.key, { x: x - W / 2, y: y - H / 2 }];
  }));
  const points = graph.edges.map((e, i) => g.edge(e.from, e.to, `e${i}`)?.points || []);
  const { width, height } = g.graph();
  return { pos, points, width: Math.ceil(width), height: Math.ceil(height) };
}

/** An SVG path through dagre's edge points: straight ends, rounded bends. */
function pathThrough(points) {
  if (!points.length) return "";
  let d = `M${points[0].x},${points[0].y}`;
  for (let i = 1; i < points.length - 1; i++) {
    const p = points[i];
    const q = points[i + 1];
    d += ` Q${p.x},${p.y} ${(p.x + q.x) / 2},${(p.y + q.y) / 2}`;
  }
  const last = points[points.length - 1];
  return `${d} L${last.x},${last.y}`;
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
 * renderGraph({nodes, edges}, {onSelect}) -> {el, update(statuses, selected)}.
 * statuses: step name -> {status, attempts}.
 */
export function renderGraph(graph, { onSelect, label = "Flow graph" } = {}) {
  graph = { nodes: graph?.nodes || [], edges: graph?.edges || [] };
  if (!graph.nodes.length) return { el: h("p", { class: "muted" }, "This flow has no steps to draw."), update() {} };
  const { pos, points, width, height } = layout(graph);
  const marker = `arrow-${++uid}`;
  const root = svg("svg", { class: "graph", viewBox: `0 0 ${width} ${height}`, width, height, role: "group", "aria-label": label });
  root.append(svg("defs", {}, svg("marker", { id: marker, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }))));
  const edgeLayer = svg("g", { class: "edges" });
  graph.edges.forEach((e, i) => {
    const pts = points[i];
    if (!pts.length) return;
    edgeLayer.append(svg("path", { d: pathThrough(pts), class: ["edge", e.dotted && "dotted", e.back && "back"], "marker-end": `url(#${marker})` }));
    if (e.label) {
      const mid = pts[Math.floor(pts.length / 2)];
      edgeLayer.append(svg("text", { x: mid.x, y: mid.y, class: "edge-label", "text-anchor": "middle" }, e.label));
    }
  });
  root.append(edgeLayer);
  const nodeEls = new Map();
  for (const node of graph.nodes) {
    const { x, y } = pos.get(node.key);
    const title = svg("title", {}, node.name);
    const kind = node.loop ? `${node.kind} (loop)` : node.kind || "";
    const meta = svg("text", { x: W / 2, y: 37, class: "node-meta", "text-anchor": "middle" }, clip(kind, 26));
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
    nodeEls.set(node.name, { g, meta, title, node: { ...node, kind } });
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
