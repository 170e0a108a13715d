"""An enrolled in-process agent against a real fleet server, for the edge tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modelport.edge.agent.agent import Agent, AgentConfig
from tests.edge.models import sample


def quiet(_: str) -> None:
    pass


def make_agent(
    url: str,
    token: str,
    folder: Path,
    device_id: str = "dev-1",
    group: str = "test",
    **options: Any,
) -> Agent:
    config = AgentConfig(
        server=url,
        device_id=device_id,
        data_dir=folder / device_id,
        enroll_token=token,
        tags=(group,),
        **options,
    )
    agent = Agent(config, stage=quiet)
    agent.boot()
    assert agent.client.token  # enrolls
    return agent


def answer(agent: Agent) -> np.ndarray:
    """What the agent's active model answers on the test sample."""
    assert agent.serving is not None
    return agent.serving.runtime.predict(sample())["y"]
