"""The helpdesk's scriptable operator client: a small async API and ``python -m helpdesk``.

Used by the tests and by people who script the helpdesk; the browser console speaks the same
protocol (``/operator``).
"""

from .client import HelpdeskClient, HelpdeskError

__all__ = ["HelpdeskClient", "HelpdeskError"]
