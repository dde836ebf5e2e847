"""Walle end to end on a simulated device: events -> triggers -> samples and requests -> MNN
inference -> MNN fine-tuning (equal to torch SGD) -> the swapped model serves."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from graphrec.cli import main
from graphrec.errors import ConfigError
from graphrec.ondevice.walle.device import Device, torch_replay, walle_ctr_dataset
from graphrec.ondevice.walle.events import synthetic_events, write_events
from graphrec.ondevice.walle.package import build_package
from graphrec.registry import CTR_MODELS

pytestmark = pytest.mark.usefixtures("export_extra")

torch.set_num_threads(1)

TASKS = {
    "tasks": [
        {"name": "ctr_samples", "triggers": [["page_exit"]], "extract": "samples"},
        {"name": "ctr_score", "triggers": [["page_enter", "exposure"], ["scroll", "exposure"]],
         "extract": "features"},
    ]
}  # fmt: skip
EVENTS = 1500


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A DIN package (trained-like random weights) on the samples of 3 synthetic devices."""
    data = walle_ctr_dataset(users=3, events=2000, max_history=8)
    torch.manual_seed(0)
    model = CTR_MODELS.get("din")(data.features, embedding_dim=8, hidden_channels=(16,),
                                  attention_hidden=(8,)).eval()  # fmt: skip
    with torch.no_grad():  # trained-like values: MNN's parameters are matched by value
        for name, p in model.named_parameters():
            p.normal_(0.0, 0.3 if name.startswith("embedding.") else 0.2)
    path = tmp_path_factory.mktemp("walle_device") / "din.tar"
    return model, build_package(model, data.split.train, path, name="din", version="1.0.0",
                                triggers=TASKS), path  # fmt: skip


def _windows(ids: list[int]) -> tuple[int, int]:
    """Brute force: (exposures in the page visit ending at each page_exit, matches of
    page_enter > exposure and scroll > exposure)."""
    samples = requests = 0
    for i, e in enumerate(ids):
        if e == 2:
            start = max(j for j in range(i + 1) if ids[j] == 1 or j == 0)
            samples += ids[start : i + 1].count(3)
        if e == 3 and i > 0 and ids[i - 1] in (1, 5):
            requests += 1
    return samples, requests


@pytest.mark.parametrize("arrival", [1, 7])
def test_samples_and_requests_are_the_matched_windows(built, arrival):
    _, package, _ = built
    stream = synthetic_events(EVENTS, seed=11)
    with Device(package, finetune_every=40) as device:
        device.run([stream], arrival=arrival)
        report = device.report()
    samples, requests = _windows(stream.ids.tolist())
    assert report["samples"] == samples > 100
    assert sum(len(s) for s in device.scores) == requests > 100
    assert report["requests"] == (requests if arrival == 1 else len(device.scores))
    assert report["rounds"] == samples // 40 == report["steps"] == len(device.rounds)
    stages = report["stages"]
    assert stages["match"]["calls"] == stages["ingest"]["calls"] == -(-EVENTS // arrival)
    assert stages["swap"]["calls"] == report["rounds"] == stages["finetune_step"]["calls"]
    assert stages["preprocess"]["calls"] == report["requests"]
    ev = report["evaluation"]
    assert ev["samples"] == samples - sum(len(e[0]) for e in device._eval if e[3] == 0)
    assert set(ev) == {"samples", "finetuned", "original"} and ev["original"]["log_loss"] > 0


def test_finetuned_model_equals_torch_sgd_and_is_served(built):
    model, package, _ = built
    lr, epochs, batch = 0.1, 2, 16
    with Device(package, finetune_every=32, lr=lr, epochs=epochs, batch_size=batch) as device:
        device.run([synthetic_events(EVENTS, seed=12)], arrival=5)
        assert len(device.rounds) >= 20 and device.tuner.steps == len(device.rounds) * 4

        # torch: SGD on the parameters MNN trains, on the same minibatches in the same order
        twin, names = torch_replay(model, device)
        params = dict(twin.named_parameters())
        assert names and all(not n.startswith("embedding.") for n in names)  # dense layers
        assert sum(p.numel() for n, p in params.items() if n in names) > 100
        for got, name in zip(device.tuner.parameters, names):
            want = params[name].detach().numpy()
            np.testing.assert_allclose(got.reshape(want.shape), want, atol=1e-5, rtol=0)

        # the swapped model serves: the device's task scores with the tuned parameters
        inputs = device.rounds[-1][0]
        served = device.task.infer(inputs)
        with torch.no_grad():
            twin_logits = twin({k: torch.as_tensor(v) for k, v in inputs.items()}).reshape(-1)
        np.testing.assert_allclose(served, twin_logits.numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(served, device.tuner.predict(inputs), atol=1e-6, rtol=0)
        assert np.abs(served - device.original.infer(inputs)).max() > 1e-2  # predictions moved
        assert (device.folder / f"model-{len(device.rounds)}.mnn").is_file()


def test_package_without_request_task_is_refused(built):
    _, package, _ = built
    only_samples = package.replace(triggers={"tasks": [TASKS["tasks"][0]]})
    with pytest.raises(ConfigError, match="extract 'features'"):
        Device(only_samples)
    with pytest.raises(ConfigError, match="finetune_every"):
        Device(package, finetune_every=0)


def test_cli_device(built, capsys, tmp_path):
    _, _, path = built
    argv = ["walle", "device", "--package", str(path), "--synthetic", "600", "--seed", "3",
            "--finetune-every", "32", "--arrival", "4"]  # fmt: skip
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["events"] == 600 and report["rounds"] == report["samples"] // 32 > 0
    assert report["stages"]["swap"]["calls"] == report["rounds"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "finetune_step" in out and "after the first update" in out
    assert main(["walle", "device", "--package", str(path), "--no-finetune",
                 "--synthetic", "300"]) == 0  # fmt: skip
    assert "fine-tuning rounds" in capsys.readouterr().out
    events = tmp_path / "events.jsonl"  # a file, with one malformed line: counted, not fatal
    write_events(events, synthetic_events(400, seed=4), user="u9")
    with open(events, "a") as f:
        f.write("not json\n")
    assert main(["walle", "device", "--package", str(path), "--events", str(events),
                 "--finetune-every", "16", "--json"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert (report["events"], report["dropped"]) == (401, 1) and report["rounds"] > 0
    assert main(["walle", "device", "--package", str(path), "--events", str(events),
                 "--synthetic", "10"]) == 2  # fmt: skip
