"""Sign-in for the admin page: the backend-for-frontend exchanges a username and password
for Cognito tokens (USER_PASSWORD_AUTH on the admin app client), so the page needs no AWS
endpoint of its own. Rate-limited like signups."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError
from fastapi import APIRouter, HTTPException, status

from herd_api.api.deps import RateLimited, SettingsDep
from herd_api.models import LoginRequest, Token
from herd_core import aws

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.post(
    "/token",
    response_model=Token,
    dependencies=[RateLimited],
    responses={401: {"description": "Wrong username or password"}},
)
def token(body: LoginRequest, settings: SettingsDep) -> Token:
    if not settings.admin_client_id:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail="admin sign-in is not configured"
        )
    idp: Any = aws.client("cognito-idp", settings, unsigned=True)
    try:
        result = idp.initiate_auth(
            ClientId=settings.admin_client_id,
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": body.username, "PASSWORD": body.password},
        )
    except ClientError as err:
        if err.response["Error"]["Code"] in ("NotAuthorizedException", "UserNotFoundException"):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, detail="wrong username or password"
            ) from err
        raise
    auth = result.get("AuthenticationResult")
    if not auth:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=f"sign-in needs {result.get('ChallengeName', 'a challenge')}",
        )
    return Token(
        idToken=auth["IdToken"], accessToken=auth["AccessToken"], expiresIn=auth["ExpiresIn"]
    )
