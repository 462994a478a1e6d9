from fastapi import APIRouter

from herd_api.api.routes import auth, health, logos, pages, signups, tenants

api_router = APIRouter()
for module in (signups, tenants, logos, auth, health, pages):
    api_router.include_router(module.router)
