"""Bytes and strings to message dicts and back: JSON text frames, msgpack binary frames. No I/O."""

from __future__ import annotations

from typing import Any, Literal, overload

import msgpack
import orjson

from ..errors import InvalidMessage, MessageTooLarge
from .events import ServerEvent


def decode(data: str | bytes, max_bytes: int) -> dict[str, Any]:
    """One WebSocket message (str = text frame holding JSON, bytes = binary frame holding msgpack)."""
    size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise MessageTooLarge(f"message of {size} bytes is over the limit of {max_bytes}")
    try:
        if isinstance(data, str):
            obj = orjson.loads(data)
        else:
            # raw=False decodes msgpack str as UTF-8 (raising on invalid UTF-8); strict_map_key: str keys.
            obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except UnicodeDecodeError as exc:
        raise InvalidMessage(f"invalid UTF-8 in message: {exc.reason}") from None
    except orjson.JSONDecodeError as exc:
        raise InvalidMessage(f"text frame is not valid JSON: {exc.msg}") from None
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise InvalidMessage(f"binary frame is not valid msgpack: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidMessage(f"a message must be an object, got {type(obj).__name__}")
    return obj


@overload
def encode(message: ServerEvent | dict[str, Any], binary: Literal[False]) -> str: ...
@overload
def encode(message: ServerEvent | dict[str, Any], binary: Literal[True]) -> bytes: ...
@overload
def encode(message: ServerEvent | dict[str, Any], binary: bool) -> str | bytes: ...
def encode(message: ServerEvent | dict[str, Any], binary: bool) -> str | bytes:
    """A server event (or a wire object) as a text frame (JSON) or a binary frame (msgpack)."""
    if not isinstance(message, dict):
        message = message.to_wire()
    if binary:
        return msgpack.packb(message, use_bin_type=True)
    return orjson.dumps(message).decode()
