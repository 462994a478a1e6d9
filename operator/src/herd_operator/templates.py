"""Checks SES (Handlebars) templates before anything reaches AWS, so a bad one is never
half-applied. SES itself only reports template errors when it renders or sends."""

from __future__ import annotations

import re

_TAG = re.compile(r"{{{(.*?)}}}|{{(.*?)}}", re.S)  # {{{raw}}} or {{escaped}}
_NAME = r"[A-Za-z_][\w.-]*(?:\s+[\w.\"'=@-]+)*"
_PLAIN = re.compile(rf"^(?:this|@index|{_NAME})$")
_OPEN = re.compile(rf"^#\s*(if|unless|each|with)\s+{_NAME}\s*$")
_CLOSE = re.compile(r"^/\s*(if|unless|each|with)\s*$")
_ELSE = re.compile(r"^\s*else\s*$")


class TemplateError(ValueError):
    pass


def check(part: str, text: str) -> list[str]:
    """The placeholder names used in `text`; TemplateError says where it does not parse."""
    names: list[str] = []
    stack: list[tuple[str, int]] = []
    pos = 0
    for match in _TAG.finditer(text):
        _stray(part, text, pos, match.start())
        pos = match.end()
        inner = match.group(1) if match.group(1) is not None else match.group(2)
        line = text.count("\n", 0, match.start()) + 1
        body = inner.strip()
        if body.startswith("!"):
            continue  # a comment
        if "{{" in inner:
            raise TemplateError(f"{part}, line {line}: '{{{{' opened inside a placeholder")
        if m := _OPEN.match(body):
            stack.append((m.group(1), line))
            names.append(body.split()[1])
        elif m := _CLOSE.match(body):
            if not stack or stack[-1][0] != m.group(1):
                expected = f"{{{{/{stack[-1][0]}}}}}" if stack else "no block to close"
                raise TemplateError(f"{part}, line {line}: {{{{/{m.group(1)}}}}} but {expected}")
            stack.pop()
        elif _ELSE.match(body):
            if not stack:
                raise TemplateError(f"{part}, line {line}: {{{{else}}}} outside a block")
        elif _PLAIN.match(body):
            if body not in ("this", "@index"):
                names.append(body.split()[0])
        else:
            raise TemplateError(f"{part}, line {line}: cannot parse placeholder {{{{{inner}}}}}")
    _stray(part, text, pos, len(text))
    if stack:
        block, line = stack[-1]
        raise TemplateError(f"{part}, line {line}: {{{{#{block}}}}} is never closed")
    return names


def _stray(part: str, text: str, start: int, end: int) -> None:
    segment = text[start:end]
    for token in ("{{", "}}"):
        if token in segment:
            line = text.count("\n", 0, start + segment.index(token)) + 1
            raise TemplateError(f"{part}, line {line}: unmatched '{token}'")
