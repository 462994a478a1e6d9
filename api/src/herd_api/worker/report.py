"""Report a welcome email's delivery back into its Tenant's status."""

from __future__ import annotations

import datetime as dt

from kubernetes.client.exceptions import ApiException

from herd_operator import kube
from herd_operator.emailjobs import Report

TENANTS = "tenants"
WELCOME_EMAIL = "WelcomeEmailSent"


def delivered(report: Report, message_id: str) -> bool:
    """Record the delivery; False when the Tenant is gone or is another one by now."""
    tenant = kube.get_object(TENANTS, report.namespace, report.name)
    if tenant is None or tenant["metadata"]["uid"] != report.uid:
        return False
    welcome = (tenant.get("status") or {}).get("welcomeEmail") or {}
    try:
        # Merge patch: the operator's queuedAt beside these is kept.
        kube.patch_status(
            TENANTS,
            report.namespace,
            report.name,
            {"welcomeEmail": {"messageId": message_id, "sentAt": welcome.get("sentAt") or _now()}},
        )
        kube.update_conditions(
            TENANTS,
            report.namespace,
            report.name,
            [(WELCOME_EMAIL, True, "Sent", f"welcome email sent (SES message {message_id})")],
        )
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return True


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
