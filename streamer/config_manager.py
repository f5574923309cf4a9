"""Live configuration: partial updates validated then applied, reload from the file, atomic save.

Three documents are in play: the *running* settings (what the server uses now), the *desired* document
(running plus changes that need a restart: ports, host, worker count, engine settings, secret key),
and the file. ``update`` and ``reload`` change the running settings at once where that is safe and keep
the rest in the desired document; ``save`` writes the desired document.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Mapping
from copy import deepcopy
from pathlib import Path
from typing import Any

import yaml

from .config import SECRET_MASK, Settings, deep_merge, default_config_path, load_settings, validate
from .errors import ConfigDiskFull, ConfigError, ConfigNotWritable, ConfigSaveFailed

# Keys read once at start: accepted by POST /config (kept for `save`), applied after a restart.
RESTART_KEYS = (
    "server.host",
    "server.http_port",
    "server.websocket_port",
    "pool.workers",
    "pool.max_batch",
    "pool.nice",
    "security.secret_key",
    "engines",
    "tts.device",
    "tts.preload_languages",
    "limits.ping_interval_s",
    "logging.format",
    "wyoming",
)
SECRET_KEYS = ("security.secret_key", "security.api_keys")
MASK = SECRET_MASK


_NOT_WRITABLE = {
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.ETXTBSY,
}
_FULL = {errno.ENOSPC, errno.EDQUOT}


def _save_failure(target: Path, exc: OSError) -> ConfigSaveFailed:
    reason = exc.strerror or str(exc)
    name = errno.errorcode.get(exc.errno or 0, "unknown")
    cls = ConfigDiskFull if exc.errno in _FULL else ConfigNotWritable if exc.errno in _NOT_WRITABLE else None
    cls = cls or ConfigSaveFailed
    return cls(
        f"cannot save the configuration to {target}: {reason} ({name}); the file is unchanged",
        path=str(target),
        reason=reason,
        errno=name,
    )


def user_config_path() -> Path:
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "streamer" / "config.yaml"


def _get(tree: Mapping[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        node = node[part]
    return node


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value


def masked(document: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with secrets replaced (empty ones stay visibly empty)."""
    copy = deepcopy(dict(document))
    for key in SECRET_KEYS:
        value = _get(copy, key)
        if isinstance(value, list):
            _set(copy, key, [MASK for _ in value])
        elif value:
            _set(copy, key, MASK)
    return copy


def changed_keys(before: Mapping[str, Any], after: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(before) | set(after)):
        dotted = f"{prefix}{key}"
        old, new = before.get(key), after.get(key)
        # Sections always have the same keys; a free-form mapping (openai.voices) that gained or lost
        # keys changes as a whole.
        if isinstance(old, Mapping) and isinstance(new, Mapping) and set(old) == set(new):
            keys.extend(changed_keys(old, new, dotted + "."))
        elif old != new:
            keys.append(dotted)
    return keys


def needs_restart(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RESTART_KEYS)


class ConfigManager:
    def __init__(
        self,
        settings: Settings,
        path: str | Path | None = None,
        apply: Callable[[Settings, Settings], None] | None = None,
        check: Callable[[Settings], None] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        """``check`` vets a new running config beyond the schema (raise to refuse it whole);
        ``apply`` puts it into effect; ``overrides`` (command-line flags) outrank the file on reload."""
        self.running = settings
        self.desired = settings.model_dump()
        self.path = Path(path) if path else None
        self._apply = apply
        self._check = check
        self.overrides = dict(overrides or {})
        self.reload_error: str | None = None  # why the last reload failed (the file does not load)

    @property
    def save_path(self) -> Path:
        """Where ``save`` writes: --config, else STREAMER_CONFIG, else the user's config file."""
        if self.path is not None:
            return self.path
        env = os.environ.get("STREAMER_CONFIG")
        return Path(env) if env else user_config_path()

    @property
    def pending_restart(self) -> list[str]:
        return changed_keys(self.running.model_dump(), self.desired)

    def update(self, patch: Mapping[str, Any]) -> dict[str, Any]:
        """Validate a partial document and apply it; raises ConfigError listing every bad field."""
        if not isinstance(patch, Mapping):
            raise ConfigError(
                "the body must be a JSON object", [{"loc": ["body"], "msg": "must be an object"}]
            )
        desired = deep_merge(self.desired, _unmask(patch, self.desired))
        return self._adopt(validate(desired).model_dump())

    def reload(self) -> dict[str, Any]:
        """Re-read the file (defaults, file, environment); an invalid file changes nothing."""
        try:
            fresh = load_settings(self.path) if self.path else load_settings(None)
            outcome = self._adopt(validate(deep_merge(fresh.model_dump(), self.overrides)).model_dump())
        except ConfigError as exc:
            self.reload_error = exc.message
            raise
        self.reload_error = None
        return outcome

    def _adopt(self, desired: dict[str, Any]) -> dict[str, Any]:
        old = self.running
        running_doc = old.model_dump()
        changed = changed_keys(running_doc, desired)
        live = [key for key in changed if not needs_restart(key)]
        for key in live:
            _set(running_doc, key, _get(desired, key))
        new = validate(running_doc)
        if self._check is not None:
            self._check(new)
        self.desired = desired
        self.running = new
        if self._apply is not None and live:
            self._apply(old, new)
        return {"applied": live, "restart_required": [k for k in changed if needs_restart(k)]}

    def save(self) -> Path:
        """Write the desired document atomically: temp file in the same folder, fsync, rename."""
        target = self.save_path
        if target.resolve() == default_config_path().resolve():
            raise ConfigError("refusing to overwrite the packaged defaults; start with --config FILE")
        text = "# Saved by streamer (POST /api/v1/config/save).\n" + yaml.safe_dump(
            self.desired, sort_keys=False, default_flow_style=False
        )
        try:
            self._write(target, text)
        except OSError as exc:
            raise _save_failure(target, exc) from exc
        self.path = target
        return target

    @staticmethod
    def _write(target: Path, text: str) -> None:
        """Temp file in the same folder, fsync, rename: the old file stays whole until the rename."""
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a crash
        finally:
            os.close(dir_fd)


def _unmask(patch: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """A client that posts back a masked document leaves the secrets as they are; a mask is never stored.

    A secret is either the mask (left untouched: for a key list, as many masks as there are keys) or
    named in full. A key list that mixes masks with new keys, or masks of another count, is refused:
    which key each mask stands for cannot be known, and storing the mask would make it a key.
    """
    copy = deepcopy(dict(patch))
    for key in SECRET_KEYS:
        try:
            value = _get(copy, key)
        except (KeyError, TypeError):
            continue
        old = _get(current, key)
        if value == MASK:
            _set(copy, key, old)
        elif isinstance(value, list) and MASK in value:
            if value == [MASK] * len(old):
                _set(copy, key, old)
                continue
            msg = (
                "a masked key cannot be kept beside new ones: send every key in full, "
                "or the masked list as it came, or leave the field out"
            )
            raise ConfigError(f"{key}: {msg}", [{"loc": key.split("."), "msg": msg}])
    return copy
