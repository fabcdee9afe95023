// The live queue: waiting requests with their waiting time, claiming by code or by row, and the
// alert for a new request while the operator is busy in a session (title badge, a short tone,
// a browser notification when the operator allowed them).

import { t } from "./i18n.js";
import { $, el, errorMessage, formatDuration, formatTime, setText, show, showError } from "./dom.js";
import { on } from "./dispatch.js";
import { handleAuthError } from "./auth.js";
import { login } from "./login-state.js";
import { currentPage } from "./pages.js";
import { liveViews, openSession } from "./session.js";

let queue = [];
let seen = null;  // session ids already in the queue (null: the first list after login)
let alerts = 0;
let audio = null;

export function resetQueue() {
  queue = [];
  seen = null;
  clearAlert();
  $("queue-body").replaceChildren();
}

/** queue_list → queue (the broker also pushes queue whenever it changes). */
export async function loadQueue() {
  try {
    const reply = await login.conn.request({ type: "queue_list" }, "queue");
    renderQueue(reply.requests);
  } catch (err) {
    if (!handleAuthError(err)) showError("claim-error", errorMessage(err));
  }
}

export function renderQueue(requests) {
  queue = Array.isArray(requests) ? requests : [];
  const ids = new Set(queue.map((r) => r.session_id));
  if (seen !== null) {
    const fresh = queue.filter((r) => !seen.has(r.session_id));
    if (fresh.length && (liveViews().length > 0 || currentPage !== "queue" || document.hidden)) alert(fresh);
  }
  seen = ids;
  const rows = queue.map((req) => {
    const button = el("button", {
      text: t("queue.claim.row"),
      attrs: { type: "button", "data-testid": "queue-claim", "data-session-id": req.session_id },
    });
    button.addEventListener("click", () => claim({ session_id: req.session_id }));
    return el("tr", { attrs: { "data-testid": "queue-row", "data-session-id": req.session_id } }, [
      el("td", { text: req.contract_id, attrs: { "data-testid": "queue-contract" } }),
      el("td", { text: req.machine_name, attrs: { "data-testid": "queue-machine" } }),
      el("td", { cls: "waiting", attrs: { "data-testid": "queue-waiting", "data-created-at": req.created_at } }),
      el("td", { cls: "expires", attrs: { "data-testid": "queue-expires", "data-expires-at": req.expires_at } }),
      el("td", {}, [button]),
    ]);
  });
  $("queue-body").replaceChildren(...rows);
  show($("queue-empty"), rows.length === 0);
  show($("queue-table"), rows.length > 0);
  setText("queue-count", rows.length ? t("queue.count", { count: rows.length }) : "");
  const badge = $("nav-queue-count");
  badge.textContent = rows.length ? String(rows.length) : "";
  show(badge, rows.length > 0);
  tickQueue();
}

/** Waiting times change every second without a message: recompute them from created_at. */
export function tickQueue() {
  const now = Date.now() / 1000;
  for (const cell of document.querySelectorAll("#queue-body td.waiting")) {
    cell.textContent = formatDuration(now - Number(cell.dataset.createdAt));
  }
  for (const cell of document.querySelectorAll("#queue-body td.expires")) {
    const at = Number(cell.dataset.expiresAt);
    cell.textContent = at <= now ? t("queue.expired") : formatTime(at);
  }
  const oldest = queue.length ? Math.min(...queue.map((r) => Number(r.created_at))) : null;
  const node = $("nav-queue-wait");
  node.textContent = oldest === null ? "" : t("queue.oldest", { wait: formatDuration(now - oldest) });
  show(node, oldest !== null);
}

function alert(fresh) {
  alerts += fresh.length;
  document.title = `(${alerts}) ${t("app.title")}`;
  const node = $("new-request-alert");
  node.textContent = t("queue.alert", { count: alerts, contract: fresh[fresh.length - 1].contract_id });
  node.dataset.count = String(alerts);
  show(node, true);
  beep();
  if ("Notification" in window && Notification.permission === "granted") {
    try {
      new Notification(t("queue.alert.title"), { body: t("queue.alert", { count: alerts, contract: fresh[0].contract_id }), tag: "new-request" });
    } catch {
      // a page without notification support simply has the badge and the tone
    }
  }
}

export function clearAlert() {
  alerts = 0;
  document.title = t("app.title");
  const node = $("new-request-alert");
  delete node.dataset.count;
  show(node, false);
}

/** Two short tones (WebAudio, no file to fetch); silently nothing if the page may not play sound yet. */
function beep() {
  try {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    audio = audio || new Ctx();
    const now = audio.currentTime;
    for (const [at, freq] of [[0, 880], [0.18, 1175]]) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.15, now + at);
      gain.gain.exponentialRampToValueAtTime(0.001, now + at + 0.15);
      osc.connect(gain).connect(audio.destination);
      osc.start(now + at);
      osc.stop(now + at + 0.16);
    }
    $("new-request-alert").dataset.sound = audio.state;
  } catch {
    // no sound: the badge and the title still say it
  }
}

/** Ask once, from a click (browsers allow the question only then). */
export function askNotificationPermission() {
  if ("Notification" in window && Notification.permission === "default") Notification.requestPermission().catch(() => {});
}

/** claim {code | session_id, scopes:[screen:view]} on a new connection → the session view. */
export async function claim({ code, session_id: sessionId }) {
  showError("claim-error", "");
  askNotificationPermission();
  const msg = {};
  if (code !== undefined) {
    if (!/^[0-9]{6}$/.test(code)) return showError("claim-error", t("queue.code_invalid_format"));
    msg.code = code;
  } else {
    msg.session_id = sessionId;
  }
  try {
    await openSession({ claim: msg });
    $("claim-code").value = "";
    clearAlert();
  } catch (err) {
    if (!handleAuthError(err)) showError("claim-error", errorMessage(err));
  }
}

on("queue", (msg) => renderQueue(msg.requests));

export { queue };
