// Pieces every task kind shows: the prompt and a response card.
//
// Prompt and response HTML comes from the server already sanitised (Markdown through nh3); it
// is parsed inertly and adopted, and the page's CSP forbids inline scripts as a second wall.
import { el } from "../dom.js";

export function sanitizedHtml(html) {
  // Parsed in a detached document, then adopted: no script runs while parsing.
  const doc = new DOMParser().parseFromString(`<div>${html}</div>`, "text/html");
  const wrapper = doc.body.firstElementChild;
  const node = el("div", { class: "content" });
  for (const child of Array.from(wrapper.childNodes)) node.append(document.adoptNode(child));
  return node;
}

export function promptCard(messages) {
  const box = el("section", { class: "card prompt", "data-testid": "prompt" });
  for (const message of messages) {
    box.append(
      el("div", { class: "message-block" },
        el("div", { class: "message-role", text: message.role }),
        sanitizedHtml(message.html)),
    );
  }
  return box;
}

// `tag` labels the card's side ("1 · left", or nodes); null for kinds without sides.
export function responseCard(response, tag) {
  const card = el("article", { class: "card response", "data-response-id": String(response.id), "data-testid": "response" });
  if (tag) card.append(el("span", { class: "side-tag" }, ...[].concat(tag)));
  card.append(sanitizedHtml(response.html));
  return card;
}
