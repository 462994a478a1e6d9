"""Report a welcome email's delivery back into its Tenant's status.

One writer per field: the worker owns `status.welcomeEmail.messageId`, `.sentAt` and the
`WelcomeEmailSent` condition, and writes them by server-side apply under its own field
manager. The operator never writes these (it applies its own conditions without this one,
and only `welcomeEmail.queuedAt`). The apply carries the Tenant's uid: a Tenant deleted and
made again under the same name answers 409 and gets nothing.
"""

from __future__ import annotations

import datetime as dt

from kubernetes.client.exceptions import ApiException

from herd_core import kube, sandbox
from herd_core.constants import API_VERSION, GROUP, VERSION, WELCOME_EMAIL_SENT, WORKER_MANAGER
from herd_core.emailjobs import Report

TENANTS = "tenants"


def body(report: Report, message_id: str, sent_at: float) -> dict[str, object]:
    when = _time(sent_at)
    return {
        "apiVersion": API_VERSION,
        "kind": "Tenant",
        "metadata": {"name": report.name, "namespace": report.namespace, "uid": report.uid},
        "status": {
            "welcomeEmail": {"messageId": message_id, "sentAt": when},
            "conditions": [
                {
                    "type": WELCOME_EMAIL_SENT,
                    "status": "True",
                    "reason": "Sent",
                    "message": f"welcome email sent (SES message {message_id})",
                    "lastTransitionTime": when,
                }
            ],
        },
    }


def refused_body(report: Report, to: str, at: float) -> dict[str, object]:
    """SES refused the email in its sandbox (herd_core.sandbox): the condition says so."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Tenant",
        "metadata": {"name": report.name, "namespace": report.namespace, "uid": report.uid},
        "status": {
            "conditions": [
                {
                    "type": WELCOME_EMAIL_SENT,
                    "status": "False",
                    "reason": sandbox.REASON,
                    "message": sandbox.message(to),
                    "lastTransitionTime": _time(at),
                }
            ],
        },
    }


def delivered(report: Report, message_id: str, sent_at: float) -> bool:
    """Record the delivery; False when the Tenant is gone or is another one by now.
    Raises on other API errors (403, 5xx): the caller retries the report, not the email."""
    return _apply(report, body(report, message_id, sent_at))


def refused(report: Report, to: str, at: float) -> bool:
    """Record that SES refused the email in its sandbox; as `delivered` otherwise."""
    return _apply(report, refused_body(report, to, at))


def _apply(report: Report, status: dict[str, object]) -> bool:
    try:
        kube.custom().patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            report.namespace,
            TENANTS,
            report.name,
            status,
            field_manager=WORKER_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )
    except ApiException as err:
        if err.status in (404, 409):  # gone, or the uid precondition failed: another Tenant
            return False
        raise
    return True


def _time(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
