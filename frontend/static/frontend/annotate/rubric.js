// Rubric: score each response on each of the project's dimensions; the digit keys score the
// focused row and move the focus down, ↑/↓ move it. Same {render, payload, keys} contract as
// pairwise.js.
import { el } from "../dom.js";
import { responseCard } from "./cards.js";

export function render(view) {
  const { task, state } = view;
  state.scores = {};
  state.focus = 0;
  state.rows = [];
  const box = el("div", {});
  for (const response of task.responses) {
    state.scores[response.id] = {};
    box.append(responseCard(response, null));
    const table = el("table", { class: "rubric-table", "data-testid": "rubric" });
    for (const dim of task.rubric) {
      const row = el("tr", { class: "rubric-row" }, el("th", { text: dim.name, title: dim.description || "" }));
      for (let v = dim.min; v <= dim.max; v++) {
        const input = el("input", { type: "radio", name: `r-${response.id}-${dim.name}`, value: String(v) });
        input.addEventListener("change", () => { state.scores[response.id][dim.name] = v; });
        row.append(el("td", {}, el("label", { class: "inline" }, input, ` ${v}`)));
      }
      state.rows.push({ row, responseId: response.id, dim });
      table.append(row);
    }
    box.append(table);
  }
  setTimeout(() => paint(view), 0);
  return box;
}

export function payload({ state }) {
  for (const r of state.rows) {
    if (state.scores[r.responseId][r.dim.name] === undefined) throw new Error(`Score ${r.dim.name} first.`);
  }
  return { scores: state.scores };
}

export function keys(view, key, event) {
  const { state } = view;
  if (/^[0-9]$/.test(key)) scoreFocused(view, Number(key));
  if (key === "ArrowUp") { event.preventDefault(); state.focus = Math.max(state.focus - 1, 0); paint(view); }
  if (key === "ArrowDown") { event.preventDefault(); state.focus = Math.min(state.focus + 1, state.rows.length - 1); paint(view); }
}

function scoreFocused(view, value) {
  const { state } = view;
  const target = state.rows[state.focus];
  if (!target || value < target.dim.min || value > target.dim.max) return;
  state.scores[target.responseId][target.dim.name] = value;
  const input = target.row.querySelector(`input[value="${value}"]`);
  if (input) input.checked = true;
  state.focus = Math.min(state.focus + 1, state.rows.length - 1);
  paint(view);
}

function paint({ state }) {
  state.rows.forEach((r, i) => r.row.classList.toggle("focused", i === state.focus));
}
