"""Typed dependencies: the bearer token check and the shared handles (store, files, workers, settings)."""

from __future__ import annotations

import secrets
from typing import Annotated, Optional

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ex4d_engine.errors import UnauthorizedError

from .artefacts import Artefacts
from .settings import Settings
from .store import Store
from .supervisor import WorkerPool

_bearer = HTTPBearer(auto_error=False, description="the token from <data-dir>/token or EX4D_TOKEN")


def require_token(request: Request,
                  credentials: Annotated[Optional[HTTPAuthorizationCredentials], Depends(_bearer)]) -> None:
    expected: str = request.app.state.token
    if credentials is None:
        raise UnauthorizedError("missing bearer token: send 'Authorization: Bearer <token>' "
                                "(the token is in <data-dir>/token)")
    if not secrets.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise UnauthorizedError("wrong bearer token")


def _store(request: Request) -> Store:
    return request.app.state.store


def _artefacts(request: Request) -> Artefacts:
    return request.app.state.artefacts


def _pool(request: Request) -> WorkerPool:
    return request.app.state.pool


def _settings(request: Request) -> Settings:
    return request.app.state.settings


TokenDep = Depends(require_token)
StoreDep = Annotated[Store, Depends(_store)]
ArtefactsDep = Annotated[Artefacts, Depends(_artefacts)]
PoolDep = Annotated[WorkerPool, Depends(_pool)]
SettingsDep = Annotated[Settings, Depends(_settings)]
