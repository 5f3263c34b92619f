"""A folder's ``mlflow-record/record.json`` read as untrusted input. A folder someone sent names runs, files and
stores in its record; ``report``, ``dashboard`` and ``sync`` validate it whole against this schema before using any
of it, so a truncated file, a list or a text named ``../../x`` is one line naming the file and the key, never a
traceback halfway through a sync. The stores a record names are reported, never connected to: only a store the
user names on the command line is opened."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from clutune.errors import UserError
from clutune.guards.masking import mask
from clutune.guards.received_folder import ReceivedFolder
from clutune.guards.safe_names import name_problem
from clutune.platform.record.tracking import RECORD_DIR

RECORD_FILE = f"{RECORD_DIR}/record.json"


def _file_name(value: str) -> str:
    """A name MLflow joins into an artifact path: one component, never ``..`` or a separator."""
    problem = name_problem(value)
    if problem is not None:
        raise ValueError(f"{value!r} {problem}")
    return value


def _relative_path(value: str) -> str:
    """An artifact folder: components that are each a plain name, so an upload stays inside its run."""
    for part in value.split("/"):
        problem = name_problem(part)
        if problem is not None:
            raise ValueError(f"{value!r}: a component {problem}")
    return value


FileName = Annotated[str, AfterValidator(_file_name)]
RelativePath = Annotated[str, AfterValidator(_relative_path)]
Text = Annotated[str, Field(min_length=1)]


class _Part(BaseModel):
    # keys a later clutune adds are ignored; the keys read here are checked
    model_config = ConfigDict(extra="ignore", strict=True)


class Child(_Part):
    name: Text
    params: dict[str, str] = {}
    role: Text = "trial"


class Artifact(_Part):
    trial: str | None = None
    path: Any = None  # sync refuses, with a warning, anything that is not a path inside the folder
    artifact_path: RelativePath | None = None


class Finish(_Part):
    metrics: dict[str, float] = {}
    params: dict[str, str] = {}
    tags: dict[str, str] = {}


class Sweep(_Part):
    study_storage: str | None = None
    robust: float = 0.0
    objectives: list[str] = []
    converged_tolerance: float = 0.01
    min_trials: int = 1


class RecordedConfig(_Part):
    name: str = ""
    sweep: Sweep | None = None


class Record(_Part):
    experiment: Text
    uri: str | None = None
    name: Text
    role: Literal["run", "sweep", "compare", "study"]
    children: dict[str, Child] = {}
    artifacts: list[Artifact] = []
    params: dict[str, str] = {}
    texts: dict[FileName, str] = {}
    config: RecordedConfig = RecordedConfig()
    single: bool = False
    objectives: list[str] = []
    finish: Finish | None = None

    @model_validator(mode="after")
    def _names_its_run(self) -> Record:
        if self.single and not self.children:
            raise ValueError("key 'children': a single run's record names its run there, found none")
        return self


def _key(loc: tuple[Any, ...]) -> str:
    key = ""
    for step in loc:
        key += f"[{step}]" if isinstance(step, int) else (f".{step}" if key else str(step))
    return key


def _refusal(path: Path, error: Any) -> str:
    loc = error["loc"]
    if "[key]" in loc:  # a mapping's key: say which mapping, the key itself is in the message
        loc = loc[: loc.index("[key]") - 1]
    message = error["msg"].removeprefix("Value error, ")
    if not loc:
        if error["type"] == "value_error":
            return f"{path}: {message}"
        return f"{path}: expected a JSON object, got {type(error['input']).__name__}"
    if error["type"] == "missing":
        return f"{path}: key {_key(loc)!r} is missing"
    if error["type"] != "value_error":
        shown = repr(error["input"])
        message += f", got {shown if len(shown) <= 80 else shown[:77] + '...'}"
    return f"{path}: key {_key(loc)!r}: {message}"


def read_record(folder: ReceivedFolder) -> dict[str, Any] | None:
    """The folder's record, validated whole; None when it has none."""
    path = folder.file(RECORD_FILE)
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start} cannot be decoded)") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg}, line {e.lineno}, column {e.colno})") from None
    try:
        Record.model_validate(data)
    except ValidationError as e:
        raise UserError(_refusal(path, e.errors()[0])) from None
    return data


def require_record(folder: ReceivedFolder) -> dict[str, Any]:
    """The folder's record, validated; a folder without one was not written by clutune."""
    record = read_record(folder)
    if record is None:
        raise UserError(f"{folder.given} has no {RECORD_FILE}: not a folder written by clutune run/compare/study/sweep")
    return record


def study_storage(record: dict[str, Any] | None) -> str | None:
    """The Optuna storage the record's config names (recorded masked), if any."""
    sweep = ((record or {}).get("config") or {}).get("sweep") or {}
    return sweep.get("study_storage") or None


def not_connecting(what: str, named: str, flag: str) -> str:
    """The one line said when a received record names a store: it is not opened unless the user names it."""
    return f"{RECORD_FILE} names {what} {mask(named)}; not connecting: pass {flag} to use it"


__all__ = ["RECORD_FILE", "Record", "not_connecting", "read_record", "require_record", "study_storage"]
