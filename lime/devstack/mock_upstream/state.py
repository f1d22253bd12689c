"""What a running mock holds: its config, its request log and the responses its accounts stored."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from lime.devstack.mock_upstream.config import MockConfig
from lime.devstack.mock_upstream.log import RequestLog
from lime.devstack.mock_upstream.stored import ResponseStore

__all__ = ["STATE", "MockState"]


@dataclass(frozen=True)
class MockState:
    config: MockConfig
    log: RequestLog
    responses: ResponseStore


STATE = web.AppKey("lime_mock_state", MockState)
