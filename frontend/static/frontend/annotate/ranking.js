// Ranking: order the responses best first, by drag or by keyboard; "=" ties a response with
// the one above it. The payload is a list of tiers: [[best], [tied, tied], [worst]].
// Same {render, payload, keys} contract as pairwise.js.
import { el } from "../dom.js";
import { responseCard } from "./cards.js";

export function render(view) {
  const { task, state } = view;
  state.order = task.responses.map((r) => r.id);
  state.tieUp = new Set(); // ids tied with the item above them
  state.selected = null;
  const list = el("ol", { class: "ranking", "data-testid": "ranking" });
  const byId = Object.fromEntries(task.responses.map((r) => [r.id, r]));
  for (const id of state.order) {
    // Tab reaches every response; the focused one is the selected one, moved with ↑/↓.
    const item = el("li", { class: "card rank-item", draggable: true, tabIndex: 0, "data-response-id": String(id), "data-testid": "rank-item" },
      el("span", { class: "rank-pos" }), responseCard(byId[id], null));
    item.addEventListener("click", () => select(view, id));
    item.addEventListener("focus", () => { if (view.state.selected !== id) select(view, id); });
    item.addEventListener("dragstart", (event) => {
      event.dataTransfer.setData("text/plain", String(id));
      item.classList.add("dragging");
    });
    item.addEventListener("dragend", () => item.classList.remove("dragging"));
    item.addEventListener("dragover", (event) => event.preventDefault());
    item.addEventListener("drop", (event) => {
      event.preventDefault();
      const moved = Number(event.dataTransfer.getData("text/plain"));
      if (moved && moved !== id) moveBefore(view, moved, id);
    });
    list.append(item);
  }
  const tie = el("button", { type: "button", text: "= Tie selected with the one above", "data-testid": "tie-up" });
  tie.addEventListener("click", () => state.selected && toggleTie(view, state.selected));
  const hint = el("p", { class: "muted", text: "Drag to order best first, or select with 1–9 (or Tab) and move with ↑/↓." });
  setTimeout(() => paint(view), 0);
  return el("div", {}, hint, list, tie);
}

export function payload({ state }) {
  const tiers = [];
  state.order.forEach((id, i) => {
    if (i > 0 && state.tieUp.has(id)) tiers[tiers.length - 1].push(id);
    else tiers.push([id]);
  });
  return { ranking: tiers };
}

export function keys(view, key, event) {
  const { state } = view;
  if (/^[1-9]$/.test(key) && Number(key) <= state.order.length) select(view, state.order[Number(key) - 1]);
  if (key === "ArrowUp") { event.preventDefault(); moveSelected(view, -1); }
  if (key === "ArrowDown") { event.preventDefault(); moveSelected(view, 1); }
  if (key === "=" && state.selected) toggleTie(view, state.selected);
}

function moveBefore(view, moved, target) {
  const { state } = view;
  const order = state.order.filter((x) => x !== moved);
  const from = state.order.indexOf(moved);
  const to = state.order.indexOf(target);
  const index = order.indexOf(target) + (from < to ? 1 : 0);
  order.splice(index, 0, moved);
  state.order = order;
  paint(view);
}

function moveSelected(view, delta) {
  const { state } = view;
  const i = state.order.indexOf(state.selected);
  const j = i + delta;
  if (i < 0 || j < 0 || j >= state.order.length) return;
  [state.order[i], state.order[j]] = [state.order[j], state.order[i]];
  paint(view);
}

function select(view, id) {
  view.state.selected = id;
  paint(view);
}

function toggleTie(view, id) {
  const { state } = view;
  if (state.order.indexOf(id) === 0) return;
  if (state.tieUp.has(id)) state.tieUp.delete(id);
  else state.tieUp.add(id);
  paint(view);
}

function paint({ state, box }) {
  const list = box.querySelector(".ranking");
  if (!list) return;
  const items = Object.fromEntries(Array.from(list.children).map((li) => [Number(li.dataset.responseId), li]));
  // Moving a node drops its focus: put it back, or Tab-and-arrow users lose their place.
  const focused = list.contains(document.activeElement) ? document.activeElement : null;
  let position = 0;
  state.order.forEach((id, i) => {
    const li = items[id];
    const tied = i > 0 && state.tieUp.has(id);
    if (!tied) position = i + 1;
    li.querySelector(".rank-pos").textContent = String(position);
    li.classList.toggle("tie-up", tied);
    li.classList.toggle("selected", state.selected === id);
    if (list.children[i] !== li) list.insertBefore(li, list.children[i]);
  });
  if (focused && document.activeElement !== focused) focused.focus();
  box.dataset.order = state.order.join(",");
}
