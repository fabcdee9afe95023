// The supervisor page: live sessions (join read-only), the audit log as a readable table with
// filters, and verifying the hash chain.

import { t } from "./i18n.js";
import { $, el, errorMessage, formatTime, show, showError } from "./dom.js";
import { handleAuthError } from "./auth.js";
import { login } from "./login-state.js";
import { showPage } from "./pages.js";
import { openSession } from "./session.js";

const AUDIT_PAGE = 100;
let auditOldest = null;
let entries = [];

export async function enterSupervisor() {
  showPage("supervisor");
  showError("sup-error", "");
  await loadSessions();
  await loadAudit();
}

/** session_list → sessions (supervisors only). */
export async function loadSessions() {
  try {
    const reply = await login.conn.request({ type: "session_list" }, "sessions");
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
      openSession({ watch: s.session_id, info: { contract_id: s.contract_id, machine_name: s.machine_name, operator: s.operator } }).catch(
        (err) => handleAuthError(err) || showError("sup-error", errorMessage(err)),
      ),
    );
    const granted = Object.entries(s.scopes || {})
      .filter(([, status]) => status === "granted")
      .map(([scope]) => (scope.startsWith("inventory:") ? t(`item.${scope.slice(10)}`) : t(`scope.${scope}`)));
    return el("tr", { attrs: { "data-testid": "session-row", "data-session-id": s.session_id } }, [
      el("td", { text: s.contract_id }),
      el("td", { text: s.machine_name }),
      el("td", { text: t(`phase.${s.phase}`) }),
      el("td", { text: s.operator }),
      el("td", {}, granted.map((g) => el("span", { text: g, cls: "chip" }))),
      el("td", { text: s.session_id, cls: "mono small" }),
      el("td", {}, [join]),
    ]);
  });
  $("sessions-body").replaceChildren(...rows);
  show($("sessions-empty"), rows.length === 0);
}

/** audit_query {limit, before_seq} → audit_entries, newest first; `more` pages back. */
export async function loadAudit({ more = false } = {}) {
  const msg = { type: "audit_query", limit: AUDIT_PAGE };
  if (more && auditOldest !== null) msg.before_seq = auditOldest;
  try {
    const reply = await login.conn.request(msg, "audit_entries");
    const list = Array.isArray(reply.entries) ? reply.entries : [];
    entries = more ? entries.concat(list) : list;
    if (list.length) auditOldest = Math.min(...list.map((e) => e.seq));
    else if (!more) auditOldest = null;
    $("audit-more").disabled = list.length < AUDIT_PAGE || auditOldest === null || auditOldest <= 1;
    renderActions();
    renderAudit();
  } catch (err) {
    if (!handleAuthError(err)) showError("sup-error", errorMessage(err));
  }
}

function renderActions() {
  const select = $("audit-filter-action");
  const current = select.value;
  const actions = [...new Set(entries.map((e) => e.action))].sort();
  select.replaceChildren(el("option", { text: t("sup.audit.filter.all"), attrs: { value: "" } }), ...actions.map((a) => el("option", { text: a, attrs: { value: a } })));
  select.value = actions.includes(current) ? current : "";
}

/** The loaded entries that pass the filters (action, and free text over actor/subject/details). */
export function renderAudit() {
  const action = $("audit-filter-action").value;
  const text = $("audit-filter-text").value.trim().toLowerCase();
  const shown = entries.filter((e) => {
    if (action && e.action !== action) return false;
    if (!text) return true;
    return [e.actor, e.subject, JSON.stringify(e.details ?? {})].some((s) => String(s).toLowerCase().includes(text));
  });
  const rows = shown.map((e) =>
    el("tr", { attrs: { "data-testid": "audit-row", "data-seq": e.seq, "data-action": e.action } }, [
      el("td", { text: e.seq, cls: "num" }),
      el("td", { text: formatTime(e.at, true), cls: "nowrap" }),
      el("td", { text: e.actor }),
      el("td", { text: e.action, cls: "mono" }),
      el("td", { text: e.subject, cls: "mono small" }),
      auditDetails(e.details),
    ]),
  );
  $("audit-body").replaceChildren(...rows);
  $("audit-shown").textContent = t("sup.audit.shown", { shown: shown.length, total: entries.length });
  show($("audit-empty"), rows.length === 0);
}

/** Details as "key: value" lines, long values cut at 80 characters (the whole text on hover). */
function auditDetails(details) {
  const pairs = Object.entries(details ?? {}).map(([k, v]) => {
    const value = typeof v === "object" && v !== null ? JSON.stringify(v) : String(v);
    return [k, value.length > 80 ? value.slice(0, 79) + "…" : value, value];
  });
  return el(
    "td",
    { cls: "details" },
    pairs.map(([k, short, full]) =>
      el("div", { attrs: { title: full } }, [el("span", { text: `${k}: `, cls: "key" }), el("span", { text: short, cls: "mono" })]),
    ),
  );
}

/** audit_verify → audit_verified {ok, checked, problems}. */
export async function verifyAudit() {
  const result = $("audit-verify-result");
  try {
    const reply = await login.conn.request({ type: "audit_verify" }, "audit_verified", 120_000);
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

export function resetSupervisor() {
  entries = [];
  auditOldest = null;
  $("sessions-body").replaceChildren();
  $("audit-body").replaceChildren();
}
