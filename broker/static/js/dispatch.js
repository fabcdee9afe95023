// The one message dispatcher. Every JSON message pushed on any connection comes here with the
// view whose connection carried it (null for the main connection). A session view's connection
// watches exactly one session, and a message naming another session is dropped and counted, so
// one subscriber's screen, chat or inventory can never reach another's page (第33条 secrecy).
// Binary screen updates carry no session id: they go straight from a view's own connection to
// that view's canvas (session.js) and never through here.

const handlers = new Map();

/** Messages that belong to one session; on the main connection (which watches none) they are dropped. */
const SESSION_BOUND = new Set(["session_state", "monitor_layout", "chat", "inventory", "credentials"]);

/** Register `fn(msg, view)` for messages of `type` (one handler per type). */
export function on(type, fn) {
  if (handlers.has(type)) throw new Error(`a handler for ${type} exists`);
  handlers.set(type, fn);
}

/** Messages that name a session but are for the operator, not for that session's page: an
 * invitation reaches every connection of the inviter and the colleague (colleagues.js). */
const PERSONAL = new Set(["invitation"]);

export function dispatch(msg, view) {
  if (PERSONAL.has(msg.type)) {
    const fn = handlers.get(msg.type);
    if (fn !== undefined) fn(msg, view);
    return;
  }
  const bound = SESSION_BOUND.has(msg.type) || typeof msg.session_id === "string";
  if (view === null && bound) return;
  if (view !== null && bound && msg.session_id !== view.id) {
    view.foreign += 1;  // never shown; counted so a test can see it was refused here
    return;
  }
  const fn = handlers.get(msg.type);
  if (fn !== undefined) fn(msg, view);
}
