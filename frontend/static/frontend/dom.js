// DOM and API helpers shared by every Tandem page script (ES modules, no build step).
//
// Pages run under `script-src 'self'`: no inline script, no HTML built from strings. Text is
// always set with textContent (`text`, or a string child), never innerHTML.

// el("button", { class: "primary", text: "Go", "data-testid": "go" }, child, "text", ...)
// `class` and `text` are shorthands; data-*, aria-* and role are attributes; any other key is
// set as a DOM property (type, disabled, draggable, maxLength...). Null, undefined and false
// children are left out; strings become text nodes.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-") || key === "role" || key.startsWith("aria-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

const SVG = "http://www.w3.org/2000/svg";

// svgEl("line", { x1: 0, y1: 0, class: "axis" }): every key is an attribute.
export function svgEl(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

export function cookie(name) {
  const match = document.cookie.match(new RegExp(`(?:^|; )${name}=([^;]*)`));
  return match ? decodeURIComponent(match[1]) : "";
}

// A fresh Idempotency-Key.
export function newKey() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// A JSON API call with the session cookie and the CSRF token; never throws on an HTTP status
// (the caller decides what a 4xx or 5xx means), only when the network is down (a TypeError) or
// when `timeoutMs` passes without a whole answer (a DOMException named "TimeoutError"): a request
// that hangs must not hold up its caller forever.
export async function api(method, url, body, headers = {}, { timeoutMs = 0 } = {}) {
  const controller = new AbortController();
  const timer = timeoutMs
    ? setTimeout(() => controller.abort(new DOMException(`${url}: no answer in ${timeoutMs} ms`, "TimeoutError")), timeoutMs)
    : null;
  try {
    const response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": cookie("csrftoken"), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: controller.signal,
    });
    let data = null;
    if (response.status !== 204) {
      try { data = await response.json(); } catch (error) { if (controller.signal.aborted) throw error; data = null; }
    }
    return { status: response.status, data };
  } finally {
    clearTimeout(timer);
  }
}

export class HttpError extends Error {
  constructor(url, status) {
    super(`${url}: ${status}`);
    this.status = status;
  }
}

// GET a JSON document; any status other than 2xx throws an HttpError that carries it.
export async function getJson(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!response.ok) throw new HttpError(url, response.status);
  return response.json();
}
