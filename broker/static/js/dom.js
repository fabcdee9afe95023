// Small DOM and formatting helpers shared by every panel. Network data reaches the page only
// through textContent and attributes (never innerHTML): see docs/console.md.

import { errorText, getLang, t } from "./i18n.js";
import { ReplyError } from "./connection.js";

export const $ = (id) => document.getElementById(id);

export function el(tag, { text, cls, attrs } = {}, children = []) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  if (attrs) for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  for (const child of children) node.append(child);
  return node;
}

export function show(node, visible) {
  node.hidden = !visible;
}

export function setText(id, text) {
  const node = $(id);
  node.textContent = text ?? "";
  return node;
}

export function showError(id, text) {
  const node = setText(id, text);
  show(node, Boolean(text));
}

export function errorMessage(err) {
  const code = err instanceof ReplyError ? err.code : "internal";
  let text = errorText(code);
  if (err instanceof ReplyError && err.retryAfter != null && code !== "account_locked") {
    text += " " + t("error.retry_after", { seconds: Math.ceil(err.retryAfter) });
  }
  return text;
}

export function formatDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return t("duration.s", { s });
  if (s < 3600) return t("duration.ms", { m: Math.floor(s / 60), s: s % 60 });
  return t("duration.hm", { h: Math.floor(s / 3600), m: Math.floor((s % 3600) / 60) });
}

export function formatTime(epochSeconds, withDate = false) {
  const locale = getLang() === "ja" ? "ja-JP" : "en-GB";
  const options = withDate
    ? { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" }
    : { hour: "2-digit", minute: "2-digit", second: "2-digit" };
  return new Intl.DateTimeFormat(locale, options).format(new Date(epochSeconds * 1000));
}

/** Bytes in the units people read on a PC's own screens: 81525809152 → "75.9 GB" (1024-based). */
export function formatBytes(bytes) {
  const n = Number(bytes);
  if (!Number.isFinite(n) || n < 0) return String(bytes);
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** Hertz as GHz/MHz: 2400000000 → "2.40 GHz"; a value already in MHz (< 100000) is taken as MHz. */
export function formatHertz(value, { mhz = false } = {}) {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) return String(value);
  const hz = mhz ? n * 1e6 : n;
  return hz >= 1e9 ? `${(hz / 1e9).toFixed(2)} GHz` : `${Math.round(hz / 1e6)} MHz`;
}
