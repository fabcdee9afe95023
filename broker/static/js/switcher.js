// "My sessions": every open session as a button in the header, to switch between them without
// losing any. A session keeps running (and its frames keep being decoded into its own canvas)
// while another one is shown; a subscriber's chat message in a hidden session shows a count.

import { t } from "./i18n.js";
import { $, el, show } from "./dom.js";
import { activate, activeView, onView, views } from "./session.js";
import { currentPage, onPage } from "./pages.js";

export function renderSwitcher() {
  const current = currentPage === "session" ? activeView() : null;
  const items = [...views.values()].map((view) => {
    const label = view.state.contract_id || view.id;
    const button = el(
      "button",
      {
        text: label,
        cls: "my-session",
        attrs: {
          type: "button",
          "data-testid": "my-session",
          "data-session-id": view.id,
          "data-phase": view.phase,
          "aria-pressed": String(view === current),
          title: `${label} ${t(`phase.${view.phase}`)}`,
        },
      },
      view.unread ? [el("span", { text: String(view.unread), cls: "unread", attrs: { "data-testid": "my-session-unread" } })] : [],
    );
    button.addEventListener("click", () => activate(view));
    return button;
  });
  $("my-sessions").replaceChildren(...items);
  show($("my-sessions"), items.length > 0);
}

onView(() => renderSwitcher());
onPage(() => renderSwitcher());
