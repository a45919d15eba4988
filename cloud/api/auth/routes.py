"""Routes: log in, log out, who am I."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from cloud.api.auth import service
from cloud.api.auth.models import User
from cloud.api.deps import SESSION_COOKIE, ClientIp, CurrentSession, CurrentUser, Db, Policy
from cloud.api.schemas import LoginIn, LoginOut, UserOut

router = APIRouter(prefix="/api", tags=["auth"])


def user_out(user: User) -> UserOut:
    """The wire form of a user."""
    return UserOut(
        user_id=user.user_id, username=user.username, display_name=user.display_name,
        roles=sorted(role.value for role in user.roles), site_id=user.site_id,
    )


@router.post("/auth/login", response_model=LoginOut)
async def login(
    body: LoginIn, request: Request, response: Response, conn: Db, policy: Policy, ip: ClientIp
) -> LoginOut:
    """Open a session: the token in the body (API clients) and as an HttpOnly SameSite=Strict cookie (dashboard)."""
    result = await service.login(
        conn, username=body.username, password=body.password, ip=ip,
        user_agent=request.headers.get("user-agent"), limit=policy.login_limit, ttl=policy.session_ttl,
    )
    response.set_cookie(
        SESSION_COOKIE, result.token, max_age=policy.session_ttl_s, path="/", httponly=True, samesite="strict",
        secure=policy.cookie_secure,
    )
    return LoginOut(token=result.token, expires_at=result.expires_at, user=user_out(result.user))


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(session: CurrentSession, conn: Db, policy: Policy) -> Response:
    """Revoke the current session (its token stops working everywhere at once)."""
    await service.logout(conn, session_hash=session.token_hash)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=policy.cookie_secure)
    return response


@router.get("/me", response_model=UserOut)
async def me(user: CurrentUser) -> UserOut:
    """The logged-in user."""
    return user_out(user)
