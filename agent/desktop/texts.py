"""The desktop window's words: Japanese first, English fallback; short sentences for an elderly
subscriber (the issue: the terminal texts were correct but dense)."""

from __future__ import annotations

from typing import Final

TEXTS: Final[dict[str, tuple[str, str]]] = {
    "title": ("リモートサポート", "Remote Support"),
    "enroll.intro": (
        "このパソコンはまだ登録されていません。\n"
        "ヘルプデスクから届いた登録ファイルを選ぶか、登録用のリンクを貼り付けてください。",
        "This PC is not registered yet.\n"
        "Choose the registration file from the helpdesk, or paste the registration link.",
    ),
    "enroll.choose": ("登録ファイルを選ぶ…", "Choose the file…"),
    "enroll.go": ("登録する", "Register"),
    "enroll.confirm": (
        "{broker} のリモートサポートに登録します（契約 {contract}）。\n"
        "当社が発行する電子証明書をこのパソコンに受け取りますか？（第31条1項④）",
        "Registering this PC with the remote support at {broker} (contract {contract}).\n"
        "Do you accept the ISP's electronic certificate on this PC? (Art. 31(1)(iv))",
    ),
    "enroll.yes": ("はい、受け取る", "Yes, accept"),
    "enroll.no": ("いいえ", "No"),
    "enroll.working": ("登録しています…", "Registering…"),
    "enroll.done": ("登録が終わりました。", "Registration is complete."),
    "enroll.failed": ("登録できませんでした（{code}）。", "Registration failed ({code})."),
    "idle.intro": (
        "パソコンのことでお困りのときは、下のボタンを押してください。",
        "If you need help with your PC, press the button below.",
    ),
    "request": ("サポートを依頼する", "Ask for support"),
    "connecting": ("接続しています…", "Connecting…"),
    "code.label": ("サポート番号", "Support code"),
    "code.help": (
        "この番号をお電話でヘルプデスクにお伝えください。\n（{minutes}分間有効・1回限り）",
        "Read this number to the helpdesk on the phone.\n(valid {minutes} min, once)",
    ),
    "operator": ("担当: {name}", "Operator: {name}"),
    "chat.label": ("メッセージ", "Messages"),
    "chat.send": ("送信", "Send"),
    "end": ("終了", "End"),
    "ended": ("サポートを終了しました。", "Support has ended."),
    "again": ("もう一度依頼する", "Ask again"),
    "close": ("閉じる", "Close"),
    "error": ("エラー（{code}）", "Error ({code})"),
    "resume.ask": (
        "前回のサポート（担当: {name}）が途中で終わりました。\n"
        "続けますか？ {seconds}秒以内に選ばないと終了します。",
        "The last support session (operator: {name}) was interrupted.\n"
        "Continue it? Without an answer within {seconds} s it ends.",
    ),
    "resume.yes": ("続ける", "Continue"),
    "resume.no": ("終了する", "End it"),
    "keys": (
        "Tab で移動、Enter で決定。Ctrl + / Ctrl − で文字の大きさを変えられます。",
        "Tab to move, Enter to choose. Ctrl + / Ctrl − change the text size.",
    ),
}


def tr(key: str, lang: str, **values: object) -> str:
    ja, en = TEXTS[key]
    return (ja if lang == "ja" else en).format(**values)
