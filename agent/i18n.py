"""Subscriber-facing text: Japanese first, English fallback (DEVELOPERS.md: user-facing text).

The language comes from ``--lang`` or the locale (``LC_ALL``, ``LC_MESSAGES``, ``LANG``): any
``ja*`` locale gives Japanese, anything else English. Error codes from the broker are translated
here, so the wire carries only stable codes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

Lang = str

MESSAGES: dict[str, tuple[str, str]] = {
    # (Japanese, English)
    "enroll.consent": (
        "{broker} のリモートサポートサービス（契約 {contract}）に登録します。\n"
        "当社が発行する電子証明書をこのパソコンに受け取ることに同意しますか？（第31条1項④）\n"
        "認証局の指紋: {fingerprint}\n"
        "同意する場合は y を入力してください [y/N]: ",
        "Enrolling this PC in the remote-support service at {broker} (contract {contract}).\n"
        "Do you accept the electronic certificate issued by the ISP onto this PC? (Art. 31(1)(iv))\n"
        "CA fingerprint: {fingerprint}\n"
        "Type y to accept [y/N]: ",
    ),
    "enroll.declined": (
        "証明書の受け取りを拒否しました。何も保存していません。",
        "You declined the certificate. Nothing was stored.",
    ),
    "enroll.done": (
        "登録が完了しました。クライアント証明書ID: {serial}（有効期限 {not_after}）",
        "Enrolled. Client certificate ID: {serial} (valid until {not_after})",
    ),
    "enroll.already": (
        "このパソコンは既に登録されています（{path}）。再登録するには --force を指定してください。",
        "This PC is already enrolled ({path}). Use --force to enroll again.",
    ),
    "enroll.fingerprint_mismatch": (
        "接続先の認証局の指紋が一致しません。中止しました（期待値 {expected}、実際 {actual}）。",
        "The broker's CA fingerprint does not match; stopped (expected {expected}, got {actual}).",
    ),
    "enroll.unreachable": (
        "サーバーに接続できません: {detail}",
        "Cannot reach the broker: {detail}",
    ),
    "run.not_enrolled": (
        "このパソコンはまだ登録されていません。先に enroll を実行してください。",
        "This PC is not enrolled yet. Run enroll first.",
    ),
    "run.connected": ("サーバーに接続しました。", "Connected to the broker."),
    "error.already_running": (
        "このパソコンではエージェントがすでに動いています。",
        "The agent is already running on this PC.",
    ),
    "run.disconnected": (
        "接続が切れました。{delay:.1f} 秒後に再接続します。",
        "Disconnected. Reconnecting in {delay:.1f} s.",
    ),
    "run.refused": (
        "サーバーが接続を拒否しました: {reason}",
        "The broker refused the connection: {reason}",
    ),
    "support.code": (
        "サポートコード: {code}\n"
        "お電話でオペレータにこの番号をお伝えください（{minutes}分間有効、1回限り）。",
        "Support code: {code}\nRead this number to the operator on the phone (valid {minutes} min, once).",
    ),
    "support.waiting": ("オペレータの対応をお待ちください…", "Waiting for an operator…"),
    "support.chat_waiting": (
        "オペレータが対応を始めるとメッセージを送れます。",
        "You can send messages once an operator has taken your request.",
    ),
    "support.closed": (
        "受付時間外です（受付時間 9:00～21:00 年中無休）。次の受付開始は {opening} です。",
        "The helpdesk is closed (open 9:00-21:00 every day, Japan time). It opens again at {opening}.",
    ),
    "support.refused": ("サポートを開始できません: {reason}", "Support cannot start: {reason}"),
    "support.claimed": (
        "オペレータ「{operator}」が対応します。",
        'Operator "{operator}" is taking your request.',
    ),
    "support.scopes": ("現在の許可: {scopes}", "Currently allowed: {scopes}"),
    "support.none": ("なし", "nothing"),
    "support.ended": ("サポートを終了しました（{by}）。", "The support session has ended ({by})."),
    "support.help": (
        "入力できるコマンド: /end（終了） /withdraw control|view|all（許可の取り消し） "
        "/grant control|view（許可） それ以外の文字はオペレータへのチャットになります。",
        "Commands: /end (finish), /withdraw control|view|all, /grant control|view; "
        "anything else is sent to the operator as chat.",
    ),
    "support.chat": ("[{sender}] {text}", "[{sender}] {text}"),
    "support.input_refused": (
        "操作の許可がないため、オペレータの操作を無視しました。",
        "Ignored the operator's input: control is not allowed.",
    ),
    "support.no_display": (
        "画面がないため、画面共有はできません（チャットと情報提供のみ）。",
        "No display: screen sharing is not available (chat and inventory only).",
    ),
    "support.end_requested": ("サポートの終了を要求しました。", "Asked the session to end."),
    "support.router_account": (
        "ルータのログインアカウントを入力してください（お伝えにならない場合は Enter）: ",
        "Router login account, if you want to give it (Enter to skip): ",
    ),
    "support.router_password": ("ルータのログインパスワード: ", "Router login password: "),
    "support.inventory_sent": ("次の情報をお送りしました: {items}", "Sent to the operator: {items}"),
    "support.gone": (
        "サーバーがこのサポートを把握していないため、サポートは終了しました。画面の共有と操作はすでに止めています。"
        "必要な場合は、もう一度サポートを依頼してください。",
        "The support session has ended: the broker no longer knows it. Screen sharing and remote control "
        "have stopped. Ask for support again if you still need help.",
    ),
    "support.restarting": (
        "オペレータの依頼で、このパソコンを再起動します。画面の共有と操作の許可はここで取り消しました。"
        "再起動のあと「続けますか？」と表示されたら、続ける場合は「はい」を選んでください。",
        "Your computer restarts now, as the operator asked. Screen sharing and control have been taken back. "
        'After the restart you are asked whether to continue: answer "yes" to continue.',
    ),
    "support.restart_failed": (
        "パソコンを再起動できませんでした。サポートはこのまま続きます。",
        "The computer could not be restarted. The support session goes on.",
    ),
    "support.resume_question": (
        "前回のサポート（担当: {operator}）が再起動などで途中になっています。続けますか？"
        "続ける場合は「はい」と入力して Enter を押してください（{seconds}秒以内。それ以外は終了します）:",
        "The last support session (operator: {operator}) was interrupted, e.g. by a restart. Continue? "
        'Type "yes" and press Enter to continue (within {seconds} s; anything else ends it):',
    ),
    "support.resume_yes": (
        "サポートを続けます。前に許可したことは取り消されています。必要ならオペレータがもう一度お聞きします。",
        "Continuing. Nothing you allowed before is still allowed: the operator asks again if needed.",
    ),
    "support.resume_no": ("前回のサポートを終了します。", "Ending the last support session."),
    "support.viewer_joined": (
        "{who} があなたの画面を見られるようになりました。",
        "{who} can now see your screen.",
    ),
    "support.viewer_left": ("{who} は画面を見るのをやめました。", "{who} stopped watching your screen."),
    # While the subscriber has not allowed the screen, nobody sees it: people are only in the session.
    "support.viewer_present": ("{who} がサポートに参加しました。", "{who} joined the session."),
    "support.viewer_gone": ("{who} がサポートから退出しました。", "{who} left the session."),
    "support.viewer_unseen": (
        "{who} はもうあなたの画面を見られません。",
        "{who} can no longer see your screen.",
    ),
    "support.watching": ("画面を見ている人: {who}", "Watching your screen: {who}"),
    "support.grant_confirm": (
        "「{scope}」を許可しますか？ 許可する場合は「はい」と入力して Enter を押してください"
        "（それ以外は許可しません）:",
        'Allow "{scope}"? Type "yes" and press Enter to allow it (anything else does not):',
    ),
    "support.typed_ahead": (
        "質問が表示される前、または遠隔操作の入力の直後に入力された行は、回答として扱いませんでした。"
        "もう一度お答えください。",
        "A line typed before the question was shown, or right after remote typing, was not taken "
        "as an answer. Please answer again.",
    ),
    "support.input_paused": (
        "許可の確認中、またはサポート表示の操作中のため、オペレータの操作を止めています。",
        "Remote control is paused while a permission question or the support window is in use.",
    ),
    "support.indicator_unavailable": (
        "「サポート中」の表示ウィンドウを出せません。見ている人はこの画面の表示でご確認ください。",
        'The "remote support" window cannot be shown; who is watching is shown here instead.',
    ),
    "support.no_session": ("実行中のサポートはありません。", "No support session is running."),
    "support.person_ask": (
        "【許可の確認】{who}（オペレータ）があなたの画面を見ることを希望しています。許可しますか？",
        "[Permission] {who} (operator) would like to see your screen. Allow?",
    ),
    "support.person_invite": (
        "オペレータ「{by}」が同僚として招待しました。見るだけで、操作はできません。",
        'Invited as a colleague by operator "{by}": view only, no control.',
    ),
    "support.person_transfer": (
        "許可すると、オペレータ「{by}」に代わって {who} が対応します（「{by}」は退出します）。"
        "マウスとキーボードの操作の許可は引き継がれず、必要なときに改めてお尋ねします。",
        'If you allow it, {who} takes over from operator "{by}" (who leaves). Permission to '
        "control your mouse and keyboard is not passed on: you will be asked again if needed.",
    ),
    "support.person_answer": (
        "  1. {who} があなたの画面を見る\n"
        "許可する場合は 1 を入力して Enter、許可しない場合は何も入力せずに Enter。"
        "{timeout}秒以内に回答がない場合は許可しません。いまのオペレータの表示はそのままです。",
        "  1. {who} sees your screen\n"
        "Type 1 and press Enter to allow; just Enter does not allow. "
        "No answer within {timeout} seconds means no. The current operator's view stays as it is.",
    ),
    "support.person_allowed": (
        "{who} に画面を見ることを許可しました。",
        "You allowed {who} to see your screen.",
    ),
    "support.person_denied": (
        "{who} には画面を見せません。いまのオペレータの表示はそのままです。",
        "{who} will not see your screen. The current operator's view stays as it is.",
    ),
    "support.transferred": (
        "これからは {who}（オペレータ）が対応します。操作の許可は引き継がれていません。",
        "From now on {who} (operator) is helping you. Permission to control was not passed on.",
    ),
    "support.person_unexpected": (
        "許可していない人（{who}）が画面を見られる状態になったため、画面の共有を止めています。",
        "Someone you did not allow ({who}) could see your screen: screen sharing is stopped.",
    ),
    "error.service_closed": ("受付時間外です。", "The helpdesk is closed now."),
    "error.rate_limited": (
        "短時間に多くの依頼がありました。しばらくしてからお試しください（第18条⑤）。",
        "Too many requests in a short time. Please try again later (Art. 18(5)).",
    ),
    "error.consent_required": ("その操作は許可されていません。", "That needs your permission first."),
    "error.token_unknown": ("登録用トークンが正しくありません。", "The enrollment token is not valid."),
    "error.token_used": (
        "この登録用トークンは既に使用されています。",
        "This enrollment token was already used.",
    ),
    "error.token_expired": ("登録用トークンの有効期限が切れています。", "The enrollment token has expired."),
    "error.bad_csr": ("証明書の申請が受け付けられませんでした。", "The certificate request was refused."),
    "error.csr_subject_mismatch": (
        "契約IDが登録用トークンと一致しません。",
        "The contract ID does not match the enrollment token.",
    ),
    "error.cert_revoked": (
        "このパソコンの証明書は失効しています。サポート窓口にお問い合わせください。",
        "This PC's certificate has been revoked. Please contact the helpdesk.",
    ),
    "error.cert_expired": (
        "このパソコンの証明書は有効期限が切れています。サポート窓口にお問い合わせください。",
        "This PC's certificate has expired. Please contact the helpdesk.",
    ),
    "error.cert_unknown": (
        "この証明書はサーバーに登録されていません。",
        "This certificate is not known to the broker.",
    ),
    "error.subscriber_terminated": ("ご契約は解約されています。", "The contract has been terminated."),
    "error.subscriber_suspended": (
        "ご契約は利用停止中です（第18条）。",
        "The service is suspended (Art. 18).",
    ),
    # Every other ErrorCode (tests/agent/test_i18n_error_codes.py checks none is missing).
    "error.malformed": (
        "通信の内容が読み取れませんでした。ソフトウェアを最新にしてください。",
        "A message could not be read. Please update the software.",
    ),
    "error.too_large": ("送られたデータが大きすぎます。", "The data sent was too large."),
    "error.unknown_type": (
        "サーバーが知らない種類の通信です。ソフトウェアを最新にしてください。",
        "The broker does not know this kind of message. Please update the software.",
    ),
    "error.invalid_field": ("送られた内容が正しくありません。", "Something in the request was not valid."),
    "error.unsupported_version": (
        "このソフトウェアは古いため使えません。最新版をインストールしてください。",
        "This version of the software is too old. Please install the latest version.",
    ),
    "error.unexpected_message": (
        "今の状態ではその操作はできません。",
        "That is not possible at this moment.",
    ),
    "error.invalid_state": ("今の状態ではその操作はできません。", "That is not possible at this moment."),
    "error.cert_required": (
        "このパソコンの証明書がありません。もう一度登録してください。",
        "This PC has no certificate. Please register it again.",
    ),
    "error.not_allowed": ("その操作は許可されていません。", "That is not allowed."),
    "error.not_found": ("見つかりませんでした。", "It was not found."),
    "error.login_failed": ("ログインできませんでした。", "The login failed."),
    "error.account_locked": ("アカウントはロックされています。", "The account is locked."),
    "error.auth_required": ("ログインが必要です。", "Please log in first."),
    "error.code_invalid": ("サポートコードが正しくありません。", "The support code is not valid."),
    "error.idle_timeout": (
        "しばらく通信がなかったため接続が切れました。",
        "The connection was closed after a long silence.",
    ),
    "error.too_many_errors": (
        "エラーが続いたため接続を切りました。",
        "The connection was closed after too many errors.",
    ),
    "error.internal": (
        "ブローカー（サーバー）側でエラーが起きました。しばらくしてからもう一度お試しください。",
        "The broker had an internal error. Please try again later.",
    ),
    "error.input_paused": (
        "確認の表示中のため、オペレータの操作を止めています。",
        "Remote control is paused while a question is shown.",
    ),
    "error.subscriber_busy": (
        "お客さまの操作中のため、オペレータの操作を止めています。",
        "Remote control is paused while you use the keyboard or mouse.",
    ),
    "error.storage_unavailable": (
        "ブローカー（サーバー）側の記録装置の障害で、保存できませんでした。何も保存されていません。"
        "しばらくしてからもう一度お試しください。",
        "The broker could not save the enrollment because of a storage failure on the server; "
        "nothing was saved. Please try again later.",
    ),
    # Codes an operator gets when inviting a colleague; the agent shows them only if a broker relays one.
    "error.colleague_unknown": (
        "そのオペレータ名は登録されていません。",
        "No operator has that name.",
    ),
    "error.colleague_offline": (
        "そのオペレータは現在ログインしていません。",
        "That operator is not logged in now.",
    ),
    "error.self_invite": (
        "自分自身は招待できません。",
        "An operator cannot invite themselves.",
    ),
    # The agent's own codes (agent.errors.AgentErrorCode); a test keeps this list complete.
    "error.agent_error": ("エージェントでエラーが発生しました。", "The agent ran into an error."),
    "error.unreachable": (
        "サーバーに接続できませんでした。ネットワークを確認してください。",
        "The broker could not be reached. Please check the network.",
    ),
    "error.fingerprint_mismatch": (
        "サーバーの証明書が登録時のものと違います。接続を中止しました。",
        "The broker's certificate is not the one pinned at enrollment; the connection was stopped.",
    ),
    "error.declined": ("登録を取りやめました。", "Enrollment was cancelled."),
    "error.not_enrolled": (
        "このパソコンはまだ登録されていません。先に enroll を実行してください。",
        "This PC is not enrolled yet. Run enroll first.",
    ),
    "error.bad_enroll_file": ("登録用ファイルが正しくありません。", "The enrollment file is not valid."),
    "error.dialog_unavailable": (
        "確認の画面を表示できません。",
        "The confirmation window cannot be shown.",
    ),
    "error.missing_dependency": (
        "必要な部品が入っていません。",
        "A module this command needs is not installed.",
    ),
    "error.consent_error": ("同意の記録を更新できませんでした。", "The consent record could not be updated."),
    "error.unknown_scope": (
        "知らない種類の許可を求められました。",
        "A permission of an unknown kind was asked for.",
    ),
    "error.wrong_session": ("別のサポートの依頼です。", "The request belongs to another support session."),
    "error.consent_ended": (
        "このサポートはすでに終わっています。",
        "This support session has already ended.",
    ),
    "error.input_rejected": (
        "オペレータの操作をこのパソコンでは実行できませんでした。",
        "The operator's input could not be applied on this PC.",
    ),
    "error.capture_failed": ("画面を取得できませんでした。", "The screen could not be captured."),
    "error.no_display": (
        "画面を取得できません：表示装置が見つかりません。",
        "Cannot capture the screen: no display was found.",
    ),
    "error.monitor_not_found": ("そのモニターは見つかりません。", "That monitor was not found."),
    "error.item_unavailable": ("この項目は読み取れませんでした。", "This item could not be read."),
    "error.router_probe_failed": (
        "ルータの情報を読み取れませんでした。",
        "The router's description could not be read.",
    ),
    "error.command_failed": ("コマンドを実行できませんでした。", "A command could not be run."),
}


def is_japanese(lang: str) -> bool:
    """Whether ``lang`` (``ja``, ``ja_JP.UTF-8``, ``en`` …) asks for Japanese."""
    return lang.lower().startswith("ja")


def detect_lang(explicit: str | None = None, env: Mapping[str, str] | None = None) -> Lang:
    if explicit:
        return "ja" if is_japanese(explicit) else "en"
    env = os.environ if env is None else env
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(var)
        if value:
            return "ja" if is_japanese(value) else "en"
    return "en"


def t(key: str, lang: Lang, **values: object) -> str:
    ja, en = MESSAGES[key]
    return (ja if lang == "ja" else en).format(**values)


def error_text(code: str, lang: Lang, fallback: str = "") -> str:
    """Words for a stable code (an ``ErrorCode`` or an ``AgentErrorCode``), or ``fallback``."""
    key = f"error.{code}"
    if key in MESSAGES:
        return t(key, lang)
    return fallback or code
