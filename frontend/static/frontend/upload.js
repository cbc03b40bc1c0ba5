// The manage page's import: refuses an oversized or mistaken file before sending it, then
// uploads it to the import API with a progress bar (XHR: fetch reports no upload progress).
import { cookie } from "./dom.js";

const form = document.getElementById("import-form");
const bar = form.querySelector("[data-testid=upload-progress]");
const status = form.querySelector("[data-testid=upload-status]");
const button = form.querySelector("button[type=submit]");
const maxBytes = Number(form.dataset.maxBytes);
const MB = 1024 * 1024; // the binary megabyte the server's limit is set in

function megabytes(size) {
  const value = size / MB;
  return value >= 10 ? `${value.toFixed(0)} MB` : `${value.toFixed(1)} MB`;
}

function say(text, kind = "") {
  status.textContent = text;
  status.classList.toggle("error", kind === "error");
  form.dataset.state = kind;
}

// Leading bytes of files people pick by mistake (the server checks the same).
const MISTAKES = [
  [[0x89, 0x50, 0x4e, 0x47], "an image"],
  [[0xff, 0xd8, 0xff], "an image"],
  [[0x47, 0x49, 0x46, 0x38], "an image"],
  [[0x52, 0x49, 0x46, 0x46], "an image or a media file"],
  [[0x25, 0x50, 0x44, 0x46], "a PDF document"],
  [[0x50, 0x4b, 0x03, 0x04], "a zip archive"],
];

async function mistake(file) {
  const head = new Uint8Array(await file.slice(0, 8).arrayBuffer());
  for (const [magic, what] of MISTAKES) {
    if (magic.every((byte, i) => head[i] === byte)) return what;
  }
  return null;
}

function refusal(answer, fallback) {
  if (answer && answer.detail) return answer.detail;
  return fallback;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = form.elements.file.files[0];
  if (!file) { say("Choose a file to import.", "error"); return; }
  if (file.size > maxBytes) {
    say(`This file is ${megabytes(file.size)}; the limit is ${megabytes(maxBytes)}. Split it, or gzip it (a .jsonl.gz is usually a tenth of the size).`, "error");
    return;
  }
  const what = await mistake(file);
  if (what) {
    say(`${file.name} looks like ${what}, not JSONL or CSV. Export your rows as JSON Lines (one JSON object per line) or CSV.`, "error");
    return;
  }
  const body = new FormData();
  body.append("file", file);
  body.append("kind", form.elements.kind.value);
  if (form.elements.annotator_name.value.trim()) body.append("annotator_name", form.elements.annotator_name.value.trim());
  const xhr = new XMLHttpRequest();
  xhr.open("POST", form.dataset.api);
  xhr.setRequestHeader("X-CSRFToken", cookie("csrftoken"));
  xhr.responseType = "json";
  bar.hidden = false;
  bar.value = 0;
  button.disabled = true;
  say(`Uploading ${file.name}: 0%`, "uploading");
  xhr.upload.addEventListener("progress", (e) => {
    if (!e.lengthComputable) return;
    const percent = Math.floor((100 * e.loaded) / e.total);
    bar.value = percent;
    say(percent < 100 ? `Uploading ${file.name}: ${percent}%` : `Uploaded; checking every row of ${file.name}…`, "uploading");
  });
  xhr.addEventListener("load", () => {
    button.disabled = false;
    if (xhr.status === 201) {
      bar.value = 100;
      const counts = Object.entries(xhr.response.counts || {}).map(([k, v]) => `${k.replace(/_/g, " ")}: ${v}`).join(", ");
      say(`Imported ${xhr.response.filename}. ${counts}.`, "done");
      form.reset();
      return;
    }
    bar.hidden = true;
    if (xhr.status === 413) say(refusal(xhr.response, `This file is ${megabytes(file.size)}; the limit is ${megabytes(maxBytes)}.`), "error");
    else if (xhr.status === 403 || xhr.status === 401) say("Your session ended or your role cannot import here; sign in again.", "error");
    else say(refusal(xhr.response, `The import failed (the server answered ${xhr.status}); nothing was imported.`), "error");
  });
  xhr.addEventListener("error", () => {
    button.disabled = false;
    bar.hidden = true;
    say("The upload was interrupted (the connection dropped); nothing was imported. Try again.", "error");
  });
  xhr.send(body);
});
