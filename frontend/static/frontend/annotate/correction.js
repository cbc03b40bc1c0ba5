// Correction: rewrite the response; a live word diff shows the changes. No keys of its own
// (typing goes to the editor; Ctrl+Enter submits, handled by main.js). Same
// {render, payload, keys} contract as pairwise.js.
import { el } from "../dom.js";
import { responseCard } from "./cards.js";

export function render({ task, state }) {
  const original = task.responses[0];
  // Named by its heading, which a screen reader reads when the editor takes focus.
  const editor = el("textarea", { spellcheck: true, "aria-labelledby": "correction-editor-title" });
  editor.value = original.text;
  editor.setAttribute("data-testid", "correction-editor");
  const diff = el("div", { class: "diff", "data-testid": "diff" });
  editor.addEventListener("input", () => {
    state.corrected = editor.value;
    renderDiff(diff, original.text, editor.value);
  });
  state.corrected = original.text;
  renderDiff(diff, original.text, original.text);
  return el("div", { class: "correction" },
    el("h2", { text: "Response to correct" }), responseCard(original, null),
    el("h2", { id: "correction-editor-title", text: "Your rewrite (Ctrl+Enter submits)" }), editor,
    el("h2", { text: "Changes" }), diff);
}

export function payload({ task, state }) {
  if (!state.corrected || !state.corrected.trim()) throw new Error("The rewrite is empty.");
  return { corrected_text: state.corrected, response_id: task.responses[0].id };
}

export function keys() {}

function tokens(text) { return text.match(/\s+|[^\s]+/g) || []; }

export function renderDiff(box, before, after) {
  // Word-level longest common subsequence; fine for answers of a few thousand words.
  const a = tokens(before), b = tokens(after);
  if (a.length * b.length > 4e6) { box.textContent = "(too long to diff live)"; return; }
  const dp = Array.from({ length: a.length + 1 }, () => new Uint32Array(b.length + 1));
  for (let i = a.length - 1; i >= 0; i--)
    for (let j = b.length - 1; j >= 0; j--)
      dp[i][j] = a[i] === b[j] ? dp[i + 1][j + 1] + 1 : Math.max(dp[i + 1][j], dp[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) { out.push(document.createTextNode(a[i])); i++; j++; }
    else if (dp[i + 1][j] >= dp[i][j + 1]) out.push(el("del", { text: a[i++] }));
    else out.push(el("ins", { text: b[j++] }));
  }
  while (i < a.length) out.push(el("del", { text: a[i++] }));
  while (j < b.length) out.push(el("ins", { text: b[j++] }));
  box.replaceChildren(...out);
}
