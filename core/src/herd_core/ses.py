"""SES v1 template API (real SES shares templates between v1 and v2; moto 5.2 has only v1)."""

from __future__ import annotations

import email
import email.policy
import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError

from herd_core import aws
from herd_core.errors import code, is_not_found
from herd_core.settings import Settings


@dataclass(frozen=True)
class Template:
    name: str
    subject: str
    html: str | None
    text: str | None

    def as_aws(self) -> dict[str, str]:
        parts = {"TemplateName": self.name, "SubjectPart": self.subject}
        if self.html is not None:
            parts["HtmlPart"] = self.html
        if self.text is not None:
            parts["TextPart"] = self.text
        return parts


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str | None
    text: str | None


class SES:
    def __init__(self, settings: Settings, region: str | None = None) -> None:
        self._c: Any = aws.shared("ses", settings, region=region)

    def get(self, name: str) -> Template | None:
        try:
            t = self._c.get_template(TemplateName=name)["Template"]
        except ClientError as err:
            if is_not_found(err):
                return None
            raise
        return Template(
            name=name,
            subject=t.get("SubjectPart", ""),
            html=t.get("HtmlPart"),
            text=t.get("TextPart"),
        )

    def create(self, template: Template) -> None:
        self._c.create_template(Template=template.as_aws())

    def update(self, template: Template) -> None:
        self._c.update_template(Template=template.as_aws())

    def delete(self, name: str) -> None:
        try:
            self._c.delete_template(TemplateName=name)
        except ClientError as err:
            if not is_not_found(err):
                raise

    def render(self, name: str, data: dict[str, Any]) -> Rendered:
        """TestRenderTemplate: SES fills the placeholders and answers a MIME message."""
        mime = self._c.test_render_template(TemplateName=name, TemplateData=json.dumps(data))[
            "RenderedTemplate"
        ]
        msg = email.message_from_string(mime, policy=email.policy.default)
        html = text = None
        for part in msg.walk():
            if part.get_content_type() == "text/html":
                html = str(part.get_content()).strip()
            elif part.get_content_type() == "text/plain":
                text = str(part.get_content()).strip()
        return Rendered(subject=str(msg["Subject"] or ""), html=html, text=text)

    def max_send_rate(self) -> float:
        return float(self._c.get_send_quota()["MaxSendRate"])


class Sender:
    """SendTemplatedEmail in one attempt, bounded by `timeout` seconds (connect + answer).

    SES takes no idempotency token, so a send repeated after a late or lost answer may be a
    second email. Standard-mode retries do exactly that on a read timeout or a 5xx, at once and
    up to the attempts allowed; here the caller decides, told by `outcome_unknown`. (The
    worker backs the message off and tries again later, throttling included: its shared
    send budget keeps it under SES's rate in the first place.)
    """

    def __init__(self, settings: Settings, timeout: float, region: str | None = None) -> None:
        connect = min(5.0, timeout / 3)
        self._c: Any = aws.client(
            "ses", settings, region=region, timeouts=(connect, timeout - connect), max_attempts=1
        )

    def send_templated(self, source: str, to: str, name: str, data: dict[str, Any]) -> str:
        result: str = self._c.send_templated_email(
            Source=source,
            Destination={"ToAddresses": [to]},
            Template=name,
            TemplateData=json.dumps(data),
        )["MessageId"]
        return result


def outcome_unknown(err: ClientError | BotoCoreError) -> bool:
    """True when SES may have taken the request: its answer was late or cut off, or SES
    failed after reading it (5xx). A refusal (4xx) or a connection never made sent nothing."""
    if isinstance(err, ClientError):
        return int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)) >= 500
    return isinstance(err, HTTPClientError)  # read timeout, connection closed mid-answer


def already_exists(err: ClientError) -> bool:
    return code(err) in {"AlreadyExists", "AlreadyExistsException"}
