// Remote input from the visible canvas to the active session's subscriber PC.
//
// Order and exactness: pointer moves are coalesced to one per animation frame, but a pending
// move is always sent before a press, release or wheel, so events arrive in the order they
// happened. Coordinates are mapped from the canvas's on-page box at the moment of the event,
// after focusing without scrolling (focusing used to scroll the page first: the first click
// landed ~26 px low, issue 13). Keys go through a hidden text field over the canvas, so typed
// text (including Japanese from an IME, or pasted text) arrives as text, and keys as keys.
// Nothing is ever left held: every button and key sent down is sent up when the pointer or
// keyboard leaves, the page or window loses focus, the view switches or the session ends.

import { t } from "./i18n.js";
import { $ } from "./dom.js";
import { SCOPE_CONTROL, scopeStatus } from "./scopes.js";
import { activeView, onView } from "./session.js";
import { toScreenPoint } from "./screen.js";

const BUTTONS = { 0: "left", 1: "middle", 2: "right" };
const MAX_TEXT = 1024;
const heldButtons = new Set();
const heldKeys = new Map();  // KeyboardEvent.code → the key name sent down
let pendingMove = null;
let moveFrame = 0;
let boundView = null;  // the view the held buttons and keys were sent to

/** Why input may not be sent right now, as an i18n key and params; null when it may. */
export function inputBlockReason(view = activeView()) {
  if (view === null || view.phase === "ended") return { key: "input.ended" };
  if (view.readOnly) return { key: "input.readonly" };
  const status = scopeStatus(view.state, SCOPE_CONTROL);
  if (status !== "granted") return { key: "input.not_granted", params: { status: t(`status.${status}`) } };
  return null;
}

/** Count and show a refused input (the notice says why nothing was sent). */
export function noteBlocked(reasonText) {
  const view = activeView();
  if (view === null) return;
  view.blockedInputs += 1;
  const notice = $("input-notice");
  notice.dataset.blocked = String(view.blockedInputs);
  notice.textContent = t("input.blocked", { reason: reasonText });
}

/** The subscriber's PC received input but did not apply it (a consent question open, the
 * subscriber using the PC): the broker's notice, in words, counted in data-refused. */
export function noteRefused(text) {
  const view = activeView();
  if (view === null) return;
  view.refusedInputs = (view.refusedInputs || 0) + 1;
  const notice = $("input-notice");
  notice.dataset.refused = String(view.refusedInputs);
  notice.textContent = text;
}

/** input {session_id, seq, kind, ...} on the active view's own connection, only with control. */
export function sendInput(event, view = activeView()) {
  const reason = inputBlockReason(view);
  if (reason !== null) {
    if (view === activeView()) noteBlocked(t(reason.key, reason.params));
    return false;
  }
  const screen = view.screen;
  const monitor = screen !== null && screen.monitor !== null ? screen.monitor : 0;
  const msg = { type: "input", session_id: view.id, seq: view.inputSeq, monitor, ...event };
  view.inputSeq += 1;
  boundView = view;
  return view.send(msg);
}

function point(event) {
  const view = activeView();
  const screen = view ? view.screen : null;
  if (screen === null || !screen.width) return null;
  const rect = $("screen-canvas").getBoundingClientRect();
  return toScreenPoint(event.clientX - rect.left, event.clientY - rect.top, rect.width, rect.height, screen.width, screen.height);
}

function flushMove() {
  if (moveFrame) cancelAnimationFrame(moveFrame);
  moveFrame = 0;
  const p = pendingMove;
  pendingMove = null;
  if (p !== null) sendInput({ kind: "move", x: p.x, y: p.y });
}

/** Let go of every button and key sent down (to the view they were sent to). */
export function releaseAll() {
  if (moveFrame) cancelAnimationFrame(moveFrame);
  moveFrame = 0;
  pendingMove = null;
  const view = boundView;
  const buttons = [...heldButtons];
  const keys = [...heldKeys.values()].reverse();
  heldButtons.clear();
  heldKeys.clear();
  if (view === null || inputBlockReason(view) !== null) return;
  for (const button of buttons) sendInput({ kind: "button", button, action: "up" }, view);
  for (const key of keys) sendInput({ kind: "key", action: "up", key }, view);
}

/** A key combination as buttons (Ctrl+Alt+Del, the Windows key, Alt+Tab, Print Screen). */
export function sendCombo(keys) {
  for (const key of keys) if (!sendInput({ kind: "key", action: "down", key })) return;
  for (const key of [...keys].reverse()) sendInput({ kind: "key", action: "up", key });
}

function sendText(text) {
  for (let i = 0; i < text.length; i += MAX_TEXT) sendInput({ kind: "text", text: text.slice(i, i + MAX_TEXT) });
}

export function installInput() {
  const canvas = $("screen-canvas");
  const keys = $("screen-keys");
  canvas.addEventListener("pointermove", (event) => {
    if (inputBlockReason() !== null) return;  // moves are too many to report one by one
    const p = point(event);
    if (p === null) return;
    pendingMove = p;
    if (!moveFrame) moveFrame = requestAnimationFrame(() => flushMove());
  });
  canvas.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    keys.focus({ preventScroll: true });  // no scrolling before the point is mapped
    const p = point(event);
    const button = BUTTONS[event.button];
    if (p === null || button === undefined) return;
    if (inputBlockReason() === null) canvas.setPointerCapture(event.pointerId);
    pendingMove = p;
    flushMove();
    if (sendInput({ kind: "button", button, action: "down", x: p.x, y: p.y })) heldButtons.add(button);
  });
  canvas.addEventListener("pointerup", (event) => {
    const button = BUTTONS[event.button];
    if (button === undefined || !heldButtons.has(button)) return;
    const p = point(event);
    flushMove();
    heldButtons.delete(button);
    sendInput({ kind: "button", button, action: "up", ...(p ?? {}) });
  });
  canvas.addEventListener("lostpointercapture", () => {
    if (heldButtons.size) releaseAll();
  });
  canvas.addEventListener("contextmenu", (event) => event.preventDefault());
  canvas.addEventListener(
    "wheel",
    (event) => {
      event.preventDefault();
      const steps = (delta) => {
        if (delta === 0) return 0;
        const unit = event.deltaMode === 0 ? 100 : event.deltaMode === 1 ? 3 : 1;
        return Math.sign(delta) * Math.min(50, Math.max(1, Math.round(Math.abs(delta) / unit)));
      };
      const dx = steps(event.deltaX);
      const dy = steps(event.deltaY);
      if (dx === 0 && dy === 0) return;
      flushMove();
      sendInput({ kind: "wheel", dx, dy, ...(point(event) ?? {}) });
    },
    { passive: false },
  );
  keys.addEventListener("keydown", (event) => {
    if (event.isComposing || event.key === "Process" || event.key === "Unidentified" || event.key.length > 32) return;
    event.preventDefault();
    if (event.repeat && heldKeys.has(event.code) && event.key.length > 1) return;
    const plain = event.key.length === 1 && !event.ctrlKey && !event.altKey && !event.metaKey;
    if (plain) {
      sendText(event.key);
    } else if (sendInput({ kind: "key", action: "down", key: event.key })) {
      heldKeys.set(event.code || event.key, event.key);
    }
  });
  keys.addEventListener("keyup", (event) => {
    const id = event.code || event.key;
    if (!heldKeys.has(id)) return;
    event.preventDefault();
    const key = heldKeys.get(id);
    heldKeys.delete(id);
    sendInput({ kind: "key", action: "up", key });
  });
  // Text that comes without a key of its own: an IME's committed Japanese, a paste, a dictation.
  keys.addEventListener("compositionend", (event) => {
    if (event.data) sendText(event.data);
    keys.value = "";
  });
  keys.addEventListener("input", (event) => {
    if (!event.isComposing && event.inputType !== "insertCompositionText" && event.data) sendText(event.data);
    if (!event.isComposing) keys.value = "";
  });
  keys.addEventListener("paste", (event) => {
    event.preventDefault();
    const text = event.clipboardData ? event.clipboardData.getData("text/plain") : "";
    if (text) sendText(text.replace(/\r\n/g, "\n"));
  });
  keys.addEventListener("blur", releaseAll);
  window.addEventListener("blur", releaseAll);
  document.addEventListener("visibilitychange", () => document.hidden && releaseAll());
  onView((event, view) => {
    if (event === "activate" || (event === "state" && view === boundView && inputBlockReason(view) !== null)) {
      releaseAll();
    }
  });
}
