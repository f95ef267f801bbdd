// Building DOM without innerHTML: text is always set as text, so nothing the server sends
// (step outputs, prompts, file contents) can become markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function apply(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.setAttribute("class", Array.isArray(v) ? v.filter(Boolean).join(" ") : v);
    else if (k === "text") el.textContent = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "value" && "value" in el) el.value = v;
    else if (k === "checked" || k === "disabled" || k === "selected" || k === "hidden" || k === "open") el[k] = Boolean(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** h("a", {href: "#/runs", class: "x", onclick: fn}, "text", child, [more]) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) children.unshift(attrs);
  else apply(el, attrs);
  append(el, children);
  return el;
}

export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

/** A short message in the page's polite live region. */
export function toast(text, kind = "info") {
  const box = document.getElementById("toast");
  if (!box) return;
  const item = h("div", { class: ["toast-item", kind] }, text);
  box.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 9000 : 4000);
}

/** An inline message area: show(text, kind) / hide(). */
export function notice() {
  const el = h("p", { class: "notice", role: "alert", hidden: true });
  return {
    el,
    show(text, kind = "error") {
      el.className = `notice ${kind}`;
      el.textContent = text;
      el.hidden = !text;
    },
    hide() { el.hidden = true; el.textContent = ""; },
  };
}

/** A button that runs an async action, disabled while it runs. */
export function actionButton(label, action, attrs = {}) {
  const b = h("button", { type: "button", ...attrs }, label);
  b.addEventListener("click", async () => {
    if (b.disabled) return;
    b.disabled = true;
    b.setAttribute("aria-busy", "true");
    try { await action(b); } finally { b.disabled = false; b.removeAttribute("aria-busy"); }
  });
  return b;
}

/** A small button that copies `text` (or, where the clipboard is not allowed, selects `target`). */
export function copyButton(text, target, label = "Copy") {
  const btn = h("button", { type: "button", class: "small copy", title: "Copy to the clipboard" }, label);
  btn.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      btn.textContent = "Copied";
    } catch {
      const range = document.createRange();
      range.selectNodeContents(target);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      btn.textContent = "Selected";
    }
    setTimeout(() => { btn.textContent = label; }, 1500);
  });
  return btn;
}
