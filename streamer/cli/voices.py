"""`streamer voices`: the voices of the installed engines, as a table or JSON."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .settings import settings_from_args

COLUMNS = (
    ("name", "NAME"),
    ("engine", "ENGINE"),
    ("language", "LANGUAGE"),
    ("gender", "GENDER"),
    ("sample_rate", "RATE"),
    ("quality", "QUALITY"),
    ("voice_id", "VOICE_ID"),
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("voices", help="list the voices of the installed engines")
    p.add_argument("--engine", help="only this engine's voices")
    p.add_argument("--language", help="only voices of this language (en covers en-us, en-gb, ...)")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.add_argument("--config", help="YAML config file laid over the packaged defaults (env: STREAMER_CONFIG)")


def rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    from ..engines.catalog import Catalog

    settings = settings_from_args(args)
    catalog = Catalog(settings.engines.model_dump(), "auto")
    found = []
    for engine in [args.engine] if args.engine else sorted(catalog.engines):
        voices = catalog.language_voices(engine, args.language) if args.language else catalog.voices(engine)
        for voice in voices:
            found.append(
                {
                    "name": voice.name,
                    "engine": voice.engine,
                    "language": voice.language,
                    "gender": voice.gender,
                    "sample_rate": voice.sample_rate,
                    "quality": voice.quality,
                    "voice_id": catalog.voice_id(voice),
                    "description": voice.description,
                }
            )
    return found


def table(found: list[dict[str, Any]]) -> str:
    cells = [tuple(title for _, title in COLUMNS)]
    cells += [tuple("-" if row[key] is None else str(row[key]) for key, _ in COLUMNS) for row in found]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )


def run(args: argparse.Namespace) -> int:
    found = rows(args)
    if args.json:
        import orjson

        print(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())
        return 0
    if not found:
        print("no voices match", file=sys.stderr)
        return 1
    print(table(found))
    return 0
