// The operator console's entry point: wiring of the page's controls, the error handler and the
// keyboard shortcuts. Each panel lives in its own module (docs/console.md lists them); every
// pushed message goes through the one dispatcher in dispatch.js.
//
// Security habits (docs/console.md): the session token lives only in login-state.js (page
// memory), never in localStorage, sessionStorage or a cookie; network data reaches the page only
// through textContent / attributes, never innerHTML; no inline handlers or styles (the CSP).

import { applyI18n, errorText, getLang, onLangChange, setLang, t } from "./i18n.js";
import { ReplyError } from "./connection.js";
import { $, errorMessage } from "./dom.js";
import { on } from "./dispatch.js";
import { backToLogin, changePassword, doLogin, logout, onForget, onResume } from "./auth.js";
import { currentPage, onPage, renderHeader, setConnStatus, showPage, showPageError } from "./pages.js";
import { claim, clearAlert, loadQueue, renderQueue, resetQueue, tickQueue, queue } from "./queue.js";
import { activate, activeView, closeAll, views } from "./session.js";
import { backFromSession, endClicked, render, scheduleDraw, setViewMode } from "./session-page.js";
import { hideCredentials, revealCredentials } from "./inventory.js";
import { installInput, noteBlocked, noteRefused, sendCombo } from "./input.js";
import { renderSwitcher } from "./switcher.js";
import { enterSupervisor, loadAudit, loadSessions, renderAudit, resetSupervisor, verifyAudit } from "./supervisor.js";
import { SCOPE_CONTROL, SCOPE_RESTART, SCOPE_VIEW, scopeStatus } from "./scopes.js";
import { renderColleagueStatus, resetColleagues, wireColleagues } from "./colleagues.js";

const COMBOS = {
  "key-ctrl-alt-del": ["Control", "Alt", "Delete"],
  "key-win": ["Meta"],
  "key-alt-tab": ["Alt", "Tab"],
  "key-print": ["PrintScreen"],
};

async function enterQueue() {
  activate(null);
  showPage("queue");
  clearAlert();
  await loadQueue();
}

/** scope_request {session_id, scopes}: the subscriber is asked for each scope separately. */
function requestScopes(scopes) {
  const view = activeView();
  if (view === null || view.readOnly) return;
  if (!scopes.length) return showScopeMessage("scopes.none_selected");
  if (view.send({ type: "scope_request", id: null, session_id: view.id, scopes })) showScopeMessage("scopes.requested_sent");
}

/** Issue 16: first ask the subscriber for system:restart; once granted, the same button restarts. */
function requestRestart() {
  const view = activeView();
  if (view === null || view.readOnly) return;
  if (scopeStatus(view.state, SCOPE_RESTART) !== "granted") return requestScopes([SCOPE_RESTART]);
  if (view.send({ type: "restart_request", id: null, session_id: view.id })) showScopeMessage("scopes.restart_sent");
}

function showScopeMessage(key) {
  $("scope-message").textContent = t(key);
}

on("error", (msg, view) => {
  if (msg.code === "auth_required") return backToLogin("login.expired");
  if (view !== null && (msg.code === "input_paused" || msg.code === "subscriber_busy")) {
    if (view === activeView()) noteRefused(errorText(msg.code));  // the PC did not apply it
    return;
  }
  if (view !== null && msg.code === "consent_required") {
    if (view === activeView()) noteBlocked(errorText(msg.code));
    return;
  }
  if (view !== null && view !== activeView()) return;  // another session's trouble is not this page's
  showPageError(errorMessage(new ReplyError(msg.code, msg.message, msg.retry_after ?? null)));
});

/** Alt+Shift shortcuts (never forwarded to the subscriber): Q queue, 1-9 the n-th session,
 * F fit, A 1:1, C chat, K the screen's keyboard. */
function shortcut(event) {
  if (!event.altKey || !event.shiftKey || event.ctrlKey || event.metaKey || loggedOut()) return;
  const code = event.code;
  let done = true;
  if (code === "KeyQ") enterQueue();
  else if (/^Digit[1-9]$/.test(code)) {
    const view = [...views.values()][Number(code.slice(5)) - 1];
    if (view) activate(view);
    else done = false;
  } else if (code === "KeyF") setViewMode("fit");
  else if (code === "KeyA") setViewMode("actual");
  else if (code === "KeyC") $("chat-input").focus({ preventScroll: true });
  else if (code === "KeyK") $("screen-keys").focus({ preventScroll: true });
  else done = false;
  if (done) {
    event.preventDefault();
    event.stopPropagation();
  }
}

function loggedOut() {
  return currentPage === "login" || currentPage === "password";
}

function wire() {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    doLogin($("login-name").value.trim(), $("login-password").value, $("login-totp").value.trim(), enterQueue);
  });
  $("password-form").addEventListener("submit", (event) => {
    event.preventDefault();
    changePassword($("password-old").value, $("password-new").value, $("password-confirm").value, enterQueue);
  });
  $("claim-form").addEventListener("submit", (event) => {
    event.preventDefault();
    claim({ code: $("claim-code").value.trim() });
  });
  $("lang-switch").addEventListener("click", () => setLang(getLang() === "ja" ? "en" : "ja"));
  $("logout").addEventListener("click", () => logout());
  $("nav-queue").addEventListener("click", () => enterQueue());
  $("new-request-alert").addEventListener("click", () => enterQueue());
  $("nav-supervisor").addEventListener("click", () => {
    activate(null);
    enterSupervisor();
  });
  $("session-back").addEventListener("click", () => {
    backFromSession();
    if (activeView() === null) enterQueue();
  });
  $("end-session").addEventListener("click", endClicked);
  $("request-view").addEventListener("click", () => requestScopes([SCOPE_VIEW]));
  $("request-control").addEventListener("click", () => requestScopes([SCOPE_CONTROL]));
  $("request-restart").addEventListener("click", requestRestart);
  $("request-inventory").addEventListener("click", () => {
    const scopes = [...document.querySelectorAll("#scope-body input[type=checkbox]:checked")].map((c) => c.value);
    requestScopes(scopes);
  });
  $("monitor-select").addEventListener("change", (event) => {
    const view = activeView();
    if (view !== null) view.send({ type: "screen_refresh", session_id: view.id, monitor: Number(event.target.value) });
  });
  for (const button of document.querySelectorAll("[data-view-mode]")) {
    button.addEventListener("click", () => setViewMode(button.dataset.viewMode));
  }
  for (const [id, keys] of Object.entries(COMBOS)) {
    $(id).addEventListener("click", () => {
      sendCombo(keys);
      $("screen-keys").focus({ preventScroll: true });
    });
  }
  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("chat-input");
    const view = activeView();
    if (view === null || view.readOnly || !input.value.trim()) return;
    if (view.send({ type: "chat", session_id: view.id, text: input.value.slice(0, 2000) })) input.value = "";
  });
  $("reveal-credentials").addEventListener("click", () => revealCredentials());
  $("hide-credentials").addEventListener("click", () => hideCredentials());
  $("sessions-refresh").addEventListener("click", () => loadSessions());
  $("audit-load").addEventListener("click", () => loadAudit());
  $("audit-more").addEventListener("click", () => loadAudit({ more: true }));
  $("audit-verify").addEventListener("click", () => verifyAudit());
  $("audit-filter-action").addEventListener("change", renderAudit);
  $("audit-filter-text").addEventListener("input", renderAudit);
  document.addEventListener("keydown", shortcut, true);
  installInput();
  wireColleagues();
  new ResizeObserver(scheduleDraw).observe($("screen-box"));
  document.addEventListener("fullscreenchange", scheduleDraw);
  onLangChange(() => {
    renderHeader();
    renderQueue(queue);
    renderSwitcher();
    if (activeView() !== null) render();
  });
  onForget(() => {
    closeAll();
    resetQueue();
    resetSupervisor();
    resetColleagues();
  });
  onResume(() => {
    if (currentPage === "queue") loadQueue();
  });
  onPage((page) => {
    if (page === "session") scheduleDraw();
  });
  setInterval(tickQueue, 1000);
}

function start() {
  applyI18n(document);
  wire();
  setConnStatus("offline");
  showPage("login");
  $("login-name").focus();
  document.body.dataset.ready = "true";
}

start();
