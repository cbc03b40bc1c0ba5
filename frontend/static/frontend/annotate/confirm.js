// Confirm: a model proposed data (a reworded prompt, or a correction of a rejected answer);
// the annotator confirms it (C or 1), edits it (E or 2: the editor opens with the proposal,
// Ctrl+Enter submits) or rejects it (X or 3). Enter submits the decision. Same
// {render, payload, keys} contract as pairwise.js. Which model proposed it is not shown.
import { el } from "../dom.js";
import { responseCard, sanitizedHtml } from "./cards.js";

const DECISIONS = [["confirm", "C · Confirm"], ["edit", "E · Edit"], ["reject", "X · Reject"]];
const DECISION_KEYS = { c: "confirm", 1: "confirm", e: "edit", 2: "edit", x: "reject", 3: "reject" };
const HEADINGS = {
  prompt_variant: ["The prompt above, reworded by a model", "Is this the same request in other words?"],
  correction: ["A model's correction of the answer below", "Is this a better answer than the rejected one?"],
};

export function render(view) {
  const { task, state } = view;
  const proposal = task.proposal;
  Object.assign(state, { decision: null, text: proposal.text });
  view.box.dataset.decision = "";
  const [heading, question] = HEADINGS[proposal.kind] || ["A model's proposal", "Keep it?"];
  const card = el("article", { class: "card response proposal", "data-testid": "proposal" });
  card.append(sanitizedHtml(proposal.html));
  const parts = [el("h3", { text: heading }), card];
  if (proposal.kind === "correction" && task.responses.length) {
    parts.push(el("h3", { text: "The rejected answer" }), responseCard(task.responses[0], null));
  }
  parts.push(el("p", { class: "muted", text: question }));
  const buttons = el("div", { class: "controls", "data-testid": "confirm-controls" });
  for (const [decision, text] of DECISIONS) {
    const button = el("button", { type: "button", text, "data-decision": decision, "aria-pressed": "false" });
    button.addEventListener("click", () => decide(view, decision));
    buttons.append(button);
  }
  const editor = el("textarea", { rows: 6, spellcheck: true, hidden: true });
  editor.value = proposal.text;
  editor.setAttribute("data-testid", "confirm-editor");
  editor.addEventListener("input", () => (state.text = editor.value));
  parts.push(buttons, editor);
  return el("div", { class: "confirm" }, ...parts);
}

export function payload({ state }) {
  if (!state.decision) throw new Error("Confirm (C), edit (E) or reject (X) the proposal first.");
  if (state.decision === "edit") {
    if (!state.text || !state.text.trim()) throw new Error("The edited text is empty.");
    return { decision: "edit", text: state.text };
  }
  return { decision: state.decision };
}

export function keys(view, key, event) {
  const decision = DECISION_KEYS[key];
  if (!decision) return;
  event.preventDefault(); // "e" must not type into the editor it opens
  decide(view, decision);
}

function decide(view, decision) {
  const { state, box } = view;
  state.decision = decision;
  box.querySelectorAll("[data-decision]").forEach((b) => {
    const on = b.dataset.decision === decision;
    b.classList.toggle("chosen-button", on);
    b.setAttribute("aria-pressed", String(on));
  });
  box.dataset.decision = decision;
  const editor = box.querySelector("[data-testid=confirm-editor]");
  editor.hidden = decision !== "edit";
  if (decision === "edit") editor.focus();
  else if (document.activeElement === editor) editor.blur();
}
