#!/usr/bin/env python3
"""Prove that two Holochain conductors sync offline, with the ZeroTrustML DNA.

Starts a local kitsune2 bootstrap + sbd signal server on 127.0.0.1, two
Holochain 0.6.3 conductors whose bootstrap/signal/relay URLs all point at it,
installs workdir/zerotrustml.happ on both (same random network seed, so the
run is isolated from any other), then:

1. agent A calls ``submit_gradient`` with a payload of the DNA's ``dims``
   (stored as chunks); agent B polls ``get_round_submissions`` until it
   returns A's submission, reassembled from its chunks (bounded by
   ``--timeout``);
2. agent A submits a payload of the wrong length and one holding a NaN, and
   both calls must fail with the integrity zome's validation messages.

Prints the timings and exits 0 only when both hold. All processes are started
in their own process groups and killed on exit (also on Ctrl-C / SIGTERM).

The conductor client speaks the admin/app websocket protocol directly
(msgpack over websockets, zome calls signed with an Ed25519 key the conductor
grants a capability to), so it needs only ``websockets msgpack pynacl``.

Usage:
    .venv/bin/python scripts/sync-proof.py [--timeout 120] [--keep]
        [--bin-dir DIR] [--happ PATH] [--force-relay]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import msgpack
    import nacl.signing
    import websockets
    from websockets.typing import Origin
except ImportError as exc:  # pragma: no cover - environment guard
    sys.exit(f"missing Python package ({exc.name}); run: .venv/bin/pip install websockets msgpack pynacl")

ROOT = Path(__file__).resolve().parent.parent
APP_ID = "zerotrustml"
ROLE = "zerotrustml"
ZOME = "gradients"
BOOTSTRAP_MARK = re.compile(rb"#kitsune2_bootstrap_srv#listening#([0-9.]+):(\d+)#")
ADMIN_MARK = re.compile(rb"###ADMIN_PORT:(\d+)###")
AGENT_PREFIX = bytes([0x84, 0x20, 0x24])


def log(msg: str) -> None:
    print(f"[sync-proof {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------
# processes


class Proc:
    """A child process in its own process group; output goes to a log file
    and is scanned for one marker line."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        logfile: Path,
        marker: re.Pattern[bytes],
        stdin_bytes: bytes | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.logfile = logfile
        self._marker = marker
        self._match: re.Match[bytes] | None = None
        self._found = threading.Event()
        self._log = open(logfile, "wb")
        self.p = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin_bytes is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
        if stdin_bytes is not None and self.p.stdin is not None:
            self.p.stdin.write(stdin_bytes)
            self.p.stdin.close()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self._log.write(line)
            self._log.flush()
            if self._match is None:
                m = self._marker.search(line)
                if m:
                    self._match = m
                    self._found.set()
        self._found.set()  # EOF: wake any waiter

    async def wait_marker(self, timeout: float) -> re.Match[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._found.is_set():
            await asyncio.sleep(0.05)
        if self._match is None:
            rc = self.p.poll()
            state = f"exited with {rc}" if rc is not None else "still running"
            raise RuntimeError(
                f"{self.name}: no startup marker within {timeout:.0f} s ({state}); "
                f"tail of {self.logfile}:\n{tail(self.logfile)}"
            )
        return self._match

    def stop(self) -> None:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait(5)
        self._log.close()


def tail(path: Path, n: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------
# wire protocol


def packb(obj: Any) -> bytes:
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


def unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def agent_pub_key(ed25519_pub: bytes) -> bytes:
    """39-byte AgentPubKey: prefix, key, 4 DHT location bytes (blake2b-128 folded)."""
    h = hashlib.blake2b(ed25519_pub, digest_size=16).digest()
    loc = bytearray(h[0:4])
    for i in range(4, 16, 4):
        for j in range(4):
            loc[j] ^= h[i + j]
    return AGENT_PREFIX + ed25519_pub + bytes(loc)


class ConductorError(RuntimeError):
    pass


class Socket:
    """One admin or app websocket: request/response by id; signals dropped."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._next = 0
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, port: int) -> Socket:
        # The conductor refuses upgrades without an Origin header.
        ws = await websockets.connect(
            f"ws://127.0.0.1:{port}", origin=Origin("http://localhost"), max_size=None, open_timeout=20
        )
        return cls(ws)

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                msg = unpackb(frame)
                if msg.get("type") == "response":
                    fut = self._waiting.pop(msg["id"], None)
                    if fut is not None and not fut.done():
                        data = msg.get("data")
                        fut.set_result(unpackb(data) if data is not None else None)
        except websockets.ConnectionClosed:
            pass
        finally:
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(ConductorError("websocket closed"))

    async def request(self, kind: str, value: Any = None, timeout: float = 60.0) -> Any:
        req: dict[str, Any] = {"type": kind}
        if value is not None:
            req["value"] = value
        rid = self._next
        self._next += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        await self.ws.send(packb({"type": "request", "id": rid, "data": packb(req)}))
        resp = await asyncio.wait_for(fut, timeout)
        if isinstance(resp, dict) and resp.get("type") == "error":
            raise ConductorError(f"{kind}: {resp.get('value')}")
        return resp

    async def authenticate(self, token: Any) -> None:
        await self.ws.send(packb({"type": "authenticate", "data": packb({"token": token})}))

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


@dataclass
class Agent:
    name: str
    proc: Proc
    admin: Socket
    app: Socket | None = None
    cell_id: list[bytes] = field(default_factory=list)
    agent_key: bytes = b""
    signer: nacl.signing.SigningKey | None = None
    signer_key: bytes = b""
    cap_secret: bytes = b""

    async def call(self, fn: str, payload: Any, timeout: float = 60.0) -> Any:
        assert self.app is not None and self.signer is not None
        params = {
            "provenance": self.signer_key,
            "cell_id": self.cell_id,
            "zome_name": ZOME,
            "fn_name": fn,
            "cap_secret": self.cap_secret,
            "payload": msgpack.packb(payload, use_bin_type=True, use_single_float=True),
            "nonce": secrets.token_bytes(32),
            "expires_at": int((time.time() + 300) * 1_000_000),
        }
        data = packb(params)
        signature = self.signer.sign(hashlib.sha512(data).digest()).signature
        resp = await self.app.request("call_zome", {"bytes": data, "signature": signature}, timeout)
        if resp.get("type") != "zome_called":
            raise ConductorError(f"{fn}: unexpected response {resp!r}")
        return unpackb(resp["value"])


# --------------------------------------------------------------------------
# submissions as get_round_submissions returns them:
# {action_hash, author, submission: GradientSubmission, values}


def output_author(output: dict[str, Any]) -> bytes:
    return bytes(output["author"])


def output_hash(output: dict[str, Any]) -> bytes:
    return bytes(output["action_hash"])


def f32(values: list[float]) -> list[float]:
    """Values as the zome stores them (float32)."""
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


# --------------------------------------------------------------------------
# the proof


def find_bin_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    if os.environ.get("HC_BIN_DIR"):
        return Path(os.environ["HC_BIN_DIR"])
    out = subprocess.run(
        ["bash", str(ROOT / "scripts/install-holochain.sh")], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


def conductor_config(data_dir: Path, port: int, force_relay: bool) -> str:
    tx5: dict[str, Any] = {"signalAllowPlainText": True}  # local sbd has no TLS
    if force_relay:
        tx5["dangerForceSignalRelay"] = True
    cfg = {
        "data_root_path": str(data_dir),
        "keystore": {"type": "lair_server_in_proc"},
        "admin_interfaces": [{"driver": {"type": "websocket", "port": 0, "allowed_origins": "*"}}],
        "network": {
            "bootstrap_url": f"http://127.0.0.1:{port}",
            "signal_url": f"ws://127.0.0.1:{port}",
            # Only read by iroh builds; kept local so nothing points outside.
            "relay_url": f"http://127.0.0.1:{port}",
            # No STUN/TURN: host candidates only, nothing leaves the machine.
            "webrtc_config": {"iceServers": []},
            # Test-network tuning (the values Holochain's own test configs use
            # are smaller still). The defaults (gossip every 2 min, at most
            # every 5 min per peer) mean one lost publish costs minutes.
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


async def start_agent(
    name: str, bins: Path, run: Path, port: int, force_relay: bool, timings: dict[str, float]
) -> Agent:
    data = run / name
    data.mkdir()
    cfg = run / f"{name}.yaml"
    cfg.write_text(conductor_config(data, port, force_relay))
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "warn,NETAUDIT=off")
    t0 = time.monotonic()
    proc = Proc(
        f"conductor {name}",
        [str(bins / "holochain"), "--piped", "-c", str(cfg)],
        run / f"{name}.log",
        ADMIN_MARK,
        stdin_bytes=b"pass\n",
        env=env,
    )
    m = await proc.wait_marker(120)
    admin = await Socket.connect(int(m.group(1)))
    timings[f"conductor_{name}_start_s"] = time.monotonic() - t0
    log(f"conductor {name}: admin port {m.group(1).decode()} after {timings[f'conductor_{name}_start_s']:.2f} s")
    return Agent(name, proc, admin)


async def install(agent: Agent, happ: Path, seed: str, timings: dict[str, float]) -> None:
    t0 = time.monotonic()
    key = await agent.admin.request("generate_agent_pub_key")
    agent.agent_key = key["value"]
    info = await agent.admin.request(
        "install_app",
        {
            "source": {"type": "path", "value": str(happ)},
            "agent_key": agent.agent_key,
            "installed_app_id": APP_ID,
            "network_seed": seed,
        },
        timeout=300,
    )
    cells = info["value"]["cell_info"][ROLE]
    provisioned = next(c["value"] for c in cells if c["type"] == "provisioned")
    agent.cell_id = list(provisioned["cell_id"])
    await agent.admin.request("enable_app", {"installed_app_id": APP_ID}, timeout=120)

    agent.signer = nacl.signing.SigningKey.generate()
    agent.signer_key = agent_pub_key(bytes(agent.signer.verify_key))
    agent.cap_secret = secrets.token_bytes(64)
    await agent.admin.request(
        "grant_zome_call_capability",
        {
            "cell_id": agent.cell_id,
            "cap_grant": {
                "tag": "sync-proof",
                "access": {"type": "assigned", "value": {"secret": agent.cap_secret, "assignees": [agent.signer_key]}},
                "functions": {"type": "all"},
            },
        },
    )
    attached = await agent.admin.request(
        "attach_app_interface",
        {"port": None, "danger_bind_addr": None, "allowed_origins": "*", "installed_app_id": APP_ID},
    )
    app_port = attached["value"]["port"]
    issued = await agent.admin.request(
        "issue_app_authentication_token", {"installed_app_id": APP_ID, "expiry_seconds": 60, "single_use": True}
    )
    agent.app = await Socket.connect(app_port)
    await agent.app.authenticate(issued["value"]["token"])
    timings[f"install_{agent.name}_s"] = time.monotonic() - t0
    log(f"agent {agent.name}: installed {APP_ID} in {timings[f'install_{agent.name}_s']:.2f} s (app port {app_port})")


async def network_summary(agent: Agent) -> dict[str, Any]:
    """Which transport carried the sync: backend name and, per peer
    connection, whether it is direct (WebRTC) or relayed through sbd."""
    stats = (await agent.admin.request("dump_network_stats"))["value"]
    ts = stats.get("transport_stats", {})
    return {
        "backend": ts.get("backend"),
        "peer_urls": ts.get("peer_urls"),
        "connections": [
            {"direct": c.get("is_direct"), "sent_bytes": c.get("send_bytes"), "recv_bytes": c.get("recv_bytes")}
            for c in ts.get("connections", [])
        ],
    }


async def prove(bins: Path, happ: Path, args: argparse.Namespace, run: Path, procs: list[Proc]) -> int:
    timings: dict[str, float] = {}
    t_all = time.monotonic()

    t0 = time.monotonic()
    boot = Proc(
        "bootstrap",
        [str(bins / "kitsune2-bootstrap-srv"), "--listen", "127.0.0.1:0"],
        run / "bootstrap.log",
        BOOTSTRAP_MARK,
    )
    procs.append(boot)
    port = int((await boot.wait_marker(30)).group(2))
    timings["bootstrap_start_s"] = time.monotonic() - t0
    log(f"bootstrap/signal server on 127.0.0.1:{port} ({timings['bootstrap_start_s']:.2f} s)")

    agents: list[Agent] = []
    try:
        for name in ("A", "B"):
            agent = await start_agent(name, bins, run, port, args.force_relay, timings)
            procs.append(agent.proc)
            agents.append(agent)
        a, b = agents
        seed = f"sync-proof-{secrets.token_hex(8)}"
        for agent in agents:
            await install(agent, happ, seed, timings)

        props = await a.call("get_model_properties", None)
        dims, chunk_values = int(props["dims"]), int(props["chunk_values"])
        values = [round(0.125 * (i - dims / 2), 3) for i in range(dims)]
        submission = {
            "round": 7,
            "model_id": props["model_id"],
            "values": values,
            "example_count": 32,
        }
        t0 = time.monotonic()
        action_hash = await a.call("submit_gradient", submission)
        timings["submit_s"] = time.monotonic() - t0
        log(f"A submitted round 7 gradient: action {action_hash.hex()[:24]}... ({timings['submit_s']:.2f} s)")

        t_sync = time.monotonic()
        deadline = t_sync + args.timeout
        seen = None
        polls = 0
        while time.monotonic() < deadline:
            polls += 1
            outputs = await b.call("get_round_submissions", 7)
            for out in outputs:
                if output_hash(out) == action_hash:
                    seen = out
            if seen is not None:
                break
            await asyncio.sleep(args.poll)
        if seen is None:
            log(f"FAIL: B did not see A's submission within {args.timeout:.0f} s ({polls} polls)")
            return 1
        timings["sync_s"] = time.monotonic() - t_sync
        entry = seen["submission"]
        n_chunks = len(entry["chunk_hashes"])
        if (
            output_author(seen) != a.agent_key
            or entry.get("dims") != dims
            or seen["values"] != f32(values)
            or n_chunks != -(-dims // chunk_values)
        ):
            same_author = output_author(seen) == a.agent_key
            log(f"FAIL: B's copy does not match A's submission: same author={same_author}, read={seen!r}")
            return 1
        log(
            f"B sees A's entry after {timings['sync_s']:.2f} s ({polls} polls): "
            f"round={entry['round']} model={entry['model_id']} dims={dims} in {n_chunks} chunks, values intact"
        )

        transport = await network_summary(a)
        log(f"A's transport: {transport}")

        short = dict(submission, round=8, values=values[:4])  # 4 values, the model has `dims`
        want = f"GradientSubmission.dims: the model has {dims} parameters, got 4"
        try:
            await a.call("submit_gradient", short)
        except ConductorError as exc:
            text = str(exc)
            if want not in text:
                log(f"FAIL: invalid submission rejected, but not by our rule: {text}")
                return 1
            log(f"invalid submission rejected as expected; conductor said: {text[:600]}")
        else:
            log("FAIL: invalid submission (wrong number of values) was accepted")
            return 1

        # A finite norm claim, so the payload rule (not the claim rule) fires.
        nan = dict(submission, round=8, values=[values[0], float("nan"), *values[2:]], norm=1.0)
        want = "GradientSubmission.values: non-finite value NaN at index 1"
        try:
            await a.call("submit_gradient", nan)
        except ConductorError as exc:
            if want not in str(exc):
                log(f"FAIL: NaN submission rejected, but not by our rule: {exc}")
                return 1
            log(f"NaN submission rejected as expected: {want}")
        else:
            log("FAIL: submission with a NaN value was accepted")
            return 1

        timings["total_s"] = time.monotonic() - t_all
        print(
            json.dumps(
                {
                    "result": "ok",
                    "bootstrap_port": port,
                    "force_relay": args.force_relay,
                    "transport": transport,
                    "timings": {k: round(v, 3) for k, v in timings.items()},
                },
                indent=2,
            )
        )
        # The three checks above (sync, dims rule, finite rule), as test runners count them.
        print("sync-proof: 3 passed, 0 failed")
        return 0
    finally:
        for agent in agents:
            for sock in (agent.app, agent.admin):
                if sock is not None:
                    try:
                        await sock.close()
                    except Exception:  # noqa: BLE001 - best effort on the way out
                        pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--bin-dir",
        help="dir with holochain and kitsune2-bootstrap-srv (default: $HC_BIN_DIR or scripts/install-holochain.sh)",
    )
    ap.add_argument("--happ", default=str(ROOT / "workdir/zerotrustml.happ"))
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds B may take to see A's entry")
    ap.add_argument("--poll", type=float, default=0.5, help="seconds between B's reads")
    ap.add_argument(
        "--force-relay", action="store_true", help="route peer traffic through the local sbd relay instead of WebRTC"
    )
    ap.add_argument("--keep", action="store_true", help="keep the run directory (logs, databases)")
    args = ap.parse_args()

    bins = find_bin_dir(args.bin_dir)
    for b in ("holochain", "kitsune2-bootstrap-srv"):
        if not (bins / b).exists():
            log(f"missing {bins / b}")
            return 2
    happ = Path(args.happ).resolve()
    if not happ.exists():
        log(f"{happ} missing; building it with scripts/build-happ.sh")
        subprocess.run(
            ["bash", str(ROOT / "scripts/build-happ.sh")], check=True, env={**os.environ, "HC_BIN_DIR": str(bins)}
        )

    run = Path(tempfile.mkdtemp(prefix="ztml-sync-proof-"))
    procs: list[Proc] = []

    async def cancellable() -> int:
        # SIGINT/SIGTERM cancel the proof; the finally below still runs.
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        return await prove(bins, happ, args, run, procs)

    rc = 1
    try:
        rc = asyncio.run(cancellable())
    except (asyncio.CancelledError, KeyboardInterrupt):
        log("interrupted")
        rc = 130
    except Exception as exc:  # noqa: BLE001 - report, clean up, fail
        log(f"FAIL: {type(exc).__name__}: {exc}")
        rc = 1
    finally:
        for p in reversed(procs):
            p.stop()
        if rc == 0 and not args.keep:
            shutil.rmtree(run, ignore_errors=True)
        else:
            log(f"run directory kept: {run}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
