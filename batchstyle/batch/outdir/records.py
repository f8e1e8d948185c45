"""What ``.batchstyle/`` holds about items: done records, failure records, plan items, and the one
check of their shape that every reader (a local or a remote output directory) applies.

A file there may be anything by the time it is read: cut short by a full disk in another program,
edited by hand, written by a future version. :func:`record_from` turns its bytes into a record or
says, in words, why it is none; the reader then treats it as absent (its image is made again)
and notes the file once.
"""

from __future__ import annotations

import json
import posixpath
import types
import typing
from dataclasses import MISSING, dataclass, field
from functools import lru_cache
from typing import Any


META = ".batchstyle"  # the folder of an output directory that holds what this module describes


class BadRecord(ValueError):
    """A file of ``.batchstyle/`` that is no record of the kind expected; the text says why."""


def _json_object(data: bytes | None) -> dict | None:
    """The JSON object in ``data``; None for nothing, for what is not JSON and for any other value."""
    try:
        value = json.loads(data) if data and data.strip() else None
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


@dataclass
class ItemRecord:
    """What was made, how, where and how long it took. Its presence means the image is complete."""

    id: str
    output: str
    line: int
    content: str
    styles: list[str]
    settings: dict[str, Any]
    weights: str
    worker: str = ""
    devices: list[str] = field(default_factory=list)
    attempts: int = 1
    started: float = 0.0
    finished: float = 0.0
    seconds: float = 0.0
    iterations: int = 0
    final_loss: float | None = None
    gpu_peak_bytes: int = 0
    resumed_from_scale: int | None = None
    group_size: int = 1  # images optimised together with this one, itself included
    notes: list[str] = field(default_factory=list)  # warnings about its inputs, a shortened ladder
    output_bytes: int = 0  # the image as written: size, modification time and SHA-256
    output_mtime_ns: int = 0
    output_sha256: str = ""
    output_tag: str = ""  # on object storage: the content tag (ETag) the image's PUT returned
    masks: list[str] = field(default_factory=list)  # one per style, or one segmentation (then mask_colors)
    mask_colors: list[str] = field(default_factory=list)  # a segmentation's colour of each style, as #rrggbb
    clip: str = ""  # a frame of a clip: the clip's frames folder ("" for a still image)
    frame: int = 0  # its number in the clip, from 1
    frames: int = 0  # the clip's frame count
    video: str = ""  # the clip's encoded video, where it has one
    source: str = ""  # the clip's video file, where it is one ("" for a frame folder)


@dataclass
class FailureRecord:
    id: str
    output: str
    line: int
    content: str
    error: str
    kind: str  # error | oom | worker-lost | ...
    attempts: int
    time: float
    worker: str = ""
    detail: str = ""  # the traceback, where there is one


@dataclass
class PlanItem:
    """One item of the latest run, as ``batchstyle status`` lists it."""

    id: str
    output: str
    line: int
    content: str
    styles: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # only those that differ from the defaults
    masks: list[str] = field(default_factory=list)  # as ItemRecord's
    mask_colors: list[str] = field(default_factory=list)
    clip: str = ""  # as ItemRecord's
    frame: int = 0
    frames: int = 0
    video: str = ""
    source: str = ""


def record_from(data: bytes, cls, name: str = ""):
    """The record (``cls``: :class:`ItemRecord`, :class:`FailureRecord`) in a file's bytes; raises
    :class:`BadRecord` when they are not JSON, not an object, or a field is missing or of the wrong
    type. ``name`` (the file's name) must start with the record's id, as every record's does."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise BadRecord("not valid JSON (cut short, or not written by batchstyle)") from None
    record = _shaped(value, cls)
    if name and name.split(".")[0] != record.id:
        raise BadRecord(f"its id {record.id!r} is not the one its file name says")
    output = record.output
    if not output or output.startswith("/") or ".." in output.split("/") or posixpath.normpath(output) != output:
        raise BadRecord(f"its output {output!r} is not a path inside the output directory")
    return record


def plan_from(data: bytes) -> list[PlanItem]:
    """The items of ``plan.json``; raises :class:`BadRecord` as :func:`record_from` does."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise BadRecord("not valid JSON (cut short, or not written by batchstyle)") from None
    if not isinstance(value, dict) or not isinstance(value.get("items", []), list):
        raise BadRecord("not a plan (an object with a list of items)")
    return [_shaped(entry, PlanItem) for entry in value.get("items", [])]


def _shaped(value: Any, cls):
    """``cls`` built from a JSON object whose fields have the types ``cls`` declares (other keys ignored)."""
    if not isinstance(value, dict):
        raise BadRecord(f"{_kind(value)} where a record (a JSON object) belongs")
    hints = _hints(cls)
    for key, spec in cls.__dataclass_fields__.items():
        if key not in value:
            if spec.default is MISSING and spec.default_factory is MISSING:  # a field without a default
                raise BadRecord(f"{key!r} is missing")
            continue
        if not _fits(value[key], hints[key]):
            raise BadRecord(f"{key!r} is {_kind(value[key])} where {_type_name(hints[key])} belongs")
    return cls(**{k: v for k, v in value.items() if k in cls.__dataclass_fields__})


@lru_cache(maxsize=None)
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value has the type ``hint`` (str, int, float, bool, None, X | None, list[X],
    dict[K, V], Any)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(_fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items())
    if hint in (int, float):  # JSON has one kind of number; true and false are not numbers here
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    if hint is type(None):
        return value is None
    return isinstance(value, hint)


def _kind(value: Any) -> str:
    """A JSON value's kind, in words."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "true or false", type(None): "null"}
    return names.get(type(value), "a number")


def _type_name(hint: Any) -> str:
    """A field's type, in words."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in args)
    if origin is list:
        return f"a list of {_type_name(args[0]).split(' ', 1)[1]}s"
    words = {str: "a string", int: "a whole number", float: "a number", bool: "true or false", dict: "an object",
             type(None): "null"}
    return words.get(origin or hint, "an object")


__all__ = ["ItemRecord", "FailureRecord", "PlanItem", "BadRecord", "record_from", "plan_from"]
