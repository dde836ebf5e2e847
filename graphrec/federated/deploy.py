"""A Flower deployment on one machine: a SuperLink and N SuperNodes as real processes on
127.0.0.1, running the shipped Flower app (``graphrec/federated/flower_app``) with ``flwr run``.

Secure by default: TLS with a certificate authority and a server certificate made for the run
(:func:`write_tls`), SuperNode authentication with one EC key pair per SuperNode
(:func:`write_node_key`) registered through ``flwr supernode register``. Everything (keys,
certificates, Flower's state folders ``FLWR_HOME``, logs) lives in a private temporary folder
that is removed afterwards. Every Flower process gets ``FLWR_TELEMETRY_ENABLED=0``,
``FLWR_DISABLE_UPDATE_CHECK=1`` and ``FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1`` and a
marker variable; :meth:`LocalDeployment.stop` ends every process carrying the marker (Flower's
SuperExec and app processes start sessions of their own, so a process-group kill would miss
them), also after an error or Ctrl-C.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from graphrec.errors import ConfigError, GraphrecError

__all__ = ["APP_DIR", "LocalDeployment", "free_port", "write_node_key", "write_tls"]

#: the Flower app shipped with graphrec
APP_DIR = Path(__file__).parent / "flower_app"

_MARKER = "GRAPHREC_FLOWER_DEPLOYMENT"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_tls(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """A certificate authority and a server certificate for ``host`` (an IP address or DNS
    name, in the subjectAltName), EC P-256, valid one day. Returns the paths of the CA
    certificate, the server certificate and the server key (``ca.crt``, ``server.pem``,
    ``server.key``) in ``folder``; the CA's key is not kept."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "graphrec local FL CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.crt", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(
        paths[2],
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return paths


def write_node_key(path: Path) -> Path:
    """A SuperNode's EC (NIST P-384) key pair in OpenSSH format, as ``ssh-keygen -t ecdsa -b
    384`` writes it: the private key at ``path`` (mode 0600), the public key at
    ``path.pub``, which is returned."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    _write_private(
        path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
    )
    public = path.with_name(path.name + ".pub")
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        + b"\n"
    )
    return public


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _executable(name: str) -> str:
    """A Flower command of this Python environment (else the one on PATH)."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        raise GraphrecError(f"{name} not found: install the fl extra (pip install 'graphrec[fl]')")
    return found


class LocalDeployment:
    """A SuperLink and ``nodes`` SuperNodes on 127.0.0.1 (free ports), used as a context
    manager: entering starts them (SuperNode ``i`` gets ``--node-config "partition-id=i
    num-partitions=nodes"``), :meth:`run` runs the shipped app, leaving stops every process
    and removes the temporary folder.

    Args:
        nodes: number of SuperNodes (>= 1).
        secure: TLS and SuperNode authentication (default); ``False`` runs ``--insecure``.
        log: called with every line of ``flwr run --stream`` (default: print).
    """

    def __init__(
        self,
        nodes: int,
        *,
        secure: bool = True,
        log: Callable[[str], None] | None = None,
        ready_s: float = 120.0,
    ) -> None:
        if nodes < 1:
            raise ConfigError(f"nodes must be >= 1, got {nodes}")
        self.nodes, self.secure, self.ready_s = nodes, secure, ready_s
        self.log = log or (lambda line: print(line, flush=True))
        self.marker = uuid.uuid4().hex
        self.folder: Path | None = None
        self.port = 0
        self.processes: list[subprocess.Popen] = []

    # ------------------------------------------------------------------ processes

    def env(self, home: str) -> dict[str, str]:
        """The environment of a Flower process with ``FLWR_HOME`` = ``folder/home``."""
        assert self.folder is not None
        bin_dir = str(Path(sys.executable).parent)
        return {
            **os.environ,
            "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
            "FLWR_HOME": str(self.folder / home),
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "PYTHONUNBUFFERED": "1",
            _MARKER: self.marker,
        }

    def spawn(self, name: str, args: list[str], home: str) -> subprocess.Popen:
        """Start ``args`` in a session of its own, output to ``folder/name.log``."""
        assert self.folder is not None
        with open(self.folder / f"{name}.log", "ab") as out:
            proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env(home),
                cwd=self.folder,
                start_new_session=True,
            )
        self.processes.append(proc)
        return proc

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """Run ``flwr ARGS`` against this deployment (connection ``local``)."""
        return subprocess.run(
            [_executable("flwr"), *args],
            env=self.env("cli"),
            cwd=self.folder,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=self.ready_s,
        )

    def logs(self, name: str) -> str:
        """The output of process ``name`` (``superlink``, ``supernode-0``, ...) so far."""
        assert self.folder is not None
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """End every process of this deployment (SIGTERM, SIGKILL after 10 s) and remove the
        temporary folder."""
        import psutil

        def marked() -> list[psutil.Process]:
            found = []
            for proc in psutil.process_iter():
                try:
                    if proc.pid != os.getpid() and proc.environ().get(_MARKER) == self.marker:
                        found.append(proc)
                except (psutil.Error, OSError):
                    continue
            return found

        targets = marked()
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in targets:
            with _quiet():
                proc.terminate()
        _, alive = psutil.wait_procs(targets, timeout=10)
        for proc in [*alive, *marked()]:
            with _quiet():
                proc.kill()
        psutil.wait_procs(marked(), timeout=5)
        for proc in self.processes:
            with _quiet():
                proc.wait(timeout=5)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    # ------------------------------------------------------------------ start

    def __enter__(self) -> LocalDeployment:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        """Start the SuperLink, register the SuperNodes' keys, start the SuperNodes."""
        self.folder = Path(tempfile.mkdtemp(prefix="graphrec-flower-"))
        for home in ("superlink", "cli", "keys"):
            (self.folder / home).mkdir(mode=0o700)
        self.port = free_port()
        args = [
            _executable("flower-superlink"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--disable-runtime-dependency-installation",
        ]
        connection = f'address = "127.0.0.1:{self.port}"\n'
        if self.secure:
            ca, cert, key = write_tls(self.folder / "keys")
            args += ["--ssl-ca-certfile", str(ca), "--ssl-certfile", str(cert)]
            args += ["--ssl-keyfile", str(key), "--enable-supernode-auth"]
            connection += f'root-certificates = "{ca}"\n'
        else:
            args.append("--insecure")
            connection += "insecure = true\n"
        (self.folder / "cli" / "config.toml").write_text(
            f'[superlink]\ndefault = "local"\n\n[superlink.local]\n{connection}'
        )
        link = self.spawn("superlink", args, "superlink")
        self._wait_listening(link, "superlink")
        for i in range(self.nodes):
            key_path = None
            if self.secure:
                key_path = self.folder / "keys" / f"supernode-{i}"
                self.register(write_node_key(key_path))
            self.start_supernode(i, key_path)

    def register(self, public_key: Path) -> None:
        """``flwr supernode register PUBLIC_KEY local``."""
        done = self.cli("supernode", "register", str(public_key), "local")
        if done.returncode != 0:
            raise GraphrecError(f"flwr supernode register failed: {done.stdout}{done.stderr}")

    def start_supernode(
        self, partition: int, key: Path | None, *, name: str | None = None
    ) -> subprocess.Popen:
        """Start SuperNode ``partition`` (authenticated with private ``key`` if secure)."""
        assert self.folder is not None
        name = name or f"supernode-{partition}"
        args = [
            _executable("flower-supernode"),
            "--superlink",
            f"127.0.0.1:{self.port}",
            "--host",
            "127.0.0.1",
            "--port",
            str(free_port()),
            "--node-config",
            f"partition-id={partition} num-partitions={self.nodes}",
        ]
        if self.secure:
            args += ["--root-certificates", str(self.folder / "keys" / "ca.crt")]
            if key is not None:
                args += ["--auth-supernode-private-key", str(key)]
        else:
            args.append("--insecure")
        (self.folder / name).mkdir(mode=0o700, exist_ok=True)
        return self.spawn(name, args, name)

    def _wait_listening(self, proc: subprocess.Popen, name: str) -> None:
        deadline = time.monotonic() + self.ready_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise GraphrecError(f"{name} exited ({proc.returncode}):\n{self.logs(name)}")
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        raise GraphrecError(f"{name} did not listen within {self.ready_s:.0f} s")

    # ------------------------------------------------------------------ run

    def run(
        self,
        run_config: Mapping[str, Any],
        *,
        app: Path = APP_DIR,
        timeout_s: float = 3600.0,
    ) -> Path:
        """``flwr run APP local --stream`` with ``run_config`` (keys of the app's
        ``[tool.flwr.app.config]``; ``min-nodes`` defaults to ``nodes``), its output passed
        to ``log`` line by line; returns the results JSON (in the temporary folder: read it
        before leaving the context)."""
        assert self.folder is not None
        results = self.folder / "results.json"
        config = {"min-nodes": self.nodes, **run_config, "results-file": str(results)}
        overrides = " ".join(f"{k}={_toml(v)}" for k, v in config.items())
        args = [_executable("flwr"), "run", str(app), "local", "--stream"]
        proc = subprocess.Popen(
            [*args, "--run-config", overrides],
            env=self.env("cli"),
            cwd=self.folder,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.processes.append(proc)
        reader = threading.Thread(target=self._forward, args=(proc.stdout,), daemon=True)
        reader.start()
        # the stream may outlive the run: the results file marks its end
        deadline = time.monotonic() + timeout_s
        while not results.exists() and proc.poll() is None:
            if time.monotonic() > deadline:
                raise GraphrecError(f"the run took more than {timeout_s:.0f} s")
            time.sleep(0.2)
        reader.join(timeout=1.0)
        if not results.exists():
            raise GraphrecError(
                f"flwr run ended ({proc.returncode}) without results; command: "
                f"{shlex.join(args)}\nSuperLink log:\n{self.logs('superlink')[-4000:]}"
            )
        return results

    def _forward(self, stream: IO[str]) -> None:
        for line in stream:
            self.log(line.rstrip("\n"))


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class _quiet:
    """Ignore a process that is already gone."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        import psutil

        return kind is not None and issubclass(
            kind, (psutil.Error, ProcessLookupError, subprocess.TimeoutExpired)
        )
