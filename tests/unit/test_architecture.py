"""Guards of the shape of the code: imports point inward, cold start stays light."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("azure.ai.ml", "sklearn", "numpy", "azure.monitor.query", "azure.monitor.querymetrics",
         "azure.data.tables", "azure.storage.blob", "azure.identity", "azure.eventgrid")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_core_never_imports_azure_functions() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "core").rglob("*.py")
                 if any(n == "azure.functions" or n.startswith("azure.functions.") for n in _imports(p))]
    assert offenders == []


def test_core_never_imports_the_edges() -> None:
    edges = ("functions", "embedded", "cli", "function_app")
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "core").rglob("*.py")
                 if any(n.split(".")[0] in edges for n in _imports(p))]
    assert offenders == []


def test_function_app_imports_no_heavy_sdk_and_indexes() -> None:
    code = ("import json, sys, function_app\n"
            "names = [f.get_function_name() for f in function_app.app.get_functions()]\n"
            "print(json.dumps({'names': names, 'modules': sorted(sys.modules)}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    loaded = [m for m in result["modules"] if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert loaded == []
    assert {"on_blob_created", "on_model_registered", "on_model_deployed", "on_run_status_changed",
            "on_drift_detected", "health"} <= set(result["names"])
