"""The Starlette applications: REST routes by topic and the streaming WebSocket endpoint."""

from .app import create_apps

__all__ = ["create_apps"]
