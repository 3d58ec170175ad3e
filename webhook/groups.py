"""Group names as PrimeHub writes them into labels."""

from __future__ import annotations

import string
from functools import lru_cache

import escapism

_SAFE = set(string.ascii_lowercase + string.digits)


def escape_group(name: str) -> str:
    """`Research_Team` -> `escaped--52esearch-5f-54eam`, the value of `primehub.io/group`.

    Not cached: indexing calls it once per setting, and a cache filled while thousands of
    settings are parsed would keep the parser's freed memory pages from going back."""
    escaped: str = escapism.escape(name, safe=_SAFE, escape_char="-")
    return "escaped-" + escaped.lower()


@lru_cache(maxsize=65536)
def group_name(label: str) -> str:
    """The name people know, for messages: the inverse of `escape_group` where it can tell,
    else the label itself (a label PrimeHub did not write may hold any escape sequence)."""
    if not label.startswith("escaped-"):
        return label
    try:
        name: str = escapism.unescape(label[len("escaped-") :], escape_char="-")
    except ValueError:  # not hex, or not UTF-8
        return label
    return name if escape_group(name) == label else label
