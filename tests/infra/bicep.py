"""Read the infrastructure as data: Bicep files parsed by pycep, the parameter files, the
subscription definitions and the app's own function index.

pycep turns a ``.bicep`` file into nested dicts: ``parameters``, ``variables``, ``resources``,
``modules``, ``outputs``. A plain Bicep string and an identifier both come back as ``str``
(``'abc'`` and ``abc`` look the same); expressions come back as ``{"operator": ...}`` or
``{"function": ...}`` nodes. The helpers below only walk that structure, they never regex the text,
except :func:`role_comments`, which reads the comments pycep drops.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

from tests import apps

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
SUBSCRIPTIONS_FILE = INFRA / "event-subscriptions.json"
SAMPLE_SETTINGS = ROOT / "local.settings.sample.json"
WORKFLOWS = ROOT / ".github" / "workflows"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def parameter_files() -> list[Path]:
    return sorted(INFRA.glob("main.*.parameters.json"))


@cache
def parser() -> BicepParser:
    """One parser for the session: building pycep's grammar costs ~0.4 s."""
    return BicepParser()


@cache
def parse(path: Path) -> dict[str, Any]:
    """The pycep document of one Bicep file (cached: every file is parsed once per session)."""
    return dict(parser().parse(file_path=path))


def walk(node: Any) -> Iterator[Any]:
    """Every node of a parsed document, depth first: dicts, lists and leaves."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def object_keys(node: Any) -> set[str]:
    """Every key of every object literal under ``node`` (property names, setting names...)."""
    return {key for item in walk(node) if isinstance(item, dict) for key in item}


def leaves(node: Any) -> set[str]:
    """Every string leaf under ``node``: literals, identifiers and accessed property names."""
    return {item for item in walk(node) if isinstance(item, str)}


def dotted(node: Any) -> str | None:
    """``a.b.c`` for an identifier or a chain of property accessors, else None."""
    if isinstance(node, str):
        return node
    operator = node.get("operator") if isinstance(node, dict) else None
    if not isinstance(operator, dict) or operator.get("type") != "property_accessor":
        return None
    left, right = dotted(operator["operands"]["operand_1"]), dotted(operator["operands"]["operand_2"])
    return f"{left}.{right}" if left and right else None


def config(resource_or_module: dict[str, Any]) -> dict[str, Any]:
    """The body of a resource or module, looking through ``if (...)`` and ``[for ...]`` wrappers."""
    body: dict[str, Any] = resource_or_module["config"]
    while "config" in body and ("condition" in body or "loop_type" in body):
        body = body["config"]
    return body


def resources(doc: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in doc.get("resources", {}).items() if res["type"].lower() == type_.lower()}


def module_path(path: Path, module: dict[str, Any]) -> Path:
    return (path.parent / module["detail"]["path"]).resolve()


def modules_using(doc: dict[str, Any], source: Path, target: Path) -> dict[str, dict[str, Any]]:
    """The modules of ``doc`` (parsed from ``source``) that deploy the file ``target``."""
    return {name: mod for name, mod in doc.get("modules", {}).items()
            if module_path(source, mod) == target.resolve()}


def json_loads(path: Path, doc: dict[str, Any]) -> set[Path]:
    """Files a Bicep document loads with ``loadJsonContent``, resolved against its own folder."""
    return {(path.parent / item["function"]["parameters"]["file_path"]).resolve()
            for item in walk(doc)
            if isinstance(item, dict) and isinstance(item.get("function"), dict)
            and item["function"].get("type") == "load_json_content"}


def param_constraints(param: dict[str, Any]) -> dict[str, Any]:
    """``allowed``, ``min_value``, ``max_length``... of a Bicep parameter, by decorator name."""
    return {d["type"]: d.get("argument") for d in param.get("decorators", [])}


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def subscriptions() -> list[dict[str, Any]]:
    return list(read_json(SUBSCRIPTIONS_FILE)["subscriptions"])


_ROLE_LINE = re.compile(r"'([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})'\s*//\s*(.+?)\s*$")


def role_comments(path: Path) -> dict[str, str]:
    """Role definition GUID -> the role named in the comment on the same line (pycep drops comments)."""
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _ROLE_LINE.search(line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def load_function_app() -> Any:
    return apps.load_function_app("_infra_function_app")
