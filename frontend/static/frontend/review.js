// The review page's ranking control: the annotator's ranking module (drag, or select with
// 1–9 or Tab and move with ↑/↓, "=" ties with the one above), mounted on the adjudication
// form. On submit the order goes into the form's hidden "ranking" field as tiers of response
// ids, best first: the payload the annotator's task sends, which the server checks the same way.
import * as ranking from "./annotate/ranking.js";

const form = document.querySelector("[data-testid=adjudicate-form]");
const mount = form && form.querySelector("[data-testid=ranking-control]");
if (mount) {
  const view = { task: { responses: JSON.parse(mount.dataset.responses) }, state: {}, box: mount };
  mount.replaceChildren(ranking.render(view));
  // Keys act only while the control has the focus: digits typed into the reason stay text.
  mount.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    ranking.keys(view, event.key, event);
  });
  const field = form.querySelector("input[name=ranking]");
  form.addEventListener("submit", () => {
    field.value = JSON.stringify(ranking.payload(view).ranking);
  });
}
