"""Walle's event pipeline: trie matching against brute force, validation, extraction, CLI."""

import json

import numpy as np
import pytest
import torch

from graphrec.cli import main
from graphrec.errors import ConfigError, InputFormatError
from graphrec.io import read_ctr_table
from graphrec.models.ctr import DIN, CTRFeatures
from graphrec.ondevice.walle.events import (
    CLICK,
    EXPOSURE,
    PAGE_ENTER,
    PAGE_EXIT,
    SCROLL,
    EventBatch,
    EventCatalog,
    EventValidator,
    read_events,
    synthetic_events,
    write_events,
)
from graphrec.ondevice.walle.triggers import (
    DEFAULT_TASKS,
    WALLE_CTR_SCHEMA,
    Pipeline,
    Task,
    TriggerTrie,
    load_tasks,
    write_samples,
)


def brute_force(ids, triggers):
    """(end, trigger) of every occurrence of every trigger, by a scan per trigger."""
    out = []
    for k, t in enumerate(triggers):
        for end in range(len(t) - 1, len(ids)):
            if tuple(ids[end - len(t) + 1 : end + 1]) == tuple(t):
                out.append((end, k))
    return sorted(out)


def random_triggers(rng, alphabet):
    triggers = [tuple(rng.choice(alphabet, size=rng.integers(1, 5)).tolist()) for _ in range(8)]
    base = triggers[0] + triggers[1]
    triggers += [base, base[:-1], base[1:], base[:1]]  # prefixes and suffixes of another
    triggers += [(alphabet[0],) * 2, (alphabet[0],) * 3, triggers[2]]  # self-overlap, repeat
    return triggers


def test_trie_equals_brute_force_on_random_streams():
    for seed in range(60):
        rng = np.random.default_rng(seed)
        alphabet = [1, 2, 3, 4, 5, 7]
        triggers = random_triggers(rng, alphabet)
        trie = TriggerTrie(triggers)
        ids = rng.choice(alphabet + [99], size=400, p=[0.3, 0.2, 0.15, 0.15, 0.1, 0.05, 0.05])
        ends, which, _ = trie.match(ids)
        expected = brute_force(ids.tolist(), triggers)
        assert list(zip(ends.tolist(), which.tolist())) == expected
        assert len(expected) > 0
        # the same stream cut into random pieces, state carried: the same matches
        cuts = np.sort(rng.choice(np.arange(1, len(ids)), size=7, replace=False))
        state, got = 0, []
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(ids)]):
            e, w, state = trie.match(ids[lo:hi], state)
            got += list(zip((e + lo).tolist(), w.tolist()))
        assert got == expected


def test_trie_overlaps_and_prefixes_by_hand():
    trie = TriggerTrie([(3, 3), (3,), (3, 3, 3), (4, 3)])
    ends, which, state = trie.match(np.array([3, 3, 3, 4, 3]))
    assert list(zip(ends.tolist(), which.tolist())) == [
        (0, 1), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2), (4, 1), (4, 3)
    ]  # fmt: skip
    assert state != 0
    with pytest.raises(ConfigError):
        TriggerTrie([(1,), ()])


def test_pipeline_matches_are_counted_per_trigger():
    rng = np.random.default_rng(5)
    ids = rng.choice([1, 2, 3, 4, 5], size=3000)
    batch = EventBatch.from_events(ids, np.arange(len(ids)))
    tasks = [Task("a", ((3, 4), (3,)), "none"), Task("b", ((3, 4, 3), (1, 2)), "none")]
    pipe = Pipeline(tasks).run([batch.slice(0, 1000), batch.slice(1000, 3000)])
    expected = np.bincount(
        [k for _, k in brute_force(ids.tolist(), [(3, 4), (3,), (3, 4, 3), (1, 2)])], minlength=4
    )
    assert pipe.matches.tolist() == expected.tolist()
    assert [t["matches"] for t in pipe.report()["triggers"]] == expected.tolist()


def hand_stream():
    """Two page visits; see test_extraction_by_hand for the expected rows."""
    events = [
        (PAGE_ENTER, 0, {"page": "p1"}),
        (EXPOSURE, 1000, {"item": 10}),
        (EXPOSURE, 2000, {"item": 11}),
        (CLICK, 3000, {"item": 11}),
        (SCROLL, 4000, {"dy": 500}),
        (EXPOSURE, 5000, {"item": 12}),
        (CLICK, 6000, {"item": 10}),
        (PAGE_EXIT, 7000, None),
        (PAGE_ENTER, 8000, {"page": "p2"}),
        (EXPOSURE, 9000, {"item": 11}),
        (PAGE_EXIT, 10000, None),
    ]
    return EventBatch.from_events(*zip(*events))


HAND_TASKS = [
    Task("train", ((PAGE_EXIT,),), "samples"),
    Task("score", ((SCROLL, EXPOSURE),), "features"),
]


def test_extraction_by_hand():
    pipe = Pipeline(HAND_TASKS, user="u1").run([hand_stream()])
    cols = ["label", "item", "page", "position", "scrolls", "seconds", "history"]
    rows = [[r[c] for c in cols] for r in pipe.rows["train"]]
    assert rows == [
        [1.0, "10", "p1", 0.0, 0.0, 1.0, []],  # clicked at 6000
        [1.0, "11", "p1", 1.0, 0.0, 2.0, []],  # clicked at 3000
        [0.0, "12", "p1", 2.0, 1.0, 5.0, ["11"]],  # never clicked; one scroll before
        [0.0, "11", "p2", 0.0, 0.0, 1.0, ["11", "10"]],  # second visit: no click
    ]
    assert [[r[c] for c in cols] for r in pipe.rows["score"]] == [
        [0.0, "12", "p1", 2.0, 1.0, 5.0, ["11"]]
    ]
    assert all(r["user"] == "u1" for r in pipe.rows["train"])
    # every chunking of the stream gives the same rows, also with a short max_history
    stream = hand_stream()
    for cut in range(1, len(stream)):
        again = Pipeline(HAND_TASKS, user="u1").run([stream.slice(0, cut), stream.slice(cut, 11)])
        assert again.rows == pipe.rows
    short = Pipeline(HAND_TASKS, user="u1", max_history=1).run([hand_stream()])
    assert short.rows["train"][3]["history"] == ["10"]
    # a task's own window: the last 4 events of the first visit (scroll, exposure, click, exit)
    tasks = [Task("cut", ((PAGE_EXIT,),), "samples", window=4), *HAND_TASKS]
    for cut in (0, 5, 8):
        cut_pipe = Pipeline(tasks, user="u1").run([stream.slice(0, cut), stream.slice(cut, 11)])
        assert [[r[c] for c in cols] for r in cut_pipe.rows["cut"]] == [
            [0.0, "12", "", 0.0, 1.0, 1.0, ["11"]],  # no page: the window has no page_enter
            [0.0, "11", "p2", 0.0, 0.0, 1.0, ["11", "10"]],
        ]
        assert cut_pipe.rows["train"] == pipe.rows["train"]
    with pytest.raises(ConfigError, match="window"):
        Task("bad", ((1,),), window=0)


def test_samples_table_feeds_a_ctr_model(tmp_path):
    pipe = Pipeline(HAND_TASKS, user="u1").run([hand_stream()])
    table = pipe.table("train")
    assert table.labels.tolist() == [1, 1, 0, 0]
    item = table.vocab["item"]
    assert table.categorical["item"].tolist() == [item["10"], item["11"], item["12"], item["11"]]
    assert table.sequence["history"][3].tolist() == [item["11"], item["10"]]
    assert table.numeric["scrolls"].tolist() == [0, 0, 1, 0]
    features = CTRFeatures.from_table(table)
    batch = features.batch(table)
    torch.manual_seed(0)
    assert DIN(features, 4)(batch).shape == (4,)
    # the CSV written for --out reads back as the same table
    write_samples(tmp_path / "train.csv", pipe.rows["train"])
    back = read_ctr_table(tmp_path / "train.csv", WALLE_CTR_SCHEMA)
    assert back.vocab == table.vocab
    for name in ("item", "page", "user"):
        assert back.categorical[name].tolist() == table.categorical[name].tolist()
    assert np.array_equal(back.sequence["history"], table.sequence["history"])
    assert np.array_equal(back.numeric["seconds"], table.numeric["seconds"])
    # a cloud model's vocabulary: unseen values get 0
    cloud = {"user": {"u1": 1}, "item": {"11": 1}, "page": {"p2": 1}}
    encoded = pipe.table("train", vocab=cloud)
    assert encoded.categorical["item"].tolist() == [0, 1, 0, 1]


def test_chunked_pipeline_equals_one_pass_on_synthetic_stream():
    stream = synthetic_events(3000, seed=2)
    one = Pipeline(DEFAULT_TASKS, user="s", max_window=7).run([stream])
    cuts = [0, 13, 400, 401, 1777, 3000]
    many = Pipeline(DEFAULT_TASKS, user="s", max_window=7).run(
        [stream.slice(a, b) for a, b in zip(cuts[:-1], cuts[1:])]
    )
    assert one.rows == many.rows and one.matches.tolist() == many.matches.tolist()
    assert all(r["position"] < 7 for r in one.rows["ctr_samples"])
    assert one.report()["rows"]["ctr_samples"] > 100


BAD_LINES = [
    '{"walle_events": 1, "user": "dev9"}',
    '{"id": 1, "t": 10, "p": {"page": "home"}}',
    "not json at all",  # malformed
    "[1, 2]",  # malformed: not an object
    '{"id": 3}',  # malformed: no time
    '{"id": true, "t": 11}',  # malformed: bool id
    '{"id": 3, "t": 12, "p": [1]}',  # malformed: payload not an object
    "",
    '{"id": 4242, "t": 13}',  # unknown id
    '{"id": "swipe", "t": 14}',  # unknown name
    '{"id": "exposure", "t": 15, "p": {"item": 1, "pad": "' + "x" * 300 + '"}}',  # oversized
    '{"id": 3, "t": 16, "p": {"pad": "' + "y" * 3000 + '"}}',  # a line too long to parse
    '{"id": 3, "t": 5, "p": {"item": 2}}',  # out of order
    '{"id": "add_to_cart", "t": 17}',
    '{"id": 3, "t": 17, "p": {"item": 3}}',  # equal time: fine
]


def test_malformed_events_are_counted_and_the_stream_goes_on(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(BAD_LINES))  # no newline at the end
    catalog = EventCatalog({"add_to_cart": 100})
    validator = EventValidator(catalog, max_payload_bytes=256)
    stream = read_events(path, validator, chunk_events=2)
    assert stream.user == "dev9"
    pipe = Pipeline([Task("t", ((1,), (EXPOSURE,)), "none")], validator).run(stream)
    report = pipe.report()
    assert report["drops"] == {
        "malformed": 5, "unknown_id": 2, "oversized_payload": 2, "out_of_order": 1
    }  # fmt: skip
    assert report["accepted"] == 3 and report["events"] == 13
    assert report["first_drop"]["malformed"]["line"] == 3
    assert report["first_drop"]["out_of_order"]["line"] == 13
    assert pipe.matches.tolist() == [1, 1]
    with pytest.raises(InputFormatError, match="line 3"):
        strict = EventValidator(catalog, max_payload_bytes=256, strict=True)
        Pipeline([Task("t", ((1,),), "none")], strict).run(read_events(path, strict))


def test_hostile_lines_are_dropped_not_raised(tmp_path):
    path = tmp_path / "hostile.jsonl"
    lines = [
        b'{"id": 1, "t": 1}',
        b"[" * 2400 + b"]" * 2400,  # nested deeper than Python's recursion limit
        b'{"id": 3, "t": 2, "p": {"a": ' + b"[" * 1500 + b"]" * 1500 + b"}}",
        b"\xff\xfe\x00binary",
        b'{"id": 3, "t": 1e3}',
        b'{"id": 3, "t": NaN}',
        b'{"id": 99999999999, "t": 3}',
        b'{"id": 3, "t": 4, "p": {"item": [1, 2]}}',
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    validator = EventValidator()
    pipe = Pipeline([Task("t", ((EXPOSURE,),), "samples")], validator)
    pipe.run(read_events(path, validator))
    assert validator.drops.counts["malformed"] == 6 and pipe.accepted == 2


def test_validator_on_batches():
    catalog = EventCatalog({"buy": 7})
    v = EventValidator(catalog, max_payload_bytes=12)
    batch = EventBatch.from_events(
        [1, 7, 8, 3, 3, 4], [5, 6, 7, 4, 9, 9], [None, None, None, None, {"item": 123456}, None]
    )
    kept = v.check(batch)
    assert kept.ids.tolist() == [1, 7, 4] and kept.times.tolist() == [5, 6, 9]
    assert v.drops.counts == {
        "malformed": 0, "unknown_id": 1, "oversized_payload": 1, "out_of_order": 1
    }  # fmt: skip
    assert v.check(EventBatch.from_events([1], [8])).ids.tolist() == []  # earlier than 9
    with pytest.raises(InputFormatError, match="line 3: unknown event id 8"):
        EventValidator(catalog, strict=True).check(batch)
    with pytest.raises(ConfigError):
        EventCatalog({"click2": 4})  # id taken by click


@pytest.mark.parametrize("name", ["s.jsonl", "s.jsonl.gz", "s.npz"])
def test_file_round_trip(tmp_path, name):
    stream = synthetic_events(500, seed=1)
    write_events(tmp_path / name, stream, user="u3")
    read = read_events(tmp_path / name, chunk_events=64)
    batches = list(read)
    assert read.user == "u3" and max(len(b) for b in batches) == 64
    assert np.concatenate([b.ids for b in batches]).tolist() == stream.ids.tolist()
    assert np.concatenate([b.times for b in batches]).tolist() == stream.times.tolist()
    payload = np.concatenate([b.payload for b in batches])
    assert payload.tobytes() == stream.payload.tobytes()


def test_npz_bad_payload_is_dropped(tmp_path):
    good = EventBatch.from_events([1, 3, 3], [1, 2, 3], [{"page": "a"}, {"item": 1}, {"item": 2}])
    raw = bytearray(good.payload.tobytes())
    raw[good.offsets[1]] = ord("[")  # event 1's payload is no longer a JSON object
    bad = EventBatch(good.ids, good.times, np.frombuffer(bytes(raw), np.uint8), good.offsets,
                     good.lines)  # fmt: skip
    write_events(tmp_path / "bad.npz", bad)
    v = EventValidator()
    ids = [b.ids.tolist() for b in read_events(tmp_path / "bad.npz", v)]
    assert ids == [[1, 3]] and v.drops.counts["malformed"] == 1


def test_load_tasks(tmp_path):
    path = tmp_path / "tasks.json"
    spec = {
        "events": {"add_to_cart": 100},
        "tasks": [
            {"name": "carts", "triggers": [["click", "add_to_cart"], [4, 100, 100]],
             "extract": "none"},
            {"name": "train", "triggers": [["page_exit"]]},
        ],
    }  # fmt: skip
    path.write_text(json.dumps(spec))
    catalog, tasks = load_tasks(path)
    assert catalog.custom() == {"add_to_cart": 100}
    assert tasks[0].triggers == ((4, 100), (4, 100, 100)) and tasks[1].extract == "samples"
    spec["tasks"][0]["triggers"] = [["click", "swipe"]]
    path.write_text(json.dumps(spec))
    with pytest.raises(ConfigError, match="swipe"):
        load_tasks(path)
    path.write_text("{")
    with pytest.raises(InputFormatError):
        load_tasks(path)


def test_cli_run_events(tmp_path, capsys):
    events = tmp_path / "s.jsonl"
    argv = ["walle", "run-events", "--synthetic", "2000", "--save-events", str(events),
            "--json"]  # fmt: skip
    assert main(argv) == 0
    synthetic = json.loads(capsys.readouterr().out)
    assert synthetic["events"] == synthetic["accepted"] == 2000
    with events.open("a") as f:
        f.write("garbage\n")
    out = tmp_path / "out"
    out.mkdir()
    assert main(["walle", "run-events", str(events), "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["drops"]["malformed"] == 1 and report["accepted"] == 2000
    assert report["triggers"] == synthetic["triggers"] and report["user"] == "synthetic"
    table = read_ctr_table(out / "ctr_samples.csv", WALLE_CTR_SCHEMA)
    assert table.num_rows == report["rows"]["ctr_samples"] > 0
    assert main(["walle", "run-events", str(events)]) == 0
    text = capsys.readouterr().out
    assert "malformed 1" in text and "page_enter > exposure" in text
    assert main(["walle", "run-events", str(events), "--strict"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["walle", "run-events"]) == 2
    assert "either EVENTS or --synthetic" in capsys.readouterr().err
