"""Walle: the device-cloud system on-device models run in.

* :mod:`graphrec.ondevice.walle.events` - app-event streams: columnar events, files, validation.
* :mod:`graphrec.ondevice.walle.triggers` - triggers matched in one pass by a trie, CTR extraction.
* :mod:`graphrec.ondevice.walle.package` - versioned, checksummed task packages and their runner.
* :mod:`graphrec.ondevice.walle.rollout` - push-then-pull release simulated over many devices.
* :mod:`graphrec.ondevice.walle.device` - one device end to end: events, requests served in MNN,
  fine-tuning in MNN, the tuned model swapped in.
"""
