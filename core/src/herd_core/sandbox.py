"""SES's sandbox as a Tenant sees it: a welcome email SES refused because the account is in
the sandbox and the address is not a verified identity.

How it is known: SES answers the send `MessageRejected` "Email address is not verified"
(herd_core.quotas.SES_SANDBOX): only the sandbox checks recipients, so that answer is the
detection, made where the send is and with no call or IAM permission more. (SESv2
GetAccount's `ProductionAccessEnabled` says the same of the account as a whole: `herd aws
quotas` prints it; the local AWS answers it from HERD_LOCAL_SES_SANDBOX.)

No retry mends it, so the worker does not retry: it records the refusal on the Tenant as
`WelcomeEmailSent=False` reason `SESSandbox` and drops the job, its claim released. Once
the address can be sent to, the annotation RESEND_WELCOME_ANNOTATION on the Tenant has the
operator queue the same job again (same key: sent once).

The condition names the address's domain, not the address. A condition is copied further
than the Tenant's spec that holds the address (Events, logs, the API's and dashboards'
views of status, kept longer and read by more people) and the address is personal data: the
domain is what someone fixing it needs (SES verifies a domain for all its addresses) and
the admin address is one `kubectl get tenant` away for whoever may read it.
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from herd_core.constants import RESEND_WELCOME_ANNOTATION
from herd_core.quotas import SES_PRODUCTION_ACCESS, SES_SANDBOX

REASON = "SESSandbox"
VERIFY_IDENTITY = "https://docs.aws.amazon.com/ses/latest/dg/creating-identities.html"


def refused(err: Exception) -> bool:
    """Whether SES refused a send because a recipient is unverified in the sandbox."""
    if not isinstance(err, ClientError):
        return False
    error = err.response.get("Error") or {}
    code, message = error.get("Code"), str(error.get("Message") or "")
    return code == SES_SANDBOX[0] and "not verified" in message.lower()


def message(address: str) -> str:
    """The condition's message: what happened, to which domain, and the two ways out."""
    domain = address.rpartition("@")[2] or "?"
    return (
        f"not sent: SES is in the sandbox and sends only to verified identities; the admin's "
        f"address at {domain} is not one. Verify the address or the domain {domain} in SES "
        f"({VERIFY_IDENTITY}), or request production access ({SES_PRODUCTION_ACCESS}); "
        f"then annotate the Tenant {RESEND_WELCOME_ANNOTATION}=<any value> to send it"
    )
