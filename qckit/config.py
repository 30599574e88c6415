"""Typed run parameters: one YAML profile per run, validated before anything executes.

Every section is a pydantic model with ``extra="forbid"``, so an unknown key or a wrong type is an
error that names the key (``data.drop_duplicates: Input should be a valid boolean``). Field
descriptions are the documentation of each parameter.

Example:
    >>> from qckit.config import load_params
    >>> cfg = load_params("params/smoke.yaml")
    >>> cfg.data.source
    'demo'
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

Task = Literal["QC", "QI"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class RunParams(Section):
    outputs_dir: str = Field("outputs", description="Folder under which run directories are created.")
    seed: int = Field(13, description="Seed for every random choice of the run.")
    cell_timeout_s: int = Field(3600, gt=0, description="Papermill per-cell timeout in seconds.")
    steps: list[str] | None = Field(None, description="Steps to run (e.g. ['01']); None runs every step.")


class DemoParams(Section):
    seed: int = Field(0, description="Seed of the synthetic data set; same seed, same bytes.")
    noise_rate: float = Field(0.05, ge=0.0, le=0.5, description="Share of training labels flipped.")
    queries_per_language: int = Field(60, gt=0, description="Distinct queries per language and task.")


class DataParams(Section):
    source: Literal["demo", "files"] = Field(
        "demo", description="'demo': synthetic data made by qckit.demo inside the run; 'files': the paths below."
    )
    train: list[str] = Field(default_factory=list, description="Training files (JSONL, CSV or Parquet).")
    dev: list[str] = Field(default_factory=list, description="Labelled development files.")
    test: list[str] = Field(default_factory=list, description="Test files; labels may be absent.")
    tasks: list[Task] = Field(default_factory=lambda: ["QC", "QI"], description="Tasks to keep.")
    train_languages: list[str] | None = Field(
        None, description="Keep only these languages in train (e.g. the six official ones); None keeps all."
    )
    drop_empty: bool = Field(True, description="Drop rows whose query or target is empty.")
    drop_duplicates: bool = Field(True, description="Drop exact duplicate rows (same task, query, target, label).")
    conflicts: Literal["keep", "drop"] = Field(
        "keep", description="Pairs seen with both labels: 'keep' all rows or 'drop' every row of the pair."
    )
    max_rows: int | None = Field(None, gt=0, description="Cap rows per split and task (stratified sample).")


class AuditParams(Section):
    zero_shot_languages: list[str] | None = Field(
        None, description="Languages treated as zero-shot; None: those in dev/test with no training rows."
    )
    examples: int = Field(5, ge=0, description="Example rows shown per table in the audit report.")


class ModelsParams(Section):
    cache_dir: str | None = Field(
        None, description="Where built-in models are materialised; None: $QCKIT_CACHE or ~/.cache/qckit."
    )
    embedder: str = Field("multilingual-e5-small", description="Embedding model: hub id, path, built-in, tiny:<family>.")
    classifier: str = Field("multilingual-e5-small", description="Model fine-tuned in step 05.")
    trust_remote_code: bool = Field(False, description="Allow model repositories to run their own code.")


class Params(Section):
    name: str = Field(..., description="Profile name; used in run ids.")
    description: str = Field("", description="One line saying what this profile is for.")
    run: RunParams = Field(default_factory=RunParams)
    data: DataParams = Field(default_factory=DataParams)
    demo: DemoParams = Field(default_factory=DemoParams)
    audit: AuditParams = Field(default_factory=AuditParams)
    models: ModelsParams = Field(default_factory=ModelsParams)


class ParamsError(ValueError):
    """A parameter file that cannot be used; the message names the file and the key."""


def _format_errors(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid parameters"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def parse_params(raw: dict, path: str | Path = "<params>") -> Params:
    """Validate a parsed YAML mapping; relative data paths are resolved against the file's folder."""
    path = Path(path)
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(_format_errors(path, err)) from None
    return params


def load_params(path: str | Path) -> Params:
    """Read and validate a YAML parameter profile. Raises ParamsError naming the file and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ParamsError(f"{path}: cannot read parameter file ({err.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    return parse_params(raw, path)


def dump_params(params: Params) -> str:
    """The resolved parameters as YAML (what a run stores in params.yaml)."""
    return yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
