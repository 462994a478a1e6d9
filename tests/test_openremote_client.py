"""The operator's OpenRemote client against the local OpenRemote stand-in, over real HTTP."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from herd_operator.clients.openremote import OpenRemote
from herd_operator.settings import Settings

from .openremote_stub import CLIENT_ID, CLIENT_SECRET, OpenRemoteStub


def client(stub: OpenRemoteStub) -> OpenRemote:
    return OpenRemote(
        Settings(
            openremote_enabled=True,
            openremote_url=stub.url,
            openremote_client_id=CLIENT_ID,
            openremote_client_secret=CLIENT_SECRET,
        )
    )


def test_two_realm_logos_at_once_are_both_kept(openremote: OpenRemoteStub) -> None:
    """N15: the Manager UI's configuration is one document for every realm. The first writer
    is held just after its read until a second read comes in (at most 3 s): two writes from
    one read each lost one logo; one at a time, both stay."""
    second_read = threading.Event()

    def hold_the_first_read() -> None:
        openremote.after("manager-config-read", second_read.set)
        second_read.wait(3)

    openremote.after("manager-config-read", hold_the_first_read)
    logos = {f"realm-{i}": f"https://cdn.example/logo-{i}.png" for i in range(2)}
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda item: client(openremote).set_realm_logo(*item), logos.items()))
    realms = openremote.manager_config["realms"]
    for realm, url in logos.items():
        assert realms[realm] == {"logo": url, "logoMobile": url}


def test_a_logo_overwritten_between_write_and_read_back_is_written_again(
    openremote: OpenRemoteStub,
) -> None:
    """Someone else's write of the whole document right after ours (the Manager UI's own
    save) is seen when the operator reads it back, and the logo is written again."""
    url = "https://cdn.example/logo-x.png"

    def someone_else_saves() -> None:
        openremote.manager_config = {"realms": {"other": {"logo": "theirs"}}}

    openremote.after("manager-config", someone_else_saves)
    client(openremote).set_realm_logo("realm-x", url)
    realms = openremote.manager_config["realms"]
    assert realms["realm-x"] == {"logo": url, "logoMobile": url}
    assert realms["other"] == {"logo": "theirs"}
