"""Walle: the device-cloud system on-device models run in.

* :mod:`graphrec.ondevice.walle.events` - event streams and trie-matched triggers.
* :mod:`graphrec.ondevice.walle.package` - versioned, checksummed task packages and their runner.
* :mod:`graphrec.ondevice.walle.rollout` - push-then-pull release simulated over many devices.
"""
