"""Package a model that passed the gate, and optionally register it in Azure ML.

Registration is the point where a model becomes a candidate for production, so it only happens when
the verdict passed *for this exact model file* (the verdict carries the model's sha256). A failed
verdict is not an error: the step writes ``registration.json`` with ``"registered": false`` and the
reason, and exits 0, so the pipeline run stays green and the reactor can report why nothing changed.

    python -m ml.register --model DIR --verdict verdict.json --name NAME [--tag k=v ...] --out PACKAGE_DIR
                          [--azureml [--subscription-id ID --resource-group RG --workspace WS]]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml._cli import run, write_json
from ml.errors import MLError, ModelError, VerdictError
from ml.evaluate import model_sha256
from ml.model_io import MODEL_FILES, find_model_dir, load_card

if TYPE_CHECKING:
    from azure.ai.ml.entities import Model

REGISTRATION_FILE = "registration.json"
# conservative subset of what Azure ML accepts for asset names, checked here to fail before any upload
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
# environment variables Azure ML sets inside every job, so the pipeline step needs no workspace arguments
_JOB_WORKSPACE_ENV = ("AZUREML_ARM_SUBSCRIPTION", "AZUREML_ARM_RESOURCEGROUP", "AZUREML_ARM_WORKSPACE_NAME")


def package(
    model_dir: str | Path, verdict_path: str | Path, name: str, tags: dict[str, str], out_dir: str | Path
) -> dict[str, Any]:
    """Write the registration package into ``out_dir`` and return the registration record."""
    check_name(name)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        # a stale model.pkl next to a "registered": false record would be easy to deploy by mistake
        raise MLError(f"{out}: output directory is not empty; write each package to a fresh directory")
    source = find_model_dir(model_dir)
    verdict = read_verdict(verdict_path)
    if not verdict["passed"]:
        record = {"registered": False, "name": name, "reason": verdict["reason"], "verdict": verdict}
        write_json(out / REGISTRATION_FILE, record)
        return record
    if verdict["challenger_sha256"] != model_sha256(source):
        raise VerdictError(f"{verdict_path}: verdict was computed for a different model than {source}")
    card = load_card(source)
    record = {
        "registered": True,
        "name": name,
        "tags": {**tags, **_lineage_tags(tags, card, verdict)},
        "properties": _properties(card, verdict),
        "verdict": verdict,
        "files": list(MODEL_FILES),
    }
    _copy_model_files(source, out)
    write_json(out / REGISTRATION_FILE, record)
    return record


def _copy_model_files(source: Path, out: Path) -> None:
    missing = [name for name in MODEL_FILES if not (source / name).is_file()]
    if missing:
        raise ModelError(f"{source}: model directory lacks {', '.join(missing)}; was it written by ml.train?")
    out.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        shutil.copy2(source / name, out / name)


def read_verdict(path: str | Path) -> dict[str, Any]:
    try:
        verdict = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VerdictError(f"{path}: no such verdict file") from None
    except (OSError, ValueError) as exc:
        raise VerdictError(f"{path}: unreadable verdict ({exc})") from exc
    if not isinstance(verdict, dict):
        raise VerdictError(f"{path}: verdict must be a JSON object")
    required = {"passed": bool, "metric": str, "reason": str, "challenger_sha256": str}
    for key, kind in required.items():
        if not isinstance(verdict.get(key), kind):
            raise VerdictError(f"{path}: verdict field {key!r} missing or not a {kind.__name__}")
    return verdict


def _lineage_tags(user: dict[str, str], card: dict[str, Any], verdict: dict[str, Any]) -> dict[str, str]:
    metric = verdict["metric"]
    auto = {
        "algorithm": str(card.get("algorithm")),
        "metric": metric,
        metric: _text(verdict.get("challenger")),
        f"champion_{metric}": _text(verdict.get("champion")),
        "improvement": _text(verdict.get("improvement")),
        "training_data_sha256": str(card.get("training_data_sha256")),
        "test_data_sha256": str(verdict.get("test_sha256")),
    }
    clash = sorted(set(user) & set(auto))
    if clash:
        raise MLError(f"tags {', '.join(clash)} are set by registration itself; choose other names")
    return auto


def _properties(card: dict[str, Any], verdict: dict[str, Any]) -> dict[str, str]:
    """Immutable facts about the model; Azure ML properties are strings, so structured ones are JSON."""
    files = [{k: f.get(k) for k in ("name", "sha256", "rows")} for f in card.get("training_files", [])]
    return {
        "model_sha256": verdict["challenger_sha256"],
        "sklearn_version": str(card.get("sklearn_version")),
        "alpha": _text(card.get("alpha")),
        "training_rows": _text(card.get("training_rows")),
        "training_files": json.dumps(files, separators=(",", ":")),
        "train_metrics": json.dumps(card.get("train_metrics"), separators=(",", ":")),
        "verdict_reason": verdict["reason"],
    }


def _text(value: Any) -> str:
    return "none" if value is None else str(value)


def check_name(name: str) -> None:
    if not _NAME.match(name):
        raise MLError(f"invalid model name {name!r}: use letters, digits, '-', '_', '.'; start with a letter or digit")


def parse_tags(pairs: list[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise MLError(f"tag {pair!r} is not of the form key=value")
        tags[key.strip()] = value
    return tags


def build_azure_model(package_dir: str | Path, name: str, tags: dict[str, str]) -> Model:
    """The azure-ai-ml ``Model`` entity for a package, with properties taken from its registration.json."""
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import Model

    package_path = Path(package_dir)
    record = json.loads((package_path / REGISTRATION_FILE).read_text(encoding="utf-8"))
    if not record.get("registered"):
        raise VerdictError(f"{package_path}: package is for a model that did not pass evaluation")
    return Model(
        path=str(package_path),
        name=name,
        type=AssetTypes.CUSTOM_MODEL,
        description=f"Ridge regression on the diabetes contract; {record['verdict']['reason']}",
        tags=tags,
        properties=record["properties"],
    )


def register_in_azureml(model: Model, workspace: tuple[str, str, str]) -> Model:
    """Create the model version in the workspace (network call)."""
    from azure.ai.ml import MLClient

    subscription_id, resource_group, workspace_name = workspace
    client = MLClient(
        credential=_credential(),
        subscription_id=subscription_id,
        resource_group_name=resource_group,
        workspace_name=workspace_name,
    )
    created: Model = client.models.create_or_update(model)
    return created


def _credential() -> Any:
    """Credential that works on a laptop (az login) and inside an Azure ML job."""
    if os.environ.get("AZUREML_OBO_ENABLED"):
        # job submitted to run as the user's identity
        from azure.ai.ml.identity import AzureMLOnBehalfOfCredential

        return AzureMLOnBehalfOfCredential()
    from azure.identity import DefaultAzureCredential

    # compute clusters name their assigned managed identity in DEFAULT_IDENTITY_CLIENT_ID
    return DefaultAzureCredential(managed_identity_client_id=os.environ.get("DEFAULT_IDENTITY_CLIENT_ID"))


def resolve_workspace(
    subscription_id: str | None, resource_group: str | None, workspace: str | None
) -> tuple[str, str, str]:
    """Workspace from arguments, falling back to the variables Azure ML sets inside a job."""
    given = (subscription_id, resource_group, workspace)
    values = tuple(v or os.environ.get(env, "") for v, env in zip(given, _JOB_WORKSPACE_ENV, strict=True))
    if not all(values):
        raise MLError("Azure ML workspace unknown: pass --subscription-id, --resource-group and --workspace")
    return values[0], values[1], values[2]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ml.register", description="Package and register a passed model.")
    parser.add_argument("--model", required=True, type=Path, help="model directory written by ml.train")
    parser.add_argument("--verdict", required=True, type=Path, help="verdict.json written by ml.evaluate")
    parser.add_argument("--name", required=True, help="registered model name")
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="extra tag (repeatable)")
    parser.add_argument("--tags-json", default="{}", help="extra tags as a JSON object (used by the pipeline)")
    parser.add_argument("--out", required=True, type=Path, help="fresh directory for the package")
    parser.add_argument("--azureml", action="store_true", help="also register the package in Azure ML")
    parser.add_argument("--subscription-id", help="defaults to $AZUREML_ARM_SUBSCRIPTION (set in Azure ML jobs)")
    parser.add_argument("--resource-group", help="defaults to $AZUREML_ARM_RESOURCEGROUP")
    parser.add_argument("--workspace", help="defaults to $AZUREML_ARM_WORKSPACE_NAME")
    return parser


def _json_tags(text: str) -> dict[str, str]:
    try:
        tags = json.loads(text)
    except ValueError as exc:
        raise MLError(f"--tags-json is not valid JSON ({exc})") from exc
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise MLError("--tags-json must be a JSON object of string values")
    return tags


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    def go() -> int:
        tags = {**_json_tags(args.tags_json), **parse_tags(args.tag)}
        workspace = None
        if args.azureml:  # resolved before packaging so a misconfigured step fails before writing anything
            workspace = resolve_workspace(args.subscription_id, args.resource_group, args.workspace)
        record = package(args.model, args.verdict, args.name, tags, args.out)
        if not record["registered"]:
            print(f"not registered: {record['reason']}")
            return 0
        if workspace is not None:
            created = register_in_azureml(build_azure_model(args.out, args.name, record["tags"]), workspace)
            record["azureml"] = {"name": created.name, "version": created.version, "id": created.id}
            write_json(args.out / REGISTRATION_FILE, record)
        version = record.get("azureml", {}).get("version")
        print(f"registered {args.name}" + (f" version {version}" if version else " (local package only)"))
        return 0

    return run(go, "ml.register")


if __name__ == "__main__":
    sys.exit(main())
