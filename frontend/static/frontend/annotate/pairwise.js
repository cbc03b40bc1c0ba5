// Pairwise: which of two responses is better, and by how much.
//
// Every kind module exports the same three functions over a view { task, state, box }:
// render(view) -> Node, payload(view) -> the label's payload (throws Error to ask for more),
// keys(view, key, event) for this kind's keys. `state` is fresh per task; `box` is the task box.
import { el } from "../dom.js";
import { responseCard } from "./cards.js";

const STRENGTHS = ["slight", "clear", "strong"];
// On a narrow screen the two cards are stacked (tandem.css, max-width 900px): a side's name is
// written both ways and the stylesheet shows the one that matches the layout (the hidden one is
// display: none, so it is not read out either).
function side(wide, stacked) {
  return [el("span", { class: "side-by-side-only", text: wide }), el("span", { class: "stacked-only", text: stacked })];
}
const CHOICES = [
  ["left", ["1 · ", ...side("Left", "Top"), " is better"]],
  ["right", ["2 · ", ...side("Right", "Bottom"), " is better"]],
  ["tie", ["0 · Tie"]],
  ["both_bad", ["B · Both bad"]],
];
const CHOICE_KEYS = { 1: "left", 2: "right", 0: "tie", t: "tie", b: "both_bad" };

export function render(view) {
  const { task, state } = view;
  Object.assign(state, { choice: null, strength: "clear", rationale: "" });
  const [left, right] = task.responses;
  const pair = el("div", { class: "pair" },
    responseCard(left, ["1 · ", ...side("left", "top")]), responseCard(right, ["2 · ", ...side("right", "bottom")]));
  const buttons = el("div", { class: "controls", "data-testid": "pairwise-controls" });
  for (const [choice, text] of CHOICES) {
    const button = el("button", { type: "button", "data-choice": choice, "aria-pressed": "false" }, ...text);
    button.addEventListener("click", () => choose(view, choice));
    buttons.append(button);
  }
  const strength = el("div", { class: "strength", "data-testid": "strength" }, el("span", { text: "Strength (↑/↓):" }));
  for (const value of STRENGTHS) {
    const button = el("button", { type: "button", text: value, "data-strength": value, "aria-pressed": "false" });
    button.addEventListener("click", () => setStrength(view, value));
    strength.append(button);
  }
  const rationale = el("textarea", { rows: 2, placeholder: "Why? (optional)", maxLength: 5000, "aria-label": "Why? (optional)" });
  rationale.setAttribute("data-testid", "rationale");
  rationale.addEventListener("input", () => (state.rationale = rationale.value));
  setTimeout(() => paint(view), 0);
  return el("div", {}, pair, buttons, strength, rationale);
}

export function payload({ state }) {
  if (!state.choice) throw new Error("Choose 1, 2, 0 (tie) or B (both bad) first.");
  return { choice: state.choice, strength: isDecisive(state) ? state.strength : null, rationale: state.rationale };
}

export function keys(view, key, event) {
  if (CHOICE_KEYS[key]) { choose(view, CHOICE_KEYS[key]); return; }
  const i = STRENGTHS.indexOf(view.state.strength);
  if (key === "ArrowUp") { event.preventDefault(); setStrength(view, STRENGTHS[Math.min(i + 1, 2)]); }
  if (key === "ArrowDown") { event.preventDefault(); setStrength(view, STRENGTHS[Math.max(i - 1, 0)]); }
}

function isDecisive(state) {
  return state.choice === "left" || state.choice === "right";
}

function choose(view, choice) {
  view.state.choice = choice;
  paint(view);
}

function setStrength(view, value) {
  view.state.strength = value;
  paint(view);
}

function paint({ state, box }) {
  const cards = box.querySelectorAll(".response");
  cards.forEach((card, i) => {
    card.classList.toggle("chosen", (state.choice === "left" && i === 0) || (state.choice === "right" && i === 1));
    card.classList.toggle("tied", state.choice === "tie");
    card.classList.toggle("both-bad", state.choice === "both_bad");
  });
  box.querySelectorAll("[data-choice]").forEach((b) => {
    const chosen = b.dataset.choice === state.choice;
    b.classList.toggle("chosen-button", chosen);
    b.setAttribute("aria-pressed", String(chosen));
  });
  const decisive = isDecisive(state);
  box.querySelectorAll("[data-strength]").forEach((b) => {
    const on = decisive && b.dataset.strength === state.strength;
    b.classList.toggle("on", on);
    b.setAttribute("aria-pressed", String(on));
    b.disabled = !decisive;
  });
  box.dataset.choice = state.choice || "";
  box.dataset.strength = decisive ? state.strength : "";
}
