// Which page is shown, the header (who is logged in, connection state) and the banner.

import { t } from "./i18n.js";
import { $, setText, show } from "./dom.js";
import { login } from "./login-state.js";

const PAGES = ["login", "password", "queue", "session", "supervisor"];
const listeners = new Set();

export let currentPage = "login";

/** Call `listener(page)` after every page change. */
export function onPage(listener) {
  listeners.add(listener);
}

export function showPage(page) {
  if (page !== currentPage && (page === "session" || page === "supervisor")) banner("");
  currentPage = page;
  for (const name of PAGES) show($(`page-${name}`), name === page);
  document.body.dataset.page = page;
  renderHeader();
  for (const listener of listeners) listener(page);
}

export function banner(text) {
  const node = setText("banner", text);
  show(node, Boolean(text));
}

export function setConnStatus(key) {
  const node = $("conn-status");
  node.dataset.state = key;
  node.textContent = key === "offline" && !login.token ? "" : t(`conn.${key}`);
}

export function renderHeader() {
  const me = login.me;
  const loggedIn = me !== null && currentPage !== "login";
  show($("nav"), loggedIn && currentPage !== "password");
  show($("logout"), me !== null);
  show($("nav-supervisor"), me !== null && (me.role === "supervisor" || me.role === "admin"));
  setText("whoami", me ? t("nav.whoami", { name: me.display_name, role: t(`role.${me.role}`) }) : "");
  const conn = $("conn-status");
  if (conn.dataset.state) setConnStatus(conn.dataset.state);
}

/** Show an error on the current page's error line. */
export function showPageError(text) {
  const id = { queue: "claim-error", session: "session-error", supervisor: "sup-error" }[currentPage];
  if (!id) return;
  const node = setText(id, text);
  show(node, Boolean(text));
}
