from fastapi import APIRouter

from herd_api.api.routes import auth, health, pages, signups, tenants

api_router = APIRouter()
for module in (signups, tenants, auth, health, pages):
    api_router.include_router(module.router)
