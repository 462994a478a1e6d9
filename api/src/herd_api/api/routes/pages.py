"""The signup page and the admin page: static HTML that calls the API."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

router = APIRouter(include_in_schema=False)
_STATIC = files("herd_api") / "static"


@router.get("/", response_class=HTMLResponse)
def signup_page() -> str:
    return (_STATIC / "signup.html").read_text()


@router.get("/static/logo-upload.js")
def logo_upload_script() -> Response:
    return Response(
        (_STATIC / "logo-upload.js").read_text(), media_type="text/javascript; charset=utf-8"
    )


@router.get("/admin", response_class=HTMLResponse)
def admin_page() -> str:
    return (_STATIC / "admin.html").read_text()
