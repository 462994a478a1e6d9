"""Kopf's diff base (the last handled spec), kept small whatever the spec's size.

Kopf stores the last handled configuration in an annotation to tell real spec changes from
status noise. Annotations share 256 KiB per object; an SESTemplate's html may be 500,000
characters, so a verbatim copy fails to store and the create handler runs again and again
(each time calling SES). Here long strings are stored as their SHA-256 digest: any change of
them still changes the essence, so change detection is unaffected; only the `diff` kwarg
shows digests, and no handler of ours reads it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, cast

import kopf

LONG = 1024  # characters; longer strings are stored as their digest


def digest_long_strings(value: Any, limit: int = LONG) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return f"sha256:{hashlib.sha256(value.encode()).hexdigest()}:{len(value)}"
    if isinstance(value, dict):
        return {k: digest_long_strings(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [digest_long_strings(v, limit) for v in value]
    return value


class DigestDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        essence = super().build(body=body, extra_fields=extra_fields)
        return cast(kopf.BodyEssence, digest_long_strings(dict(essence)))
