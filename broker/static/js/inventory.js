// The inventory panel: the 別紙5 items to ask for (one consent each), what was collected, in
// words and human units (GB, GHz), and the audited reveal of the router login (別紙5 (11)).

import { getLang, t } from "./i18n.js";
import { $, el, errorMessage, formatBytes, formatHertz, setText, show, showError } from "./dom.js";
import { handleAuthError } from "./auth.js";
import { INVENTORY_ITEMS, scopeSlug, scopeStatus } from "./scopes.js";
import { activeView } from "./session.js";

/** Revealed router credentials are cleared from the page after this long (and on "hide", on the
 * session's end, on leaving it): a secret should not sit on an unattended screen (別紙5 (11)). */
const CREDENTIALS_VISIBLE_MS = 60_000;
let credentialsTimer = null;

/** The inventory items with a checkbox and their consent state (view and control are shown above the screen). */
export function renderScopeTable(view) {
  const checked = new Set(
    [...document.querySelectorAll("#scope-body input[type=checkbox]:checked")].map((c) => c.value),
  );
  const rows = INVENTORY_ITEMS.map((item) => {
    const scope = `inventory:${item}`;
    const status = scopeStatus(view.state, scope);
    const slug = scopeSlug(scope);
    const label = t(`item.${item}`);
    const pick = el("td");
    if (!view.readOnly) {
      const box = el("input", {
        attrs: { type: "checkbox", value: scope, id: `scope-check-${slug}`, "data-testid": `scope-check-${slug}`, "aria-label": label },
      });
      box.checked = checked.has(scope);
      box.disabled = status === "granted" || status === "requested" || view.phase === "ended";
      pick.append(box);
    }
    return el("tr", { attrs: { "data-scope": scope, "data-status": status, "data-testid": `scope-row-${slug}` } }, [
      pick,
      el("td", { text: label }),
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

const present = (v) => v !== null && v !== undefined && v !== "";

function lines(...parts) {
  return parts.filter((p) => p !== false && present(p)).join("\n");
}

function software(v) {
  const version = present(v.version) ? v.version : t("inventory.version_unknown");
  return `${v.name || v.id || "-"} ${version}`;
}

/** One item's value in words for an operator, never raw JSON or `null`. */
export function formatItem(item, v) {
  if (v === null || v === undefined) return "";
  if (typeof v !== "object") return String(v);
  switch (item) {
    case "os":
      return lines(v.pretty_name || [v.name, v.version].filter(present).join(" "), v.build && `build ${v.build}`, v.arch);
    case "mac_addresses":
      return (Array.isArray(v) ? v : []).map((m) => `${m.interface}: ${m.mac}`).join("\n");
    case "volume_serial":
      return lines(v.serial, v.volume && `(${v.volume})`);
    case "volume_free":
      return t("inventory.free", { volume: v.volume || "/", size: formatBytes(v.free_bytes) });
    case "default_browser":
    case "default_mail":
      return software(v);
    case "cpu":
      return lines(v.model, present(v.mhz) ? formatHertz(v.mhz, { mhz: true }) : t("inventory.clock_unknown"));
    case "memory":
      return formatBytes(v.total_bytes);
    case "router": {
      const m = v.model || {};
      return lines(
        present(m.manufacturer) && `${t("inventory.router.maker")}: ${m.manufacturer}`,
        present(m.model_name) && `${t("inventory.router.model")}: ${m.model_name}`,
        present(m.model_number) && `${t("inventory.router.number")}: ${m.model_number}`,
        present(m.friendly_name) && `${t("inventory.router.name")}: ${m.friendly_name}`,
      );
    }
    default:
      return Object.entries(v)
        .filter(([, x]) => present(x) && typeof x !== "object")
        .map(([k, x]) => `${k}: ${x}`)
        .join("\n");
  }
}

export function renderInventory(view) {
  const inventory = view ? view.inventory : null;
  const items = inventory && Array.isArray(inventory.items) ? inventory.items : [];
  const nodes = [];
  for (const entry of items) {
    if (!INVENTORY_ITEMS.includes(entry.item)) continue;  // not a 別紙5 item: not shown
    nodes.push(el("dt", { text: t(`item.${entry.item}`), attrs: { "data-item": entry.item } }));
    const attrs = { "data-testid": `inventory-${entry.item}`, "data-available": String(Boolean(entry.available)) };
    // The agent's reason is English diagnostics: in Japanese a plain sentence, the detail on hover.
    if (!entry.available && entry.reason) attrs.title = entry.reason;
    const text = entry.available
      ? formatItem(entry.item, entry.value)
      : getLang() === "ja"
        ? t("inventory.unavailable_plain")
        : t("inventory.unavailable", { reason: entry.reason || "-" });
    nodes.push(el("dd", { text, cls: entry.available ? "" : "unavailable", attrs }));
  }
  $("inventory-list").replaceChildren(...nodes);
  show($("inventory-empty"), nodes.length === 0);
  const canReveal = Boolean(inventory && inventory.has_router_credentials) && view.phase !== "ended" && !view.readOnly;
  show($("reveal-credentials"), canReveal);
  show($("reveal-note"), canReveal);
  if (!canReveal) hideCredentials();
}

/** reveal_credentials → credentials: an explicit action the broker writes to the audit log. */
export async function revealCredentials() {
  const view = activeView();
  if (view === null || view.conn === null) return;
  try {
    const reply = await view.conn.request({ type: "reveal_credentials", session_id: view.id }, "credentials");
    if (activeView() !== view || reply.session_id !== view.id) return;
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
