"""Walle task packages: a versioned, checksummed CTR model with its configuration, and a runner.

A task package holds what one on-device task needs, as six files:

=================  =========================================================================
file               content
=================  =========================================================================
``model.onnx``     the exported model (:func:`graphrec.export.export_onnx`)
``model.mnn``      the same model converted for MNN (:func:`graphrec.export.export_mnn`)
``features.json``  pre-processing: the model inputs in order, each a CTR column of kind
                   ``categorical`` (its vocabulary), ``numeric`` or ``sequence`` (its
                   vocabulary, element separator and fixed length)
``vocab.json``     the vocabularies: ``{owner column: {raw value: code >= 1}}``
``task.json``      the output the task reads, its post-processing (``activation``:
                   ``sigmoid`` or ``identity``; optional ``threshold`` and ``top_k``) and the
                   triggers: a task file's object ``{"events": {name: id}, "tasks": [{"name",
                   "triggers", "extract", "window"}]}``, the format of
                   :func:`graphrec.ondevice.walle.triggers.load_tasks`
``manifest.json``  format, name, version (``MAJOR.MINOR.PATCH``), the graphrec version that
                   built it, the parity record and the sha256 and size of every other file
=================  =========================================================================

A package is a folder of these files or a ``.tar`` archive of them (written atomically: a
temporary file renamed into place). :func:`build_package` exports the model and runs the
export parity gate (onnxruntime against torch and MNN in MNN itself, on inputs of other
batch sizes than the export example); a package whose gate fails is not written, and the
measured max |diff| per runtime is recorded in the manifest. :func:`load_package` refuses,
with a :class:`PackageError` naming the file, a package with a malformed manifest or
configuration, a missing or extra file, a file whose size or sha256 differs from the
manifest, an archive member that is not a plain file name (path traversal, links) or a
manifest that was edited (``manifest_sha256`` covers the manifest itself; it detects
corruption and inconsistent edits, not a forger who recomputes it: that needs a signature).

:class:`TaskRunner` runs several packages' tasks concurrently, each in its own worker thread
with its own model session (MNN's Module API, or onnxruntime on the same package where MNN is
not installed) and configuration; one task = pre-processing (raw feature rows -> model
inputs), the model and post-processing, each stage timed. An exception in a task is returned
in its :class:`TaskOutcome` and does not affect the other tasks.

Example:
    >>> table = data.split.train  # the training table: vocabularies, sequence widths
    >>> build_package(model, table, "din.tar", name="din", version="1.0.0")  # doctest: +SKIP
    >>> with TaskRunner(["din.tar"]) as runner:  # doctest: +SKIP
    ...     outcome = runner.run({"din": [{"userid": "874257", "price": 3.9}]})["din"]
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import shutil
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit

import graphrec
from graphrec.errors import ConfigError, GraphrecError
from graphrec.export.parity import PARITY_ATOL, ParityError

__all__ = [
    "FORMAT",
    "PACKAGE_FILES",
    "RUNTIMES",
    "PackageError",
    "PackageParityError",
    "Task",
    "TaskOutcome",
    "TaskPackage",
    "TaskRunner",
    "build_package",
    "load_package",
]

#: Version of the package layout (``manifest.json`` ``format``).
FORMAT = 1
MANIFEST = "manifest.json"
#: The files besides the manifest, every one required.
PACKAGE_FILES = ("features.json", "model.mnn", "model.onnx", "task.json", "vocab.json")
#: Model runtimes of :class:`Task`: ``auto`` is MNN where it is installed, else onnxruntime.
RUNTIMES = ("auto", "mnn", "onnxruntime")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_VERSION = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAX_MANIFEST = 1 << 20
_KINDS = {"sparse": "categorical", "dense": "numeric", "sequence": "sequence"}
_ACTIVATIONS = ("sigmoid", "identity")


class PackageError(GraphrecError):
    """A task package is malformed, incomplete or tampered with; ``file`` names the file."""

    def __init__(self, message: str, file: str | None = None) -> None:
        self.file = file
        super().__init__(message)


class PackageParityError(PackageError, ParityError):
    """The export parity gate failed: the package was not written; ``report`` has the table."""

    def __init__(self, message: str, report: Any) -> None:
        self.report = report
        super().__init__(message)


# ----------------------------------------------------------------------------- validation


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _check_keys(obj: Any, what: str, required: Iterable[str], optional: Iterable[str] = ()) -> None:
    _check(isinstance(obj, dict), f"{what} must be a JSON object; got {type(obj).__name__}")
    required, allowed = set(required), set(required) | set(optional)
    missing, extra = sorted(required - obj.keys()), sorted(obj.keys() - allowed)
    _check(not missing, f"{what} lacks {missing}")
    _check(not extra, f"{what} has unknown keys {extra}")


def _check_name(name: Any) -> str:
    _check(
        isinstance(name, str) and _NAME.fullmatch(name) is not None,
        f"name must be 1-64 letters, digits, '_', '.' or '-' (not first); got {name!r}",
    )
    return name


def _check_version(version: Any) -> str:
    _check(
        isinstance(version, str) and _VERSION.fullmatch(version) is not None,
        f"version must be MAJOR.MINOR.PATCH (e.g. '1.0.0'); got {version!r}",
    )
    return version


def _check_postprocess(post: Any) -> dict[str, Any]:
    _check_keys(post, "postprocess", ["activation"], ["threshold", "top_k"])
    activation = post["activation"]
    _check(activation in _ACTIVATIONS, f"postprocess activation must be one of {_ACTIVATIONS}; "
           f"got {activation!r}")  # fmt: skip
    threshold, top_k = post.get("threshold"), post.get("top_k")
    if threshold is not None:
        _check(_is_number(threshold), f"postprocess threshold must be a number; got {threshold!r}")
        if activation == "sigmoid":
            _check(0 < threshold < 1, f"a sigmoid threshold must be in (0, 1); got {threshold}")
    if top_k is not None:
        _check(_is_int(top_k) and top_k >= 1, f"postprocess top_k must be >= 1; got {top_k!r}")
    return {"activation": activation, "threshold": threshold, "top_k": top_k}


def _check_triggers(triggers: Any) -> dict[str, Any]:
    """A task file's object (:func:`graphrec.ondevice.walle.triggers.parse_tasks`), checked."""
    from graphrec.ondevice.walle.triggers import parse_tasks

    parse_tasks(triggers)
    return json.loads(json.dumps(triggers))  # plain data, a copy


def _check_manifest(manifest: Any) -> None:
    _check_keys(manifest, "the manifest", ["format", "name", "version", "created_by", "model",
                                           "parity", "files", "manifest_sha256"])  # fmt: skip
    _check(manifest["format"] == FORMAT, f"format must be {FORMAT}; got {manifest['format']!r}")
    _check_name(manifest["name"])
    _check_version(manifest["version"])
    created = manifest["created_by"]
    _check(isinstance(created, str) and created.startswith("graphrec "),
           f"created_by must be 'graphrec VERSION'; got {created!r}")  # fmt: skip
    model = manifest["model"]
    _check_keys(model, "model", ["class", "inputs", "outputs"])
    for key in ("inputs", "outputs"):
        names = model[key]
        _check(isinstance(names, list) and bool(names) and all(isinstance(n, str) for n in names)
               and len(set(names)) == len(names),
               f"model {key} must be a non-empty list of unique names")  # fmt: skip
    parity = manifest["parity"]
    _check_keys(parity, "parity", ["atol", "batches", "max_abs_diff"])
    _check(_is_number(parity["atol"]) and parity["atol"] >= 0, "parity atol must be >= 0")
    diffs = parity["max_abs_diff"]
    _check_keys(diffs, "parity max_abs_diff", ["onnxruntime", "mnn"])
    for runtime, diff in diffs.items():
        _check(_is_number(diff) and 0 <= diff <= parity["atol"],
               f"parity max_abs_diff of {runtime} must be in [0, atol]; got {diff!r}")  # fmt: skip
    files = manifest["files"]
    _check_keys(files, "files", PACKAGE_FILES)
    for name, entry in files.items():
        _check_keys(entry, f"files[{name!r}]", ["sha256", "size"])
        _check(isinstance(entry["sha256"], str) and _SHA256.fullmatch(entry["sha256"]) is not None,
               f"files[{name!r}] sha256 must be 64 lowercase hex digits")  # fmt: skip
        _check(_is_int(entry["size"]) and entry["size"] >= 0,
               f"files[{name!r}] size must be an integer >= 0")  # fmt: skip


def _check_features(features: Any, vocab: Any, inputs: list[str]) -> list[dict[str, Any]]:
    _check_keys(features, "features.json", ["inputs", "label"])
    _check(features["label"] is None or isinstance(features["label"], str),
           "label must be a column name or null")  # fmt: skip
    specs = features["inputs"]
    _check(isinstance(specs, list), "inputs must be a list")
    names = [s.get("name") if isinstance(s, dict) else None for s in specs]
    _check(names == inputs, f"inputs {names} must be the model inputs {inputs}, in order")
    _check(isinstance(vocab, dict) and all(isinstance(v, dict) for v in vocab.values()),
           "vocab.json must map vocabulary names to {value: code} objects")  # fmt: skip
    for spec in specs:
        kind = spec.get("kind")
        extra = {"categorical": ["vocab"], "numeric": [], "sequence": ["vocab", "separator",
                                                                        "length"]}  # fmt: skip
        _check(kind in extra, f"input {spec['name']!r}: kind must be one of {list(extra)}")
        _check_keys(spec, f"input {spec['name']!r}", ["name", "kind", *extra[kind]])
        if kind == "numeric":
            continue
        _check(spec["vocab"] in vocab, f"input {spec['name']!r}: no vocabulary {spec['vocab']!r}")
        if kind == "sequence":
            _check(isinstance(spec["separator"], str) and len(spec["separator"]) == 1,
                   f"input {spec['name']!r}: separator must be one character")  # fmt: skip
            _check(_is_int(spec["length"]) and spec["length"] >= 1,
                   f"input {spec['name']!r}: length must be an integer >= 1")  # fmt: skip
    for owner, codes in vocab.items():
        _check(all(_is_int(c) and c >= 1 for c in codes.values()),
               f"vocabulary {owner!r}: codes must be integers >= 1")  # fmt: skip
    return specs


def _check_task(task: Any, outputs: list[str]) -> dict[str, Any]:
    _check_keys(task, "task.json", ["output", "postprocess", "triggers"])
    _check(task["output"] in outputs, f"output must be one of {outputs}; got {task['output']!r}")
    return {
        "output": task["output"],
        "postprocess": _check_postprocess(task["postprocess"]),
        "triggers": _check_triggers(task["triggers"]),
    }


# ----------------------------------------------------------------------------- the package


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest_digest(manifest: Mapping[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return _digest(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


@dataclass(repr=False)
class TaskPackage:
    """A verified task package (from :func:`load_package` or :func:`build_package`).

    Attributes:
        manifest: the parsed ``manifest.json``.
        files: the bytes of every other file, verified against the manifest.
        features: the model inputs (``features.json`` ``inputs``), in order.
        vocab: ``{vocabulary: {raw value: code}}``.
        task: ``{"output", "postprocess", "triggers"}`` from ``task.json``.
        source: where it was loaded from (or written to).
    """

    manifest: dict[str, Any]
    files: dict[str, bytes]
    features: list[dict[str, Any]] = field(init=False)
    vocab: dict[str, dict[str, int]] = field(init=False)
    task: dict[str, Any] = field(init=False)
    source: str = "<memory>"

    def __post_init__(self) -> None:
        def parse(name: str) -> Any:
            try:
                return json.loads(self.files[name].decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise PackageError(
                    f"{self.source}: {name} is not valid JSON ({exc})", name
                ) from None

        def checked(name: str, check: Any, *args: Any) -> Any:
            try:
                return check(*args)
            except ConfigError as exc:
                raise PackageError(f"{self.source}: {name}: {exc}", name) from None

        checked(MANIFEST, _check_manifest, self.manifest)
        if sorted(self.files) != sorted(PACKAGE_FILES):
            raise PackageError(
                f"{self.source}: files must be {PACKAGE_FILES}; got {sorted(self.files)}"
            )
        model = self.manifest["model"]
        self.vocab = parse("vocab.json")
        self.features = checked("features.json", _check_features, parse("features.json"),
                                self.vocab, model["inputs"])  # fmt: skip
        self.task = checked("task.json", _check_task, parse("task.json"), model["outputs"])

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def triggers(self) -> dict[str, Any]:
        """The trigger definitions: a task file's object (``{"events", "tasks"}``)."""
        return self.task["triggers"]

    def trigger_tasks(self) -> tuple[Any, list[Any]]:
        """``(EventCatalog, [triggers.Task])`` of :attr:`triggers`, ready for
        :class:`graphrec.ondevice.walle.triggers.Pipeline`."""
        from graphrec.ondevice.walle.triggers import parse_tasks

        return parse_tasks(self.triggers)

    def __repr__(self) -> str:
        return f"TaskPackage({self.name!r}, {self.version!r}, {self.manifest['model']['class']})"

    def replace(
        self,
        *,
        name: str | None = None,
        version: str | None = None,
        postprocess: Mapping[str, Any] | None = None,
        triggers: Mapping[str, Any] | None = None,
    ) -> TaskPackage:
        """A new package with the same verified model and features and the given name,
        version, post-processing or triggers (e.g. a release that only changes a threshold);
        its manifest is recomputed."""
        task = dict(self.task)
        if postprocess is not None:
            task["postprocess"] = _check_postprocess(dict(postprocess))
        if triggers is not None:
            task["triggers"] = _check_triggers(triggers)
        manifest = {
            **self.manifest,
            "name": self.name if name is None else _check_name(name),
            "version": self.version if version is None else _check_version(version),
        }
        return _seal(manifest, {**self.files, "task.json": _json(task)})

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the package as a folder, or as one archive if ``path`` ends in ``.tar``.

        Either appears in one step: the archive is a temporary file renamed into place, the
        folder a temporary sibling folder renamed into place.

        Raises:
            FileExistsError: ``path`` exists and ``overwrite`` is False.
        """
        path = Path(path)
        if (path.exists() or path.is_symlink()) and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        if not path.parent.is_dir():
            raise ConfigError(f"path {path}: folder {path.parent} does not exist")
        blobs = {MANIFEST: _json(self.manifest), **self.files}
        if path.suffix == ".tar":
            from graphrec.io.atomic import atomic_open

            if path.is_dir():
                raise ConfigError(f"path {path} is a folder; an archive must be a file")
            with (
                atomic_open(path, "wb") as f,
                tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar,
            ):
                for name in sorted(blobs, key=lambda n: (n != MANIFEST, n)):
                    info = tarfile.TarInfo(name)  # fixed metadata: the same build, same bytes
                    info.size, info.mode, info.mtime = len(blobs[name]), 0o644, 0
                    tar.addfile(info, io.BytesIO(blobs[name]))
        else:
            if path.exists() and not path.is_dir():
                raise ConfigError(f"path {path} is a file; a package folder needs a new name "
                                  "(or a .tar name for an archive)")  # fmt: skip
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
            try:
                for name, data in blobs.items():
                    (tmp / name).write_bytes(data)
                    os.chmod(tmp / name, 0o644)
                os.chmod(tmp, 0o755)
                old = None
                if path.exists():
                    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
                    os.replace(path, old / "package")
                os.replace(tmp, path)
                if old is not None:
                    shutil.rmtree(old)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        self.source = str(path)
        return path


def _seal(manifest: dict[str, Any], files: dict[str, bytes]) -> TaskPackage:
    """The package of ``files``, its manifest completed with their sha256 and sizes and with
    its own digest."""
    entries = {n: {"sha256": _digest(b), "size": len(b)} for n, b in sorted(files.items())}
    manifest = {**manifest, "files": entries}
    manifest["manifest_sha256"] = _manifest_digest(manifest)
    return TaskPackage(manifest, files)


def _refuse(source: str, file: str, problem: str) -> PackageError:
    return PackageError(f"{source}: {file}: {problem}", file)


def _plain_name(source: str, name: str) -> None:
    if name in ("", ".", "..") or name != os.path.basename(name) or "\\" in name or "\0" in name:
        raise _refuse(source, name, "not a plain file name (path traversal refused)")


def _listing(path: Path) -> tuple[dict[str, int], Any]:
    """``({file: size}, read(name, size) -> bytes)`` of a package folder or archive."""
    source = str(path)
    if path.is_dir():
        sizes = {}
        for entry in sorted(os.scandir(path), key=lambda e: e.name):
            if not entry.is_file(follow_symlinks=False):
                kind = "a link" if entry.is_symlink() else "not a regular file"
                raise _refuse(source, entry.name, f"{kind}; a package holds plain files only")
            sizes[entry.name] = entry.stat(follow_symlinks=False).st_size

        def read(name: str, size: int) -> bytes:
            with open(path / name, "rb") as f:
                return f.read(size + 1)

        return sizes, read
    if not path.is_file():
        raise PackageError(f"task package {path} does not exist")
    blobs: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:") as tar:  # uncompressed: sizes bounded by the file's
            for member in tar:
                _plain_name(source, member.name)
                if not member.isreg():
                    raise _refuse(source, member.name, "not a regular file (links and folders "
                                  "are refused)")  # fmt: skip
                if member.name in blobs:
                    raise _refuse(source, member.name, "appears twice in the archive")
                if len(blobs) > len(PACKAGE_FILES):
                    raise _refuse(source, member.name, "an extra file (too many members)")
                blobs[member.name] = tar.extractfile(member).read()
    except tarfile.TarError as exc:
        raise PackageError(f"{source}: not a package folder nor a tar archive ({exc})") from None
    return {n: len(b) for n, b in blobs.items()}, lambda name, size: blobs[name]


def load_package(path: str | os.PathLike) -> TaskPackage:
    """Load and verify a task package folder or ``.tar`` archive.

    Raises:
        PackageError: the manifest is missing, malformed or edited; a file is missing, extra,
            not a plain file (archives: path traversal, links) or differs from the manifest
            in size or sha256; a configuration file is invalid. The message and ``file``
            name the file.
    """
    path = Path(path)
    source = str(path)
    sizes, read = _listing(path)
    if MANIFEST not in sizes:
        raise _refuse(source, MANIFEST, "missing")
    if sizes[MANIFEST] > _MAX_MANIFEST:
        raise _refuse(source, MANIFEST, f"larger than {_MAX_MANIFEST} bytes")
    try:
        manifest = json.loads(read(MANIFEST, sizes[MANIFEST]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _refuse(source, MANIFEST, f"not valid JSON ({exc})") from None
    try:
        _check_manifest(manifest)
    except ConfigError as exc:
        raise _refuse(source, MANIFEST, str(exc)) from None
    if manifest["manifest_sha256"] != _manifest_digest(manifest):
        raise _refuse(source, MANIFEST, "manifest_sha256 does not match its content (edited "
                      "or corrupt)")  # fmt: skip
    expected = manifest["files"]
    for name in sizes:
        if name != MANIFEST and name not in expected:
            raise _refuse(source, name, "an extra file, not listed in the manifest")
    for name in sorted(expected):
        if name not in sizes:
            raise _refuse(source, name, "missing (listed in the manifest)")
    files = {}
    for name in sorted(expected):
        size = expected[name]["size"]
        if sizes[name] != size:
            raise _refuse(source, name, f"has {sizes[name]} bytes; the manifest says {size}")
        data = read(name, size)
        if len(data) != size:
            raise _refuse(source, name, f"read {len(data)} bytes; the manifest says {size}")
        if _digest(data) != expected[name]["sha256"]:
            raise _refuse(source, name, "sha256 does not match the manifest (tampered or corrupt)")
        files[name] = data
    return TaskPackage(manifest, files, source=source)


# ----------------------------------------------------------------------------- building


def build_package(
    model: Any,
    table: Any,
    path: str | os.PathLike,
    *,
    name: str,
    version: str,
    postprocess: Mapping[str, Any] | None = None,
    triggers: Mapping[str, Any] | None = None,
    atol: float = PARITY_ATOL,
    overwrite: bool = False,
    threads: int = 1,
) -> TaskPackage:
    """Export a CTR model, gate it on parity, and write its task package to ``path``.

    Args:
        model: a CTR model of :data:`graphrec.registry.CTR_MODELS` (or HIEN on one).
        table: a :class:`graphrec.io.CTRTable` encoded with the model's vocabulary (pass the
            training table): its vocabularies and sequence separators go into the package,
            its rows are the export example and parity inputs, and every sequence is padded
            or cut to the width it has there.
        path: the package folder, or a ``.tar`` archive.
        name, version: the package name and its ``MAJOR.MINOR.PATCH`` version.
        postprocess: ``{"activation": "sigmoid" | "identity", "threshold": t, "top_k": k}``
            (default: sigmoid only).
        triggers: a task file's object ``{"events": {name: id}, "tasks": [{"name",
            "triggers", "extract", "window"}]}`` (see
            :func:`graphrec.ondevice.walle.triggers.parse_tasks`; default: no tasks).
        atol: the parity tolerance on max |diff| (torch vs onnxruntime and vs MNN).
        overwrite: replace an existing ``path``.
        threads: CPU threads of onnxruntime and MNN in the gate.

    Returns:
        The written :class:`TaskPackage`.

    Raises:
        ConfigError: an invalid name, version, post-processing or trigger definition.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        PackageParityError: the parity gate failed (nothing is written).
    """
    from graphrec.export import check_parity, export_mnn, export_onnx, read_metadata
    from graphrec.export.checkpoint import plan_ctr
    from graphrec.export.onnx import require_extra

    _check_name(name)
    _check_version(version)
    post = _check_postprocess(dict(postprocess or {"activation": "sigmoid"}))
    trigger_spec = _check_triggers({"tasks": []} if triggers is None else triggers)
    _check(_is_number(atol) and atol >= 0, f"atol must be a number >= 0; got {atol!r}")
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    require_extra("building a Walle task package")
    plan = plan_ctr(model, table, name)
    with tempfile.TemporaryDirectory(prefix="graphrec-walle-") as tmp:
        onnx_path = export_onnx(plan.module, plan.example, Path(tmp) / "model.onnx",
                                **plan.export_kwargs)  # fmt: skip
        mnn_path = export_mnn(onnx_path, Path(tmp) / "model.mnn")
        report = check_parity(plan.reference, {"onnx": onnx_path, "mnn": mnn_path},
                              plan.parity_inputs, atol=atol, threads=threads)  # fmt: skip
        if not report.ok:
            raise PackageParityError(
                f"task package {name} {version} was not written: the parity gate failed\n{report}",
                report,
            )
        meta = read_metadata(onnx_path)
        files = {"model.onnx": onnx_path.read_bytes(), "model.mnn": mnn_path.read_bytes()}
    inputs, output = meta["inputs"], meta["outputs"][0]
    width = {n: s[1] for n, s in meta["example_shapes"].items() if len(s) == 2}
    specs, owners = [], set()
    for spec in (model.features[n] for n in inputs):
        entry = {"name": spec.name, "kind": _KINDS[spec.kind]}
        if spec.kind != "dense":
            entry["vocab"] = spec.table
            owners.add(spec.table)
        if spec.kind == "sequence":
            entry["separator"] = table.schema.sequence[spec.name]
            entry["length"] = int(width[spec.name])
        specs.append(entry)
    files["features.json"] = _json({"inputs": specs, "label": table.schema.label})
    files["vocab.json"] = _json({o: table.vocab[o] for o in sorted(owners)})
    files["task.json"] = _json({"output": output, "postprocess": post, "triggers": trigger_spec})
    manifest = {
        "format": FORMAT,
        "name": name,
        "version": version,
        "created_by": f"graphrec {graphrec.__version__}",
        "model": {"class": type(model).__name__, "inputs": inputs, "outputs": meta["outputs"]},
        "parity": {
            "atol": atol,
            "batches": sorted({r.batch for r in report.results}),
            "max_abs_diff": {r: report.max_abs_diff(r) for r in ("onnxruntime", "mnn")},
        },
    }
    package = _seal(manifest, files)
    package.save(path, overwrite=overwrite)
    return package


# ----------------------------------------------------------------------------- running


@dataclass
class TaskOutcome:
    """One run of a task.

    Attributes:
        task: the package name.
        ok: whether it ran; otherwise ``error`` says why (the exception's type and message).
        output: ``{"score": [B], "label": [B] (with a threshold), "top_k": [k] row indices
            (with top_k)}``, numpy arrays; None on error.
        latency_ms: milliseconds of each stage that ran (``pre``, ``model``, ``post``).
        runtime: ``"mnn"`` or ``"onnxruntime"``.
        thread: the worker thread it ran in.
    """

    task: str
    ok: bool
    output: dict[str, np.ndarray] | None
    error: str
    latency_ms: dict[str, float]
    runtime: str
    thread: str


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _number(value: Any, column: str, row: int) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"row {row}: column {column!r}: {value!r} is not a number") from None
    if math.isinf(number) or abs(number) > float(np.finfo(np.float32).max):
        raise ConfigError(f"row {row}: column {column!r}: {value!r} is not a finite float32")
    return number


def _model_session(package: TaskPackage, runtime: str, threads: int) -> tuple[str, Any]:
    """``(runtime, run(feeds) -> outputs)`` from the package's verified bytes."""
    if runtime == "auto":
        try:
            import MNN  # noqa: F401  (the runtime; never its converter tools)

            runtime = "mnn"
        except ImportError:
            runtime = "onnxruntime"
    model = package.manifest["model"]
    if runtime == "mnn":
        from graphrec.export import MNNModel

        with tempfile.TemporaryDirectory(prefix="graphrec-walle-") as tmp:  # MNN reads a file
            file = Path(tmp) / "model.mnn"
            file.write_bytes(package.files["model.mnn"])
            return runtime, MNNModel(file, model["inputs"], model["outputs"], threads=threads)
    import onnxruntime as ort

    from graphrec.export.parity import run_onnxruntime

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(package.files["model.onnx"], options,
                                   providers=["CPUExecutionProvider"])  # fmt: skip
    return runtime, lambda feeds: run_onnxruntime(session, feeds)


class Task:
    """One task package loaded for running: its own model session, configuration and thread.

    Args:
        package: a :class:`TaskPackage` or the path of one (loaded with :func:`load_package`).
        runtime: ``"mnn"`` (MNN's Module API), ``"onnxruntime"`` or ``"auto"`` (MNN where it
            is installed, else onnxruntime: the simulator's fallback, on the same package).
        threads: CPU threads of the runtime.
    """

    def __init__(
        self, package: TaskPackage | str | os.PathLike, runtime: str = "auto", threads: int = 1
    ) -> None:
        if runtime not in RUNTIMES:
            raise ConfigError(f"runtime must be one of {RUNTIMES}; got {runtime!r}")
        _check(_is_int(threads) and threads >= 1, f"threads must be >= 1; got {threads!r}")
        self.package = package if isinstance(package, TaskPackage) else load_package(package)
        self.name = self.package.name
        self.runtime, self._model = _model_session(self.package, runtime, threads)
        self._output = self.package.manifest["model"]["outputs"].index(self.package.task["output"])
        self._threads = threads
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"walle-{self.name}")

    def swap_model(self, path: str | os.PathLike) -> None:
        """Serve the ``.mnn`` file ``path`` from now on: a model with the package's inputs and
        the task's output (e.g. fine-tuned on the device by
        :class:`graphrec.export.MNNFineTuner`); the MNN runtime only."""
        from graphrec.export import MNNModel

        if self.runtime != "mnn":
            raise ConfigError(f"swap_model needs the MNN runtime; this task runs {self.runtime}")
        inputs, output = self.package.manifest["model"]["inputs"], self.package.task["output"]
        self._model = MNNModel(path, inputs, [output], threads=self._threads)
        self._output = 0

    def preprocess(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        """Model inputs for raw feature rows (``{column: value}``, as in the training file).

        Categorical values and sequence elements are looked up as text (``str(value)``,
        stripped) in their vocabulary, unknown ones get code 0; a sequence is a string with
        the column's separator or a list, cut to its first ``length`` elements and padded with
        0; a numeric value is a number or numeric text. A column absent from a row, None or
        empty is missing (code 0, or NaN). Other keys are ignored.
        """
        if isinstance(rows, Mapping) or not all(isinstance(r, Mapping) for r in rows):
            raise ConfigError("rows must be a list of {column: value} mappings")
        inputs = {}
        for spec in self.package.features:
            column, kind = spec["name"], spec["kind"]
            values = [row.get(column) for row in rows]
            if kind == "numeric":
                inputs[column] = np.array(
                    [_number(v, column, i) for i, v in enumerate(values)], dtype=np.float32
                )
                continue
            vocab = self.package.vocab[spec["vocab"]]
            if kind == "categorical":
                inputs[column] = np.array([vocab.get(_text(v), 0) for v in values], dtype=np.int64)
                continue
            length, sep = spec["length"], spec["separator"]
            codes = np.zeros((len(rows), length), dtype=np.int64)
            for i, value in enumerate(values):
                if isinstance(value, (list, tuple)):
                    elements = [_text(e) for e in value]
                else:
                    text = _text(value)
                    elements = [e.strip() for e in text.split(sep)] if text else []
                row = [vocab.get(e, 0) for e in elements[:length]]
                codes[i, : len(row)] = row
            inputs[column] = codes
        return inputs

    def infer(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The task's model output, flattened to one value per row ``[B]``."""
        rows = len(next(iter(inputs.values())))
        return np.asarray(self._model(dict(inputs))[self._output]).reshape(rows)

    def postprocess(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """``{"score"}`` (after the activation), plus ``"label"`` (score >= threshold) and
        ``"top_k"`` (row indices of the k highest scores, ties in row order) when set."""
        post = self.package.task["postprocess"]
        values = np.asarray(values, dtype=np.float64)
        score = expit(values) if post["activation"] == "sigmoid" else values
        out = {"score": score}
        if post["threshold"] is not None:
            out["label"] = (score >= post["threshold"]).astype(np.int64)
        if post["top_k"] is not None:
            out["top_k"] = np.argsort(-score, kind="stable")[: post["top_k"]]
        return out

    def run(self, rows: Sequence[Mapping[str, Any]]) -> TaskOutcome:
        """Pre-process, run and post-process ``rows`` in the calling thread; an exception is
        returned in the outcome, never raised."""
        latency: dict[str, float] = {}
        stages = (("pre", self.preprocess), ("model", self.infer), ("post", self.postprocess))
        value: Any = rows
        try:
            for stage, step in stages:
                t0 = time.perf_counter()
                value = step(value)
                latency[stage] = (time.perf_counter() - t0) * 1e3
        except Exception as exc:  # isolate the task: report, never propagate
            return TaskOutcome(self.name, False, None, f"{type(exc).__name__}: {exc}", latency,
                               self.runtime, threading.current_thread().name)  # fmt: skip
        return TaskOutcome(self.name, True, value, "", latency, self.runtime,
                           threading.current_thread().name)  # fmt: skip

    def submit(self, rows: Sequence[Mapping[str, Any]]) -> Future[TaskOutcome]:
        """Run ``rows`` in the task's own worker thread (runs of one task queue up)."""
        return self._worker.submit(self.run, rows)

    def close(self) -> None:
        """Stop the worker thread (after the runs already submitted)."""
        self._worker.shutdown(wait=True)


class TaskRunner:
    """Several tasks, isolated from each other, run concurrently (one worker thread each).

    Args:
        packages: :class:`TaskPackage` objects or package paths; names must be unique.
        runtime, threads: as for :class:`Task`.

    Example:
        >>> with TaskRunner(["ctr.tar", "rank.tar"]) as runner:  # doctest: +SKIP
        ...     outcomes = runner.run({"ctr": rows, "rank": rows})
    """

    def __init__(
        self,
        packages: Sequence[TaskPackage | str | os.PathLike],
        *,
        runtime: str = "auto",
        threads: int = 1,
    ) -> None:
        self.tasks: dict[str, Task] = {}
        try:
            for package in packages:
                task = Task(package, runtime, threads)
                if task.name in self.tasks:
                    task.close()
                    raise ConfigError(f"two packages are named {task.name!r}; names must differ")
                self.tasks[task.name] = task
        except BaseException:
            self.close()
            raise

    def run(self, requests: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, TaskOutcome]:
        """Run each task on its rows (``{task name: rows}``), all at once; one outcome each."""
        unknown = sorted(set(requests) - set(self.tasks))
        if unknown:
            raise ConfigError(f"no task named {unknown}; tasks: {sorted(self.tasks)}")
        futures = {name: self.tasks[name].submit(rows) for name, rows in requests.items()}
        return {name: future.result() for name, future in futures.items()}

    def close(self) -> None:
        for task in self.tasks.values():
            task.close()

    def __enter__(self) -> TaskRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
