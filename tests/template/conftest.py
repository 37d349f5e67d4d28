"""The template's fixtures: ``configuration``, each of the five ways to deploy it (support.py), and
``stack``, what CloudFormation would create for it (resolver.py).

Each test module runs its checks configuration by configuration (module scope), but each
configuration is resolved once per session: the modules share the resolved stack, which no test
changes.
"""

from __future__ import annotations

from functools import cache

import pytest

from tests.template.resolver import Stack, deploy
from tests.template.support import CONFIGURATIONS, Configuration


@cache
def _resolved(name: str) -> Stack:
    (configuration,) = [c for c in CONFIGURATIONS if c.name == name]
    return deploy(configuration.parameters)


@pytest.fixture(scope="module", params=CONFIGURATIONS, ids=lambda c: c.name)
def configuration(request: pytest.FixtureRequest) -> Configuration:
    config: Configuration = request.param
    return config


@pytest.fixture(scope="module")
def stack(configuration: Configuration) -> Stack:
    return _resolved(configuration.name)
