"""Admin and app websocket clients for a Holochain 0.6 conductor.

:class:`AdminClient` speaks the admin API (agents, apps, interfaces,
capabilities, state dumps); :class:`AppClient` the app API of one
installed app: it authenticates with a token, makes signed zome calls
through :class:`Cell`, and delivers signals (local ``emit_signal`` and the
remote signals the zome re-emits) to subscribers.

Zome calls are signed by the client: :meth:`AdminClient.authorize_signing`
grants an assigned capability, for every function of the cell, to a fresh
Ed25519 key held in this process (:class:`SigningCredentials`); each call's
parameters are msgpack-encoded, and the SHA-512 of those bytes is signed.
The conductor checks the signature, the capability and the nonce
(fresh, 32 bytes, expiring after five minutes).

A conductor that restarts closes its sockets. An :class:`AppClient` built
with a ``reconnect`` callback (see :class:`~zerotrustml.holochain.network.LocalNetwork`)
opens a new socket with a new token on the next call, retrying until
``reconnect_timeout``; the signing credentials stay valid, since the grant
is on the agent's source chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import nacl.signing
import websockets
from websockets.typing import Origin

from zerotrustml.holochain.errors import (
    CallRefused,
    ConductorError,
    ConductorTimeout,
    ConductorUnavailable,
    ZomeCallError,
    describe_error,
    rejection_from,
    zome_reason,
)
from zerotrustml.holochain.wire import RawPayload, agent_key, packb, unpackb

__all__ = [
    "AdminClient",
    "AppClient",
    "Cell",
    "SigningCredentials",
    "Signal",
    "DEFAULT_TIMEOUT",
]

#: Seconds a request may take unless the caller says otherwise.
DEFAULT_TIMEOUT = 60.0
#: How long a zome call's nonce stays valid (the conductor refuses expired calls).
CALL_EXPIRY_S = 300

# Conductor error kinds that mean "refused before running the zome".
_REFUSED_KINDS = {
    "unauthorized",
    "zome_call_unauthorized",
    "zome_call_authentication_failed",
    "cell_missing",
    "invalid_signature",
}


@dataclass(frozen=True)
class Signal:
    """A signal from the conductor: an app signal (``kind == "app"``) decoded, or a system signal."""

    kind: str
    cell_id: tuple[bytes, bytes] | None
    zome_name: str | None
    payload: Any


class _NotSent(ConductorUnavailable):
    """The connection was closed before the request left: safe to send again on a new one."""


class _Socket:
    """One websocket to a conductor: requests matched to responses by id, signals to a callback."""

    def __init__(self, ws: Any, url: str, on_signal: Callable[[Signal], None] | None) -> None:
        self.ws = ws
        self.url = url
        self._next = 0
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._on_signal = on_signal
        self.closed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls, url: str, on_signal: Callable[[Signal], None] | None = None, timeout: float = 20.0
    ) -> _Socket:
        try:
            # The conductor refuses upgrades without an Origin header.
            ws = await websockets.connect(url, origin=Origin("http://localhost"), max_size=None, open_timeout=timeout)
        except (TimeoutError, OSError, websockets.InvalidHandshake, websockets.InvalidURI) as e:
            raise ConductorUnavailable(f"conductor at {url}: cannot connect ({e.__class__.__name__}: {e})") from None
        return cls(ws, url, on_signal)

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                if not isinstance(frame, bytes):
                    continue
                try:
                    msg = unpackb(frame)
                except Exception:  # noqa: BLE001 - a frame we cannot read is dropped, the socket goes on
                    continue
                kind = msg.get("type") if isinstance(msg, dict) else None
                if kind == "response":
                    fut = self._waiting.pop(msg.get("id"), None)
                    if fut is not None and not fut.done():
                        data = msg.get("data")
                        try:
                            fut.set_result(unpackb(data) if data is not None else None)
                        except Exception as e:  # noqa: BLE001 - the caller gets the reason, the socket goes on
                            fut.set_exception(ConductorError(f"conductor at {self.url}: unreadable answer ({e})"))
                elif kind == "signal" and self._on_signal is not None and msg.get("data") is not None:
                    try:
                        self._on_signal(_decode_signal(unpackb(msg["data"])))
                    except Exception:  # noqa: BLE001 - one bad signal or subscriber must not stop the replies
                        continue
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(ConductorUnavailable(f"conductor at {self.url}: connection closed"))
            self._waiting.clear()

    async def request(self, kind: str, value: Any = None, timeout: float = DEFAULT_TIMEOUT) -> Any:
        if self.closed.is_set():
            raise _NotSent(f"conductor at {self.url}: connection closed")
        req: dict[str, Any] = {"type": kind}
        if value is not None:
            req["value"] = value
        rid = self._next
        self._next += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        try:
            await self.ws.send(packb({"type": "request", "id": rid, "data": packb(req)}))
        except websockets.ConnectionClosed:
            self._waiting.pop(rid, None)
            raise _NotSent(f"conductor at {self.url}: connection closed") from None
        try:
            resp = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self._waiting.pop(rid, None)
            raise ConductorTimeout(f"conductor at {self.url}: no answer to {kind} within {timeout:g} s") from None
        if isinstance(resp, dict) and resp.get("type") == "error":
            err_kind, text = describe_error(resp.get("value"))
            raise _conductor_error(self.url, kind, err_kind, text)
        return resp

    async def send_raw(self, obj: Any) -> None:
        await self.ws.send(packb(obj))

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader


def _decode_signal(data: Any) -> Signal:
    if isinstance(data, dict) and data.get("type") == "app" and isinstance(data.get("value"), dict):
        value = data["value"]
        raw = value.get("signal")
        payload = unpackb(bytes(raw)) if isinstance(raw, (bytes, bytearray)) else raw
        cell = value.get("cell_id")
        cell_id = (bytes(cell[0]), bytes(cell[1])) if isinstance(cell, (list, tuple)) and len(cell) == 2 else None
        return Signal("app", cell_id, value.get("zome_name"), payload)
    if isinstance(data, dict):
        return Signal(str(data.get("type")), None, None, data.get("value"))
    return Signal("unknown", None, None, data)


def _conductor_error(url: str, request: str, kind: str, text: str) -> ConductorError:
    if kind in _REFUSED_KINDS or "not authorized" in text.lower() or "unauthorized" in text.lower():
        return CallRefused(f"conductor at {url}: {request} refused ({kind}): {text}")
    return ConductorError(f"conductor at {url}: {request} failed ({kind}): {text}")


# --------------------------------------------------------------------------
# admin


class AdminClient:
    """The admin API of one conductor (``ws://127.0.0.1:<admin port>``)."""

    def __init__(self, sock: _Socket) -> None:
        self._sock = sock
        self.url = sock.url

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1", timeout: float = 20.0) -> AdminClient:
        return cls(await _Socket.connect(f"ws://{host}:{port}", timeout=timeout))

    @property
    def closed(self) -> bool:
        return self._sock.closed.is_set()

    async def request(self, kind: str, value: Any = None, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """A raw admin request; returns the response's ``value``."""
        resp = await self._sock.request(kind, value, timeout)
        return resp.get("value") if isinstance(resp, dict) else resp

    async def generate_agent_pub_key(self) -> bytes:
        return bytes(await self.request("generate_agent_pub_key"))

    async def install_app(
        self,
        app_id: str,
        happ_path: str,
        agent: bytes,
        *,
        network_seed: str | None = None,
        role_properties: dict[str, Any] | None = None,
        membrane_proofs: dict[str, bytes] | None = None,
        timeout: float = 300.0,
    ) -> dict[str, Any]:
        """Install a hApp from a path for ``agent``; ``role_properties`` overrides each role's DNA properties,
        ``membrane_proofs`` gives a role's membrane proof (see :mod:`zerotrustml.holochain.admission`)."""
        payload: dict[str, Any] = {
            "source": {"type": "path", "value": happ_path},
            "agent_key": agent,
            "installed_app_id": app_id,
            "network_seed": network_seed,
        }
        roles = sorted(set(role_properties or {}) | set(membrane_proofs or {}))
        if roles:
            settings: dict[str, Any] = {}
            for role in roles:
                value: dict[str, Any] = {}
                if role_properties and role in role_properties:
                    value["modifiers"] = {"properties": role_properties[role]}
                if membrane_proofs and role in membrane_proofs:
                    value["membrane_proof"] = bytes(membrane_proofs[role])
                settings[role] = {"type": "provisioned", "value": value}
            payload["roles_settings"] = settings
        info: dict[str, Any] = await self.request("install_app", payload, timeout)
        return info

    async def enable_app(self, app_id: str) -> None:
        await self.request("enable_app", {"installed_app_id": app_id}, 120.0)

    async def list_apps(self) -> list[dict[str, Any]]:
        apps: list[dict[str, Any]] = await self.request("list_apps", {"status_filter": None})
        return apps

    async def attach_app_interface(self, port: int | None = None) -> int:
        """Open an app interface (any free port by default) and return its port."""
        value = await self.request(
            "attach_app_interface",
            {"port": port, "danger_bind_addr": None, "allowed_origins": "*", "installed_app_id": None},
        )
        return int(value["port"])

    async def list_app_interfaces(self) -> list[int]:
        value = await self.request("list_app_interfaces")
        return [int(i["port"]) for i in value]

    async def issue_app_token(self, app_id: str, expiry_seconds: int = 60, single_use: bool = True) -> Any:
        value = await self.request(
            "issue_app_authentication_token",
            {"installed_app_id": app_id, "expiry_seconds": expiry_seconds, "single_use": single_use},
        )
        return value["token"]

    async def authorize_signing(
        self, cell_id: Sequence[bytes], tag: str = "zerotrustml", *, retry_for: float = 60.0
    ) -> SigningCredentials:
        """Grant every function of ``cell_id`` to a new signing key of this process, and return it.

        The grant is a commit to the agent's source chain. Right after an install the conductor may answer that
        the commit "could not be completed but may be retried" (a dependency, such as the chain's own genesis,
        not yet in its DHT store): nothing was committed, so the grant is retried with backoff for up to
        ``retry_for`` seconds. Any other error is raised at once.
        """
        creds = SigningCredentials.generate()
        grant = {
            "cell_id": list(cell_id),
            "cap_grant": {
                "tag": tag,
                "access": {
                    "type": "assigned",
                    "value": {"secret": creds.cap_secret, "assignees": [creds.signer_key]},
                },
                "functions": {"type": "all"},
            },
        }
        deadline = time.monotonic() + retry_for
        delay = 0.1
        while True:
            try:
                await self.request("grant_zome_call_capability", grant)
                break
            except CallRefused:
                raise
            except ConductorError as e:
                if "may be retried" not in str(e) or time.monotonic() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(2 * delay, 2.0)
        return creds

    async def dump_full_state(self, cell_id: Sequence[bytes]) -> dict[str, Any]:
        state: dict[str, Any] = await self.request(
            "dump_full_state", {"cell_id": list(cell_id), "dht_ops_cursor": None}
        )
        return state

    async def close(self) -> None:
        await self._sock.close()


# --------------------------------------------------------------------------
# app


@dataclass(frozen=True)
class SigningCredentials:
    """What a client needs to sign zome calls: a capability secret and the key it is assigned to."""

    signing_key: nacl.signing.SigningKey
    cap_secret: bytes

    @classmethod
    def generate(cls) -> SigningCredentials:
        return cls(nacl.signing.SigningKey.generate(), secrets.token_bytes(64))

    @property
    def signer_key(self) -> bytes:
        """The key as an AgentPubKey (the zome call's ``provenance``)."""
        return agent_key(bytes(self.signing_key.verify_key))


#: Returns a fresh ``(app port, token)`` after a conductor restart.
Reconnect = Callable[[], Awaitable[tuple[int, Any]]]


class AppClient:
    """One app websocket, authenticated for one installed app.

    ``subscribe`` registers a callback for every signal this socket
    receives (local signals of the app's cells and the remote signals
    they re-emit).
    """

    def __init__(
        self,
        port: int,
        token: Any,
        *,
        host: str = "127.0.0.1",
        reconnect: Reconnect | None = None,
        reconnect_timeout: float = 120.0,
    ) -> None:
        self.url = f"ws://{host}:{port}"
        self._host = host
        self._token = token
        self._reconnect = reconnect
        self._reconnect_timeout = reconnect_timeout
        self._sock: _Socket | None = None
        self._lock = asyncio.Lock()
        self._subscribers: list[Callable[[Signal], None]] = []
        self.reconnects = 0

    @classmethod
    async def connect(cls, port: int, token: Any, **kw: Any) -> AppClient:
        client = cls(port, token, **kw)
        await client._open()
        return client

    def subscribe(self, callback: Callable[[Signal], None]) -> Callable[[], None]:
        """Call ``callback`` with every signal; returns a function that unsubscribes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def _dispatch(self, signal: Signal) -> None:
        for cb in list(self._subscribers):
            cb(signal)

    async def _open(self) -> None:
        sock = await _Socket.connect(self.url, self._dispatch)
        try:
            await sock.send_raw({"type": "authenticate", "data": packb({"token": self._token})})
        except websockets.ConnectionClosed:
            await sock.close()
            raise ConductorUnavailable(f"conductor at {self.url}: closed the connection while authenticating") from None
        # No answer comes; a bad token closes the socket right away.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(sock.closed.wait(), 0.05)
        if sock.closed.is_set():
            raise CallRefused(f"conductor at {self.url}: the app authentication token was refused")
        self._sock = sock

    async def _ensure_open(self) -> _Socket:
        async with self._lock:
            if self._sock is not None and not self._sock.closed.is_set():
                return self._sock
            if self._sock is not None:
                await self._sock.close()
                self._sock = None
            if self._reconnect is None:
                raise ConductorUnavailable(f"conductor at {self.url}: connection closed")
            deadline = time.monotonic() + self._reconnect_timeout
            delay = 0.2
            last: Exception | None = None
            while time.monotonic() < deadline:
                try:
                    port, token = await self._reconnect()
                    self.url, self._token = f"ws://{self._host}:{port}", token
                    await self._open()
                    self.reconnects += 1
                    assert self._sock is not None
                    return self._sock
                except ConductorError as e:
                    last = e
                    await asyncio.sleep(delay)
                    delay = min(2 * delay, 2.0)
            raise ConductorUnavailable(
                f"conductor at {self.url}: not back within {self._reconnect_timeout:g} s ({last})"
            ) from None

    async def request(self, kind: str, value: Any = None, timeout: float = DEFAULT_TIMEOUT) -> Any:
        sock = await self._ensure_open()
        try:
            return await sock.request(kind, value, timeout)
        except _NotSent:
            # The socket died before the request left (a conductor restart): the request was never seen, so it
            # is safe to send it once more on a new connection.
            sock = await self._ensure_open()
            return await sock.request(kind, value, timeout)

    async def app_info(self) -> dict[str, Any]:
        resp = await self.request("app_info")
        info: dict[str, Any] = resp["value"] if isinstance(resp, dict) else resp
        return info

    async def close(self) -> None:
        self._reconnect = None
        if self._sock is not None:
            await self._sock.close()


class Cell:
    """Signed zome calls on one cell through an :class:`AppClient`.

    ``call`` returns the zome function's decoded result. Errors: a broken
    submission rule raises ``SubmissionRejected`` (as the embedded store
    does), any other zome error :class:`ZomeCallError`, a refused call
    :class:`CallRefused`, an unreachable conductor :class:`ConductorUnavailable`.
    A call whose connection drops mid-way is not retried here (it may have
    committed); callers that need idempotence check and retry themselves.
    """

    def __init__(
        self, app: AppClient, cell_id: Sequence[bytes], credentials: SigningCredentials, zome: str = "gradients"
    ) -> None:
        self.app = app
        self.cell_id = [bytes(cell_id[0]), bytes(cell_id[1])]
        self.credentials = credentials
        self.zome = zome

    @property
    def agent(self) -> bytes:
        """The cell's agent (AgentPubKey, 39 bytes)."""
        return self.cell_id[1]

    def signed_call(self, fn_name: str, payload: Any, *, provenance: bytes | None = None) -> dict[str, bytes]:
        """The ``call_zome`` argument: the msgpack of the call's parameters and its signature.

        ``payload`` is msgpack-encoded here (floats as float64, which the zome narrows into its ``f32``
        fields exactly for float32 values), unless it is already a :class:`~zerotrustml.holochain.wire.RawPayload`.
        """
        params = {
            "provenance": provenance if provenance is not None else self.credentials.signer_key,
            "cell_id": self.cell_id,
            "zome_name": self.zome,
            "fn_name": fn_name,
            "cap_secret": self.credentials.cap_secret,
            "payload": payload.data if isinstance(payload, RawPayload) else packb(payload),
            "nonce": secrets.token_bytes(32),
            "expires_at": int((time.time() + CALL_EXPIRY_S) * 1_000_000),
        }
        data = packb(params)
        signature = self.credentials.signing_key.sign(hashlib.sha512(data).digest()).signature
        return {"bytes": data, "signature": signature}

    async def call(self, fn_name: str, payload: Any = None, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Sign and send one call. A conductor that is still starting its cells (just restarted) answers
        ``CellDisabled`` without running anything; such a call is signed again and retried within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await self.send(self.signed_call(fn_name, payload), fn_name, timeout)
            except ZomeCallError as e:
                if "CellDisabled" not in e.reason or time.monotonic() + 0.5 > deadline:
                    raise
            await asyncio.sleep(0.5)
            timeout = max(0.5, deadline - time.monotonic())

    async def send(self, signed: dict[str, bytes], fn_name: str, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Send an already signed call (tests use this to send tampered ones)."""
        try:
            resp = await self.app.request("call_zome", signed, timeout)
        except CallRefused:
            raise
        except ConductorUnavailable:
            raise
        except ConductorTimeout as e:
            raise ConductorTimeout(f"{e} (zome function {fn_name})") from None
        except ConductorError as e:
            reason = zome_reason(str(e))
            rejected = rejection_from(reason)
            if rejected is not None:
                raise rejected from None
            raise ZomeCallError(f"{fn_name}: {reason}", fn_name=fn_name, reason=reason) from None
        if not isinstance(resp, dict) or resp.get("type") != "zome_called":
            raise ConductorError(f"conductor at {self.app.url}: {fn_name}: unexpected response {resp!r:.200}")
        return unpackb(resp["value"])
