// Login with TOTP, the first-login password change, logout, expiry, and resuming the main
// connection after a network blip (with the in-memory token).

import { t } from "./i18n.js";
import { Connection, ReplyError, operatorUrl } from "./connection.js";
import { $, errorMessage, formatTime, showError } from "./dom.js";
import { login } from "./login-state.js";
import { banner, renderHeader, setConnStatus, showPage } from "./pages.js";
import { dispatch } from "./dispatch.js";

const RECONNECT_DELAYS_MS = [1000, 2000, 4000];
let reconnecting = false;
const forgetters = new Set();
const resumers = new Set();

/** Call `fn()` when the login is forgotten (logout, expiry): panels clear what they show. */
export function onForget(fn) {
  forgetters.add(fn);
}

/** Call `fn()` after the main connection came back (to reload what a page shows). */
export function onResume(fn) {
  resumers.add(fn);
}

export async function ensureConnected() {
  if (login.conn !== null && login.conn.open) return login.conn;
  setConnStatus("connecting");
  const conn = new Connection(operatorUrl(), {
    onMessage: (msg) => dispatch(msg, null),
    onBinary: () => {},  // the main connection watches no session: a frame here is nobody's
    onClose,
  });
  login.conn = conn;
  try {
    await conn.connect();
  } catch (err) {
    if (login.conn === conn) login.conn = null;
    setConnStatus("offline");
    throw err;
  }
  setConnStatus("online");
  return conn;
}

function onClose({ wasOpen }) {
  setConnStatus("offline");
  if (login.token !== null && wasOpen && !reconnecting) resume();
}

async function resume() {
  reconnecting = true;
  setConnStatus("reconnecting");
  try {
    for (const delay of RECONNECT_DELAYS_MS) {
      await new Promise((r) => setTimeout(r, delay));
      if (login.token === null) return;
      try {
        login.conn = null;
        const conn = await ensureConnected();
        const reply = await conn.request({ type: "auth", token: login.token }, "login_ok");
        applyLogin(reply);
        for (const fn of resumers) fn();
        return;
      } catch (err) {
        if (err instanceof ReplyError && err.code === "auth_required") break;
      }
    }
    backToLogin("login.connection_lost");
  } finally {
    reconnecting = false;
  }
}

function applyLogin(reply) {
  login.token = reply.token;  // memory only: see docs/console.md
  login.expiresAt = reply.expires_at;
  login.me = { name: reply.name, display_name: reply.display_name, role: reply.role };
  clearTimeout(login.expiryTimer);
  const ms = Math.min(2 ** 31 - 1, Math.max(0, reply.expires_at * 1000 - Date.now()));
  login.expiryTimer = setTimeout(() => backToLogin("login.expired"), ms);
  renderHeader();
}

/** login → login_ok; then the password form if the broker asks for it, else `next()`. */
export async function doLogin(name, password, totp, next) {
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
      await next();
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

/** change_password → ok, then `next()`. */
export async function changePassword(oldPassword, newPassword, confirm, next) {
  showError("password-error", "");
  if (newPassword !== confirm) return showError("password-error", t("password.mismatch"));
  if (newPassword.length < 12) return showError("password-error", t("password.too_short"));
  try {
    await login.conn.request({ type: "change_password", old_password: oldPassword, new_password: newPassword }, "ok");
    for (const id of ["password-old", "password-new", "password-confirm"]) $(id).value = "";
    banner(t("password.changed"));
    await next();
  } catch (err) {
    if (!handleAuthError(err)) showError("password-error", errorMessage(err));
  }
}

/** logout → ok; forget the token whatever the answer, close, back to the login page. */
export async function logout() {
  const conn = login.conn;
  login.token = null;  // no resume from here on
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
  login.token = null;
  login.expiresAt = 0;
  clearTimeout(login.expiryTimer);
  login.me = null;
  for (const fn of forgetters) fn();
  for (const id of ["login-password", "login-totp", "password-old", "password-new", "password-confirm"]) {
    $(id).value = "";
  }
  if (login.conn !== null) {
    const conn = login.conn;
    login.conn = null;
    conn.close(1000, "logout");
  }
  setConnStatus("offline");
  showPage("login");
  if (asError) showError("login-error", t(reasonKey));
  else banner(t(reasonKey));
  $("login-name").focus();
  renderHeader();
}

export function handleAuthError(err) {
  if (err instanceof ReplyError && err.code === "auth_required") {
    backToLogin("login.expired");
    return true;
  }
  return false;
}
