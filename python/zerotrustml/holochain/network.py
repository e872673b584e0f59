"""Local Holochain networks on demand: a bootstrap/signal server and K conductors on loopback.

:class:`LocalNetwork` starts ``kitsune2-bootstrap-srv`` and ``holochain``
processes, all bound to 127.0.0.1, installs the hApp once per agent (agents
spread over the conductors round-robin, several per conductor when there
are more agents than conductors) under one fresh network seed and the DNA
properties of the run's model, exchanges the agents' peer infos so nobody
waits for discovery, and returns one :class:`Agent` per agent, each with a
signed :class:`~zerotrustml.holochain.client.Cell`.

Teardown: :meth:`LocalNetwork.stop` (also on ``async with`` exit, on an
error, at interpreter exit, and on SIGINT/SIGTERM while started) kills every
process group it started. Children also get SIGKILL from the kernel if this
process dies without cleaning up (``PR_SET_PDEATHSIG``), so no conductor
outlives its network.

Finding the binaries: the ``bin_dir`` argument, else ``$HC_BIN_DIR``, else
the cache that ``make holochain`` fills
(``~/.cache/zerotrustml/holochain-0.6.3-k2-0.4.1-gopion/bin``), else ``PATH``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

import nacl.signing

from zerotrustml._core import DEFAULT_EXAMPLE_CAP
from zerotrustml.holochain.admission import (
    OPEN,
    admission_property,
    generate_admission_key,
    issue_admission,
    parse_admission,
)
from zerotrustml.holochain.client import AdminClient, AppClient, Cell, SigningCredentials
from zerotrustml.holochain.errors import ConductorError, ConductorTimeout
from zerotrustml.validation import ModelSpec

__all__ = [
    "HOLOCHAIN_VERSION",
    "APP_ROLE",
    "ZOME",
    "Agent",
    "LocalNetwork",
    "NetworkError",
    "dna_properties",
    "find_bin_dir",
    "find_happ",
]

HOLOCHAIN_VERSION = "0.6.3"
BOOTSTRAP_VERSION = "0.4.1"
APP_ROLE = "zerotrustml"
#: The committee lottery's seed when a network names none (the DNA manifest's default).
DEFAULT_COMMITTEE_SEED = "ztml-committee-v1"
ZOME = "gradients"
BINARIES = ("holochain", "kitsune2-bootstrap-srv")

_BOOTSTRAP_MARK = re.compile(rb"#kitsune2_bootstrap_srv#listening#([0-9.]+):(\d+)#")
_ADMIN_MARK = re.compile(rb"###ADMIN_PORT:(\d+)###")
_ROOT = Path(__file__).resolve().parents[3]  # the repository, when running from a checkout


class NetworkError(ConductorError):
    """A local network could not be started (missing binaries or hApp, a process that did not come up)."""


def _default_cache_bin() -> Path:
    root = Path(os.environ.get("ZTML_CACHE", Path.home() / ".cache" / "zerotrustml"))
    return root / f"holochain-{HOLOCHAIN_VERSION}-k2-{BOOTSTRAP_VERSION}-gopion" / "bin"


def find_bin_dir(bin_dir: str | os.PathLike[str] | None = None) -> Path:
    """The directory holding ``holochain`` and ``kitsune2-bootstrap-srv`` (see the module docs for the order).

    Raises
    ------
    NetworkError
        Naming the places searched and how to build the binaries.
    """
    candidates: list[Path] = []
    if bin_dir is not None:
        candidates.append(Path(bin_dir))
    elif os.environ.get("HC_BIN_DIR"):
        candidates.append(Path(os.environ["HC_BIN_DIR"]))
    else:
        candidates.append(_default_cache_bin())
        found = shutil.which("holochain")
        if found:
            candidates.append(Path(found).parent)
    for c in candidates:
        if all((c / b).is_file() and os.access(c / b, os.X_OK) for b in BINARIES):
            return c
    searched = ", ".join(str(c) for c in candidates)
    raise NetworkError(
        f"holochain binaries: {' and '.join(BINARIES)} not found in {searched}; "
        "build them with `make holochain` (about an hour the first time) or set HC_BIN_DIR"
    )


def find_happ(happ: str | os.PathLike[str] | None = None) -> Path:
    """The packed hApp: the argument, ``$ZEROTRUSTML_HAPP``, or ``workdir/zerotrustml.happ`` of this checkout."""
    path = Path(happ or os.environ.get("ZEROTRUSTML_HAPP") or _ROOT / "workdir" / "zerotrustml.happ")
    if not path.is_file():
        raise NetworkError(f"happ: {path} does not exist; build it with `make happ`")
    return path.resolve()


def dna_properties(
    spec: ModelSpec,
    *,
    chunk_values: int | None = None,
    committee_rate: float = 1.0,
    committee_seed: str = DEFAULT_COMMITTEE_SEED,
    recompute_limit: int = 1_000_000,
    max_contributors: int = 1000,
    example_cap: float = DEFAULT_EXAMPLE_CAP,
    admission: str = OPEN,
) -> dict[str, Any]:
    """The DNA properties (zomes/integrity/gradients/src/properties.rs) for a model spec.

    ``chunk_values`` defaults to the whole payload in one chunk up to
    100,000 values (400 kB entries; the zome allows up to 500,000).
    ``admission`` is ``"open"`` or an admission key's property
    (:func:`~zerotrustml.holochain.admission.admission_property`); a
    :class:`LocalNetwork` sets its own.
    """
    spec.check()
    parse_admission(admission)
    return {
        "model_id": spec.model_id,
        "dims": spec.dims,
        "max_norm": float(spec.max_norm),
        "max_payload_bytes": spec.as_tuple()[3],
        "max_round": spec.max_round,
        "chunk_values": int(chunk_values if chunk_values is not None else min(spec.dims, 100_000)),
        "committee_rate": float(committee_rate),
        "committee_seed": committee_seed,
        "recompute_limit": int(recompute_limit),
        "max_contributors": int(max_contributors),
        "example_cap": float(example_cap),
        "admission": admission,
    }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel for SIGKILL when the parent dies.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class _Proc:
    """A child in its own process group; output goes to a log file and is scanned for one marker."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        logfile: Path,
        marker: re.Pattern[bytes],
        stdin_bytes: bytes | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.logfile = logfile
        self._marker = marker
        self.match: re.Match[bytes] | None = None
        self._found = threading.Event()
        self._log = open(logfile, "ab")  # noqa: SIM115 - closed in stop()
        self.p = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin_bytes is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, no locks
            env=dict(env) if env is not None else None,
        )
        if stdin_bytes is not None and self.p.stdin is not None:
            self.p.stdin.write(stdin_bytes)
            self.p.stdin.close()
        self._pumper = threading.Thread(target=self._pump, daemon=True)
        self._pumper.start()

    @property
    def pid(self) -> int:
        return self.p.pid

    def _pump(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            with contextlib.suppress(ValueError):
                self._log.write(line)
                self._log.flush()
            if self.match is None:
                m = self._marker.search(line)
                if m:
                    self.match = m
                    self._found.set()
        self._found.set()

    async def wait_marker(self, timeout: float) -> re.Match[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._found.is_set():
            await asyncio.sleep(0.05)
        if self.match is None:
            rc = self.p.poll()
            state = f"exited with {rc}" if rc is not None else "still running"
            raise NetworkError(
                f"{self.name}: did not start within {timeout:.0f} s ({state}); "
                f"tail of {self.logfile}:\n{_tail(self.logfile)}"
            )
        return self.match

    def running(self) -> bool:
        return self.p.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.p.pid, sig)

    def stop(self, grace: float = 5.0) -> None:
        if self.p.poll() is None:
            self.kill(signal.SIGTERM)
            try:
                self.p.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.p.wait(5)
        # The group may hold children of the conductor (lair, go-pion helpers).
        self.kill(signal.SIGKILL)
        self._pumper.join(5)  # ends at EOF, once every holder of the pipe is gone
        for f in (self.p.stdout, self.p.stdin):
            if f is not None:
                with contextlib.suppress(Exception):
                    f.close()
        with contextlib.suppress(Exception):
            self._log.close()


def _tail(path: Path, n: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _conductor_config(data_dir: Path, admin_port: int, bootstrap_port: int, force_relay: bool = False) -> str:
    tx5: dict[str, Any] = {"signalAllowPlainText": True}  # the local signal server has no TLS
    if force_relay:
        tx5["dangerForceSignalRelay"] = True
    cfg = {
        "data_root_path": str(data_dir),
        "keystore": {"type": "lair_server_in_proc"},
        "admin_interfaces": [{"driver": {"type": "websocket", "port": admin_port, "allowed_origins": "*"}}],
        "network": {
            "bootstrap_url": f"http://127.0.0.1:{bootstrap_port}",
            "signal_url": f"ws://127.0.0.1:{bootstrap_port}",
            "relay_url": f"http://127.0.0.1:{bootstrap_port}",
            # Host candidates only: nothing leaves the machine.
            "webrtc_config": {"iceServers": []},
            # Test-network gossip: the defaults (every 2 min, at most every 5 min per peer) make one lost
            # publish cost minutes.
            "advanced": {
                "tx5Transport": tx5,
                "coreBootstrap": {"backoffMinMs": 1000, "backoffMaxMs": 5000},
                "k2Gossip": {
                    "initiateIntervalMs": 1000,
                    "initiateJitterMs": 100,
                    "minInitiateIntervalMs": 1000,
                    "roundTimeoutMs": 10000,
                },
            },
        },
    }
    return json.dumps(cfg, indent=2)  # JSON is YAML


@dataclass
class _Conductor:
    index: int
    config: Path
    admin_port: int
    proc: _Proc | None = None
    admin: AdminClient | None = None
    app_port: int | None = None
    starts: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class Agent:
    """One agent of a local network: its conductor, installed app and signed cell."""

    name: str
    conductor: int
    app_id: str
    cell: Cell
    app: AppClient
    properties: dict[str, Any] = field(default_factory=dict)
    membrane_proof: bytes = b""

    @property
    def agent_key(self) -> bytes:
        return self.cell.agent


_LIVE: set[LocalNetwork] = set()


def _stop_all_live() -> None:
    for net in list(_LIVE):
        net.kill_processes()
        net.remove_files()


atexit.register(_stop_all_live)


class LocalNetwork:
    """A bootstrap server and ``conductors`` conductors on loopback, with ``agents`` agents of the hApp.

    Use as ``async with LocalNetwork(...) as net: net.agents[...]``, or
    ``await net.start()`` / ``await net.stop()``.

    Parameters
    ----------
    agents
        Number of agents (each its own installation of the hApp, its own key).
    conductors
        Number of conductor processes; agents are spread round-robin.
    properties
        DNA properties (see :func:`dna_properties`); the DNA defaults when ``None``.
    network_seed
        Default: a fresh random seed, so the network is isolated from any other.
    work_dir
        Where conductor data and logs go (default: a temporary directory, removed on stop unless ``keep``).
    force_relay
        Route peer traffic through the local signal server's relay (the default), or try direct WebRTC
        first (``False``). On loopback the go-pion WebRTC connection between two conductors fails now and
        then (1 of 6 starts here), and a peer connection that closes is not retried through the relay, so
        two conductors can stay apart. Through the relay that was rarer (1 of about 30 starts), and
        :meth:`await_connected` restarts a conductor that stays apart. The local relay is not rate-limited.
    log
        Called with a line of progress text now and then.
    connect_timeout
        How long :meth:`start` waits for every conductor to see every agent (see :meth:`await_connected`).
    restart_after
        How long a conductor may see only part of the network before :meth:`await_connected` restarts it.
    admission
        Who may join (:mod:`zerotrustml.holochain.admission`): by default, when ``properties`` are given, a fresh
        admission key held by this object, which issues each agent's membrane proof; a ``SigningKey`` to use
        that key; ``"open"`` to admit anyone. It overrides ``properties["admission"]``.
    """

    def __init__(
        self,
        agents: int,
        conductors: int = 1,
        *,
        properties: Mapping[str, Any] | None = None,
        network_seed: str | None = None,
        happ: str | os.PathLike[str] | None = None,
        bin_dir: str | os.PathLike[str] | None = None,
        work_dir: str | os.PathLike[str] | None = None,
        keep: bool = False,
        force_relay: bool = True,
        log: Any = None,
        connect_timeout: float = 180.0,
        restart_after: float = 45.0,
        admission: nacl.signing.SigningKey | str | None = None,
    ) -> None:
        if agents < 1:
            raise ValueError(f"agents: must be at least 1, got {agents}")
        if not 1 <= conductors <= agents:
            raise ValueError(f"conductors: must be in [1, agents={agents}], got {conductors}")
        self.n_agents = agents
        self.n_conductors = conductors
        self.properties = dict(properties) if properties is not None else None
        self.admission_key: nacl.signing.SigningKey | None = None
        if isinstance(admission, nacl.signing.SigningKey) or (admission is None and properties is not None):
            if self.properties is None:
                raise ValueError("admission: a network closed by an admission key needs its DNA properties")
            self.admission_key = admission if admission is not None else generate_admission_key()
            self.properties["admission"] = admission_property(self.admission_key)
        elif admission is not None:
            if admission != OPEN:
                raise ValueError(f'admission: a SigningKey, "open" or None, got {admission!r}')
            if self.properties is not None:
                self.properties["admission"] = OPEN
        self.network_seed = network_seed or f"ztml-{secrets.token_hex(8)}"
        self.bin_dir = find_bin_dir(bin_dir)
        self.happ = find_happ(happ)
        self._own_dir = work_dir is None
        self.work_dir = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="ztml-net-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self.force_relay = force_relay
        self._log = log
        self.connect_timeout = connect_timeout
        self.restart_after = restart_after
        self.bootstrap: _Proc | None = None
        self.bootstrap_port: int | None = None
        self.conductors: list[_Conductor] = []
        self.agents: list[Agent] = []
        self._old_handlers: dict[int, Any] = {}
        self._extra = 0  # agents tried with add_agent (each gets a fresh app id, installed or not)
        self._twins: list[Agent] = []  # made by fork_conductor

    # -- lifecycle ------------------------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def _say(self, msg: str) -> None:
        if self._log is not None:
            self._log(msg)

    def pids(self) -> list[int]:
        """Process ids of every process this network started and that may still run."""
        procs = [self.bootstrap] + [c.proc for c in self.conductors]
        return [p.pid for p in procs if p is not None]

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum: int, frame: FrameType | None) -> None:
            self.kill_processes()
            self.remove_files()
            old = self._old_handlers.get(signum)
            if callable(old):
                old(signum, frame)
            elif signum == signal.SIGINT:
                raise KeyboardInterrupt
            else:
                raise SystemExit(128 + signum)

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, OSError):
                self._old_handlers[sig] = signal.signal(sig, handler)

    def _restore_signal_handlers(self) -> None:
        for sig, old in self._old_handlers.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(sig, old)
        self._old_handlers.clear()

    async def start(self) -> None:
        """Start the processes and install the agents; on any failure everything started is stopped."""
        _LIVE.add(self)
        self._install_signal_handlers()
        try:
            try:
                await self._start()
            except ConductorTimeout as e:
                # Loopback peer connections still fail now and then even after a conductor restart; a network
                # that never connected has nothing worth keeping, so it gets one fresh start (new processes,
                # new conductor data) before the error reaches the caller.
                if not str(e).startswith("network not connected"):
                    raise
                self._say(f"{e}; starting the network afresh")
                await self._shut_down()
                for child in self.work_dir.glob("conductor-*"):
                    if child.is_dir():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
                self.conductors, self.agents, self.bootstrap, self._extra = [], [], None, 0
                await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        t0 = time.monotonic()
        self.bootstrap = _Proc(
            "bootstrap server",
            [
                str(self.bin_dir / "kitsune2-bootstrap-srv"),
                "--listen",
                "127.0.0.1:0",
                # Every conductor is 127.0.0.1 here: a per-IP rate limit would throttle the whole network.
                "--sbd-disable-rate-limiting",
                "--max-entries-per-space",
                str(max(32, 2 * self.n_agents)),
            ],
            self.work_dir / "bootstrap.log",
            _BOOTSTRAP_MARK,
        )
        self.bootstrap_port = int((await self.bootstrap.wait_marker(60)).group(2))
        self._say(f"bootstrap/signal server on 127.0.0.1:{self.bootstrap_port}")
        for i in range(self.n_conductors):
            data = self.work_dir / f"conductor-{i}"
            data.mkdir(exist_ok=True)
            cfg = self.work_dir / f"conductor-{i}.yaml"
            c = _Conductor(i, cfg, _free_port())
            cfg.write_text(_conductor_config(data, c.admin_port, self.bootstrap_port, self.force_relay))
            self.conductors.append(c)
        await asyncio.gather(*(self._boot(c) for c in self.conductors))
        self._say(f"{self.n_conductors} conductor(s) up after {time.monotonic() - t0:.1f} s")
        for c in self.conductors:
            assert c.admin is not None
            c.app_port = await c.admin.attach_app_interface()
        # Installs on one conductor run one after another (each compiles or loads the wasm); conductors in parallel.
        by_conductor: dict[int, list[int]] = {}
        for a in range(self.n_agents):
            by_conductor.setdefault(a % self.n_conductors, []).append(a)
        results = await asyncio.gather(
            *(self._install_many(self.conductors[ci], idx) for ci, idx in by_conductor.items())
        )
        self.agents = sorted((a for group in results for a in group), key=lambda a: int(a.name.split("-")[1]))
        await self.share_peer_infos()
        self._say(f"{self.n_agents} agent(s) installed after {time.monotonic() - t0:.1f} s")
        await self.await_connected()
        self._say(f"every conductor sees all {self.n_agents} agent(s) after {time.monotonic() - t0:.1f} s")

    async def _boot(self, c: _Conductor) -> None:
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn,NETAUDIT=off")
        c.proc = _Proc(
            f"conductor {c.index}",
            [str(self.bin_dir / "holochain"), "--piped", "-c", str(c.config)],
            self.work_dir / f"conductor-{c.index}.log",
            _ADMIN_MARK,
            stdin_bytes=b"pass\n",
            env=env,
        )
        c.starts += 1
        m = await c.proc.wait_marker(180)
        c.admin = await AdminClient.connect(int(m.group(1)))

    async def _install_many(self, c: _Conductor, indices: Sequence[int]) -> list[Agent]:
        return [await self._install(c, i) for i in indices]

    async def add_agent(self, conductor: int = 0, *, membrane_proof: bytes | None = None) -> Agent:
        """Install one more agent on a running conductor and wait until every conductor sees it.

        Its membrane proof is issued with the network's admission key unless ``membrane_proof`` is given (tests
        try intruders this way); a proof the DNA refuses fails the install with a :class:`ConductorError`
        naming the reason.
        """
        c = self.conductors[conductor]
        index = self.n_agents + self._extra
        self._extra += 1
        agent = await self._install(c, index, membrane_proof)
        self.agents.append(agent)
        await self.share_peer_infos()
        await self.await_connected()
        return agent

    async def _install(self, c: _Conductor, index: int, membrane_proof: bytes | None = None) -> Agent:
        assert c.admin is not None and c.app_port is not None
        app_id = f"zerotrustml-{index}"
        key = await c.admin.generate_agent_pub_key()
        if membrane_proof is None and self.admission_key is not None:
            membrane_proof = issue_admission(self.admission_key, key, self.network_seed)
        info = await c.admin.install_app(
            app_id,
            str(self.happ),
            key,
            network_seed=self.network_seed,
            role_properties={APP_ROLE: self.properties} if self.properties is not None else None,
            membrane_proofs={APP_ROLE: membrane_proof} if membrane_proof is not None else None,
        )
        cells = info["cell_info"][APP_ROLE]
        provisioned = next(x["value"] for x in cells if x["type"] == "provisioned")
        cell_id = [bytes(provisioned["cell_id"][0]), bytes(provisioned["cell_id"][1])]
        await c.admin.enable_app(app_id)
        creds: SigningCredentials = await c.admin.authorize_signing(cell_id)
        token = await c.admin.issue_app_token(app_id)

        async def reconnect() -> tuple[int, Any]:
            return await self._reconnect_app(c, app_id)

        app = await AppClient.connect(c.app_port, token, reconnect=reconnect)
        cell = Cell(app, cell_id, creds, ZOME)
        # The first call runs init (remote-signal grant, participants link) before anyone counts on it.
        props = await cell.call("get_model_properties", None)
        return Agent(f"agent-{index}", c.index, app_id, cell, app, props, membrane_proof or b"")

    async def _reconnect_app(self, c: _Conductor, app_id: str) -> tuple[int, Any]:
        async with c.lock:  # agents of one conductor reconnect one at a time: one admin socket, one interface
            if c.admin is None or c.admin.closed:
                if c.admin is not None:
                    await c.admin.close()
                c.admin = await AdminClient.connect(c.admin_port, timeout=5.0)
            ports = await c.admin.list_app_interfaces()
            if c.app_port not in ports:
                c.app_port = ports[0] if ports else await c.admin.attach_app_interface()
            token = await c.admin.issue_app_token(app_id)
            assert c.app_port is not None
            return c.app_port, token

    async def share_peer_infos(self) -> None:
        """Give every running conductor every other one's agent infos (no waiting for bootstrap discovery)."""
        live = [c.admin for c in self.conductors if c.admin is not None]
        if len(live) < 2:
            return
        infos: list[Any] = []
        for admin in live:
            infos.extend(await admin.request("agent_info", {"dna_hashes": None}))
        for admin in live:
            await admin.request("add_agent_info", {"agent_infos": infos})

    async def await_connected(self, timeout: float | None = None) -> None:
        """Wait until one agent on every conductor reads every agent's join link through the network.

        Conductors that hold each other's peer infos still take a moment to open connections; a call that
        needs another conductor's data before then waits on the network. This barrier makes a network that
        :meth:`start` returns ready for use. Peer infos are shared again while waiting, and a conductor that
        still sees only part of the network after ``restart_after`` seconds is restarted on its data (now
        and then a conductor's transport never reaches the others, and a restart is what brings it in;
        its agents' clients reconnect by themselves).

        Raises
        ------
        ConductorTimeout
            Naming, per conductor, how many of the agents it could see when time ran out.
        """
        timeout = self.connect_timeout if timeout is None else timeout
        want = sorted(a.agent_key for a in self.agents)
        first = {a.conductor: a for a in reversed(self.agents)}
        t0 = time.monotonic()
        deadline = t0 + timeout
        next_restart = t0 + self.restart_after
        restarts = 0
        seen: dict[int, int] = {}
        while True:
            waiting = [ci for ci in sorted(first) if seen.get(ci) != len(want)]
            for ci in waiting:
                try:
                    got = await first[ci].cell.call("get_participants", None, timeout=max(1.0, min(30.0, timeout)))
                except ConductorTimeout:
                    continue
                seen[ci] = len(set(map(bytes, got)) & set(want))
            if all(seen.get(ci) == len(want) for ci in first):
                return
            if time.monotonic() > deadline:
                counts = ", ".join(f"conductor {ci}: {seen.get(ci, 0)}" for ci in sorted(first))
                raise ConductorTimeout(
                    f"network not connected after {timeout:g} s: agents seen of {len(want)} ({counts})"
                )
            now = time.monotonic()
            stuck = [ci for ci in sorted(first) if seen.get(ci) != len(want)]
            if len(self.conductors) > 1 and stuck and now > next_restart and now + 30 < deadline:
                ci = stuck[restarts % len(stuck)]
                self._say(
                    f"conductor {ci} sees {seen.get(ci, 0)} of {len(want)} agents after {now - t0:.0f} s: "
                    "restarting it on its data"
                )
                await self.reboot(ci)
                restarts += 1
                next_restart = time.monotonic() + self.restart_after
            await self.share_peer_infos()
            await asyncio.sleep(0.5)

    # -- faults -------------------------------------------------------------------------------------------------
    async def kill_conductor(self, index: int) -> None:
        """Kill a conductor process outright (SIGKILL), as a crash would."""
        c = self.conductors[index]
        if c.proc is not None:
            c.proc.kill(signal.SIGKILL)
            await asyncio.get_running_loop().run_in_executor(None, c.proc.p.wait)
            c.proc.stop()
        if c.admin is not None:
            await c.admin.close()
            c.admin = None

    async def reboot(self, index: int) -> None:
        """Restart a running conductor on its data; its agents' clients reconnect by themselves.

        Now and then a conductor's transport stops reaching the others after the network connected (ops from
        one conductor never reach the other, gossip included); a restart is what brings it back.
        """
        await self.kill_conductor(index)
        await self._boot(self.conductors[index])
        await self.share_peer_infos()

    async def restart_conductor(self, index: int) -> None:
        """Start a killed conductor again on the same data, admin port and app interfaces."""
        c = self.conductors[index]
        if c.proc is not None and c.proc.running():
            raise ConductorError(f"conductor {index}: still running; kill it first")
        await self._boot(c)
        await self.share_peer_infos()
        await self.await_connected()

    async def fork_conductor(self, index: int) -> list[Agent]:
        """Copy conductor ``index`` (keystore and source chains included) to a new one: an attack-test tool.

        This is what any operator can do with its own keys. Conductor ``index`` is stopped, its data is copied
        and the copy starts; each agent of ``index`` has a twin there with the same key, cell and signing
        credentials and the same chain up to now. Whatever a twin commits forks that chain once the original
        (:meth:`restart_conductor`) commits too. One copy runs at a time, as the network knows one address per
        agent. Returns the twins; they are not in :attr:`agents`, so every count of the network stays as it was.
        """
        src = self.conductors[index]
        if src.proc is None or not src.proc.running():
            raise ConductorError(f"conductor {index}: not running")
        if src.admin is not None:
            await src.admin.close()
            src.admin = None
        src.proc.stop()  # SIGTERM first: the copy is taken from databases the conductor closed itself
        twin = _Conductor(len(self.conductors), self.work_dir / f"conductor-{len(self.conductors)}.yaml", _free_port())
        src_data = self.work_dir / f"conductor-{index}"
        data = self.work_dir / f"conductor-{twin.index}"
        shutil.copytree(src_data, data, ignore=shutil.ignore_patterns("socket", "pid_file"))
        for cfg in data.rglob("lair-keystore-config.yaml"):  # the keystore names its own files by absolute path
            cfg.write_text(cfg.read_text().replace(str(src_data), str(data)))
        assert self.bootstrap_port is not None
        twin.config.write_text(_conductor_config(data, twin.admin_port, self.bootstrap_port, self.force_relay))
        self.conductors.append(twin)
        await self._boot(twin)
        assert twin.admin is not None
        ports = await twin.admin.list_app_interfaces()
        twin.app_port = ports[0] if ports else await twin.admin.attach_app_interface()
        twins: list[Agent] = []
        for a in (a for a in self.agents if a.conductor == index):
            token = await twin.admin.issue_app_token(a.app_id)

            async def reconnect(app_id: str = a.app_id) -> tuple[int, Any]:
                return await self._reconnect_app(twin, app_id)

            app = await AppClient.connect(twin.app_port, token, reconnect=reconnect)
            cell = Cell(app, a.cell.cell_id, a.cell.credentials, ZOME)
            twins.append(Agent(f"{a.name}-twin", twin.index, a.app_id, cell, app, dict(a.properties), a.membrane_proof))
        self._twins.extend(twins)
        await self.share_peer_infos()
        return twins

    # -- teardown -----------------------------------------------------------------------------------------------
    def kill_processes(self) -> None:
        """Stop every process now (synchronous; safe from signal handlers and atexit)."""
        for c in self.conductors:
            if c.proc is not None:
                c.proc.stop(grace=3.0)
        if self.bootstrap is not None:
            self.bootstrap.stop(grace=2.0)

    async def stop(self) -> None:
        """Close the sockets, stop every process, remove the work directory (unless ``keep``)."""
        await self._shut_down()
        _LIVE.discard(self)
        self._restore_signal_handlers()
        self.remove_files()

    async def _shut_down(self) -> None:
        for a in self.agents + self._twins:
            with contextlib.suppress(Exception):
                await a.app.close()
        for c in self.conductors:
            if c.admin is not None:
                with contextlib.suppress(Exception):
                    await c.admin.close()
                c.admin = None
        self.kill_processes()

    def remove_files(self) -> None:
        """Remove the work directory if this network made it and was not told to ``keep`` it (synchronous)."""
        if self._own_dir and not self.keep:
            shutil.rmtree(self.work_dir, ignore_errors=True)
