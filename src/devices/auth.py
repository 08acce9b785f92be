"""Bearer tokens with roles and region and industry scopes (CONTRACT §5, §11), shared by every router.

Tokens are stored as SHA-256 hashes (they are long random strings, so a slow hash adds
nothing); the first admin token is the service's configured one (`AuthDeps.admin_token`), compared
in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Protocol, cast

import asyncpg
from fastapi import Depends, HTTPException, Query, Request
from pydantic import SecretStr
from starlette.requests import HTTPConnection

from devices.registry import InvalidSpec, region_path
from devices.scope import INDUSTRIES, Scope, UnknownIndustry, industries

ROLES = ("viewer", "operator", "admin")
#: a list route's `region` filter: one path, whole segments; it narrows the token's scope
RegionFilter = Annotated[str | None, Query(description="region path prefix (whole segments)")]
#: a list route's `industry` filter; it narrows the token's scope, never widens it
IndustryFilter = Annotated[list[str] | None, Query(description=f"one or more of {', '.join(INDUSTRIES)}")]


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: str
    regions: tuple[str, ...] = ()  # empty: every region
    industries: tuple[str, ...] = ()  # empty: every industry

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    @property
    def scoped(self) -> bool:
        return bool(self.regions or self.industries)

    def scope(self, region: str | None = None, industry: tuple[str, ...] = ()) -> Scope:
        """The token's scope narrowed by a request's `region` and `industry` filters."""
        return Scope(self.regions, self.industries).narrowed(region, industry)

    def sees_region(self, region: str | None) -> bool:
        """Whole path segments: a `江西省/赣州` scope does not see `江西省/赣州市`."""
        return self.scope().sees_region(region)

    def sees(self, region: str | None, industry: str | None) -> bool:
        """A record of that region and industry is within the token's scope."""
        return self.scope().sees(region, industry)


def industry_filter(raw: list[str] | None) -> tuple[str, ...]:
    """Industries given repeated or comma-separated; 422 listing the industries for an unknown one."""
    try:
        return industries(raw)
    except UnknownIndustry as e:
        raise HTTPException(422, str(e)) from None


def list_scope(principal: Principal, region: str | None, industry: list[str] | None) -> Scope:
    """What a list route shows: the principal's scope narrowed by its `region` and `industry`
    filters (422 for a malformed one)."""
    try:
        path = region_path(region) or None
    except InvalidSpec as e:
        raise HTTPException(422, str(e)) from None
    return principal.scope(path, industry_filter(industry))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "mx_" + secrets.token_urlsafe(32)


async def create_token(
    pool: asyncpg.Pool, name: str, role: str, regions: list[str], industries: list[str] | None = None
) -> str:
    """Store a new token's hash; answer the token (shown once, never stored)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    token = new_token()
    await pool.execute(
        "INSERT INTO api_tokens (name, token_hash, role, regions, industries) VALUES ($1, $2, $3, $4, $5)",
        name, hash_token(token), role, regions, industries or [],
    )
    return token


class AuthDeps(Protocol):
    """What authentication reads of the running service."""

    @property
    def admin_token(self) -> SecretStr | None: ...

    @property
    def pool(self) -> asyncpg.Pool: ...


def deps(conn: HTTPConnection) -> AuthDeps:
    return cast(AuthDeps, conn.state.services)


async def principal_of(auth: AuthDeps, authorization: str) -> Principal:
    """The principal of an `Authorization` header value; 401 when it names no valid token."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    admin = auth.admin_token
    if admin is not None and hmac.compare_digest(token.encode(), admin.get_secret_value().encode()):
        return Principal("admin", "admin")
    row = await auth.pool.fetchrow(
        "SELECT name, role, regions, industries FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
        hash_token(token),
    )
    if row is None:
        raise HTTPException(401, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
    return Principal(row["name"], row["role"], tuple(row["regions"]), tuple(row["industries"]))


async def authenticate(request: Request, auth: Annotated[AuthDeps, Depends(deps)]) -> Principal:
    return await principal_of(auth, request.headers.get("authorization", ""))


def require(role: str) -> Callable[[Principal], Awaitable[Principal]]:
    """Dependency: the caller's principal, which must hold at least `role`."""

    async def dep(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not principal.may(role):
            raise HTTPException(403, f"this needs the {role} role; your token has {principal.role}")
        return principal

    return dep


Viewer = Annotated[Principal, Depends(require("viewer"))]
Operator = Annotated[Principal, Depends(require("operator"))]
Admin = Annotated[Principal, Depends(require("admin"))]
