// The session page: the active view's facts, consent state, controls, screen and chat. Only the
// active view is drawn; switching redraws everything from that view's own state.

import { t } from "./i18n.js";
import { $, el, errorMessage, formatTime, setText, show, showError } from "./dom.js";
import { on } from "./dispatch.js";
import { currentPage, showPage } from "./pages.js";
import { handleAuthError } from "./auth.js";
import { SCOPE_CONTROL, SCOPE_RESTART, SCOPE_VIEW, scopeStatus } from "./scopes.js";
import { activeView, activate, closeView, onView } from "./session.js";
import { renderInventory, renderScopeTable, hideCredentials } from "./inventory.js";
import { inputBlockReason, releaseAll } from "./input.js";

const END_ARM_MS = 8000;
const CHAT_KEEP = 500;
let endArmedUntil = 0;
let drawPending = false;
let viewMode = "fit";

/** "ended by the subscriber" and the other reasons the broker gives, in the page's language;
 * anything else (an operator's wrap-up note) is shown as written. */
const REASONS = {
  "ended by the subscriber": "reason.subscriber",
  operator_lost: "reason.operator_lost",
  agent_lost: "reason.agent_lost",
  code_expired: "reason.code_expired",
  "replaced by a new request": "reason.replaced",
  "broker shutting down": "reason.shutdown",
};

export function reasonText(reason) {
  if (!reason) return "-";
  if (REASONS[reason]) return t(REASONS[reason]);
  const byName = /^ended by (.+)$/.exec(reason);
  if (byName) return t("reason.operator", { name: byName[1] });
  return reason;
}

export function render() {
  const view = activeView();
  const page = $("page-session");
  if (view === null) {
    delete page.dataset.sessionId;
    clearCanvas();
    return;
  }
  const st = view.state;
  page.dataset.sessionId = view.id;
  page.dataset.readonly = String(view.readOnly);
  setText("session-contract", st.contract_id);
  setText("session-machine", st.machine_name);
  // Issue 16: an announced restart keeps the session; the operator sees that it waits for the PC.
  const shownPhase = view.phase !== "ended" && st.restart_until ? "restarting" : view.phase;
  const phase = setText("session-phase", t(`phase.${shownPhase}`));
  phase.dataset.phase = shownPhase;
  setText("session-operator", st.operator);
  show($("session-readonly"), view.readOnly);
  const ended = view.phase === "ended";
  show($("end-session"), !ended);
  show($("end-note"), !ended && !view.readOnly && Date.now() < endArmedUntil);
  show($("session-back"), ended || view.readOnly);
  const endedNode = $("session-ended");
  if (ended) {
    const by = st.ended_by ? t(`ended_by.${st.ended_by}`) : "-";
    endedNode.textContent = t("session.ended", { by, reason: reasonText(st.reason) });
  }
  show(endedNode, ended);
  for (const scope of [SCOPE_VIEW, SCOPE_CONTROL]) {
    const status = scopeStatus(st, scope);
    const node = $(`scope-status-${scope.replace(/[^a-z0-9_]/g, "-")}`);
    node.textContent = t(`status.${status}`);
    node.dataset.status = status;
    node.className = `status status-${status}`;
  }
  renderScopeTable(view);
  renderInputNotice();
  renderMonitors();
  renderInventory(view);
  renderPlaceholder();
  for (const id of ["request-view", "request-control", "request-restart", "request-inventory", "special-keys"]) {
    show($(id), !view.readOnly);
  }
  const controlStatus = scopeStatus(st, SCOPE_CONTROL);
  $("request-control").disabled = ended || controlStatus === "granted" || controlStatus === "requested";
  const viewStatus = scopeStatus(st, SCOPE_VIEW);
  $("request-view").disabled = ended || viewStatus === "requested";
  if (viewStatus === "granted" || ended) show($("request-view"), false);
  if (controlStatus === "granted" || ended) show($("request-control"), false);
  const restartStatus = scopeStatus(st, SCOPE_RESTART);
  $("request-restart").textContent = t(restartStatus === "granted" ? "scopes.restart_now" : "scopes.request_restart");
  $("request-restart").disabled = ended || restartStatus === "requested" || Boolean(st.restart_until);
  $("request-inventory").disabled = ended;
  for (const b of document.querySelectorAll("#special-keys button")) b.disabled = inputBlockReason() !== null;
  $("chat-input").disabled = ended || view.readOnly;
  $("chat-send").disabled = ended || view.readOnly;
  $("chat-input").placeholder = view.readOnly ? t("chat.readonly") : t("chat.placeholder");
  if (ended) clearCanvas();
}

export function renderInputNotice() {
  const notice = $("input-notice");
  const reason = inputBlockReason();
  notice.dataset.state = reason === null ? "granted" : reason.key.slice("input.".length);
  notice.textContent = reason === null ? t("input.granted") : t(reason.key, reason.params);
  $("screen-canvas").dataset.control = String(reason === null);
}

function renderMonitors() {
  const select = $("monitor-select");
  const view = activeView();
  const layout = view ? view.layout : null;
  if (layout === null || !Array.isArray(layout.monitors) || layout.monitors.length === 0) {
    select.replaceChildren();
    select.disabled = true;
    return;
  }
  const options = layout.monitors.map((m) =>
    el("option", {
      text: m.index === 0 ? t("monitor.all") : t("monitor.one", { n: m.index, w: m.width, h: m.height }),
      attrs: { value: m.index },
    }),
  );
  select.replaceChildren(...options);
  select.value = String(layout.current);
  select.disabled = view.phase === "ended";
}

function renderPlaceholder() {
  const view = activeView();
  const node = $("screen-placeholder");
  if (view === null) return show(node, false);
  const screen = view.screen;
  const shown = screen !== null && screen.keyframes > 0;
  let key = null;
  if (view.phase === "ended") key = "session.screen.ended";
  else if (!shown) {
    const status = scopeStatus(view.state, SCOPE_VIEW);
    key = status !== "granted" && status !== "requested" ? "session.screen.no_view" : "session.screen.waiting";
  }
  node.textContent = key ? t(key) : "";
  show(node, key !== null);
}

function chatItem(msg) {
  const mine = msg.sender !== "subscriber";
  const who = msg.sender === "subscriber" ? t("chat.subscriber") : msg.sender;
  return el("li", { cls: mine ? "chat-mine" : "chat-theirs", attrs: { "data-testid": "chat-message", "data-sender": msg.sender } }, [
    el("span", { text: msg.time ? formatTime(msg.time) : "", cls: "chat-time" }),
    el("span", { text: who, cls: "chat-sender" }),
    el("span", { text: msg.text, cls: "chat-text" }),
  ]);
}

function renderChat() {
  const view = activeView();
  const log = $("chat-log");
  log.replaceChildren(...(view ? view.chat.map(chatItem) : []));
  log.scrollTop = log.scrollHeight;
}

export function clearCanvas() {
  const canvas = $("screen-canvas");
  canvas.width = 1;
  canvas.height = 1;
  canvas.getContext("2d", { alpha: false }).clearRect(0, 0, 1, 1);
  canvas.dataset.keyframes = "0";
  canvas.dataset.updates = "0";
  delete canvas.dataset.sessionId;
}

export function scheduleDraw() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => {
    drawPending = false;
    draw();
  });
}

/** Paint the active view's picture (and only it) on the visible canvas. */
function draw() {
  const view = activeView();
  if (view === null || currentPage !== "session") return;
  const screen = view.screen;
  const canvas = $("screen-canvas");
  if (screen === null || !screen.width || screen.keyframes === 0) {
    if (canvas.dataset.sessionId !== view.id || screen === null) clearCanvas();
    renderPlaceholder();
    return;
  }
  const box = $("screen-box");
  if (viewMode === "actual") screen.drawTo(canvas, screen.width, screen.height);
  else screen.drawTo(canvas, box.clientWidth, box.clientHeight);
  canvas.dataset.sessionId = view.id;
  canvas.dataset.keyframes = String(screen.keyframes);
  canvas.dataset.updates = String(screen.updates);
  renderPlaceholder();
}

/** fit (scaled into the box), actual (1:1, the box scrolls), full (the box fills the screen). */
export function setViewMode(mode) {
  viewMode = mode === "full" ? "fit" : mode;
  const box = $("screen-box");
  box.dataset.mode = viewMode;
  for (const b of document.querySelectorAll("[data-view-mode]")) b.setAttribute("aria-pressed", String(b.dataset.viewMode === mode));
  if (mode === "full" && box.requestFullscreen) box.requestFullscreen().catch(() => {});
  scheduleDraw();
}

/** Ending: the first click arms it and shows the wrap-up note, the second ends with the note. */
export function endClicked() {
  const view = activeView();
  if (view === null || view.readOnly) return;
  const button = $("end-session");
  if (Date.now() < endArmedUntil) {
    endArmedUntil = 0;
    button.textContent = t("session.end");
    delete button.dataset.armed;
    const note = $("end-note").value.trim().slice(0, 255);
    $("end-note").value = "";
    releaseAll();
    view.send({ type: "session_end", id: null, session_id: view.id, reason: note });
    render();
    return;
  }
  endArmedUntil = Date.now() + END_ARM_MS;
  button.textContent = t("session.end.confirm");
  button.dataset.armed = "true";
  render();
  setTimeout(() => {
    if (Date.now() >= endArmedUntil) {
      button.textContent = t("session.end");
      delete button.dataset.armed;
      render();
    }
  }, END_ARM_MS + 50);
}

export function backFromSession() {
  const view = activeView();
  if (view !== null && (view.phase === "ended" || view.readOnly)) closeView(view);
  else activate(null);
}

// -- messages on a view's connection (dispatch.js has checked the session id) --------------------

on("session_state", (msg, view) => view.applyState(msg));
on("monitor_layout", (msg, view) => {
  view.layout = msg;
  if (view === activeView()) renderMonitors();
});
on("inventory", (msg, view) => {
  view.inventory = msg;
  if (view === activeView()) renderInventory(view);
});
on("chat", (msg, view) => {
  view.chat.push(msg);
  if (view.chat.length > CHAT_KEEP) view.chat.shift();
  if (view === activeView() && currentPage === "session") {
    const log = $("chat-log");
    log.append(chatItem(msg));
    while (log.childElementCount > CHAT_KEEP) log.firstElementChild.remove();
    log.scrollTop = log.scrollHeight;
  } else if (msg.sender === "subscriber") {
    view.unread += 1;
  }
});

onView((event, view, extra) => {
  if (event === "activate") {
    endArmedUntil = 0;
    hideCredentials();
    showError("session-error", "");
    setText("scope-message", "");
    clearCanvas();
    if (view !== null) {
      showPage("session");
      renderChat();
      render();
      scheduleDraw();
    }
  } else if (view === activeView()) {
    if (event === "state") render();
    else if (event === "frame") draw();  // at once: waiting for the next animation frame cost ~8 ms
    else if (event === "error" && !handleAuthError(extra)) showError("session-error", errorMessage(extra));
  }
});

