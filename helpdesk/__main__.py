"""``python -m helpdesk`` and the ``isp-helpdesk`` console script.

``watch`` composes the screen with numpy and Pillow (the ``helpdesk`` extra); without them it ends
with ``[missing_dependency]`` and a plain sentence, exit 2, never an ImportError traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

OPTIONAL = frozenset({"numpy", "PIL"})


def main(argv: Sequence[str] | None = None) -> int:
    try:
        from .cli import main as cli_main

        return cli_main(list(sys.argv[1:] if argv is None else argv))
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in OPTIONAL:
            raise
        print(
            f"[missing_dependency] {exc.name} is not installed: "
            'pip install "isp-remote-support[helpdesk]" (needed to save the screen)',
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
