// One WebSocket to wss://<this host>/operator, following protocol/link.py: we send hello
// first, wait for the broker's hello, then ping every 20 s (the broker closes a connection idle
// for 65 s). Requests carry an id and resolve with the answer that echoes it, or reject with a
// ReplyError holding the broker's stable error code. Everything else is "pushed": queue,
// session_state, chat, inventory, monitor_layout, errors without a matching id, and binary
// screen updates.

export const PROTOCOL_VERSIONS = [1];
export const SOFTWARE = "console/0.1";
export const HEARTBEAT_INTERVAL_MS = 20_000;
export const REQUEST_TIMEOUT_MS = 30_000;

export class ReplyError extends Error {
  constructor(code, message = "", retryAfter = null) {
    super(message || code);
    this.name = "ReplyError";
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

export function operatorUrl(loc = window.location) {
  const scheme = loc.protocol === "http:" ? "ws:" : "wss:";
  return `${scheme}//${loc.host}/operator`;
}

export class Connection {
  /**
   * handlers: onMessage(msg) for pushed JSON messages, onBinary(ArrayBuffer) for screen
   * updates, onClose({code, reason, wasOpen}) once when the socket is gone.
   */
  constructor(url, { onMessage = () => {}, onBinary = () => {}, onClose = () => {} } = {}) {
    this.url = url;
    this.onMessage = onMessage;
    this.onBinary = onBinary;
    this.onClose = onClose;
    this.ws = null;
    this.open = false;
    this.version = null;
    this.rtt = null;
    this._ids = 0;
    this._pending = new Map();
    this._heartbeat = null;
    this._closedReported = false;
  }

  nextId() {
    this._ids += 1;
    return `c${this._ids}`;
  }

  /** Open the socket and exchange hello; resolves once the broker's hello arrived. */
  connect() {
    return new Promise((resolve, reject) => {
      let settled = false;
      const ws = new WebSocket(this.url);
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      ws.addEventListener("open", () => {
        ws.send(JSON.stringify({ type: "hello", versions: PROTOCOL_VERSIONS, role: "operator", software: SOFTWARE }));
      });
      ws.addEventListener("message", (event) => {
        if (typeof event.data !== "string") {
          if (this.open) this.onBinary(event.data);
          return;
        }
        let msg;
        try {
          msg = JSON.parse(event.data);
        } catch {
          return;  // the broker only sends JSON objects; ignore anything else
        }
        if (msg === null || typeof msg !== "object" || typeof msg.type !== "string") return;
        if (!this.open) {
          if (msg.type === "hello" && Array.isArray(msg.versions) && PROTOCOL_VERSIONS.includes(msg.versions[0])) {
            this.open = true;
            this.version = msg.versions[0];
            this._startHeartbeat();
            settled = true;
            resolve(this);
          } else if (!settled) {
            settled = true;
            reject(new ReplyError(msg.type === "error" ? msg.code : "unexpected_message", msg.message || ""));
            ws.close(1000);
          }
          return;
        }
        this._dispatch(msg);
      });
      ws.addEventListener("close", (event) => {
        const wasOpen = this.open;
        this.open = false;
        this._stopHeartbeat();
        for (const { reject: fail, timer } of this._pending.values()) {
          clearTimeout(timer);
          fail(new ReplyError(event.reason || "closed"));
        }
        this._pending.clear();
        if (!settled) {
          settled = true;
          reject(new ReplyError(event.reason || "closed"));
        }
        if (!this._closedReported) {
          this._closedReported = true;
          this.onClose({ code: event.code, reason: event.reason, wasOpen });
        }
      });
    });
  }

  _dispatch(msg) {
    if (msg.type === "ping") {
      this._sendRaw({ type: "pong", id: msg.id, time: msg.time });
      return;
    }
    if (msg.type === "pong") {
      this.rtt = Math.max(0, Date.now() / 1000 - Number(msg.time));
      return;
    }
    const pending = typeof msg.id === "string" ? this._pending.get(msg.id) : undefined;
    if (pending !== undefined && (msg.type === "error" || pending.expect.includes(msg.type))) {
      this._pending.delete(msg.id);
      clearTimeout(pending.timer);
      if (msg.type === "error") pending.reject(new ReplyError(msg.code, msg.message, msg.retry_after ?? null));
      else pending.resolve(msg);
      return;
    }
    this.onMessage(msg);
  }

  _startHeartbeat() {
    this._stopHeartbeat();
    this._heartbeat = setInterval(() => {
      if (this.open) this._sendRaw({ type: "ping", id: this.nextId(), time: Date.now() / 1000 });
    }, HEARTBEAT_INTERVAL_MS);
  }

  _stopHeartbeat() {
    if (this._heartbeat !== null) clearInterval(this._heartbeat);
    this._heartbeat = null;
  }

  _sendRaw(msg) {
    if (this.ws === null || this.ws.readyState !== WebSocket.OPEN) throw new ReplyError("closed");
    this.ws.send(JSON.stringify(msg));
  }

  /** Send without waiting for an answer. A message with `id: null` gets a fresh id. */
  send(msg) {
    if (!this.open) throw new ReplyError("closed");
    const out = "id" in msg && msg.id == null ? { ...msg, id: this.nextId() } : msg;
    this._sendRaw(out);
    return out;
  }

  /**
   * Send a request and wait for the answer of one of the `expect` types with the same id
   * (or an error with it). The id is filled in here.
   */
  request(msg, expect, timeoutMs = REQUEST_TIMEOUT_MS) {
    if (!this.open) return Promise.reject(new ReplyError("closed"));
    const out = { ...msg, id: this.nextId() };
    const types = Array.isArray(expect) ? expect : [expect];
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(out.id);
        reject(new ReplyError("timeout"));
      }, timeoutMs);
      this._pending.set(out.id, { resolve, reject, expect: types, timer });
      try {
        this._sendRaw(out);
      } catch (err) {
        clearTimeout(timer);
        this._pending.delete(out.id);
        reject(err);
      }
    });
  }

  close(code = 1000, reason = "bye") {
    this._stopHeartbeat();
    if (this.ws !== null && this.ws.readyState <= WebSocket.OPEN) this.ws.close(code, reason);
  }
}
