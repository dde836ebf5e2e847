"""Walle task packages: build -> load round trip, refusal of tampered packages, the runner."""

from __future__ import annotations

import csv
import io
import json
import tarfile
import threading

import numpy as np
import pytest
import torch

from graphrec.errors import ConfigError
from graphrec.ondevice.walle.package import (
    MANIFEST,
    PACKAGE_FILES,
    PackageError,
    PackageParityError,
    Task,
    TaskRunner,
    build_package,
    load_package,
)

pytestmark = pytest.mark.usefixtures("export_extra")

torch.set_num_threads(1)

POST = {"activation": "sigmoid", "threshold": 0.5, "top_k": 3}
TRIGGERS = {"events": {"add_to_cart": 100},
            "tasks": [{"name": "detail_click", "triggers": [[3, 5], ["click", "add_to_cart"]],
                       "extract": "features", "window": 64}]}  # fmt: skip


def _scaled(model: torch.nn.Module) -> torch.nn.Module:
    """Trained-like weights (the default init_std=0.01 would hide differences)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("embedding."):
                p.normal_(0.0, 0.2)
            elif p.dim() >= 2:
                p.mul_(2.0)
    return model.eval()


@pytest.fixture(scope="module")
def taobao(shared_data):
    from graphrec.datasets import load_taobao_tiny
    from graphrec.models.ctr import CTRFeatures

    root = shared_data / "ctr" / "fuxictr_tiny_taobao"
    data = load_taobao_tiny(root)
    with open(root / "test_sample.csv", newline="") as f:
        raw = list(csv.DictReader(f))  # raw rows, as an app would have them
    return data, CTRFeatures.from_table(data.train), raw


@pytest.fixture(scope="module")
def built(taobao, tmp_path_factory):
    from graphrec.registry import CTR_MODELS

    data, features, _ = taobao
    torch.manual_seed(0)
    model = _scaled(CTR_MODELS.get("din")(features, embedding_dim=8, hidden_channels=(32, 16),
                                          attention_hidden=(16,)))  # fmt: skip
    folder = tmp_path_factory.mktemp("walle")
    archive = folder / "din.tar"
    package = build_package(model, data.train, archive, name="din", version="1.0.0",
                            postprocess=POST, triggers=TRIGGERS)  # fmt: skip
    return model, package, archive


def _torch_scores(model, taobao, package) -> np.ndarray:
    data, features, _ = taobao
    length = next(s["length"] for s in package.features if s["kind"] == "sequence")
    with torch.no_grad():
        return torch.sigmoid(model(features.batch(data.test, max_len=length))).double().numpy()


def _copy(package_path, tmp_path):
    """A folder copy of the package to tamper with."""
    out = tmp_path / "pkg"
    load_package(package_path).save(out)
    return out


@pytest.mark.parametrize("runtime", ["mnn", "onnxruntime"])
@pytest.mark.parametrize("form", ["archive", "folder"])
def test_round_trip_gives_the_torch_predictions(built, taobao, runtime, form, tmp_path):
    model, package, archive = built
    path = archive if form == "archive" else _copy(archive, tmp_path)
    loaded = load_package(path)
    assert loaded.manifest == package.manifest and loaded.files == package.files
    assert loaded.triggers == TRIGGERS and loaded.version == "1.0.0"
    catalog, (task,) = loaded.trigger_tasks()  # the trigger automaton's input, as loaded
    assert catalog.custom() == {"add_to_cart": 100}
    assert (task.name, task.triggers, task.extract, task.window) == (
        "detail_click", ((3, 5), (4, 100)), "features", 64)
    parity = loaded.manifest["parity"]
    assert parity["batches"] == [3, 17, 80]
    assert all(0 < d <= 1e-5 for d in parity["max_abs_diff"].values())  # measured, recorded

    data, features, raw = taobao
    task = Task(loaded, runtime)
    try:
        inputs = task.preprocess(raw)  # raw CSV text -> exactly the encoder's batch
        length = inputs["click_sequence"].shape[1]
        assert length == data.train.sequence["click_sequence"].shape[1]
        for name, value in features.batch(data.test, max_len=length).items():
            np.testing.assert_array_equal(inputs[name], value.numpy(), err_msg=name)
        outcome = task.run(raw)
    finally:
        task.close()
    assert outcome.ok, outcome.error
    assert outcome.runtime == runtime and set(outcome.latency_ms) == {"pre", "model", "post"}
    ref = _torch_scores(model, taobao, loaded)
    assert np.abs(outcome.output["score"] - ref).max() <= 1e-5
    np.testing.assert_array_equal(outcome.output["label"], (ref >= 0.5).astype(np.int64))
    assert set(outcome.output["top_k"]) == set(np.argsort(-ref)[:3])


def test_archive_bytes_are_reproducible(built, tmp_path):
    _, package, archive = built
    package.save(tmp_path / "again.tar")
    assert (tmp_path / "again.tar").read_bytes() == archive.read_bytes()
    with pytest.raises(FileExistsError):
        package.save(tmp_path / "again.tar")


@pytest.mark.parametrize("name", [MANIFEST, *PACKAGE_FILES])
def test_a_flipped_byte_is_refused_naming_the_file(built, name, tmp_path):
    folder = _copy(built[2], tmp_path)
    data = bytearray((folder / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / name).write_bytes(bytes(data))
    with pytest.raises(PackageError, match=f"{name}: ") as info:
        load_package(folder)
    assert info.value.file == name


def test_a_flipped_byte_in_the_archive_is_refused(built, tmp_path):
    archive = built[2]
    with tarfile.open(archive) as tar:
        member = tar.getmember("model.mnn")
    data = bytearray(archive.read_bytes())
    data[member.offset_data + member.size // 2] ^= 0x80
    (tmp_path / "bad.tar").write_bytes(bytes(data))
    with pytest.raises(PackageError, match="model.mnn: sha256 does not match") as info:
        load_package(tmp_path / "bad.tar")
    assert info.value.file == "model.mnn"


def test_missing_and_extra_files_are_refused(built, tmp_path):
    folder = _copy(built[2], tmp_path)
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(PackageError, match="notes.txt: an extra file") as info:
        load_package(folder)
    assert info.value.file == "notes.txt"
    (folder / "notes.txt").unlink()
    (folder / "vocab.json").unlink()
    with pytest.raises(PackageError, match="vocab.json: missing") as info:
        load_package(folder)
    assert info.value.file == "vocab.json"
    (folder / MANIFEST).unlink()
    with pytest.raises(PackageError, match="manifest.json: missing"):
        load_package(folder)


def test_manifest_edits_are_refused(built, tmp_path):
    from graphrec.ondevice.walle.package import _manifest_digest

    folder = _copy(built[2], tmp_path)
    manifest = json.loads((folder / MANIFEST).read_text())
    edited = {**manifest, "version": "9.9.9"}  # a plain edit: the self-digest differs
    (folder / MANIFEST).write_text(json.dumps(edited))
    with pytest.raises(PackageError, match="manifest.json: manifest_sha256 does not match"):
        load_package(folder)
    # an edit with a recomputed digest still has to match the files
    files = {**manifest["files"], "task.json": {**manifest["files"]["task.json"], "size": 1}}
    edited = {**manifest, "files": files}
    edited["manifest_sha256"] = _manifest_digest(edited)
    (folder / MANIFEST).write_text(json.dumps(edited))
    with pytest.raises(PackageError, match="task.json: has .* bytes; the manifest says 1"):
        load_package(folder)
    edited = {**manifest, "version": "1.0"}
    edited["manifest_sha256"] = _manifest_digest(edited)
    (folder / MANIFEST).write_text(json.dumps(edited))
    with pytest.raises(PackageError, match="manifest.json: version must be MAJOR.MINOR.PATCH"):
        load_package(folder)


def _tar(path, members):
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


@pytest.mark.parametrize("bad", ["../manifest.json", "/etc/passwd", "sub/model.onnx", "link"])
def test_archive_path_traversal_and_links_are_refused(built, bad, tmp_path):
    with tarfile.open(built[2]) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    info = tarfile.TarInfo(bad)
    if bad == "link":
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        members.append((info, None))
    else:
        info.size = 2
        members.append((info, b"{}"))
    _tar(tmp_path / "evil.tar", members)
    with pytest.raises(PackageError) as exc:
        load_package(tmp_path / "evil.tar")
    assert exc.value.file == bad and bad in str(exc.value)


def test_a_package_whose_mnn_model_fails_parity_is_not_written(built, taobao, monkeypatch,
                                                                tmp_path):  # fmt: skip
    """A broken .mnn (one weight perturbed before conversion) passes onnxruntime but not MNN."""
    import onnx
    from onnx import numpy_helper

    import graphrec.export

    real = graphrec.export.export_mnn
    model, package, _ = built

    def same_export(module, example, path, **kwargs):  # the fixture's export of this model
        path.write_bytes(package.files["model.onnx"])
        return path

    def broken_export(onnx_path, mnn_path, **kwargs):
        proto = onnx.load(str(onnx_path))
        init = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + 0.5, init.name))
        other = onnx_path.with_name("broken.onnx")
        onnx.save(proto, str(other))
        return real(other, mnn_path, **kwargs)

    monkeypatch.setattr(graphrec.export, "export_onnx", same_export)
    monkeypatch.setattr(graphrec.export, "export_mnn", broken_export)
    out = tmp_path / "din.tar"
    with pytest.raises(PackageParityError, match="was not written") as info:
        build_package(model, taobao[0].train, out, name="din", version="1.0.1")
    report = info.value.report
    assert {r.runtime for r in report.failures()} == {"mnn"}
    assert report.max_abs_diff("onnxruntime") <= 1e-5
    assert list(tmp_path.iterdir()) == []


def test_tasks_run_concurrently_and_a_failing_task_is_isolated(built, taobao, monkeypatch):
    model, package, _ = built
    _, _, raw = taobao
    ranker = package.replace(name="din-rank", version="1.1.0",
                             postprocess={"activation": "identity", "top_k": 5})  # fmt: skip
    barrier = threading.Barrier(2, timeout=30)  # both tasks must be inside at once
    original = Task.preprocess

    def meeting(self, rows):
        barrier.wait()
        return original(self, rows)

    monkeypatch.setattr(Task, "preprocess", meeting)
    bad = [dict(r) for r in raw]
    bad[7]["price"] = "abc"
    with TaskRunner([package, ranker], runtime="mnn") as runner:
        outcomes = runner.run({"din": bad, "din-rank": raw})
        again = runner.run({"din": raw, "din-rank": raw})  # the failed task still serves
    failed, fine = outcomes["din"], outcomes["din-rank"]
    assert not failed.ok and failed.output is None
    assert "row 7: column 'price': 'abc' is not a number" in failed.error
    assert fine.ok and failed.thread != fine.thread
    ref = _torch_scores(model, taobao, package)
    logit = np.log(ref / (1 - ref))
    assert np.abs(fine.output["score"] - logit).max() <= 1e-5
    assert set(fine.output["top_k"]) == set(np.argsort(-logit)[:5])
    assert again["din"].ok and np.abs(again["din"].output["score"] - ref).max() <= 1e-5


def test_invalid_configuration_is_a_config_error(built, taobao, tmp_path):
    model, package, _ = built
    data = taobao[0]
    for kwargs, match in [
        ({"version": "1.0"}, "version must be MAJOR.MINOR.PATCH"),
        ({"name": "../x"}, "name must be"),
        ({"triggers": {"tasks": [{"name": "t", "triggers": [[]]}]}}, "non-empty id sequences"),
        ({"triggers": {"tasks": [{"name": "t", "triggers": [[1]], "window": 0}]}},
         "window must be an integer >= 1"),
        ({"triggers": [{"name": "t", "events": [1], "window": 1}]}, "needs a list 'tasks'"),
        ({"postprocess": {"activation": "sigmoid", "threshold": 2}}, r"threshold must be in \(0"),
        ({"postprocess": {"activation": "softmax"}}, "activation must be one of"),
    ]:
        args = {"name": "din", "version": "1.0.0", **kwargs}
        with pytest.raises(ConfigError, match=match):
            build_package(model, data.train, tmp_path / "x.tar", **args)
        if "name" not in kwargs:
            with pytest.raises(ConfigError, match=match):
                package.replace(**{k: v for k, v in kwargs.items()})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="runtime must be one of"):
        Task(package, "tflite")
    with pytest.raises(ConfigError, match="two packages are named 'din'"):
        TaskRunner([package, package.replace(version="2.0.0")])


def test_auto_runtime_falls_back_to_onnxruntime_without_mnn(built, taobao, monkeypatch):
    import sys

    model, package, _ = built
    monkeypatch.setitem(sys.modules, "MNN", None)  # as if MNN were not installed
    task = Task(package)
    try:
        outcome = task.run(taobao[2])
    finally:
        task.close()
    assert outcome.ok and outcome.runtime == "onnxruntime"
    assert np.abs(outcome.output["score"] - _torch_scores(model, taobao, package)).max() <= 1e-5
