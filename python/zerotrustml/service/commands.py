"""``zerotrustml serve``: the HTTP service from a shell (registered on the main CLI)."""

from __future__ import annotations

import json
import logging
import secrets
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import numpy as np

from zerotrustml.defence import defence_names
from zerotrustml.exceptions import ParameterError
from zerotrustml.fl.simulation import ASSUMED_F_HELP
from zerotrustml.service import protocol
from zerotrustml.service.rounds import Federation, ServiceConfig
from zerotrustml.validation import ModelSpec

__all__ = ["cluster", "federation_from_options", "key_value", "node", "serve"]

log = logging.getLogger("zerotrustml.service")


def key_value(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, float | str]:
    """Parse repeated ``KEY=VALUE`` options (``--attack-param``): numbers as floats, anything else as text."""
    out: dict[str, float | str] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key or not raw:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", ctx=ctx, param=param)
        try:
            out[key] = float(raw)
        except ValueError:
            out[key] = raw  # a named choice, e.g. perturbation=sign
    return out


def _usage(e: ParameterError) -> click.UsageError:
    """A ParameterError (``field: reason``) in flag words (``--field: reason``)."""
    option, _, reason = str(e).partition(": ")
    flag = option if option.startswith("--") else "--" + option.replace("_", "-")
    return click.UsageError(f"{flag}: {reason}")


def federation_from_options(
    data_dir: Path,
    *,
    dataset: str | None,
    model: str | None,
    dims: int | None,
    model_id: str | None,
    max_norm: float,
    config: ServiceConfig,
) -> Federation:
    """A federation over the embedded store in ``data_dir``: with ``dataset`` and ``model`` the service
    starts from the model's seeded initial parameters and scores every round on the dataset's test split;
    with ``dims`` it aggregates vectors of that size from zero."""
    from zerotrustml.backends import EmbeddedStore

    max_round = None if config.rounds is None else config.rounds - 1
    if dataset is not None or model is not None:
        if dims is not None:
            raise ParameterError("--dims: give either --dims or --dataset and --model, not both")
        from zerotrustml.fl import data, models

        ds = data.load_dataset(dataset or "mnist", seed=config.seed)
        net = models.make_model(model or "softmax", ds.n_features, ds.n_classes, image_shape=ds.image_shape)
        spec = ModelSpec(
            model_id or f"{dataset or 'mnist'}-{model or 'softmax'}",
            dims=net.dims,
            max_norm=max_norm,
            max_round=max_round,
        )

        def evaluate(theta: np.ndarray) -> Mapping[str, float]:
            return {
                "accuracy": net.accuracy(theta, ds.x_test, ds.y_test),
                "loss": net.loss(theta, ds.x_test, ds.y_test),
            }

        return Federation(EmbeddedStore(data_dir), spec, config, init=net.init(config.seed), evaluate=evaluate)
    if dims is None:
        raise ParameterError("--dims: give the model's size, or --dataset and --model")
    if dims < 1:
        raise ParameterError(f"--dims: must be at least 1 (got {dims})")
    spec = ModelSpec(model_id or "model", dims=dims, max_norm=max_norm, max_round=max_round)
    return Federation(EmbeddedStore(data_dir), spec, config)


def read_only_federation(data_dir: Path, config: ServiceConfig) -> Federation:
    """A federation over a finished run's store in ``data_dir``, opened to be looked at (its spec is the store's)."""
    import asyncio

    from zerotrustml.backends import EmbeddedStore

    if not (data_dir / "zerotrustml.sqlite").exists():
        raise ParameterError(f"--data-dir: {data_dir} holds no store (zerotrustml.sqlite) to show")

    async def spec() -> ModelSpec | None:
        async with EmbeddedStore(data_dir) as store:
            return await store.get_model_spec()

    held = asyncio.run(spec())
    if held is None:
        raise ParameterError(f"--data-dir: the store in {data_dir} has no model spec yet")
    return Federation(EmbeddedStore(data_dir), held, config, read_only=True)


def openapi_document() -> dict[str, Any]:
    """The service's OpenAPI document (the same for every federation: routes do not depend on the model)."""
    import tempfile

    from zerotrustml.service.app import create_app

    with tempfile.TemporaryDirectory() as d:
        fed = federation_from_options(
            Path(d), dataset=None, model=None, dims=1, model_id=None, max_norm=1.0, config=ServiceConfig()
        )
        return create_app(fed).openapi()


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/service"),
    show_default=True,
    help="The store (embedded SQLite); a restarted service goes on from what it holds.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, help="Port to listen on (0: any free port).")
@click.option("--dataset", default=None, help="Score every round on this dataset's test split (with --model).")
@click.option("--model", default=None, help="The model the nodes train (with --dataset); sets the size.")
@click.option("--dims", type=int, default=None, help="The model's size, without --dataset/--model.")
@click.option("--model-id", default=None, help="The model id submissions carry [default: dataset-model].")
@click.option("--max-norm", default=1e6, show_default=True, help="Norm bound every submission must meet.")
@click.option("--aggregator", type=click.Choice(defence_names()), default="pipeline", show_default=True)
@click.option(
    "--assumed-f",
    type=int,
    default=None,
    help="f the aggregator assumes [default: the pipeline's ASSUMED_BYZANTINE_FRACTION of the round; 0 for a plain "
    "rule].",
)
@click.option("--rounds", type=int, default=None, help="Stop after this many rounds [default: no end].")
@click.option("--round-deadline", default=30.0, show_default=True, help="Seconds a round stays open for late nodes.")
@click.option(
    "--min-submissions", default=1, show_default=True, help="Submissions a round needs to close at its deadline."
)
@click.option("--min-nodes", default=1, show_default=True, help="Nodes that must register before any round closes.")
@click.option("--server-lr", default=0.1, show_default=True, help="Server learning rate: theta -= lr * aggregate.")
@click.option("--seed", default=0, show_default=True, help="Seed of the initial model and the committee lottery.")
@click.option(
    "--admission-key",
    default=None,
    help="Hex Ed25519 public key whose signature admits nodes [default: an open federation, logged as such].",
)
@click.option(
    "--defence-config", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Pipeline settings file."
)
@click.option(
    "--operator-token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where the operator's bearer token (closing rounds) is written [default: DATA_DIR/operator-token].",
)
@click.option(
    "--evaluation",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A JSON-lines file of per-round scores the dashboard shows beside the rounds (cluster writes one).",
)
@click.option(
    "--read-only",
    is_flag=True,
    help="Show a finished run's store (of run or of a cluster's service) in the dashboard; take no writes.",
)
@click.option("--print-openapi", is_flag=True, help="Print the OpenAPI document and exit.")
def serve(
    data_dir: Path,
    host: str,
    port: int,
    dataset: str | None,
    model: str | None,
    dims: int | None,
    model_id: str | None,
    max_norm: float,
    aggregator: str,
    assumed_f: int | None,
    rounds: int | None,
    round_deadline: float,
    min_submissions: int,
    min_nodes: int,
    server_lr: float,
    seed: int,
    admission_key: str | None,
    defence_config: Path | None,
    operator_token_file: Path | None,
    evaluation: Path | None,
    read_only: bool,
    print_openapi: bool,
) -> None:
    """Serve the federation over HTTP: nodes register, submit signed updates, and read rounds and models."""
    try:
        import uvicorn

        from zerotrustml.service.app import create_app
    except ImportError as e:
        raise click.ClickException(f"serve needs the service extra: pip install 'zerotrustml[service]' ({e})") from e
    if print_openapi:
        click.echo(json.dumps(openapi_document(), indent=2, sort_keys=True))
        return
    key = None
    if admission_key is not None:
        try:
            key = bytes.fromhex(admission_key)
        except ValueError:
            raise click.BadParameter("must be 64 hex digits", param_hint="--admission-key") from None
    try:
        config = ServiceConfig(
            aggregator=aggregator,
            assumed_f=assumed_f,
            seed=seed,
            server_lr=server_lr,
            rounds=rounds,
            round_deadline=round_deadline,
            min_submissions=min_submissions,
            min_nodes=min_nodes,
            admission_key=key,
            defence_config=None if defence_config is None else str(defence_config),
        )
        if read_only:
            fed = read_only_federation(data_dir, config)
        else:
            fed = federation_from_options(
                data_dir, dataset=dataset, model=model, dims=dims, model_id=model_id, max_norm=max_norm, config=config
            )
    except ParameterError as e:
        raise _usage(e) from None
    # The socket is bound here, so `--port 0` (any free port) can say which port it got.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise click.UsageError(f"--port: cannot listen on {host}:{port}: {e.strerror}") from None
    port = int(sock.getsockname()[1])
    token: str | None = None
    if read_only:
        log.info("showing %s read-only on http://%s:%d", data_dir, host, port)
        if evaluation is None and (data_dir / "run.jsonl").exists():
            evaluation = data_dir / "run.jsonl"  # a simulator's run directory scores its own rounds
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        token_path = operator_token_file or data_dir / "operator-token"
        token = secrets.token_hex(16)
        protocol.write_secret(token_path, token)
        if key is None:
            log.warning("open federation: any key may register (pass --admission-key to admit nodes by signature)")
        log.info("serving %s on http://%s:%d (operator token in %s)", data_dir, host, port, token_path)
    app = create_app(fed, operator_token=token, evaluation=evaluation)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


_TRAINING_OPTIONS = (
    click.option("--dataset", default="mnist", show_default=True),
    click.option("--model", default="softmax", show_default=True),
    click.option("--distribution", default="iid", show_default=True),
    click.option("--alpha", default=0.5, show_default=True, help="Dirichlet concentration (label skew)."),
    click.option("--local-steps", default=5, show_default=True),
    click.option("--batch-size", default=32, show_default=True, help="Local minibatch size (0 = full batch)."),
    click.option("--lr", default=0.1, show_default=True, help="Local learning rate."),
    click.option("--seed", default=0, show_default=True, help="The federation's seed (data split, training draws)."),
)


def _training_options(command: Any) -> Any:
    """How a node trains: the options ``node`` and ``cluster`` share (``run``'s names and defaults)."""
    for option in reversed(_TRAINING_OPTIONS):
        command = option(command)
    return command


@click.command()
@click.option("--url", required=True, help="The service, e.g. http://127.0.0.1:8000.")
@click.option("--node-id", required=True, help="This node's id in the federation.")
@click.option("--index", type=int, required=True, help="This node's share of the data: 0 .. --nodes - 1.")
@click.option("--nodes", type=int, required=True, help="How many shares the data is split into.")
@_training_options
@click.option("--holdout-fraction", default=0.1, show_default=True, help="Share of the node's data kept for proofs.")
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The node's Ed25519 key (hex); created if missing [default: ~/.zerotrustml/NODE_ID.key].",
)
@click.option("--admission", default=None, help="The admission key's signature for this node (closed federations).")
@click.option("--attack", default=None, help="Make this node Byzantine with this attack (tests and demos).")
@click.option("--attack-param", multiple=True, callback=key_value, help="KEY=VALUE for the attack (repeatable).")
def node(
    url: str,
    node_id: str,
    index: int,
    nodes: int,
    dataset: str,
    model: str,
    distribution: str,
    alpha: float,
    local_steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    holdout_fraction: float,
    key_file: Path | None,
    admission: str | None,
    attack: str | None,
    attack_param: dict[str, float | str],
) -> None:
    """Run one training node against the service until the run is finished."""
    from zerotrustml.service.node import NodeSettings, TrainingNode, load_or_create_key

    try:
        settings = NodeSettings(
            node_id=node_id,
            index=index,
            nodes=nodes,
            dataset=dataset,
            model=model,
            distribution=distribution,
            alpha=alpha,
            local_steps=local_steps,
            batch_size=batch_size or None,
            lr=lr,
            seed=seed,
            holdout_fraction=holdout_fraction,
            attack=attack,
            attack_params=attack_param,
        )
        key = load_or_create_key(key_file or Path.home() / ".zerotrustml" / f"{node_id}.key")
        done = TrainingNode(url, settings, key, admission=admission).run()
    except ParameterError as e:
        raise _usage(e) from None
    log.info("%s: finished after submitting %d rounds", node_id, len(done))


@click.command()
@click.option("--nodes", default=10, show_default=True, help="Number of node processes.")
@click.option("--rounds", default=100, show_default=True, help="Training rounds.")
@click.option("--byzantine-fraction", default=0.3, show_default=True, help="Share of Byzantine nodes.")
@click.option("--attack", default="sign_flip", show_default=True, help="What the Byzantine nodes send.")
@click.option("--attack-param", multiple=True, callback=key_value, help="KEY=VALUE for the attack (repeatable).")
@click.option("--aggregator", type=click.Choice(defence_names()), default="pipeline", show_default=True)
@click.option("--assumed-f", type=int, default=None, help=ASSUMED_F_HELP)
@_training_options
@click.option("--server-lr", type=float, default=None, help="Server learning rate [default: --lr].")
@click.option("--round-deadline", default=10.0, show_default=True, help="Seconds a round waits for silent nodes.")
@click.option("--port", default=0, show_default=True, help="The service's port (0: a free one).")
@click.option(
    "--crash",
    multiple=True,
    help="NODE_ID@ROUND: kill that node's process when that round opens (repeatable; shows rounds go on).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the service's store, the keys, the logs and the round lines go [default: runs/cluster-<params>].",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write the summary JSON here."
)
@click.option("--quiet", is_flag=True, help="No progress bar; print the summary path only.")
def cluster(
    nodes: int,
    rounds: int,
    byzantine_fraction: float,
    attack: str,
    attack_param: dict[str, float | str],
    aggregator: str,
    assumed_f: int | None,
    dataset: str,
    distribution: str,
    alpha: float,
    model: str,
    local_steps: int,
    batch_size: int,
    lr: float,
    server_lr: float | None,
    seed: int,
    round_deadline: float,
    port: int,
    crash: tuple[str, ...],
    data_dir: Path | None,
    out: Path | None,
    quiet: bool,
) -> None:
    """Start the service and one process per node on loopback, run the rounds, and score them."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from zerotrustml.fl.simulation import RunConfig
    from zerotrustml.service.cluster import Cluster, ClusterError

    crashes: dict[str, int] = {}
    for item in crash:
        nid, sep, at = item.partition("@")
        if not sep or not at.isdigit():
            raise click.BadParameter(f"expected NODE_ID@ROUND, got {item!r}", param_hint="--crash")
        crashes[nid] = int(at)
    try:
        config = RunConfig(
            nodes=nodes,
            rounds=rounds,
            byzantine_fraction=byzantine_fraction,
            attack=attack,
            attack_params=attack_param,
            aggregator=aggregator,
            assumed_f=assumed_f,
            dataset=dataset,
            distribution=distribution,
            alpha=alpha,
            model=model,
            local_steps=local_steps,
            batch_size=batch_size or None,
            lr=lr,
            server_lr=server_lr,
            seed=seed,
            omniscient=False,
            colluding=False,
        )
        where = data_dir or Path("runs") / f"cluster-{nodes}n-{rounds}r-{attack}-{aggregator}-s{seed}"
        if (where / "service").exists():
            raise ParameterError(f"--data-dir: {where} holds a cluster run already; pass another --data-dir")
        run = Cluster(config, where, round_deadline=round_deadline, port=port, crash=crashes)
    except ParameterError as e:
        raise _usage(e) from None
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
    progress = Progress(
        TextColumn("[bold]cluster"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        disable=quiet,
    )

    def on_round(row: dict[str, Any]) -> None:
        acc = "–" if row["accuracy"] is None else f"{row['accuracy']:.3f}"
        status = f"acc {acc} (honest-only {row['honest_only_accuracy']:.3f}) flagged {row['tp'] + row['fp']}"
        progress.update(task, advance=1, status=status + (f" missing {len(row['missing'])}" if row["missing"] else ""))

    run.on_round = on_round
    with progress:
        task = progress.add_task("rounds", total=rounds, status="starting the service and the nodes")
        try:
            summary = run.run()
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None
        except ClusterError as e:
            raise click.ClickException(str(e)) from None
    path = where / "run.json"
    if out is not None:
        out.write_text(path.read_text())
    if quiet:
        click.echo(str(out or path))
        return
    click.echo(
        f"final accuracy {summary['final_accuracy']:.4f} (honest-only {summary['honest_only_accuracy']:.4f}), "
        f"TPR {summary['tpr']:.2f}, FPR {summary['fpr']:.2f}, "
        f"{summary['rounds']} rounds in {summary['elapsed_s']:.0f} s"
    )
    click.echo(f"summary: {out or path}")
