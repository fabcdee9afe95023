// The operator console: pages, the flow over /operator, and the session view.
//
// Security habits (docs/console.md): the session token lives only in `state` below, never in
// localStorage, sessionStorage or a cookie; network data reaches the page only through
// textContent / attributes, never innerHTML; no inline handlers or styles (the broker's CSP).

import { applyI18n, errorText, getLang, onLangChange, setLang, t } from "./i18n.js";
import { Connection, ReplyError, operatorUrl } from "./connection.js";
import { ScreenCanvas, toScreenPoint } from "./screen.js";
import {
  ALL_SCOPES,
  INVENTORY_ITEMS,
  SCOPE_CONTROL,
  SCOPE_VIEW,
  scopeSlug,
  scopeStatus,
} from "./scopes.js";

const $ = (id) => document.getElementById(id);

const PAGES = ["login", "password", "queue", "session", "supervisor"];
const RECONNECT_DELAYS_MS = [1000, 2000, 4000];
const KEYFRAME_ASK_INTERVAL_MS = 2000;
const AUDIT_PAGE = 100;
const END_ARM_MS = 5000;
/** Revealed router credentials are cleared from the page after this long (and on "hide", on the
 * session's end, on leaving it): a secret should not sit on an unattended screen (別紙5 (11)). */
const CREDENTIALS_VISIBLE_MS = 60_000;
let credentialsTimer = null;

/** Everything the console knows. Memory only: a reload starts from nothing (logged out). */
const state = {
  conn: null,
  token: null,
  expiresAt: 0,
  expiryTimer: null,
  me: null,
  page: "login",
  queue: [],
  session: null,
  screen: null,
  inputSeq: 0,
  blockedInputs: 0,
  heldKeys: new Set(),
  lastKeyframeAsk: 0,
  drawPending: false,
  auditOldest: null,
  reconnecting: false,
  endArmedUntil: 0,
};

// -- small DOM helpers ---------------------------------------------------------------------------

function el(tag, { text, cls, attrs } = {}, children = []) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  if (attrs) for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  for (const child of children) node.append(child);
  return node;
}

function show(node, visible) {
  node.hidden = !visible;
}

function setText(id, text) {
  const node = $(id);
  node.textContent = text ?? "";
  return node;
}

function showError(id, text) {
  const node = setText(id, text);
  show(node, Boolean(text));
}

function errorMessage(err) {
  const code = err instanceof ReplyError ? err.code : "internal";
  let text = errorText(code);
  if (err instanceof ReplyError && err.retryAfter != null && code !== "account_locked") {
    text += " " + t("error.retry_after", { seconds: Math.ceil(err.retryAfter) });
  }
  return text;
}

function formatDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return t("duration.s", { s });
  if (s < 3600) return t("duration.ms", { m: Math.floor(s / 60), s: s % 60 });
  return t("duration.hm", { h: Math.floor(s / 3600), m: Math.floor((s % 3600) / 60) });
}

function formatTime(epochSeconds, withDate = false) {
  const locale = getLang() === "ja" ? "ja-JP" : "en-GB";
  const options = withDate
    ? { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" }
    : { hour: "2-digit", minute: "2-digit", second: "2-digit" };
  return new Intl.DateTimeFormat(locale, options).format(new Date(epochSeconds * 1000));
}

function formatValue(value) {
  if (value === null || value === undefined) return "";
  if (typeof value !== "object") return String(value);
  if (Array.isArray(value)) return value.map(formatValue).join("\n");
  return flatEntries(value)
    .map(([k, v]) => `${k}: ${v}`)
    .join("\n");
}

/** Nested objects as dotted keys ("model.model_name: WX3000HP"), not as raw JSON. */
function flatEntries(value, prefix = "") {
  const out = [];
  for (const [k, v] of Object.entries(value)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v !== null && typeof v === "object" && !Array.isArray(v)) {
      out.push(...flatEntries(v, key));
    } else if (Array.isArray(v)) {
      out.push([key, v.map((x) => (typeof x === "object" && x !== null ? JSON.stringify(x) : String(x))).join(", ")]);
    } else {
      out.push([key, String(v)]);
    }
  }
  return out;
}

// -- pages and header -----------------------------------------------------------------------------

function showPage(page) {
  if (page !== state.page && (page === "session" || page === "supervisor")) banner("");
  state.page = page;
  for (const name of PAGES) show($(`page-${name}`), name === page);
  document.body.dataset.page = page;
  renderHeader();
  if (page === "session") scheduleDraw();
}

function banner(text) {
  const node = setText("banner", text);
  show(node, Boolean(text));
}

function setConnStatus(key) {
  const node = $("conn-status");
  node.dataset.state = key;
  node.textContent = key === "offline" && !state.token ? "" : t(`conn.${key}`);
}

function renderHeader() {
  const loggedIn = state.me !== null && state.page !== "login";
  show($("nav"), loggedIn && state.page !== "password");
  show($("logout"), state.me !== null);
  const supervisor = state.me !== null && (state.me.role === "supervisor" || state.me.role === "admin");
  show($("nav-supervisor"), supervisor);
  setText(
    "whoami",
    state.me ? t("nav.whoami", { name: state.me.display_name, role: t(`role.${state.me.role}`) }) : "",
  );
  const conn = $("conn-status");
  if (conn.dataset.state) setConnStatus(conn.dataset.state);
}

// -- connection -------------------------------------------------------------------------------------

async function ensureConnected() {
  if (state.conn !== null && state.conn.open) return state.conn;
  setConnStatus("connecting");
  const conn = new Connection(operatorUrl(), { onMessage, onBinary, onClose });
  state.conn = conn;
  try {
    await conn.connect();
  } catch (err) {
    if (state.conn === conn) state.conn = null;
    setConnStatus("offline");
    throw err;
  }
  setConnStatus("online");
  return conn;
}

function onClose({ wasOpen }) {
  setConnStatus("offline");
  if (state.token !== null && wasOpen && !state.reconnecting) resume();
}

/** Reconnect after a dropped connection with the in-memory token (auth), then re-watch. */
async function resume() {
  state.reconnecting = true;
  setConnStatus("reconnecting");
  try {
    for (const delay of RECONNECT_DELAYS_MS) {
      await new Promise((r) => setTimeout(r, delay));
      if (state.token === null) return;
      try {
        state.conn = null;
        const conn = await ensureConnected();
        const reply = await conn.request({ type: "auth", token: state.token }, "login_ok");
        applyLogin(reply);
        if (state.session !== null && state.session.phase !== "ended") watchSession(state.session.id);
        else if (state.page === "queue") await loadQueue();
        return;
      } catch (err) {
        if (err instanceof ReplyError && err.code === "auth_required") break;
      }
    }
    backToLogin("login.connection_lost");
  } finally {
    state.reconnecting = false;
  }
}

// -- login, password, logout ---------------------------------------------------------------------

function applyLogin(reply) {
  state.token = reply.token;  // memory only: see docs/console.md
  state.expiresAt = reply.expires_at;
  state.me = { name: reply.name, display_name: reply.display_name, role: reply.role };
  clearTimeout(state.expiryTimer);
  const ms = Math.min(2 ** 31 - 1, Math.max(0, reply.expires_at * 1000 - Date.now()));
  state.expiryTimer = setTimeout(() => backToLogin("login.expired"), ms);
  renderHeader();
}

/** login → login_ok; then the password form if the broker asks for it, else the queue. */
export async function login(name, password, totp) {
  showError("login-error", "");
  banner("");
  const submit = $("login-submit");
  submit.disabled = true;
  submit.textContent = t("login.busy");
  try {
    const conn = await ensureConnected();
    const reply = await conn.request({ type: "login", name, password, totp }, "login_ok");
    $("login-password").value = "";
    $("login-totp").value = "";
    applyLogin(reply);
    if (reply.password_change_required) {
      $("password-old").value = password;
      showPage("password");
    } else {
      await enterQueue();
    }
  } catch (err) {
    showError("login-error", loginErrorText(err));
  } finally {
    submit.disabled = false;
    submit.textContent = t("login.submit");
  }
}

function loginErrorText(err) {
  if (err instanceof ReplyError && err.code === "account_locked") {
    if (err.retryAfter == null) return t("login.locked_no_time");
    const until = Date.now() / 1000 + err.retryAfter;
    return t("login.locked", { time: formatTime(until), minutes: Math.max(1, Math.ceil(err.retryAfter / 60)) });
  }
  return errorMessage(err);
}

/** change_password → ok, then the queue. */
export async function changePassword(oldPassword, newPassword, confirm) {
  showError("password-error", "");
  if (newPassword !== confirm) return showError("password-error", t("password.mismatch"));
  if (newPassword.length < 12) return showError("password-error", t("password.too_short"));
  try {
    await state.conn.request(
      { type: "change_password", old_password: oldPassword, new_password: newPassword },
      "ok",
    );
    for (const id of ["password-old", "password-new", "password-confirm"]) $(id).value = "";
    banner(t("password.changed"));
    await enterQueue();
  } catch (err) {
    if (!handleAuthError(err)) showError("password-error", errorMessage(err));
  }
}

/** logout → ok; forget the token whatever the answer, close, back to the login page. */
export async function logout() {
  const conn = state.conn;
  state.token = null;  // no resume from here on
  if (conn !== null && conn.open) {
    try {
      await conn.request({ type: "logout" }, "ok", 5000);
    } catch {
      // the token is forgotten here and expires on the broker anyway
    }
  }
  backToLogin("login.logged_out", { asError: false });
}

/** Forget everything about the login and show the login page with a reason. */
export function backToLogin(reasonKey, { asError = true } = {}) {
  forget();
  if (state.conn !== null) {
    const conn = state.conn;
    state.conn = null;
    conn.close(1000, "logout");
  }
  setConnStatus("offline");
  showPage("login");
  if (asError) showError("login-error", t(reasonKey));
  else banner(t(reasonKey));
  $("login-name").focus();
}

function forget() {
  state.token = null;
  state.expiresAt = 0;
  clearTimeout(state.expiryTimer);
  state.me = null;
  state.queue = [];
  closeSessionView();
  for (const id of ["login-password", "login-totp", "password-old", "password-new", "password-confirm"]) {
    $(id).value = "";
  }
  $("queue-body").replaceChildren();
  $("sessions-body").replaceChildren();
  $("audit-body").replaceChildren();
  renderHeader();
}

function handleAuthError(err) {
  if (err instanceof ReplyError && err.code === "auth_required") {
    backToLogin("login.expired");
    return true;
  }
  return false;
}

// -- queue ----------------------------------------------------------------------------------------

export async function enterQueue() {
  showPage("queue");
  await loadQueue();
}

/** queue_list → queue (the broker also pushes queue whenever it changes). */
export async function loadQueue() {
  try {
    const reply = await state.conn.request({ type: "queue_list" }, "queue");
    renderQueue(reply.requests);
  } catch (err) {
    if (!handleAuthError(err)) showError("claim-error", errorMessage(err));
  }
}

function renderQueue(requests) {
  state.queue = Array.isArray(requests) ? requests : [];
  const rows = state.queue.map((req) => {
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
  tickQueue();
}

/** Waiting times change every second without a message: recompute them from created_at. */
function tickQueue() {
  const now = Date.now() / 1000;
  for (const cell of document.querySelectorAll("#queue-body td.waiting")) {
    cell.textContent = formatDuration(now - Number(cell.dataset.createdAt));
  }
  for (const cell of document.querySelectorAll("#queue-body td.expires")) {
    const at = Number(cell.dataset.expiresAt);
    cell.textContent = at <= now ? t("queue.expired") : formatTime(at);
  }
}

/** claim {code | session_id, scopes:[screen:view]} → claimed, then the session view and watch. */
export async function claim({ code, session_id: sessionId }) {
  showError("claim-error", "");
  const msg = { type: "claim", scopes: [SCOPE_VIEW] };
  if (code !== undefined) {
    if (!/^[0-9]{6}$/.test(code)) return showError("claim-error", t("queue.code_invalid_format"));
    msg.code = code;
  } else {
    msg.session_id = sessionId;
  }
  try {
    const reply = await state.conn.request(msg, "claimed");
    $("claim-code").value = "";
    openSession(reply.session_id, {
      readOnly: false,
      contract_id: reply.contract_id,
      machine_name: reply.machine_name,
    });
  } catch (err) {
    if (!handleAuthError(err)) showError("claim-error", errorMessage(err));
  }
}

// -- session --------------------------------------------------------------------------------------

/** Show the session page for `sessionId` and attach as a viewer (watch). */
export function openSession(sessionId, { readOnly, contract_id = "", machine_name = "", operator = "" }) {
  closeSessionView();
  state.session = {
    id: sessionId,
    readOnly,
    phase: "waiting",
    state: { session_id: sessionId, phase: "waiting", contract_id, machine_name, operator, scopes: {} },
    layout: null,
    inventory: null,
  };
  state.screen = new ScreenCanvas();
  state.inputSeq = 0;
  state.blockedInputs = 0;
  state.lastKeyframeAsk = 0;
  $("page-session").dataset.sessionId = sessionId;
  $("page-session").dataset.readonly = String(readOnly);
  showPage("session");
  renderSession();
  watchSession(sessionId);
}

function closeSessionView() {
  releaseHeldKeys();
  state.session = null;
  state.screen = null;
  $("chat-log").replaceChildren();
  $("inventory-list").replaceChildren();
  hideCredentials();
  showError("session-error", "");
  setText("scope-message", "");
  const canvas = $("screen-canvas");
  canvas.width = 1;
  canvas.height = 1;
  delete $("page-session").dataset.sessionId;
}

/** watch {session_id}: the broker answers with session_state, monitor_layout and a keyframe. */
export function watchSession(sessionId) {
  send({ type: "watch", id: null, session_id: sessionId });
}

/** scope_request {session_id, scopes}: the subscriber is asked for each scope separately. */
export function requestScopes(scopes) {
  const session = state.session;
  if (session === null || session.readOnly) return;
  if (!scopes.length) return setText("scope-message", t("scopes.none_selected"));
  if (send({ type: "scope_request", id: null, session_id: session.id, scopes })) {
    setText("scope-message", t("scopes.requested_sent"));
  }
}

/** Why input may not be sent right now, as an i18n key and params; null when it may. */
function inputBlockReason() {
  const session = state.session;
  if (session === null || session.phase === "ended") return { key: "input.ended" };
  if (session.readOnly) return { key: "input.readonly" };
  const status = scopeStatus(session.state, SCOPE_CONTROL);
  if (status !== "granted") return { key: "input.not_granted", params: { status: t(`status.${status}`) } };
  return null;
}

/**
 * input {session_id, seq, kind, ...}: sent only while input:control is granted to us; otherwise
 * nothing leaves the page and the notice says why.
 */
export function sendInput(event) {
  const reason = inputBlockReason();
  if (reason !== null) {
    state.blockedInputs += 1;
    const notice = $("input-notice");
    notice.dataset.blocked = String(state.blockedInputs);
    notice.textContent = t("input.blocked", { reason: t(reason.key, reason.params) });
    return false;
  }
  const msg = { type: "input", session_id: state.session.id, seq: state.inputSeq, ...event };
  state.inputSeq += 1;
  return send(msg);
}

/** screen_refresh {session_id, monitor}: pick a monitor (0 = all), or ask for a keyframe. */
export function pickMonitor(index) {
  if (state.session === null) return;
  send({ type: "screen_refresh", session_id: state.session.id, monitor: index });
}

function askKeyframe() {
  const now = Date.now();
  if (state.session === null || now - state.lastKeyframeAsk < KEYFRAME_ASK_INTERVAL_MS) return;
  state.lastKeyframeAsk = now;
  send({ type: "screen_refresh", session_id: state.session.id, behind: true });
}

/** chat {session_id, text}: the broker echoes it to every viewer, us included. */
export function sendChat(text) {
  if (state.session === null || state.session.readOnly || !text.trim()) return false;
  return send({ type: "chat", session_id: state.session.id, text: text.slice(0, 2000) });
}

/** reveal_credentials → credentials: an explicit action the broker writes to the audit log. */
export async function revealCredentials() {
  const session = state.session;
  if (session === null) return;
  try {
    const reply = await state.conn.request({ type: "reveal_credentials", session_id: session.id }, "credentials");
    if (state.session !== session) return;
    setText("credentials-account", reply.account);
    setText("credentials-password", reply.password);
    show($("credentials"), true);
    show($("hide-credentials"), true);
    clearTimeout(credentialsTimer);
    credentialsTimer = setTimeout(hideCredentials, CREDENTIALS_VISIBLE_MS);
  } catch (err) {
    if (!handleAuthError(err)) showError("session-error", errorMessage(err));
  }
}

/** Clear the revealed login from the page (the text too, not only its visibility). */
export function hideCredentials() {
  clearTimeout(credentialsTimer);
  credentialsTimer = null;
  $("credentials-account").textContent = "";
  $("credentials-password").textContent = "";
  show($("credentials"), false);
  show($("hide-credentials"), false);
}

/** session_end {session_id}: the broker answers with session_state phase "ended". */
export function endSession() {
  if (state.session === null) return;
  send({ type: "session_end", id: null, session_id: state.session.id });
}

function send(msg) {
  try {
    state.conn.send(msg);
    return true;
  } catch (err) {
    showPageError(errorMessage(err));
    return false;
  }
}

function showPageError(text) {
  const id = { queue: "claim-error", session: "session-error", supervisor: "sup-error" }[state.page];
  if (id) showError(id, text);
}

function applySessionState(msg) {
  const session = state.session;
  if (session === null || msg.session_id !== session.id) return;
  session.state = msg;
  session.phase = msg.phase;
  if (msg.phase === "ended") releaseHeldKeys();
  renderSession();
}

function renderSession() {
  const session = state.session;
  if (session === null) return;
  const st = session.state;
  setText("session-contract", st.contract_id);
  setText("session-machine", st.machine_name);
  const phase = setText("session-phase", t(`phase.${session.phase}`));
  phase.dataset.phase = session.phase;
  setText("session-operator", st.operator);
  show($("session-readonly"), session.readOnly);
  const ended = session.phase === "ended";
  show($("end-session"), !ended);
  show($("session-back"), ended);
  const endedNode = $("session-ended");
  if (ended) {
    const by = st.ended_by ? t(`ended_by.${st.ended_by}`) : "-";
    endedNode.textContent = t("session.ended", { by, reason: st.reason || "-" });
  }
  show(endedNode, ended);
  renderScopes();
  renderInputNotice();
  renderMonitors();
  renderInventory();
  renderPlaceholder();
  for (const id of ["request-view", "request-control", "request-inventory"]) {
    show($(id), !session.readOnly);
    $(id).disabled = ended;
  }
  const controlStatus = scopeStatus(st, SCOPE_CONTROL);
  $("request-control").disabled = ended || controlStatus === "granted" || controlStatus === "requested";
  const viewStatus = scopeStatus(st, SCOPE_VIEW);
  $("request-view").disabled = ended || viewStatus === "granted" || viewStatus === "requested";
  $("chat-input").disabled = ended || session.readOnly;
  $("chat-send").disabled = ended || session.readOnly;
  $("chat-input").placeholder = session.readOnly ? t("chat.readonly") : t("chat.placeholder");
}

function renderScopes() {
  const session = state.session;
  const checked = new Set(
    [...document.querySelectorAll("#scope-body input[type=checkbox]:checked")].map((c) => c.value),
  );
  const rows = ALL_SCOPES.map((scope) => {
    const status = scopeStatus(session.state, scope);
    const slug = scopeSlug(scope);
    const item = scope.startsWith("inventory:") ? scope.slice("inventory:".length) : null;
    const label = item ? t(`item.${item}`) : t(`scope.${scope}`);
    const pick = el("td");
    if (item && !session.readOnly) {
      const box = el("input", {
        attrs: { type: "checkbox", value: scope, id: `scope-check-${slug}`, "data-testid": `scope-check-${slug}`, "aria-label": label },
      });
      box.checked = checked.has(scope);
      box.disabled = status === "granted" || status === "requested" || session.phase === "ended";
      pick.append(box);
    }
    return el("tr", { attrs: { "data-scope": scope, "data-status": status, "data-testid": `scope-row-${slug}` } }, [
      pick,
      el("td", {}, [el("span", { text: label }), el("code", { text: scope, cls: "scope-id" })]),
      el("td", {}, [
        el("span", {
          text: t(`status.${status}`),
          cls: `status status-${status}`,
          attrs: { "data-testid": `scope-status-${slug}`, "data-status": status },
        }),
      ]),
    ]);
  });
  $("scope-body").replaceChildren(...rows);
}

function renderInputNotice() {
  const notice = $("input-notice");
  const reason = inputBlockReason();
  notice.dataset.state = reason === null ? "granted" : reason.key.slice("input.".length);
  notice.textContent = reason === null ? t("input.granted") : t(reason.key, reason.params);
  $("screen-canvas").dataset.control = String(reason === null);
}

function renderMonitors() {
  const select = $("monitor-select");
  const layout = state.session ? state.session.layout : null;
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
  select.disabled = state.session.phase === "ended";
}

function renderInventory() {
  const session = state.session;
  const inventory = session ? session.inventory : null;
  const items = inventory && Array.isArray(inventory.items) ? inventory.items : [];
  const nodes = [];
  for (const entry of items) {
    const label = INVENTORY_ITEMS.includes(entry.item) ? t(`item.${entry.item}`) : entry.item;
    nodes.push(el("dt", { text: label, attrs: { "data-item": entry.item } }));
    const value = entry.available
      ? formatValue(entry.value)
      : t("inventory.unavailable", { reason: entry.reason || "-" });
    nodes.push(
      el("dd", {
        text: value,
        cls: entry.available ? "" : "unavailable",
        attrs: { "data-testid": `inventory-${entry.item}`, "data-available": String(Boolean(entry.available)) },
      }),
    );
  }
  $("inventory-list").replaceChildren(...nodes);
  show($("inventory-empty"), nodes.length === 0);
  const canReveal = Boolean(inventory && inventory.has_router_credentials) && session.phase !== "ended";
  show($("reveal-credentials"), canReveal);
  show($("reveal-note"), canReveal);
  if (!canReveal) hideCredentials();
}

function renderPlaceholder() {
  const session = state.session;
  const node = $("screen-placeholder");
  if (session === null) return show(node, false);
  const view = scopeStatus(session.state, SCOPE_VIEW);
  let key = null;
  if (view !== "granted" && view !== "requested" && (state.screen === null || state.screen.keyframes === 0)) {
    key = "session.screen.no_view";
  } else if (state.screen === null || state.screen.keyframes === 0) {
    key = "session.screen.waiting";
  }
  node.textContent = key ? t(key) : "";
  show(node, key !== null);
}

function appendChat(msg) {
  if (state.session === null || msg.session_id !== state.session.id) return;
  const mine = msg.sender !== "subscriber";
  const who = msg.sender === "subscriber" ? t("chat.subscriber") : msg.sender;
  const item = el("li", { cls: mine ? "chat-mine" : "chat-theirs", attrs: { "data-testid": "chat-message", "data-sender": msg.sender } }, [
    el("span", { text: msg.time ? formatTime(msg.time) : "", cls: "chat-time" }),
    el("span", { text: who, cls: "chat-sender" }),
    el("span", { text: msg.text, cls: "chat-text" }),
  ]);
  const log = $("chat-log");
  log.append(item);
  while (log.childElementCount > 500) log.firstElementChild.remove();
  log.scrollTop = log.scrollHeight;
}

// -- screen ---------------------------------------------------------------------------------------

function onBinary(data) {
  const screen = state.screen;
  if (screen === null) return;
  screen
    .apply(data)
    .then(() => {
      if (screen !== state.screen) return;
      if (screen.needsKeyframe) askKeyframe();
      $("screen-canvas").dataset.keyframes = String(screen.keyframes);
      $("screen-canvas").dataset.updates = String(screen.updates);
      if (screen.keyframes === 1 && screen.updates === 1) renderPlaceholder();
      scheduleDraw();
    })
    .catch(() => {
      if (screen === state.screen) askKeyframe();
    });
}

function scheduleDraw() {
  if (state.drawPending) return;
  state.drawPending = true;
  requestAnimationFrame(() => {
    state.drawPending = false;
    const screen = state.screen;
    if (screen === null || state.page !== "session" || !screen.width) return;
    const box = $("screen-box");
    screen.drawTo($("screen-canvas"), box.clientWidth, box.clientHeight);
    renderPlaceholder();
  });
}

function canvasPoint(event) {
  const screen = state.screen;
  if (screen === null || !screen.width) return null;
  const rect = event.currentTarget.getBoundingClientRect();
  return toScreenPoint(event.clientX - rect.left, event.clientY - rect.top, rect.width, rect.height, screen.width, screen.height);
}

function monitorIndex() {
  const screen = state.screen;
  return screen !== null && screen.monitor !== null ? screen.monitor : 0;
}

const BUTTONS = { 0: "left", 1: "middle", 2: "right" };
let pendingMove = null;

function installCanvasInput() {
  const canvas = $("screen-canvas");
  canvas.addEventListener("mousemove", (event) => {
    if (inputBlockReason() !== null) return;  // moves are too many to report one by one
    const point = canvasPoint(event);
    if (point === null) return;
    const first = pendingMove === null;
    pendingMove = point;
    if (first) {
      requestAnimationFrame(() => {
        const p = pendingMove;
        pendingMove = null;
        if (p !== null) sendInput({ kind: "move", x: p.x, y: p.y, monitor: monitorIndex() });
      });
    }
  });
  canvas.addEventListener("mousedown", (event) => {
    event.preventDefault();
    canvas.focus();
    const point = canvasPoint(event);
    const button = BUTTONS[event.button];
    if (point === null || button === undefined) return;
    if (sendInput({ kind: "move", x: point.x, y: point.y, monitor: monitorIndex() })) {
      sendInput({ kind: "button", button, action: "down", x: point.x, y: point.y, monitor: monitorIndex() });
    }
  });
  canvas.addEventListener("mouseup", (event) => {
    const point = canvasPoint(event);
    const button = BUTTONS[event.button];
    if (point === null || button === undefined) return;
    sendInput({ kind: "button", button, action: "up", x: point.x, y: point.y, monitor: monitorIndex() });
  });
  canvas.addEventListener("contextmenu", (event) => event.preventDefault());
  canvas.addEventListener(
    "wheel",
    (event) => {
      event.preventDefault();
      const steps = (delta) => {
        if (delta === 0) return 0;
        const unit = event.deltaMode === 0 ? 100 : event.deltaMode === 1 ? 3 : 1;
        const n = Math.max(1, Math.round(Math.abs(delta) / unit));
        return Math.sign(delta) * Math.min(100, n);
      };
      const dx = steps(event.deltaX);
      const dy = steps(event.deltaY);
      if (dx === 0 && dy === 0) return;
      const point = canvasPoint(event);
      sendInput({ kind: "wheel", dx, dy, ...(point ?? {}), monitor: monitorIndex() });
    },
    { passive: false },
  );
  canvas.addEventListener("keydown", (event) => {
    if (event.isComposing || event.key === "Unidentified" || event.key.length > 32) return;
    event.preventDefault();
    const plain = event.key.length === 1 && !event.ctrlKey && !event.altKey && !event.metaKey;
    if (plain) {
      sendInput({ kind: "text", text: event.key, monitor: monitorIndex() });
    } else if (sendInput({ kind: "key", action: "down", key: event.key, monitor: monitorIndex() })) {
      state.heldKeys.add(event.key);
    }
  });
  canvas.addEventListener("keyup", (event) => {
    if (!state.heldKeys.has(event.key)) return;
    event.preventDefault();
    state.heldKeys.delete(event.key);
    sendInput({ kind: "key", action: "up", key: event.key, monitor: monitorIndex() });
  });
  canvas.addEventListener("blur", releaseHeldKeys);
  new ResizeObserver(scheduleDraw).observe($("screen-box"));
}

/** Keys pressed on the canvas are released when it loses focus, so none stays stuck. */
function releaseHeldKeys() {
  const keys = [...state.heldKeys];
  state.heldKeys.clear();
  if (inputBlockReason() !== null) return;
  for (const key of keys) sendInput({ kind: "key", action: "up", key, monitor: monitorIndex() });
}

// -- supervisor -----------------------------------------------------------------------------------

export async function enterSupervisor() {
  showPage("supervisor");
  showError("sup-error", "");
  await loadSessions();
  await loadAudit();
}

/** session_list → sessions (supervisors only). */
export async function loadSessions() {
  try {
    const reply = await state.conn.request({ type: "session_list" }, "sessions");
    renderSessions(reply.sessions);
  } catch (err) {
    if (!handleAuthError(err)) showError("sup-error", errorMessage(err));
  }
}

function renderSessions(sessions) {
  const rows = (Array.isArray(sessions) ? sessions : []).map((s) => {
    const join = el("button", {
      text: t("sup.sessions.join"),
      attrs: { type: "button", "data-testid": "session-join", "data-session-id": s.session_id },
    });
    join.addEventListener("click", () =>
      openSession(s.session_id, { readOnly: true, contract_id: s.contract_id, machine_name: s.machine_name, operator: s.operator }),
    );
    const granted = Object.entries(s.scopes || {})
      .filter(([, status]) => status === "granted")
      .map(([scope]) => scope)
      .join(", ");
    return el("tr", { attrs: { "data-testid": "session-row", "data-session-id": s.session_id } }, [
      el("td", { text: s.session_id, cls: "mono" }),
      el("td", { text: s.contract_id }),
      el("td", { text: s.machine_name }),
      el("td", { text: t(`phase.${s.phase}`) }),
      el("td", { text: s.operator }),
      el("td", { text: granted, cls: "mono" }),
      el("td", {}, [join]),
    ]);
  });
  $("sessions-body").replaceChildren(...rows);
  show($("sessions-empty"), rows.length === 0);
}

/** audit_query {limit, before_seq} → audit_entries, newest first; `more` pages back. */
export async function loadAudit({ more = false } = {}) {
  const msg = { type: "audit_query", limit: AUDIT_PAGE };
  if (more && state.auditOldest !== null) msg.before_seq = state.auditOldest;
  try {
    const reply = await state.conn.request(msg, "audit_entries");
    renderAudit(reply.entries, more);
  } catch (err) {
    if (!handleAuthError(err)) showError("sup-error", errorMessage(err));
  }
}

function renderAudit(entries, append) {
  const list = Array.isArray(entries) ? entries : [];
  const rows = list.map((e) =>
    el("tr", { attrs: { "data-testid": "audit-row", "data-seq": e.seq } }, [
      el("td", { text: e.seq }),
      el("td", { text: formatTime(e.at, true) }),
      el("td", { text: e.actor }),
      el("td", { text: e.action, cls: "mono" }),
      el("td", { text: e.subject, cls: "mono" }),
      auditDetails(e.details),
    ]),
  );
  const body = $("audit-body");
  if (append) body.append(...rows);
  else body.replaceChildren(...rows);
  if (list.length) state.auditOldest = Math.min(...list.map((e) => e.seq));
  else if (!append) state.auditOldest = null;
  $("audit-more").disabled = list.length < AUDIT_PAGE || state.auditOldest === null || state.auditOldest <= 1;
  show($("audit-empty"), body.childElementCount === 0);
}

/** Details as compact JSON, cut at 160 characters; the whole text is in the cell's title. */
function auditDetails(details) {
  const full = JSON.stringify(details ?? {});
  const short = full.length > 160 ? full.slice(0, 159) + "…" : full;
  return el("td", { text: short, cls: "mono details", attrs: { title: full } });
}

/** audit_verify → audit_verified {ok, checked, problems}. */
export async function verifyAudit() {
  const result = $("audit-verify-result");
  try {
    const reply = await state.conn.request({ type: "audit_verify" }, "audit_verified", 120_000);
    const problems = Array.isArray(reply.problems) ? reply.problems : [];
    result.textContent = reply.ok
      ? t("sup.audit.verified_ok", { checked: reply.checked })
      : t("sup.audit.verified_bad", { checked: reply.checked, count: problems.length });
    result.dataset.ok = String(Boolean(reply.ok));
    result.className = reply.ok ? "ok" : "error";
    show(result, true);
    $("audit-problems").replaceChildren(...problems.map((p) => el("li", { text: p })));
    show($("audit-problems"), problems.length > 0);
  } catch (err) {
    if (!handleAuthError(err)) showError("sup-error", errorMessage(err));
  }
}

// -- pushed messages ------------------------------------------------------------------------------

function onMessage(msg) {
  switch (msg.type) {
    case "queue":
      renderQueue(msg.requests);
      break;
    case "session_state":
      applySessionState(msg);
      break;
    case "monitor_layout":
      if (state.session !== null && msg.session_id === state.session.id) {
        state.session.layout = msg;
        renderMonitors();
      }
      break;
    case "chat":
      appendChat(msg);
      break;
    case "inventory":
      if (state.session !== null && msg.session_id === state.session.id) {
        state.session.inventory = msg;
        renderInventory();
      }
      break;
    case "error":
      onPushedError(msg);
      break;
    default:
      break;  // ok/credentials/... without a pending request: nothing to do
  }
}

function onPushedError(msg) {
  if (msg.code === "auth_required") {
    backToLogin("login.expired");
    return;
  }
  const err = new ReplyError(msg.code, msg.message, msg.retry_after ?? null);
  if (state.page === "session" && msg.code === "consent_required") {
    state.blockedInputs += 1;
    const notice = $("input-notice");
    notice.dataset.blocked = String(state.blockedInputs);
    notice.textContent = t("input.blocked", { reason: errorText(msg.code) });
    return;
  }
  showPageError(errorMessage(err));
}

// -- wiring ---------------------------------------------------------------------------------------

function wire() {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    login($("login-name").value.trim(), $("login-password").value, $("login-totp").value.trim());
  });
  $("password-form").addEventListener("submit", (event) => {
    event.preventDefault();
    changePassword($("password-old").value, $("password-new").value, $("password-confirm").value);
  });
  $("claim-form").addEventListener("submit", (event) => {
    event.preventDefault();
    claim({ code: $("claim-code").value.trim() });
  });
  $("lang-switch").addEventListener("click", () => setLang(getLang() === "ja" ? "en" : "ja"));
  $("logout").addEventListener("click", () => logout());
  $("nav-queue").addEventListener("click", () => {
    if (state.session !== null && state.session.phase !== "ended" && state.page !== "session") {
      showPage("session");
    } else {
      enterQueue();
    }
  });
  $("nav-supervisor").addEventListener("click", () => enterSupervisor());
  $("session-back").addEventListener("click", () => {
    closeSessionView();
    enterQueue();
  });
  $("end-session").addEventListener("click", () => {
    // Two clicks within 5 s: ending cannot be undone, and a dialog would block tests and screen readers.
    const button = $("end-session");
    if (Date.now() < state.endArmedUntil) {
      state.endArmedUntil = 0;
      button.textContent = t("session.end");
      delete button.dataset.armed;
      endSession();
    } else {
      state.endArmedUntil = Date.now() + END_ARM_MS;
      button.textContent = t("session.end.confirm");
      button.dataset.armed = "true";
      setTimeout(() => {
        if (Date.now() >= state.endArmedUntil) {
          button.textContent = t("session.end");
          delete button.dataset.armed;
        }
      }, END_ARM_MS + 50);
    }
  });
  $("request-view").addEventListener("click", () => requestScopes([SCOPE_VIEW]));
  $("request-control").addEventListener("click", () => requestScopes([SCOPE_CONTROL]));
  $("request-inventory").addEventListener("click", () => {
    const scopes = [...document.querySelectorAll("#scope-body input[type=checkbox]:checked")].map((c) => c.value);
    requestScopes(scopes);
  });
  $("monitor-select").addEventListener("change", (event) => pickMonitor(Number(event.target.value)));
  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("chat-input");
    if (sendChat(input.value)) input.value = "";
  });
  $("reveal-credentials").addEventListener("click", () => revealCredentials());
  $("hide-credentials").addEventListener("click", () => hideCredentials());
  $("sessions-refresh").addEventListener("click", () => loadSessions());
  $("audit-load").addEventListener("click", () => loadAudit());
  $("audit-more").addEventListener("click", () => loadAudit({ more: true }));
  $("audit-verify").addEventListener("click", () => verifyAudit());
  installCanvasInput();
  onLangChange(() => {
    renderHeader();
    renderQueue(state.queue);
    if (state.session !== null) renderSession();
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
