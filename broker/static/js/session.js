// Support sessions: one SessionView per session the operator has open (claimed, or joined
// read-only by a supervisor), each with its own connection to the broker. A view's connection
// watches only its own session, so the screen updates on it are that session's and nobody
// else's; they are decoded into the view's own ScreenCanvas and drawn on the page only while
// the view is the active one. Several views live side by side ("my sessions", switcher.js).

import { ReplyError } from "./connection.js";
import { ScreenCanvas } from "./screen.js";
import { authedConnection, login } from "./login-state.js";
import { dispatch } from "./dispatch.js";
import { SCOPE_VIEW } from "./scopes.js";

const RECONNECT_DELAYS_MS = [1000, 2000, 4000];
const KEYFRAME_ASK_INTERVAL_MS = 2000;

/** id → SessionView, in the order they were opened. */
export const views = new Map();
let active = null;
const listeners = new Set();

/** Call `fn(event, view)` on "open", "activate", "state", "frame", "chat", "inventory",
 * "layout", "close", "error" (rendering lives in session-page.js and switcher.js). */
export function onView(fn) {
  listeners.add(fn);
}

function emit(event, view, extra) {
  for (const fn of listeners) fn(event, view, extra);
}

export function activeView() {
  return active;
}

export class SessionView {
  constructor(id, { readOnly, contract_id = "", machine_name = "", operator = "" }) {
    this.id = id;
    this.readOnly = readOnly;
    this.conn = null;
    this.phase = "waiting";
    this.state = { session_id: id, phase: "waiting", contract_id, machine_name, operator, scopes: {} };
    this.layout = null;
    this.inventory = null;
    this.screen = new ScreenCanvas();
    this.chat = [];
    this.unread = 0;
    this.foreign = 0;
    this.inputSeq = 0;
    this.blockedInputs = 0;
    this.lastKeyframeAsk = 0;
    this.reconnecting = false;
    this.note = "";
  }

  handlers() {
    return {
      onMessage: (msg) => dispatch(msg, this),
      onBinary: (data) => this.onFrame(data),
      onClose: ({ wasOpen }) => this.onClose(wasOpen),
    };
  }

  /** Send on this view's own connection; false (and an "error" event) when it is down. */
  send(msg) {
    try {
      this.conn.send(msg);
      return true;
    } catch (err) {
      emit("error", this, err);
      return false;
    }
  }

  onFrame(data) {
    const screen = this.screen;
    if (screen === null) return;  // ended: the last picture is gone and stays gone
    screen
      .apply(data)
      .then(() => {
        if (screen !== this.screen) return;
        if (screen.needsKeyframe) this.askKeyframe();
        emit("frame", this);
      })
      .catch(() => {
        if (screen === this.screen) this.askKeyframe();
      });
  }

  askKeyframe() {
    const now = Date.now();
    if (now - this.lastKeyframeAsk < KEYFRAME_ASK_INTERVAL_MS || this.phase === "ended") return;
    this.lastKeyframeAsk = now;
    this.send({ type: "screen_refresh", session_id: this.id, behind: true });
  }

  watch() {
    this.send({ type: "watch", id: null, session_id: this.id });
  }

  applyState(msg) {
    this.state = msg;
    this.phase = msg.phase;
    if (msg.phase === "ended") {
      // The subscriber's last picture leaves the page with the session (第33条).
      this.screen = null;
      this.layout = null;
    }
    emit("state", this);
  }

  onClose(wasOpen) {
    if (login.token === null || !wasOpen || this.phase === "ended" || !views.has(this.id)) return;
    if (!this.reconnecting) this.resume();
  }

  /** A dropped connection: authenticate a new one with the token and watch again. */
  async resume() {
    this.reconnecting = true;
    emit("state", this);
    try {
      for (const delay of RECONNECT_DELAYS_MS) {
        await new Promise((r) => setTimeout(r, delay));
        if (login.token === null || !views.has(this.id)) return;
        try {
          this.conn = await authedConnection(this.handlers());
          if (this.screen !== null) this.screen = new ScreenCanvas();
          this.watch();
          return;
        } catch (err) {
          if (err instanceof ReplyError && err.code === "auth_required") return;
        }
      }
    } finally {
      this.reconnecting = false;
      emit("state", this);
    }
  }

  close() {
    views.delete(this.id);
    this.screen = null;
    const conn = this.conn;
    this.conn = null;
    if (conn !== null) conn.close(1000, "view closed");
  }
}

/**
 * Open a session on a connection of its own: `claim` {code | session_id} for an operator, or
 * `watch` {session_id} read-only for a supervisor. Resolves with the view, now active.
 */
export async function openSession({ claim = null, watch = null, info = {}, owner = false }) {
  let view = null;
  const pending = [];
  const conn = await authedConnection({
    onMessage: (msg) => (view === null ? pending.push(msg) : dispatch(msg, view)),
    onBinary: (data) => view !== null && view.onFrame(data),
    onClose: ({ wasOpen }) => view !== null && view.onClose(wasOpen),
  });
  let sessionId;
  let details = info;
  try {
    if (claim !== null) {
      const reply = await conn.request({ type: "claim", scopes: [SCOPE_VIEW], ...claim }, "claimed");
      sessionId = reply.session_id;
      details = { contract_id: reply.contract_id, machine_name: reply.machine_name };
    } else {
      sessionId = watch;
    }
  } catch (err) {
    conn.close(1000, "claim refused");
    throw err;
  }
  const existing = views.get(sessionId);
  if (existing !== undefined) existing.close();
  // `owner`: a session transferred to this operator (colleagues.js) is theirs, not read-only.
  view = new SessionView(sessionId, { readOnly: claim === null && !owner, ...details });
  view.conn = conn;
  views.set(sessionId, view);
  emit("open", view);
  for (const msg of pending) dispatch(msg, view);
  activate(view);
  view.watch();
  return view;
}

/** Show `view` on the session page (null: none). Frames of other views are kept, not drawn. */
export function activate(view) {
  active = view;
  if (view !== null) view.unread = 0;
  emit("activate", view);
}

export function closeView(view) {
  view.close();
  if (active === view) activate(null);
  emit("close", view);
}

/** Forget every view (logout, expiry). */
export function closeAll() {
  for (const view of [...views.values()]) closeView(view);
}

/** Live (not ended) views, for the busy check of new-request alerts. */
export function liveViews() {
  return [...views.values()].filter((v) => v.phase !== "ended");
}
