// Every string the console shows, in one table: Japanese first (the helpdesk's language),
// English as the switch. Elements carry data-i18n="<key>" (textContent), data-i18n-placeholder
// and data-i18n-label (aria-label); code calls t(key, params) for everything built at run time.
// Error codes are the stable codes of protocol/errors.py (ErrorCode), as "error.<code>".

export const LANGS = ["ja", "en"];

const ja = {
  "app.title": "リモートサポート オペレータコンソール",
  "app.brand": "リモートサポート",
  "lang.switch": "English",
  "lang.switch.label": "表示言語を英語に切り替え",
  "nav.queue": "受付待ち",
  "nav.supervisor": "監視・監査",
  "nav.logout": "ログアウト",
  "nav.whoami": "{name}（{role}）",
  "role.operator": "オペレータ",
  "role.supervisor": "スーパーバイザー",
  "role.admin": "管理者",
  "conn.connecting": "接続中…",
  "conn.online": "接続済み",
  "conn.offline": "切断",
  "conn.reconnecting": "再接続中…",

  "login.heading": "オペレータ ログイン",
  "login.name": "オペレータ名",
  "login.password": "パスワード",
  "login.totp": "ワンタイムコード（認証アプリの6桁）",
  "login.submit": "ログイン",
  "login.busy": "確認中…",
  "login.note": "このコンソールはISPヘルプデスク担当者専用です。操作はすべて監査ログに記録されます。",
  "login.logged_out": "ログアウトしました。",
  "login.expired": "ログインの有効期限が切れました。もう一度ログインしてください。",
  "login.connection_lost": "ブローカーとの接続が切れました。もう一度ログインしてください。",
  "login.locked": "アカウントはロックされています。{time} 以降（約{minutes}分後）に再試行してください。",
  "login.locked_no_time": "アカウントはロックされています。しばらくしてから再試行してください。",

  "password.heading": "初期パスワードの変更",
  "password.note": "初回ログインです。続行する前に、一時パスワードを新しいパスワード（12文字以上）に変更してください。",
  "password.old": "現在のパスワード",
  "password.new": "新しいパスワード",
  "password.confirm": "新しいパスワード（確認）",
  "password.submit": "変更する",
  "password.mismatch": "確認用のパスワードが一致しません。",
  "password.too_short": "新しいパスワードは12文字以上にしてください。",
  "password.changed": "パスワードを変更しました。",

  "queue.heading": "受付待ちのサポート依頼",
  "queue.claim.heading": "サポートコードで受付",
  "queue.claim.code": "サポートコード（6桁）",
  "queue.claim.submit": "受付",
  "queue.claim.help": "お客さまが電話で読み上げる6桁のコードを入力してください。",
  "queue.col.contract": "契約ID",
  "queue.col.machine": "PC名",
  "queue.col.waiting": "待ち時間",
  "queue.col.expires": "コード有効期限",
  "queue.col.action": "操作",
  "queue.claim.row": "この依頼を受付",
  "queue.empty": "受付待ちの依頼はありません。",
  "queue.count": "{count}件の依頼が待っています",
  "queue.code_invalid_format": "サポートコードは6桁の数字です。",
  "duration.s": "{s}秒",
  "duration.ms": "{m}分{s}秒",
  "duration.hm": "{h}時間{m}分",
  "queue.expired": "期限切れ",

  "session.heading": "サポートセッション",
  "session.contract": "契約ID",
  "session.machine": "PC名",
  "session.phase": "状態",
  "session.operator": "担当",
  "session.readonly": "閲覧のみ（スーパーバイザー監視）",
  "phase.waiting": "受付待ち",
  "phase.consent": "お客さまの承諾待ち",
  "phase.active": "実施中",
  "phase.ended": "終了",
  "session.ended": "セッションは終了しました（終了した側：{by}、理由：{reason}）。",
  "ended_by.subscriber": "お客さま",
  "ended_by.operator": "オペレータ",
  "ended_by.broker": "ブローカー",
  "session.back": "受付待ち一覧に戻る",
  "session.end": "セッションを終了",
  "session.end.confirm": "このセッションを終了しますか？",
  "session.screen.waiting": "画面の共有を待っています…",
  "session.screen.no_view": "お客さまが画面の表示を許可していないため、画面は表示されません。",
  "session.monitor": "モニター",
  "monitor.all": "全モニター",
  "monitor.one": "モニター {n}（{w}×{h}）",

  "scopes.heading": "お客さまの承諾",
  "scopes.col.scope": "項目",
  "scopes.col.status": "状態",
  "scopes.request_control": "遠隔操作の許可を依頼",
  "scopes.request_view": "画面表示の許可を依頼",
  "scopes.request_inventory": "選択した情報の取得を依頼",
  "scopes.inventory_hint": "情報は項目ごとにお客さまの承諾が必要です。承諾されなくてもサービスに制限はありません（別紙5）。",
  "scopes.requested_sent": "お客さまに承諾を依頼しました。",
  "scopes.none_selected": "依頼する項目を選んでください。",
  "scope.screen:view": "画面の表示",
  "scope.input:control": "遠隔操作（マウス・キーボード）",
  "status.none": "未依頼",
  "status.requested": "承諾待ち",
  "status.granted": "許可",
  "status.denied": "拒否",
  "status.timeout": "時間切れ（拒否扱い）",
  "status.withdrawn": "取り消し",

  "item.os": "OSの種類とバージョン",
  "item.cert_id": "クライアント証明書ID",
  "item.machine_name": "コンピュータ名",
  "item.mac_addresses": "MACアドレス",
  "item.volume_serial": "システムボリュームのシリアル番号",
  "item.volume_free": "システムボリュームの空き容量",
  "item.default_browser": "既定のブラウザとバージョン",
  "item.default_mail": "既定のメールソフトとバージョン",
  "item.cpu": "CPUの種類とクロック",
  "item.memory": "メモリ容量",
  "item.router": "ルーターの機種とログイン情報",

  "input.granted": "遠隔操作が許可されています。画面上のマウスとキーボード操作がお客さまのPCに送られます。",
  "input.readonly": "閲覧のみの参加のため、操作は送信されません。",
  "input.not_granted": "遠隔操作は許可されていないため、マウスとキーボードの操作は送信されません（状態：{status}）。",
  "input.ended": "セッションは終了しているため、操作は送信されません。",
  "input.blocked": "操作は送信されませんでした：{reason}",

  "chat.heading": "チャット",
  "chat.placeholder": "お客さまへのメッセージ",
  "chat.send": "送信",
  "chat.subscriber": "お客さま",
  "chat.readonly": "閲覧のみのためチャットは送信できません。",

  "inventory.heading": "取得した情報",
  "inventory.empty": "承諾された情報はまだありません。",
  "inventory.unavailable": "取得できませんでした：{reason}",
  "inventory.reveal": "ルーターのログイン情報を表示",
  "inventory.reveal.confirm": "ルーターのログイン情報を表示します。この操作は監査ログに記録されます。続けますか？",
  "inventory.reveal.note": "表示操作は監査ログに記録されます。表示は1分後に自動で消えます。",
  "inventory.hide": "ログイン情報を隠す",
  "inventory.account": "アカウント",
  "inventory.password": "パスワード",

  "sup.sessions.heading": "実施中のセッション",
  "sup.sessions.refresh": "更新",
  "sup.sessions.empty": "実施中のセッションはありません。",
  "sup.sessions.join": "閲覧で参加",
  "sup.col.session": "セッション",
  "sup.col.scopes": "許可された項目",
  "sup.audit.heading": "監査ログ",
  "sup.audit.load": "最新を読み込む",
  "sup.audit.more": "さらに古い記録",
  "sup.audit.verify": "チェーンを検証",
  "sup.audit.empty": "記録はありません。",
  "sup.audit.col.seq": "番号",
  "sup.audit.col.at": "日時",
  "sup.audit.col.actor": "実行者",
  "sup.audit.col.action": "操作",
  "sup.audit.col.subject": "対象",
  "sup.audit.col.details": "詳細",
  "sup.audit.verified_ok": "ハッシュチェーンは正常です（{checked}件を検証）。",
  "sup.audit.verified_bad": "ハッシュチェーンに問題があります（{checked}件を検証、問題{count}件）。",

  "error.login_failed": "オペレータ名、パスワード、またはワンタイムコードが正しくありません。",
  "error.account_locked": "アカウントはロックされています。",
  "error.auth_required": "ログインが必要です。",
  "error.code_invalid": "このサポートコードの受付待ち依頼はありません。コードを確認してください。",
  "error.consent_required": "お客さまの承諾がないため実行できません。",
  "error.not_allowed": "この操作は許可されていません。",
  "error.not_found": "見つかりません（お客さまのPCが接続されていない可能性があります）。",
  "error.rate_limited": "操作が多すぎます。しばらく待ってから再試行してください。",
  "error.service_closed": "サービス時間外です。",
  "error.invalid_field": "入力内容が正しくありません。",
  "error.invalid_state": "現在の状態ではこの操作はできません。",
  "error.unexpected_message": "現在の状態ではこの操作はできません。",
  "error.idle_timeout": "無通信のため接続が切れました。",
  "error.timeout": "ブローカーから応答がありません。",
  "error.closed": "接続が切れました。",
  "error.internal": "ブローカーで内部エラーが発生しました。",
  "error.unknown": "エラーが発生しました（{code}）。",
  "error.retry_after": "{seconds}秒後に再試行できます。",
};

const en = {
  "app.title": "Remote support: operator console",
  "app.brand": "Remote support",
  "lang.switch": "日本語",
  "lang.switch.label": "Switch the display language to Japanese",
  "nav.queue": "Queue",
  "nav.supervisor": "Supervision & audit",
  "nav.logout": "Log out",
  "nav.whoami": "{name} ({role})",
  "role.operator": "operator",
  "role.supervisor": "supervisor",
  "role.admin": "admin",
  "conn.connecting": "Connecting…",
  "conn.online": "Connected",
  "conn.offline": "Disconnected",
  "conn.reconnecting": "Reconnecting…",

  "login.heading": "Operator login",
  "login.name": "Operator name",
  "login.password": "Password",
  "login.totp": "One-time code (6 digits from your authenticator app)",
  "login.submit": "Log in",
  "login.busy": "Checking…",
  "login.note": "For ISP helpdesk staff only. Every action is recorded in the audit log.",
  "login.logged_out": "You have logged out.",
  "login.expired": "Your login has expired. Please log in again.",
  "login.connection_lost": "The connection to the broker was lost. Please log in again.",
  "login.locked": "This account is locked. Try again after {time} (in about {minutes} min).",
  "login.locked_no_time": "This account is locked. Try again later.",

  "password.heading": "Change your initial password",
  "password.note": "This is your first login. Replace the one-time password with a new one (at least 12 characters) to continue.",
  "password.old": "Current password",
  "password.new": "New password",
  "password.confirm": "New password (again)",
  "password.submit": "Change password",
  "password.mismatch": "The two new passwords differ.",
  "password.too_short": "The new password needs at least 12 characters.",
  "password.changed": "Password changed.",

  "queue.heading": "Waiting support requests",
  "queue.claim.heading": "Take a request by support code",
  "queue.claim.code": "Support code (6 digits)",
  "queue.claim.submit": "Take",
  "queue.claim.help": "Enter the 6-digit code the subscriber reads to you on the phone.",
  "queue.col.contract": "Contract ID",
  "queue.col.machine": "PC name",
  "queue.col.waiting": "Waiting",
  "queue.col.expires": "Code expires",
  "queue.col.action": "Action",
  "queue.claim.row": "Take this request",
  "queue.empty": "No requests are waiting.",
  "queue.count": "{count} request(s) waiting",
  "queue.code_invalid_format": "A support code is 6 digits.",
  "duration.s": "{s} s",
  "duration.ms": "{m} min {s} s",
  "duration.hm": "{h} h {m} min",
  "queue.expired": "expired",

  "session.heading": "Support session",
  "session.contract": "Contract ID",
  "session.machine": "PC name",
  "session.phase": "Phase",
  "session.operator": "Operator",
  "session.readonly": "Read-only (supervisor watching)",
  "phase.waiting": "waiting",
  "phase.consent": "waiting for the subscriber's consent",
  "phase.active": "active",
  "phase.ended": "ended",
  "session.ended": "The session has ended (ended by: {by}, reason: {reason}).",
  "ended_by.subscriber": "the subscriber",
  "ended_by.operator": "the operator",
  "ended_by.broker": "the broker",
  "session.back": "Back to the queue",
  "session.end": "End session",
  "session.end.confirm": "End this session?",
  "session.screen.waiting": "Waiting for the shared screen…",
  "session.screen.no_view": "The subscriber has not allowed screen viewing, so no screen is shown.",
  "session.monitor": "Monitor",
  "monitor.all": "All monitors",
  "monitor.one": "Monitor {n} ({w}×{h})",

  "scopes.heading": "Subscriber's consent",
  "scopes.col.scope": "Item",
  "scopes.col.status": "Status",
  "scopes.request_control": "Ask for remote control",
  "scopes.request_view": "Ask to view the screen",
  "scopes.request_inventory": "Ask for the selected items",
  "scopes.inventory_hint": "Each item needs the subscriber's consent. Refusing changes nothing about the service (別紙5).",
  "scopes.requested_sent": "Consent was asked from the subscriber.",
  "scopes.none_selected": "Select the items to ask for.",
  "scope.screen:view": "Screen view",
  "scope.input:control": "Remote control (mouse and keyboard)",
  "status.none": "not asked",
  "status.requested": "asked, waiting",
  "status.granted": "granted",
  "status.denied": "refused",
  "status.timeout": "timed out (refused)",
  "status.withdrawn": "withdrawn",

  "item.os": "OS type and version",
  "item.cert_id": "Client certificate ID",
  "item.machine_name": "Machine name",
  "item.mac_addresses": "MAC addresses",
  "item.volume_serial": "System volume serial number",
  "item.volume_free": "System volume free space",
  "item.default_browser": "Default browser and version",
  "item.default_mail": "Default mail client and version",
  "item.cpu": "CPU type and clock",
  "item.memory": "Memory size",
  "item.router": "Router model and login",

  "input.granted": "Remote control is granted: mouse and keyboard on the screen are sent to the subscriber's PC.",
  "input.readonly": "You joined read-only: no input is sent.",
  "input.not_granted": "Remote control is not granted, so mouse and keyboard are not sent (status: {status}).",
  "input.ended": "The session has ended: no input is sent.",
  "input.blocked": "Input not sent: {reason}",

  "chat.heading": "Chat",
  "chat.placeholder": "Message to the subscriber",
  "chat.send": "Send",
  "chat.subscriber": "Subscriber",
  "chat.readonly": "Read-only viewers cannot chat.",

  "inventory.heading": "Collected information",
  "inventory.empty": "No consented items yet.",
  "inventory.unavailable": "Not available: {reason}",
  "inventory.reveal": "Reveal router login",
  "inventory.reveal.confirm": "Reveal the router login? This is recorded in the audit log.",
  "inventory.reveal.note": "Revealing is recorded in the audit log. The login is hidden again after a minute.",
  "inventory.hide": "Hide router login",
  "inventory.account": "Account",
  "inventory.password": "Password",

  "sup.sessions.heading": "Live sessions",
  "sup.sessions.refresh": "Refresh",
  "sup.sessions.empty": "No live sessions.",
  "sup.sessions.join": "Join read-only",
  "sup.col.session": "Session",
  "sup.col.scopes": "Granted",
  "sup.audit.heading": "Audit log",
  "sup.audit.load": "Load newest",
  "sup.audit.more": "Older entries",
  "sup.audit.verify": "Verify chain",
  "sup.audit.empty": "No entries.",
  "sup.audit.col.seq": "Seq",
  "sup.audit.col.at": "Time",
  "sup.audit.col.actor": "Actor",
  "sup.audit.col.action": "Action",
  "sup.audit.col.subject": "Subject",
  "sup.audit.col.details": "Details",
  "sup.audit.verified_ok": "The hash chain is intact ({checked} entries checked).",
  "sup.audit.verified_bad": "The hash chain has problems ({checked} entries checked, {count} problem(s)).",

  "error.login_failed": "Wrong operator name, password or one-time code.",
  "error.account_locked": "This account is locked.",
  "error.auth_required": "Please log in.",
  "error.code_invalid": "No waiting request has this support code. Please check it.",
  "error.consent_required": "Not possible without the subscriber's consent.",
  "error.not_allowed": "This action is not allowed.",
  "error.not_found": "Not found (the subscriber's PC may be offline).",
  "error.rate_limited": "Too many attempts. Please wait and try again.",
  "error.service_closed": "Outside service hours.",
  "error.invalid_field": "The input is not valid.",
  "error.invalid_state": "Not possible in the current state.",
  "error.unexpected_message": "Not possible in the current state.",
  "error.idle_timeout": "The connection was idle too long and was closed.",
  "error.timeout": "The broker did not answer.",
  "error.closed": "The connection was closed.",
  "error.internal": "The broker had an internal error.",
  "error.unknown": "An error occurred ({code}).",
  "error.retry_after": "You can retry in {seconds} s.",
};

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
