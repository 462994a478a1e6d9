"""An index of a Cognito user pool's users by their username attributes, for the local moto.

moto 5.2 finds a user of a pool with `UsernameAttributes` (Herd's: email) by going through
every user of the pool and building a dict of each one's attributes, on every AdminGetUser
and on every AdminCreateUser (to refuse a taken email). At 10,000 users that is milliseconds
of moto's CPU per call, behind the one lock every request waits on (moto_serial): in
bench/tenants.py the drift sweep's reads and the creations of a burst held the workers'
sends to about one a second. AWS looks a user up by an index; so does this.

The answer is moto's own: the first user, in the pool's order, whose username attribute
matches. The index is rebuilt after any call that may change attributes or remove users
(`changed`, called by the front for every Cognito call but the reads and creations named
in KEEPS); users added meanwhile (creations append to the pool) are indexed as they come.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.cognitoidp.models import CognitoIdpUser, CognitoIdpUserPool

from herd_devkit.local.aws_rules import COGNITO, Answer, WSGIApp

# Calls that neither change a user's attributes nor remove a user (a creation only appends).
KEEPS = frozenset(
    {
        "AdminCreateUser",
        "SignUp",
        "AdminGetUser",
        "GetUser",
        "ListUsers",
        "ListUsersInGroup",
        "AdminListGroupsForUser",
        "DescribeUserPool",
        "ListUserPools",
        "DescribeUserPoolClient",
        "ListUserPoolClients",
        "CreateUserPoolClient",
        "UpdateUserPoolClient",
        "DeleteUserPoolClient",
        "InitiateAuth",
        "AdminInitiateAuth",
        "GetGroup",
        "ListGroups",
        "CreateGroup",
        "AdminAddUserToGroup",
        "AdminRemoveUserFromGroup",
    }
)

_generation = itertools.count(1)
_current = 0
_guard = threading.Lock()


class _Index:
    def __init__(self, generation: int, attributes: tuple[str, ...]) -> None:
        self.generation, self.attributes = generation, attributes
        self.by_value: dict[str, CognitoIdpUser] = {}
        self.count = 0  # users of the pool indexed, in its order

    def add(self, users: Iterable[CognitoIdpUser]) -> None:
        for user in users:
            values = {a["Name"]: a["Value"] for a in user.attributes}
            for name in self.attributes:
                value = values.get(name)
                if value is not None:
                    self.by_value.setdefault(value, user)  # the first in the pool's order
            self.count += 1


def _indexed(pool: CognitoIdpUserPool, attributes: tuple[str, ...]) -> _Index:
    index: _Index | None = getattr(pool, "_herd_index", None)
    users = pool.users
    if (
        index is None
        or index.generation != _current
        or index.attributes != attributes
        or index.count > len(users)
    ):
        index = _Index(_current, attributes)
        index.add(users.values())
        pool._herd_index = index  # type: ignore[attr-defined]
    elif index.count < len(users):  # created since: appended to the pool's dict
        index.add(itertools.islice(users.values(), index.count, None))
    return index


def _get_user(self: CognitoIdpUserPool, username: str) -> CognitoIdpUser:
    attributes = tuple(self.extended_config.get("UsernameAttributes") or ())
    if attributes:
        user = _indexed(self, attributes).by_value.get(username)
        if user is not None:
            return user
    return self.users.get(username)  # type: ignore[return-value]


def changed() -> None:
    """A call that may have changed a user's attributes or removed one: rebuild on next use."""
    global _current
    with _guard:
        _current = next(_generation)


def install() -> None:
    CognitoIdpUserPool._get_user = _get_user  # type: ignore[method-assign]


def tracked(app: WSGIApp) -> WSGIApp:
    """`app`, telling the index of every Cognito call that may change what it holds; the
    call's own lookups see the index as it was before it (moto's order: find, then change)."""

    def handle(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith(COGNITO) or target[len(COGNITO) :] in KEEPS:
            return app(environ, start_response)
        try:
            return Answer.of(app, environ).send(start_response)  # moto's work done first
        finally:
            changed()

    return handle
