"""What the routes and the WebSocket share: settings, storage, the job manager and the engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from aetherscan.engines.base import Engine
from aetherscan.server.jobs import JobManager
from aetherscan.server.protocol import Limits
from aetherscan.server.storage import Storage
from aetherscan.settings import Settings


@dataclass
class Service:
    settings: Settings
    storage: Storage
    jobs: JobManager
    engine: Engine

    def limits(self) -> Limits:
        return Limits(**{name: getattr(self.settings, name) for name in Limits.model_fields})


def get_service(connection: HTTPConnection) -> Service:
    return connection.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


def client_of(connection: HTTPConnection) -> str:
    """Who a limit per client counts against: the peer's address, or behind a trusted proxy
    (setting forwarded_allow_ips) the address the proxy forwards for."""
    return connection.client.host if connection.client else "unknown"
