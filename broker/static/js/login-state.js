// The login: the token (page memory only, never storage or cookies: docs/console.md), who is
// logged in, and the main connection (queue, claims by code, supervisor requests). Each session
// view has a connection of its own (session.js), authenticated with the same token.

import { Connection, operatorUrl } from "./connection.js";

export const login = {
  token: null,
  expiresAt: 0,
  expiryTimer: null,
  me: null,
  conn: null,
};

/** A new connection to /operator, authenticated with the login's token. */
export async function authedConnection(handlers) {
  if (login.token === null) throw new Error("not logged in");
  const conn = new Connection(operatorUrl(), handlers);
  await conn.connect();
  try {
    await conn.request({ type: "auth", token: login.token }, "login_ok");
  } catch (err) {
    conn.close(1000, "auth failed");
    throw err;
  }
  return conn;
}
