"""Kopf's diff base (the last handled spec), kept small whatever the spec's size.

Kopf stores the last handled configuration in an annotation to tell real spec changes from
status noise. Annotations share 256 KiB per object; an SESTemplate's html may be 500,000
characters, so a verbatim copy fails to store and the create handler runs again and again
(each time calling SES). Here long strings are stored as their SHA-256 digest: any change of
them still changes the essence, so change detection is unaffected; only the `diff` kwarg
shows digests, and no handler of ours reads it.

Many short strings add up as well (300 testData values of 1,000 characters: 300 KB), so what
is still over BUDGET then has its largest maps and lists replaced by their digests, the
largest first, until it fits: whatever the spec's shape, the diff base stays bounded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any, cast

import kopf

LONG = 1024  # characters; longer strings are stored as their digest
BUDGET = 16 * 1024  # bytes of JSON for the whole diff base (annotations share 256 KiB)


def digest_long_strings(value: Any, limit: int = LONG) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return f"sha256:{hashlib.sha256(value.encode()).hexdigest()}:{len(value)}"
    if isinstance(value, dict):
        return {k: digest_long_strings(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [digest_long_strings(v, limit) for v in value]
    return value


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return f"sha256:{hashlib.sha256(text.encode()).hexdigest()}:{len(text)}"


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")))


def bounded(value: Any, budget: int = BUDGET) -> Any:
    """`value` with its largest maps and lists digested, largest first, until its JSON is at
    most `budget` bytes (a digest is ~80). Any change inside a digested part changes its
    digest, so a change is still a change."""
    whole = _size(value)
    if whole <= budget or not isinstance(value, dict | list):
        return value
    items = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
    sizes = {key: _size(child) for key, child in items}
    out = dict(items)
    # Largest first: each digested child brings the whole nearer the budget the most.
    for key, child in sorted(items, key=lambda kv: sizes[kv[0]], reverse=True):
        if whole <= budget:
            break
        if isinstance(child, dict | list):
            room = max(budget - (whole - sizes[key]), 0)
            smaller = bounded(child, room)
            if _size(smaller) > room:
                smaller = _digest(child)
            out[key] = smaller
            whole += _size(smaller) - sizes[key]
    if whole > budget:
        return _digest(value)
    return out if isinstance(value, dict) else [out[i] for i in range(len(value))]


class DigestDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        essence = super().build(body=body, extra_fields=extra_fields)
        return cast(kopf.BodyEssence, bounded(digest_long_strings(dict(essence))))
