"""TLS session-ticket keys and lifetime on a Python ``ssl.SSLContext``, which Python does not offer.

A TLS 1.3 resumption (RFC 8446 §2.2: PSK with (EC)DHE, forward secrecy kept) costs the broker half a
full handshake (docs/PERFORMANCE.md: 1,420 against 721 per CPU-second) and the agent likewise. But
OpenSSL encrypts the session tickets with keys it draws at random for each ``SSL_CTX``, so a ticket
is only good at the process that issued it: after a restart or ``kill -9``, or behind HAProxy with
several processes, every agent does a full handshake, exactly when thousands reconnect at once.
Processes that install the same keys accept each other's tickets.

Python's ``ssl`` module has no call for that (nor for the ticket lifetime, 2 hours by default), and
asyncio needs Python's ``ssl`` objects, so this module calls the two OpenSSL functions on the
context's ``SSL_CTX`` with :mod:`ctypes`, through the very ``libssl`` that Python's ``_ssl`` is linked
to (``dlsym`` on ``_ssl`` resolves in its own dependencies):

* ``SSL_CTX_ctrl(ctx, SSL_CTRL_SET_TLSEXT_TICKET_KEYS, 80, keys)``: 16 bytes of key name, 32 of
  HMAC key, 32 of AES key (``ssl/s3_lib.c``; OpenSSL 1.1.1 and 3.x);
* ``SSL_CTX_set_timeout(ctx, seconds)``: the session (and ticket) lifetime.

The ``SSL_CTX *`` is the first field after ``PyObject_HEAD`` of CPython's ``PySSLContext``
(``Modules/_ssl.c``, unchanged in 3.11–3.13). It is only read on those versions, and only trusted
when the options OpenSSL reports for it equal the context's ``options`` and the keys read back equal
the keys written; otherwise nothing is changed and the caller is told (``False``): the broker then
keeps OpenSSL's own per-process keys, as before, never a broken listener.
"""

from __future__ import annotations

import ctypes
import logging
import platform
import ssl
import sys
from functools import cache
from typing import Final

log = logging.getLogger("wire.tls")

TICKET_KEYS_BYTES: Final = 80
"""Key name (16), HMAC key (32), AES-256 key (32): what ``SSL_CTRL_SET_TLSEXT_TICKET_KEYS`` takes."""

_SET_KEYS: Final = 59  # SSL_CTRL_SET_TLSEXT_TICKET_KEYS (openssl/ssl.h)
_GET_KEYS: Final = 58  # SSL_CTRL_GET_TLSEXT_TICKET_KEYS
_LAYOUT_CHECKED: Final = {(3, 11), (3, 12), (3, 13)}
"""CPython versions whose ``PySSLContext`` starts with the ``SSL_CTX *`` (read in their sources)."""


@cache
def _libssl() -> ctypes.CDLL | None:
    if platform.python_implementation() != "CPython" or sys.version_info[:2] not in _LAYOUT_CHECKED:
        return None
    import _ssl

    try:
        lib = ctypes.CDLL(_ssl.__file__)
        lib.SSL_CTX_ctrl.restype = ctypes.c_long
        lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
        lib.SSL_CTX_get_options.restype = ctypes.c_uint64
        lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_set_timeout.restype = ctypes.c_long
        lib.SSL_CTX_set_timeout.argtypes = [ctypes.c_void_p, ctypes.c_long]
        lib.SSL_CTX_get_timeout.restype = ctypes.c_long
        lib.SSL_CTX_get_timeout.argtypes = [ctypes.c_void_p]
    except (OSError, AttributeError):
        return None
    return lib


def _ssl_ctx(ctx: ssl.SSLContext, lib: ctypes.CDLL) -> int | None:
    """The context's ``SSL_CTX *``, or None when it cannot be confirmed."""
    if not isinstance(ctx, ssl.SSLContext):
        return None  # type: ignore[unreachable]  # callers' types are not checked at run time
    pointer = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not pointer or int(lib.SSL_CTX_get_options(pointer)) != int(ctx.options):
        return None
    return int(pointer)


def install_ticket_keys(ctx: ssl.SSLContext, keys: bytes) -> bool:
    """Encrypt and accept session tickets with ``keys`` (:data:`TICKET_KEYS_BYTES`) from now on;
    False, and nothing changed, where that cannot be done (see the module's docstring)."""
    if len(keys) != TICKET_KEYS_BYTES:
        raise ValueError(f"ticket keys are {TICKET_KEYS_BYTES} bytes, not {len(keys)}")
    lib = _libssl()
    pointer = None if lib is None else _ssl_ctx(ctx, lib)
    if lib is None or pointer is None:
        log.info("TLS ticket keys cannot be shared on this Python: each process keeps its own")
        return False
    buf = ctypes.create_string_buffer(keys, TICKET_KEYS_BYTES)
    back = ctypes.create_string_buffer(TICKET_KEYS_BYTES)
    try:
        if lib.SSL_CTX_ctrl(pointer, _SET_KEYS, TICKET_KEYS_BYTES, buf) != 1:
            return False
        return lib.SSL_CTX_ctrl(pointer, _GET_KEYS, TICKET_KEYS_BYTES, back) == 1 and back.raw == keys
    finally:  # no copy of the keys left behind in our buffers
        ctypes.memset(buf, 0, TICKET_KEYS_BYTES)
        ctypes.memset(back, 0, TICKET_KEYS_BYTES)


def set_ticket_lifetime(ctx: ssl.SSLContext, seconds: int) -> bool:
    """Sessions (and the lifetime announced in each ticket) last ``seconds``; False where the
    context cannot be reached. RFC 8446 §4.6.1 allows at most 7 days."""
    if not 0 < seconds <= 7 * 86_400:
        raise ValueError("a ticket lifetime is 1 s to 7 days")
    lib = _libssl()
    pointer = None if lib is None else _ssl_ctx(ctx, lib)
    if lib is None or pointer is None:
        return False
    lib.SSL_CTX_set_timeout(pointer, seconds)
    return int(lib.SSL_CTX_get_timeout(pointer)) == seconds


def ticket_lifetime(ctx: ssl.SSLContext) -> int | None:
    """The context's session lifetime in seconds (None where it cannot be read)."""
    lib = _libssl()
    pointer = None if lib is None else _ssl_ctx(ctx, lib)
    return None if lib is None or pointer is None else int(lib.SSL_CTX_get_timeout(pointer))
