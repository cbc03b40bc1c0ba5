// One of the annotator's own labels: the task as they saw it, their answer, and an edit made
// through the label API (PATCH /api/labels/<id>/; the server keeps the old answer as a
// revision). The task is drawn by the annotation page's own kind module, so an edit is made
// with the same controls as the first answer. Responses are named as the annotator API names
// them (refs of task items), shown here as "response 1", "response 2" in the order seen.
import { api, el, getJson } from "./dom.js";

const root = document.getElementById("my-label");
const labelId = root.dataset.labelId;
const status = root.querySelector("[data-testid=status]");
const taskBox = root.querySelector("[data-testid=task]");
const answerBox = root.querySelector("[data-testid=current-answer]");
const revisionList = root.querySelector("[data-testid=revisions]");
const saveButton = root.querySelector("[data-testid=save-edit]");

function say(text, isError = false) {
  status.textContent = text;
  status.classList.toggle("error", isError);
}

// ids -> "response N" in the order the annotator saw the responses
function describe(payload, task) {
  const names = new Map(task.responses.map((r, i) => [r.id, `response ${i + 1}`]));
  return JSON.stringify(payload, (_key, value) => (names.has(value) ? names.get(value) : value), 2);
}

async function showRevisions(task) {
  const revisions = await getJson(`/api/labels/${labelId}/revisions/`);
  revisionList.replaceChildren(
    ...revisions.map((r) => el("li", { "data-testid": "revision", "data-version": String(r.version) },
      el("span", { text: `version ${r.version}: ` }), el("code", { text: describe(r.payload, task) }))),
  );
  if (!revisions.length) revisionList.append(el("li", { class: "muted", text: "None: this is the first version." }));
}

async function main() {
  let task;
  try {
    task = await getJson(`/api/tasks/${root.dataset.taskId}/`);
  } catch (error) {
    say(error.status === 404 ? "This label's task cannot be shown (it was imported, not labelled here)." : `Could not load the task (${error.status || "network"}).`, true);
    return;
  }
  const label = await getJson(`/api/labels/${labelId}/`);
  answerBox.textContent = describe(label.payload, task);
  await showRevisions(task);
  if (!saveButton) return;
  const kind = await import(`./annotate/${task.kind}.js`);
  const view = { task, state: {}, box: taskBox };
  taskBox.replaceChildren(kind.render(view));
  saveButton.disabled = false;
  saveButton.addEventListener("click", async () => {
    let payload;
    try { payload = kind.payload(view); } catch (error) { say(error.message, true); return; }
    saveButton.disabled = true;
    const result = await api("PATCH", `/api/labels/${labelId}/`, { payload });
    saveButton.disabled = false;
    if (result.status !== 200) {
      say(`The edit was not saved: ${(result.data && result.data.detail) || result.status}`, true);
      return;
    }
    answerBox.textContent = describe(result.data.payload, task);
    root.querySelector("[data-testid=label-version]").textContent = String(result.data.version);
    say(`Saved as version ${result.data.version}.`);
    await showRevisions(task);
  });
}

main();
