"""Lambda-side test helpers: load a handler from functions/, a Lambda context, the events/ files."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_event(name: str) -> dict:
    return json.loads((ROOT / "events" / name).read_text())


def load_handler_module(function: str):
    """functions/<function>/app.py as a fresh module (call inside moto: it makes clients at import)."""
    path = ROOT / "functions" / function / "app.py"
    name = f"handler_{function}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class LambdaContext:
    function_name: str = "billing-monitor-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:billing-monitor-test"
    aws_request_id: str = "7f8e1c2d-0000-4000-8000-000000000001"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 300_000
