// The outbox: labels wait in localStorage until the server has stored them, and none is ever
// dropped without the annotator saying so.
//
// Every label carries its own Idempotency-Key, so sending it again (after a reload, a lost
// answer, a new login) stores it exactly once. What the server answers decides where it goes:
//   200/201            stored: it leaves the outbox.
//   401/403            the session ended (expired, logged out in another tab): every label
//                      stays, the page asks to log in again, and they are sent after login.
//                      (A 403 while the session is alive is a refusal, as below.)
//   other 4xx (400, 409, 422...)
//                      refused for good: the label moves to the "needs attention" tray with
//                      the server's reason, where the annotator re-sends or discards it.
//   5xx, 429, a hang   this label is retried with backoff; the others are still sent.
//   no network         everything stays; sending resumes when the connection returns.
//
// Storage keys and the outbox item shape ({key, taskId, body}, and the task's kind where the
// page knew it) outlive any one version of this script: labels a reload left queued are sent
// by whatever version of the page runs next.
// Tray items are outbox items plus {status, code, reason, at}.
import { api } from "../dom.js";

export const REQUEST_TIMEOUT_MS = 15_000;
const RETRY_FIRST_MS = 1_000;
const RETRY_MAX_MS = 30_000;

// 1 s, 2 s, 4 s ... capped, with a little jitter so that many pages do not retry in step.
export function backoffMs(attempt) {
  const base = Math.min(RETRY_FIRST_MS * 2 ** attempt, RETRY_MAX_MS);
  return Math.round(base * (0.9 + Math.random() * 0.2));
}

function load(storageKey) {
  try {
    const items = JSON.parse(localStorage.getItem(storageKey) || "[]");
    return Array.isArray(items) ? items : [];
  } catch (_) {
    return [];
  }
}

function refusal(result) {
  const data = result.data || {};
  return { status: result.status, code: data.error || "", reason: data.detail || data.error || `refused (${result.status})` };
}

// onChange({ pending, tray, connection }) after every change; onStored(item, created) once per
// stored label. connection is "online", "offline" or "logged-out".
export function createOutbox({ userId, onChange, onStored }) {
  const OUTBOX_KEY = `tandem.outbox.${userId}`;
  const TRAY_KEY = `tandem.attention.${userId}`;
  const retries = new Map(); // key -> { attempt, at }: kept in memory, a reload retries at once
  let connection = "online";
  let retryTimer = null;
  const inFlight = new Map(); // key -> the send on its way

  const pending = () => load(OUTBOX_KEY);
  const tray = () => load(TRAY_KEY);

  function changed() {
    onChange({ pending: pending(), tray: tray(), connection });
  }
  function save(storageKey, items) {
    localStorage.setItem(storageKey, JSON.stringify(items));
    changed();
  }
  function without(storageKey, key) {
    return load(storageKey).filter((x) => x.key !== key);
  }
  function setConnection(value) {
    if (connection === value) return;
    connection = value;
    changed();
  }

  function add(item) {
    save(OUTBOX_KEY, [...pending(), item]);
  }

  // Sends every label that is due, all at once: a label whose request hangs or fails holds
  // up no other. A label already on its way is not sent twice (were it sent twice, its key
  // would still store it once). Resolves when the labels this call sent are settled.
  function flush() {
    // Nothing to send says nothing about the connection: the claims report their own trouble.
    if (pending().length === 0) setConnection("online");
    const now = Date.now();
    const due = pending().filter((x) => !inFlight.has(x.key) && !((retries.get(x.key) || { at: 0 }).at > now));
    return Promise.all(due.map(send)).then(scheduleRetry);
  }

  function retryLater(item) {
    const previous = retries.get(item.key);
    const attempt = previous ? previous.attempt + 1 : 0;
    retries.set(item.key, { attempt, at: Date.now() + backoffMs(attempt) });
  }

  function scheduleRetry() {
    clearTimeout(retryTimer);
    const times = pending().map((x) => (retries.get(x.key) || { at: 0 }).at);
    if (!times.length) return;
    retryTimer = setTimeout(flush, Math.max(200, Math.min(...times) - Date.now()));
  }

  async function sessionAlive() {
    try {
      return (await api("GET", "/api/me/", undefined, {}, { timeoutMs: REQUEST_TIMEOUT_MS })).status === 200;
    } catch (_) {
      return false;
    }
  }

  function send(item) {
    const sending = sendOnce(item).finally(() => inFlight.delete(item.key));
    inFlight.set(item.key, sending);
    return sending;
  }

  // Resolves when every label now on its way has its answer (stored, refused or failed).
  function settled() {
    return Promise.all(inFlight.values()).then(() => undefined);
  }

  async function sendOnce(item) {
    let result;
    try {
      result = await api("POST", `/api/tasks/${item.taskId}/labels/`, item.body,
        { "Idempotency-Key": item.key }, { timeoutMs: REQUEST_TIMEOUT_MS });
    } catch (error) {
      if (error && (error.name === "TimeoutError" || error.name === "AbortError")) retryLater(item);
      else setConnection("offline"); // no network: sent again when it returns
      return;
    }
    if (!pending().some((x) => x.key === item.key)) return; // discarded meanwhile
    if ((result.status === 401 || result.status === 403) && !(await sessionAlive())) {
      setConnection("logged-out");
      return;
    }
    setConnection("online");
    if (result.status === 200 || result.status === 201) {
      retries.delete(item.key);
      save(OUTBOX_KEY, without(OUTBOX_KEY, item.key));
      onStored(item, result.status === 201);
    } else if (result.status >= 500 || result.status === 429 || result.status === 408) {
      retryLater(item);
    } else {
      retries.delete(item.key);
      localStorage.setItem(TRAY_KEY, JSON.stringify([...without(TRAY_KEY, item.key),
        { ...item, ...refusal(result), at: new Date().toISOString() }]));
      save(OUTBOX_KEY, without(OUTBOX_KEY, item.key));
    }
  }

  // The tray: nothing leaves it but by the annotator's hand.
  function resend(key) {
    const item = tray().find((x) => x.key === key);
    if (!item) return Promise.resolve();
    const { key: k, taskId, body, kind } = item;
    localStorage.setItem(TRAY_KEY, JSON.stringify(without(TRAY_KEY, key)));
    retries.delete(key);
    add({ key: k, taskId, body, kind });
    return flush();
  }
  function discard(key) {
    save(TRAY_KEY, without(TRAY_KEY, key));
  }

  return { add, flush, settled, pending, tray, resend, discard, sessionAlive, connection: () => connection, changed };
}
