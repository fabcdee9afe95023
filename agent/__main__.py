"""``python -m agent`` and the ``isp-agent`` console script.

A missing optional part (the ``agent`` extra, Tk, pywin32) ends with ``[missing_dependency]`` and
plain words, exit 2, never an ImportError traceback (agent/optional.py).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def _lang(argv: Sequence[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--lang" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--lang="):
            return arg.partition("=")[2]
    return None


def main(argv: Sequence[str] | None = None) -> int:
    from .i18n import detect_lang
    from .optional import missing_dependency

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        from .cli import main as cli_main

        return cli_main(args)
    except ModuleNotFoundError as exc:
        missing = missing_dependency(exc)
        if missing is None:
            raise
        print(f"[{missing.code}] {missing.text(detect_lang(_lang(args)))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
