// The review page's correction form: each annotator's rewrite with its word diff against the
// original (the annotate page's diff), and the final text the reviewer decides. Picking a
// choice (click, ↑/↓, or 1–9 / 0 while a choice has the focus) puts that rewrite, or the
// original for "needs no correction", into the editor; the editor can then be changed, and
// its diff follows. Ctrl+Enter in the editor records the decision.
import { renderDiff } from "./annotate/correction.js";

const form = document.querySelector("[data-testid=adjudicate-form][data-kind=correction]");
const choices = form && form.querySelector("[data-testid=correction-choices]");
if (choices) {
  const original = choices.dataset.original;
  const editor = form.querySelector("textarea[name=corrected_text]");
  const finalDiff = form.querySelector("[data-testid=final-diff]");
  const radios = [...choices.querySelectorAll("input[name=start]")];
  for (const box of choices.querySelectorAll(".rewrite-choice")) {
    const text = box.querySelector("input[name=start]").dataset.text;
    renderDiff(box.querySelector("[data-testid=rewrite-diff]"), original, text);
  }
  const showFinal = () => renderDiff(finalDiff, original, editor.value);
  const pick = (radio) => {
    radio.checked = true;
    editor.value = radio.dataset.text;
    showFinal();
  };
  for (const radio of radios) radio.addEventListener("change", () => pick(radio));
  choices.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey || !/^[0-9]$/.test(event.key)) return;
    const radio = radios.find((r) => r.value === event.key);
    if (!radio) return;
    event.preventDefault();
    radio.focus();
    pick(radio);
  });
  editor.addEventListener("input", () => {
    // An edited text is the reviewer's own: no choice stays marked unless it still matches.
    for (const radio of radios) radio.checked = radio.dataset.text === editor.value;
    showFinal();
  });
  editor.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  showFinal();
}
