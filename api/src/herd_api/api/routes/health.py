"""Probes: /healthz (the process is alive), /readyz (the cluster is reachable)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from herd_api.api.deps import StoreDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "The cluster is not reachable"}})
async def readyz(store: StoreDep) -> dict[str, str]:
    if not await store.reachable():
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail="the Kubernetes API is not reachable"
        )
    return {"status": "ready"}
