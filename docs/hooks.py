"""MkDocs hook: pages that are generated from the code, so nothing is written twice.

``<!-- settings: Settings -->`` becomes the table of the environment variables that class
reads; ``<!-- cli -->`` becomes each ``app-db`` command's help, from its argument parser.
"""

import argparse
import re
from datetime import timedelta
from typing import Any

from pydantic_settings import BaseSettings

from app_db import settings as settings_module
from app_db.cli import parser

_SETTINGS = re.compile(r"<!-- settings: (\w+) -->")


def variables(cls: type[BaseSettings]) -> list[tuple[str, str, str]]:
    """Return (variable, default, meaning) for each field the settings class reads."""
    prefix = str(cls.model_config.get("env_prefix") or "")
    rows = []
    for name, field in cls.model_fields.items():
        rows.append(((prefix + name).upper(), _default(field.default), field.description or ""))
    return rows


def _default(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, timedelta):
        return f"`{_duration(value)}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("D", 86_400), ("H", 3_600), ("M", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"P{count}D" if unit == "D" else f"PT{count}{unit}"
    return f"PT{seconds}S"


def settings_table(class_name: str) -> str:
    cls = getattr(settings_module, class_name)
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| `{name}` | {default} | {meaning} |" for name, default, meaning in variables(cls)]
    return "\n".join(lines)


def cli_reference() -> str:
    root = parser()
    sections = [_help(root, "app-db")]
    for action in root._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                sections.append(_help(sub, f"app-db {name}"))
                for inner in sub._actions:
                    if isinstance(inner, argparse._SubParsersAction):
                        for leaf, command in inner.choices.items():
                            sections.append(_help(command, f"app-db {name} {leaf}"))
    return "\n\n".join(sections)


def _help(command: argparse.ArgumentParser, title: str) -> str:
    command.prog = title
    return f"## `{title}`\n\n```text\n{command.format_help().rstrip()}\n```"


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Fill the generated parts of a page."""
    markdown = _SETTINGS.sub(lambda found: settings_table(found.group(1)), markdown)
    return markdown.replace("<!-- cli -->", cli_reference())
