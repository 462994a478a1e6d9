"""Who may take over an AWS object that Herd did not create for the asking resource.

Neither Cognito app clients nor SES templates take tags, so the marker of "created for this
namespace/name" is the resource's own status (written before the create call, so a crash
right after still knows). Anything else is adopted only when
- no other resource in the cluster holds it (its status names it), and
- the operator allows the resource's namespace to adopt (HERD_ADOPTION_NAMESPACES).
Otherwise AdoptionRefused: one namespace never takes over another's client or template.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from herd_core import kube
from herd_core.errors import AdoptionRefused
from herd_operator.handlers.common import Object
from herd_operator.settings import Settings


def namespace_may_adopt(namespace: str, settings: Settings) -> bool:
    return any(fnmatchcase(namespace, pattern) for pattern in settings.adoption_namespaces)


def check(obj: Object, field: str, value: str, what: str, settings: Settings) -> None:
    """Raise AdoptionRefused unless `obj` may adopt the AWS object its status.<field> would
    name as `value`."""
    others = [h for h in kube.holders(obj.plural, field, value) if h != (obj.namespace, obj.name)]
    if others:
        namespace, name = others[0]
        raise AdoptionRefused(
            f"{what} belongs to {obj.kind} {namespace}/{name}; it is never adopted by another"
        )
    if not namespace_may_adopt(obj.namespace, settings):
        raise AdoptionRefused(
            f"{what} was not created by Herd for {obj.namespace}/{obj.name}, and namespace "
            f"{obj.namespace} may not adopt (operator setting HERD_ADOPTION_NAMESPACES)"
        )
