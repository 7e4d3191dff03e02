"""docker-compose.yml cannot be run here (no Docker engine), so its scale-out profiles are checked
against the code: every aetherscan command in it parses with the CLI, every AETHERSCAN_ setting
is one of Settings, and Redis keeps its queue across restarts."""

from __future__ import annotations

from pathlib import Path

import yaml

from aetherscan.cli import _build_parser
from aetherscan.settings import Settings

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.yml"


def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_every_aetherscan_command_of_the_compose_file_parses():
    commands = [s["command"] for s in services().values() if "aetherscan" in str(s.get("command"))]
    assert len(commands) >= 3  # web, a CPU worker, a GPU worker
    parser = _build_parser()
    for command in commands:
        args = parser.parse_args(command[1:])
        assert args.broker == "redis://redis:6379/0"
    kinds = {command[1] for command in commands}
    assert kinds == {"serve", "worker"}


def test_every_setting_the_compose_file_gives_exists():
    known = {f"AETHERSCAN_{name.upper()}" for name in Settings.model_fields}
    for name, service in services().items():
        for variable in service.get("environment") or {}:
            if variable.startswith("AETHERSCAN_"):
                assert variable in known, f"{name}: {variable} is no setting"


def test_redis_persists_every_write_and_workers_reserve_a_gpu_each():
    command = services()["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "always"
    gpu = services()["worker-gpu0"]
    device = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["device_ids"] == ["0"] and "gpu" in device["capabilities"]
    assert "scale" in services()["worker"]["profiles"]
