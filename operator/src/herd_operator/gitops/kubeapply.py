"""Server-side apply, dry runs, reads and deletes of arbitrary objects (dynamic client)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError
from kubernetes.dynamic.resource import Resource

from herd_core.constants import FIELD_MANAGER
from herd_operator.gitops import rawapi


class ApplyError(Exception):
    pass


@dataclass(frozen=True)
class How:
    """How one object is written: Argo's sync options of the object or its Application."""

    # Replace=true: a PUT of the whole object (a POST when new) instead of a server-side
    # apply: what other managers set goes too. `version` is the live resourceVersion.
    replace: bool = False
    version: str | None = None


APPLY = How()
# JSON is YAML: so declared, the ApiClient sends the text as it is (as JSON it would encode
# the string once more).
AS_YAML = "application/yaml"


def segment(value: str, what: str = "name") -> str:
    """`value` as one path segment of a request: refused when it could address another path
    (apimachinery's IsValidPathSegmentName), escaped otherwise (`?`, `#`, spaces...)."""
    if not isinstance(value, str) or value in ("", ".", "..") or "/" in value or "%" in value:
        raise ApplyError(
            f"invalid {what} {value!r}: may not be empty, '.' or '..', nor hold '/' or '%'"
        )
    return quote(value, safe="")


def resource_path(res: Resource, name: str | None = None, namespace: str | None = None) -> str:
    """The request path of `res` (of its object `name`), each segment escaped."""
    return res.path(  # type: ignore[no-untyped-call,no-any-return]
        name=segment(name) if name else None,
        namespace=segment(namespace, "namespace") if namespace else None,
    )


def describe(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


def api_message(err: ApiException) -> str:
    try:
        return str(json.loads(err.body or "").get("message") or err.reason)
    except (TypeError, ValueError):
        return str(err.reason)


class Applier:
    def __init__(self, api: ApiClient, field_manager: str = FIELD_MANAGER) -> None:
        self.api = api
        self.dyn = DynamicClient(api)  # type: ignore[no-untyped-call]
        self.field_manager = field_manager
        self._resources: dict[tuple[str, str], Resource] = {}

    def resource(self, api_version: str, kind: str) -> Resource:
        # Remembered: the discovery client's search costs more than a request per object.
        found = self._resources.get((api_version, kind))
        if found is not None:
            return found
        for attempt in range(2):
            try:
                resource: Resource = self.dyn.resources.get(api_version=api_version, kind=kind)
                self._resources[(api_version, kind)] = resource
                return resource
            except ResourceNotFoundError:
                if attempt == 0:
                    self.dyn.resources.invalidate_cache()  # a CRD may have just arrived
                    self._resources.clear()
        raise ApplyError(f"the cluster has no kind {kind} in {api_version}")

    def namespaced(self, obj: dict[str, Any]) -> bool:
        return bool(self.resource(obj["apiVersion"], obj["kind"]).namespaced)

    def apply(self, obj: dict[str, Any], dry_run: bool = False, how: How = APPLY) -> dict[str, Any]:
        req = self._apply_request(obj, dry_run, how)
        try:
            return rawapi.send(self.api, req)
        except ApiException as err:
            raise ApplyError(f"{describe(obj)}: {api_message(err)}") from err

    def apply_each(
        self,
        objs: list[dict[str, Any]],
        dry_run: bool = False,
        concurrency: int = 1,
        hows: Sequence[How] | None = None,
    ) -> list[dict[str, Any] | ApplyError]:
        """`apply` of each object, `concurrency` at a time: what the server holds (or would)
        or why it refused, in order."""
        out: list[dict[str, Any] | ApplyError] = [{} for _ in objs]
        requests: list[rawapi.Request] = []
        sent: list[int] = []  # the index of each request's object
        for i, obj in enumerate(objs):
            try:
                requests.append(self._apply_request(obj, dry_run, hows[i] if hows else APPLY))
                sent.append(i)
            except ApplyError as err:
                out[i] = err
        for i, answer in zip(sent, rawapi.many(self.api, requests, concurrency), strict=True):
            if isinstance(answer, ApiException):
                out[i] = ApplyError(f"{describe(objs[i])}: {api_message(answer)}")
            else:
                out[i] = answer
        return out

    def _apply_request(self, obj: dict[str, Any], dry_run: bool, how: How) -> rawapi.Request:
        """A server-side apply, forced (git wins), as a plain request: JSON both ways, since
        the dynamic client's models cost more than the request. With Replace, a PUT (or a
        POST of a new object)."""
        res = self.resource(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        query = [("fieldManager", self.field_manager)]
        if dry_run:
            query.append(("dryRun", "All"))
        namespace = meta.get("namespace") if res.namespaced else None
        try:
            path = resource_path(res, meta["name"], namespace)
        except ApplyError as err:
            raise ApplyError(f"{describe(obj)}: {err}") from err
        if how.replace and not dry_run:
            if how.version is None:
                collection = resource_path(res, namespace=namespace)
                return rawapi.Request("POST", collection, query, json.dumps(obj), AS_YAML)
            body = {**obj, "metadata": {**meta, "resourceVersion": how.version}}
            return rawapi.Request("PUT", path, query, json.dumps(body), AS_YAML)
        query.append(("force", "true"))
        return rawapi.Request(
            "PATCH",
            path,
            query,
            body=json.dumps(obj),
            content_type="application/apply-patch+yaml",
        )

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None
    ) -> dict[str, Any] | None:
        res = self.resource(api_version, kind)
        where = namespace if res.namespaced else None
        path = resource_path(res, name, where)
        try:
            return rawapi.call(self.api, "GET", path)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def get_each(
        self, keys: list[tuple[str, str, str, str | None]], concurrency: int = 1
    ) -> list[dict[str, Any] | Exception | None]:
        """`get` of each (apiVersion, kind, name, namespace), `concurrency` at a time, in
        order: the object, None when there is none, or why it could not be read."""
        out: list[dict[str, Any] | Exception | None] = [None for _ in keys]
        requests: list[rawapi.Request] = []
        sent: list[int] = []
        for i, (api_version, kind, name, namespace) in enumerate(keys):
            try:
                res = self.resource(api_version, kind)
                path = resource_path(res, name, namespace if res.namespaced else None)
            except ApplyError as err:
                out[i] = err
                continue
            requests.append(rawapi.Request("GET", path, []))
            sent.append(i)
        for i, answer in zip(sent, rawapi.many(self.api, requests, concurrency), strict=True):
            if isinstance(answer, ApiException):
                out[i] = None if answer.status == 404 else answer
            else:
                out[i] = answer
        return out

    def list(self, api_version: str, kind: str, label_selector: str) -> list[dict[str, Any]]:
        res = self.resource(api_version, kind)
        return [dict(i.to_dict()) for i in res.get(label_selector=label_selector).items]

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A POST of a new object (a hook: it may have only a generateName)."""
        res = self.resource(obj["apiVersion"], obj["kind"])
        namespace = obj["metadata"].get("namespace") if res.namespaced else None
        path = resource_path(res, namespace=namespace)
        query = [("fieldManager", self.field_manager)]
        req = rawapi.Request("POST", path, query, json.dumps(obj), AS_YAML)
        try:
            return rawapi.send(self.api, req)
        except ApiException as err:
            raise ApplyError(f"{describe(obj)}: {api_message(err)}") from err

    def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        propagation: str = "Foreground",
    ) -> None:
        res = self.resource(api_version, kind)
        where = namespace if res.namespaced else None
        with contextlib.suppress(NotFoundError):
            # The dynamic client puts both into the path as they are: escaped here.
            res.delete(
                name=segment(name),
                namespace=segment(where, "namespace") if where else None,
                body={"propagationPolicy": propagation},
            )
