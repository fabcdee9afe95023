// Inviting a colleague into a session, and transferring a session to a colleague (issue 13,
// docs/console.md). The session's operator types the colleague's operator name and presses
// "invite" (read-only watching) or "transfer" (the colleague takes over; control is not carried
// over). The broker asks the subscriber for that person by name; every connection of the
// inviter and of the colleague gets `invitation` messages with the status (asked, allowed,
// refused, timeout). The colleague sees a notice with a "join" / "take over" button once the
// subscriber allowed them; after a transfer the old operator's view is closed.

import { t } from "./i18n.js";
import { $, el, errorMessage, show } from "./dom.js";
import { on } from "./dispatch.js";
import { login } from "./login-state.js";
import { activate, activeView, closeView, onView, openSession, views } from "./session.js";
import { showPage } from "./pages.js";

const NAME_RE = /^[A-Za-z0-9_.@-]{1,64}$/;
const MAX_NOTICES = 5;
/** "session|kind|colleague" → latest invitation message (one notice per invitation). */
const notices = new Map();

function key(msg) {
  return `${msg.session_id}|${msg.kind}|${msg.colleague}`;
}

function who(name, display) {
  return display ? `${display} (${name})` : name;
}

/** The session page's line about the active view's latest invitation or transfer. */
export function renderColleagueStatus() {
  const view = activeView();
  const node = $("colleague-status");
  const form = $("colleague-form");
  show(form, view !== null && !view.readOnly && view.phase === "active");
  if (view === null) return;
  const mine = [...notices.values()].filter((m) => m.session_id === view.id && m.by === login.me?.name);
  const last = mine[mine.length - 1];
  node.textContent = last ? t(`colleague.${last.kind}.${last.status}`, { who: who(last.colleague, last.colleague_display) }) : "";
  node.dataset.status = last ? last.status : "";
}

function renderNotices() {
  const box = $("invitations");
  box.replaceChildren();
  const mine = [...notices.values()].filter((m) => m.colleague === login.me?.name && m.status !== "failed");
  for (const msg of mine.slice(-MAX_NOTICES)) {
    const text = t(`colleague.notice.${msg.kind}.${msg.status}`, {
      by: who(msg.by, msg.by_display),
      contract: msg.contract_id,
      machine: msg.machine_name,
    });
    const item = el("p", { cls: "invitation", attrs: { "data-testid": "invitation", "data-status": msg.status, "data-kind": msg.kind } }, [
      el("span", { text }),
    ]);
    if (msg.status === "allowed" && !views.has(msg.session_id)) {
      const button = el("button", {
        text: t(msg.kind === "transfer" ? "colleague.take_over" : "colleague.join"),
        attrs: { type: "button", "data-testid": "invitation-join" },
      });
      button.addEventListener("click", () => join(msg));
      item.append(button);
    }
    box.append(item);
  }
  show(box, box.childElementCount > 0);
}

async function join(msg) {
  try {
    await openSession({
      watch: msg.session_id,
      owner: msg.kind === "transfer",
      info: { contract_id: msg.contract_id, machine_name: msg.machine_name },
    });
    notices.delete(key(msg));
    renderNotices();
    showPage("session");
  } catch (err) {
    $("invitations").append(el("p", { cls: "error", text: errorMessage(err) }));
  }
}

function ask(kind) {
  const view = activeView();
  const input = $("colleague-name");
  const name = input.value.trim();
  if (view === null || view.readOnly) return;
  if (!NAME_RE.test(name)) {
    $("colleague-status").textContent = t("colleague.bad_name");
    return;
  }
  if (view.send({ type: kind, id: null, session_id: view.id, colleague: name })) input.value = "";
}

on("invitation", (msg) => {
  notices.set(key(msg), msg);
  while (notices.size > 50) notices.delete(notices.keys().next().value);
  if (msg.kind === "transfer" && msg.status === "allowed" && msg.by === login.me?.name) {
    // Handed over: this operator's view of the session is detached by the broker; close it.
    const view = views.get(msg.session_id);
    if (view !== undefined) closeView(view);
    $("banner").textContent = t("colleague.transferred_away", { who: who(msg.colleague, msg.colleague_display) });
    show($("banner"), true);
  }
  if (msg.kind === "transfer" && msg.status === "allowed" && msg.colleague === login.me?.name) {
    // Already watching read-only: the same view becomes this operator's own session.
    const view = views.get(msg.session_id);
    if (view !== undefined) {
      view.readOnly = false;
      if (activeView() === view) activate(view);
    }
  }
  renderNotices();
  renderColleagueStatus();
});

onView((event) => {
  if (event === "state" || event === "activate" || event === "close") renderColleagueStatus();
  if (event === "open" || event === "close") renderNotices();
});

export function wireColleagues() {
  $("invite-colleague").addEventListener("click", () => ask("invite"));
  $("transfer-session").addEventListener("click", () => ask("transfer"));
}

export function resetColleagues() {
  notices.clear();
  renderNotices();
}
