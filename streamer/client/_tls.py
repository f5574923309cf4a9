"""TLS settings in httpx's terms, for both the WebSocket and the REST client."""

from __future__ import annotations

import ssl as ssl_module


def ssl_context(verify: bool | str | ssl_module.SSLContext = True) -> ssl_module.SSLContext:
    """An SSL context from httpx-style ``verify``: True (system CAs), False (no checks), a CA file path."""
    if isinstance(verify, ssl_module.SSLContext):
        return verify
    if verify is False:
        context = ssl_module.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl_module.CERT_NONE
        return context
    return ssl_module.create_default_context(cafile=verify if isinstance(verify, str) else None)
