// Every string the console shows, in two tables (strings-ja.js, strings-en.js): Japanese first
// (the helpdesk's language), English as the switch. Elements carry data-i18n="<key>" (textContent), data-i18n-placeholder
// and data-i18n-label (aria-label); code calls t(key, params) for everything built at run time.
// Error codes are the stable codes of protocol/errors.py (ErrorCode), as "error.<code>".

import { ja } from "./strings-ja.js";
import { en } from "./strings-en.js";

export const LANGS = ["ja", "en"];

export const STRINGS = { ja, en };

let current = "ja";
const listeners = new Set();

export function getLang() {
  return current;
}

export function setLang(lang) {
  if (!LANGS.includes(lang)) throw new Error(`unknown language ${lang}`);
  current = lang;
  document.documentElement.lang = lang;
  applyI18n(document);
  for (const listener of listeners) listener(lang);
}

/** Call `listener(lang)` after every language switch (to re-render dynamic parts). */
export function onLangChange(listener) {
  listeners.add(listener);
}

/** The string for `key` in the current language, with {name} placeholders filled in. */
export function t(key, params = {}) {
  const table = STRINGS[current];
  let text = Object.prototype.hasOwnProperty.call(table, key) ? table[key] : STRINGS.ja[key];
  if (text === undefined) return key;
  return text.replace(/\{(\w+)\}/g, (whole, name) =>
    Object.prototype.hasOwnProperty.call(params, name) ? String(params[name]) : whole,
  );
}

/** Has the table a string for `key`? */
export function has(key) {
  return Object.prototype.hasOwnProperty.call(STRINGS[current], key);
}

/** The text for a stable error code of protocol/errors.py. */
export function errorText(code) {
  return has(`error.${code}`) ? t(`error.${code}`) : t("error.unknown", { code });
}

/** Fill every element under `root` that names a string key. */
export function applyI18n(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
  for (const el of root.querySelectorAll("[data-i18n-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  }
  if (root === document) document.title = t("app.title");
}
