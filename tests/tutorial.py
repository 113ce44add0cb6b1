"""The tutorial page as data: the files it shows (by title) and the commands it runs."""

import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"
_BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_TITLE = re.compile(r'title="([^"]+)"')


def files() -> dict[str, str]:
    """Return each titled block's text, by its title: the path of the file it shows."""
    found = {}
    for _, info, body in _BLOCK.findall(PAGE.read_text()):
        title = _TITLE.search(info)
        if title:
            found[title.group(1)] = body
    return found


def commands() -> list[list[str]]:
    """Return the shell commands of the page, in order, each split into words."""
    lines = []
    for language, _, body in _BLOCK.findall(PAGE.read_text()):
        if language == "sh":
            lines += [line.split() for line in body.splitlines() if line.strip()]
    return lines
