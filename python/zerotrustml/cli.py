"""The ``zerotrustml`` command line."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shlex
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, track
from rich.table import Table

from zerotrustml import __version__, aggregators, defence, plugins
from zerotrustml import plot as plot_mod
from zerotrustml.backends import BACKENDS, StoreError
from zerotrustml.exceptions import ParameterError, ValidationError
from zerotrustml.fl import attacks, data, models, partition, simulation
from zerotrustml.fl.simulation import ASSUMED_F_HELP, RunConfig
from zerotrustml.service.commands import cluster, key_value, node, serve

# Installed packages' plug-ins join the choices below; a broken one is reported by every command, not as a traceback.
try:
    plugins.load_entry_points()
    _PLUGIN_ERROR: str | None = None
except ParameterError as _e:
    _PLUGIN_ERROR = str(_e)
_DATASET_CHOICES = tuple(dict.fromkeys(data.DATASETS + data.PATH_DATASETS + plugins.names("dataset")))

DEMO_ATTACKS = ("sign_flip", "gaussian", "alie")


def _poison(honest: np.ndarray, n_byz: int, attack: str, rng: np.random.Generator) -> np.ndarray:
    """Byzantine rows for the demo (the simulator's full attack set is issue 3)."""
    mu, sigma = honest.mean(axis=0), honest.std(axis=0)
    d = honest.shape[1]
    if attack == "sign_flip":
        bad = np.tile(-4.0 * mu, (n_byz, 1))
    elif attack == "gaussian":
        bad = rng.normal(0.0, 20.0 * float(sigma.mean()), size=(n_byz, d))
    else:  # ALIE, Baruch et al. 2019: z_max from the paper's formula.
        from statistics import NormalDist

        n = honest.shape[0] + n_byz
        s = n // 2 + 1 - n_byz
        z = NormalDist().inv_cdf((n - s) / n)
        bad = np.tile(mu - z * sigma, (n_byz, 1))
    return bad.astype(np.float32)


def _clipping(x: np.ndarray) -> aggregators.AggregationResult:
    # Centre at the coordinate median, radius the median distance to it: a
    # stand-in for the previous round's aggregate, which a one-round demo lacks.
    center = aggregators.median(x).vector
    tau = float(np.median(np.linalg.norm(x - center, axis=1)))
    return aggregators.centered_clipping(x, tau=tau, iters=3, center=center)


LOG_LEVELS = ("debug", "info", "warning", "error")


def _configure_logging(level: int) -> logging.Handler:
    """One handler on the package's logger, on stderr: rich on a terminal, plain whole lines when piped."""
    logger = logging.getLogger("zerotrustml")
    for old in list(logger.handlers):
        if old.get_name() == "zerotrustml-cli":
            logger.removeHandler(old)
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(console=Console(stderr=True), show_path=False, markup=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.set_name("zerotrustml-cli")
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler


@click.group()
@click.version_option(__version__)
@click.option("-v", "--verbose", count=True, help="More log lines (-v: debug).")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS),
    default=None,
    help="Log level of the package's log lines on stderr [default: info; warning with run --quiet].",
)
@click.pass_context
def main(ctx: click.Context, verbose: int, log_level: str | None) -> None:
    """ZeroTrustML: Byzantine-resilient federated learning."""
    if _PLUGIN_ERROR is not None:
        raise click.ClickException(_PLUGIN_ERROR)
    chosen = log_level or ("debug" if verbose else None)
    ctx.obj = {"log_level": chosen}
    logger = logging.getLogger("zerotrustml")
    level_before = logger.level
    handler = _configure_logging(getattr(logging, (chosen or "info").upper()))

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level_before)

    ctx.call_on_close(restore)


@main.command()
@click.option("--nodes", default=20, show_default=True, help="Number of updates per round.")
@click.option("--byzantine-fraction", default=0.3, show_default=True, help="Share of Byzantine updates.")
@click.option("--dim", default=100_000, show_default=True, help="Parameters per update.")
@click.option("--attack", type=click.Choice(DEMO_ATTACKS), default="sign_flip", show_default=True)
@click.option("--seed", default=0, show_default=True)
def demo(nodes: int, byzantine_fraction: float, dim: int, attack: str, seed: int) -> None:
    """Aggregate one poisoned round with every rule and compare with the honest mean."""
    if nodes < 1:
        raise click.BadParameter("must be at least 1", param_hint="--nodes")
    if not 0.0 <= byzantine_fraction < 1.0:
        raise click.BadParameter("must be in [0, 1)", param_hint="--byzantine-fraction")
    if dim < 1:
        raise click.BadParameter("must be at least 1", param_hint="--dim")
    rng = np.random.default_rng(seed)
    f = int(round(nodes * byzantine_fraction))
    true_grad = rng.normal(0.0, 1.0, dim).astype(np.float32)
    honest = (true_grad + rng.normal(0.0, 1.0, (nodes - f, dim))).astype(np.float32)
    updates = np.concatenate([honest, _poison(honest, f, attack, rng)]) if f else honest
    reference = honest.mean(axis=0)
    byz = set(range(nodes - f, nodes))

    rules: list[tuple[str, Any]] = [
        ("mean", lambda x: aggregators.mean(x)),
        ("krum", lambda x: aggregators.krum(x, f)),
        ("multi_krum", lambda x: aggregators.multi_krum(x, f)),
        ("median", lambda x: aggregators.median(x)),
        ("trimmed_mean", lambda x: aggregators.trimmed_mean(x, f)),
        ("bulyan", lambda x: aggregators.bulyan(x, f)),
        ("geometric_median", lambda x: aggregators.geometric_median(x)),
        ("centered_clipping", _clipping),
    ]
    console = Console()
    console.print(
        f"[bold]ZeroTrustML demo[/]: {nodes} updates of {dim:,} float32, {f} Byzantine ({attack}), "
        f"kernels: {aggregators.simd_path()}"
    )
    table = Table("rule", "distance to honest mean", "Byzantine selected", "time ms")
    for name, rule in track(rules, description="aggregating", console=console, transient=True):
        try:
            t0 = time.perf_counter()
            res = rule(updates)
            ms = (time.perf_counter() - t0) * 1e3
        except ValueError as e:  # a precondition this configuration breaks
            table.add_row(name, f"[yellow]n/a: {str(e).split(' (')[0]}[/]", "", "")
            continue
        err = float(np.linalg.norm(res.vector - reference) / np.linalg.norm(reference))
        picked = f"{len(byz.intersection(res.selected))}/{len(res.selected)}" if res.selected else "-"
        colour = "green" if err < 0.1 else "red"
        table.add_row(name, f"[{colour}]{err:.4f}[/] (relative)", picked, f"{ms:.1f}")
    console.print(table)


def _default_data_dir(config: RunConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{config.dataset}-{config.attack}-{config.aggregator}-s{config.seed}"


def _resume_command(data_dir: Path) -> str:
    """This invocation's command line with ``--data-dir`` pointing at ``data_dir`` (the same run resumes)."""
    args, rest = [], sys.argv[1:]
    while rest:
        arg = rest.pop(0)
        if arg == "--data-dir":
            if rest:
                rest.pop(0)
        elif not arg.startswith("--data-dir="):
            args.append(arg)
    return shlex.join(["zerotrustml", *args, "--data-dir", str(data_dir)])


@main.command()
@click.option("--nodes", default=20, show_default=True, help="Number of nodes.")
@click.option("--rounds", default=30, show_default=True, help="Training rounds.")
@click.option("--byzantine-fraction", default=0.3, show_default=True, help="Share of Byzantine nodes.")
@click.option("--attack", type=click.Choice(attacks.attack_names()), default="sign_flip", show_default=True)
@click.option(
    "--attack-param",
    "attack_params",
    multiple=True,
    callback=key_value,
    metavar="KEY=VALUE",
    help="Attack parameter, e.g. epsilon=100 for ipm (repeatable).",
)
@click.option("--aggregator", type=click.Choice(defence.defence_names()), default="pipeline", show_default=True)
@click.option("--assumed-f", type=int, default=None, help=ASSUMED_F_HELP)
@click.option(
    "--dataset",
    type=click.Choice(_DATASET_CHOICES),
    default="mnist",
    show_default=True,
)
@click.option(
    "--dataset-path",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Directory of real files (MNIST/EMNIST idx, CIFAR-10 python batches).",
)
@click.option("--distribution", type=click.Choice(partition.PARTITIONS), default="iid", show_default=True)
@click.option("--alpha", default=0.5, show_default=True, help="Dirichlet concentration (label skew).")
@click.option(
    "--model",
    type=click.Choice(models.MODELS + models.TORCH_MODELS + plugins.names("model")),
    default="softmax",
    show_default=True,
    help="numpy models; torch_mlp and torch_cnn with the torch extra installed.",
)
@click.option(
    "--local-steps", default=5, show_default=True, help="Local SGD steps per round (1 + full batch = FedSGD)."
)
@click.option("--batch-size", default=32, show_default=True, help="Local minibatch size (0 = full batch).")
@click.option("--lr", default=0.1, show_default=True, help="Local learning rate.")
@click.option("--server-lr", type=float, default=None, help="Server learning rate [default: --lr, i.e. FedAvg].")
@click.option("--momentum", default=0.0, show_default=True, help="Server momentum.")
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--omniscient/--no-omniscient",
    default=True,
    show_default=True,
    help="Attackers see the honest updates of the round.",
)
@click.option("--colluding/--no-colluding", default=True, show_default=True, help="Attackers coordinate.")
@click.option(
    "--personal-view",
    is_flag=True,
    help="Every honest agent also keeps its own model, stepped with the updates its own evidence and the agents "
    "it trusts vouch for; the summary reports their accuracy (mean, worst, best).",
)
@click.option("--max-norm", default=1e6, show_default=True, help="Norm bound every submission must meet.")
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="embedded",
    show_default=True,
    help="embedded: SQLite; holochain: every node an agent on real conductors (a local network on loopback); "
    "mock: the same through the in-process mock conductor.",
)
@click.option(
    "--conductors",
    type=click.IntRange(min=1),
    default=None,
    help="holochain: conductor processes to spread the agents over [default: one per 5 agents].",
)
@click.option(
    "--swap-at-round",
    type=click.IntRange(min=0),
    default=None,
    help="Start on the embedded store and move, live, to --swap-to at this round (writers keep submitting).",
)
@click.option(
    "--swap-to",
    type=click.Choice(["holochain", "mock"]),
    default="holochain",
    show_default=True,
    help="Where --swap-at-round moves the run.",
)
@click.option(
    "--round-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=120.0,
    show_default=True,
    help="holochain/mock: seconds an agent waits for a round's submissions and votes to reach it.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Store directory; a directory holding the same run resumes it [default: runs/<time>-...].",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Summary JSON path (per-round JSON lines beside it) [default: <data-dir>/run.json].",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a PNG: accuracy against honest-only averaging, TPR/FPR, and the backdoor success rate "
    "when there is one.",
)
@click.option("--quiet", is_flag=True, help="No progress bar or table; print the summary path only.")
@click.option(
    "--force",
    is_flag=True,
    help="Run even when the Byzantine nodes are a majority (no defence here can hold then).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    is_eager=True,
    expose_value=True,
    callback=lambda ctx, param, value: _load_run_file(ctx, value),
    help="A TOML run file whose keys are these options' names (nodes = 10, byzantine-fraction = 0.4, "
    "[attack-params] epsilon = 100); flags given on the command line win.",
)
@click.pass_context
def run(
    ctx: click.Context,
    /,
    config_file: Path | None,
    data_dir: Path | None,
    out: Path | None,
    plot_path: Path | None,
    quiet: bool,
    force: bool,
    batch_size: int,
    conductors: int | None,
    round_timeout: float,
    swap_at_round: int | None,
    swap_to: str,
    **options: Any,
) -> None:
    """Simulate federated training with Byzantine nodes and a robust aggregator.

    With no options: 20 nodes, 30% sign flip, 5,000 real MNIST digits,
    softmax regression, the full detection pipeline, on the embedded SQLite store.
    """
    console = Console(quiet=quiet, soft_wrap=True)  # piped output keeps its lines whole
    if quiet and not (ctx.obj or {}).get("log_level"):
        logging.getLogger("zerotrustml").setLevel(logging.WARNING)
    say = logging.getLogger("zerotrustml.run").info
    if options["model"] not in models.available_models():
        raise click.UsageError(
            f"--model {options['model']}: needs the torch extra, which is not installed: "
            "pip install 'zerotrustml[torch]'"
        )
    try:
        config = RunConfig(batch_size=batch_size or None, **options)
        config.check()
    except ValidationError as e:
        raise click.UsageError(_in_flag_words(str(e), options["attack"])) from None
    liars, honest = config.n_byzantine, config.nodes - config.n_byzantine
    if liars > honest and not force:
        raise click.UsageError(
            f"--byzantine-fraction {config.byzantine_fraction:g}: {liars} of {config.nodes} nodes are Byzantine, "
            "a majority; no defence here can hold against that without trusted data, so the run would only show "
            "the attack winning. Pass --force to run it anyway."
        )
    if liars == honest and liars > 0:
        click.echo(
            f"warning: {liars} of {config.nodes} nodes are Byzantine, exactly half: a symmetric attack can win here "
            "(see docs/DETECTION.md)",
            err=True,
        )
    for path, flag in ((out, "--out"), (plot_path, "--plot")):
        if path is not None:
            _check_output(path, flag)
    backend_options: dict[str, Any] = {}
    if config.backend in ("holochain", "mock"):
        backend_options = {"round_timeout": round_timeout, "log": say}
        if config.backend == "holochain":
            backend_options["conductors"] = conductors
    elif conductors is not None and swap_at_round is None:
        raise click.UsageError("--conductors: only for --backend holochain or --swap-to holochain")
    swap_options: dict[str, Any] = {}
    if swap_at_round is not None:
        if config.backend != "embedded":
            raise click.UsageError("--swap-at-round: a run swaps from --backend embedded")
        if swap_at_round >= config.rounds:
            raise click.UsageError(f"--swap-at-round: must be below --rounds ({config.rounds})")
        swap_options = {"round_timeout": round_timeout, "log": say}
        if swap_to == "holochain":
            swap_options["conductors"] = conductors
    data_dir = data_dir or _default_data_dir(config)
    out = out or data_dir / "run.json"
    metrics_path = out.with_suffix(".jsonl") if out.suffix == ".json" else out.with_name(out.name + ".jsonl")
    console.print(
        f"[bold]ZeroTrustML run[/]: {config.nodes} nodes, {config.n_byzantine} Byzantine ({config.attack}), "
        f"{config.aggregator} (f={config.f}), {config.dataset}/{config.distribution}, {config.model}, "
        f"store {data_dir}"
    )
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("round", total=config.rounds)

        def on_round(m: dict[str, Any]) -> None:
            progress.update(
                task,
                completed=m["round"] + 1,
                description=f"round {m['round'] + 1}: acc {m['accuracy']:.3f} "
                f"(honest-only {m['honest_only_accuracy']:.3f})",
            )

        def on_start(first: int) -> None:
            if first >= config.rounds:
                progress.update(task, completed=config.rounds)
                console.print(f"all {config.rounds} rounds are already in {data_dir}; writing the summary")
            elif first > 0:
                progress.update(task, completed=first)
                grown = f"; the stored run had {sim.grown_from}, now extended" if sim.grown_from else ""
                console.print(
                    f"resuming at round {first + 1} of {config.rounds} (rounds 1-{first} are in {data_dir}{grown})"
                )

        try:
            sim = simulation.Simulation(
                config,
                data_dir,
                metrics_path=metrics_path,
                on_round=on_round,
                backend_options=backend_options,
                swap_at_round=swap_at_round,
                swap_to=swap_to,
                swap_options=swap_options,
            )
            sim.on_start = on_start
            summary = sim.run()
        except ValidationError as e:
            raise click.ClickException(_in_flag_words(str(e), config.attack)) from None
        except (StoreError, OSError) as e:
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:
            progress.stop()
            resume = _resume_command(data_dir)
            click.echo(f"interrupted; the finished rounds are stored in {data_dir}. Resume with:\n  {resume}", err=True)
            raise click.exceptions.Exit(130) from None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=2) + "\n")
        if plot_path is not None:
            plot_mod.plot_run(metrics_path, plot_path, title=plot_mod.run_title(summary))
    except (OSError, ValueError) as e:
        raise click.ClickException(f"the run finished and is stored in {data_dir}, but: {e}") from None
    if quiet:
        click.echo(str(out))
        return
    table = Table("metric", "value", title="summary")
    for key, fmt in (
        ("final_accuracy", "{:.4f}"),
        ("honest_only_accuracy", "{:.4f}"),
        ("accuracy_gap", "{:+.4f}"),
        ("tpr", "{:.3f}"),
        ("fpr", "{:.3f}"),
        ("attack_success_rate", "{:.3f}"),
        ("rounds", "{}"),
        ("train_ms_p50", "{:.1f}"),
        ("validate_ms_p50", "{:.1f}"),
        ("aggregate_ms_p50", "{:.1f}"),
        ("store_ms_p50", "{:.1f}"),
        ("elapsed_s", "{:.1f}"),
    ):
        value = summary.get(key)
        table.add_row(key, "n/a" if value is None else fmt.format(value))
    own = summary.get("personal_accuracy")
    if own is not None:
        table.add_row("personal_accuracy", f"mean {own['mean']:.4f}, worst {own['min']:.4f}, best {own['max']:.4f}")
    console.print(table)
    swap = summary.get("swap")
    if swap is not None:
        if swap.get("ok"):
            console.print(
                f"hot swap to {swap['to']} at round {swap['at_round']}: {swap['submissions_verified']} submissions "
                f"verified through other agents, {swap['dual_writes']} written during the swap, "
                f"{swap['records_per_s']:.1f} records/s, longest writer pause {swap['longest_writer_pause_ms']:.0f} ms"
            )
        else:
            console.print(f"[bold red]hot swap rolled back[/] (the run stayed on the embedded store): {swap['error']}")
    console.print(f"summary: {out}\nper round: {metrics_path}")


def _check_output(path: Path, flag: str) -> None:
    """Refuse an output path the run could not write, before the run starts (its directory is made here)."""
    if path.is_dir():
        raise click.BadParameter(f"{path} is a directory; give a file name", param_hint=flag)
    blocker = next((p for p in (path.parent, *path.parent.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise click.BadParameter(f"{blocker} is a file, so {path} cannot be written", param_hint=flag)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise click.BadParameter(f"cannot make {path.parent}: {e.strerror or e}", param_hint=flag) from None
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise click.BadParameter(f"{path} is not writable", param_hint=flag)


MATRIX_ASK_ABOVE = 200  # cells to run before `matrix` asks (or wants --yes)

_FLAG_OF_FIELD = {"path": "--dataset-path", "params": "--attack-param", "attack_params": "--attack-param"}


def _in_flag_words(message: str, attack: str) -> str:
    """A run's error in the command line's words: ``byzantine_fraction: ...`` becomes ``--byzantine-fraction: ...``."""
    head, sep, rest = message.partition(": ")
    rest = rest.replace("pass path=", "pass --dataset-path").replace("pass dataset_path=", "pass --dataset-path")
    if not sep:
        return message
    if head.startswith(f"{attack}."):
        return f"--attack-param {head.split('.', 1)[1]}: {rest}"
    if head in _FLAG_OF_FIELD:
        return f"{_FLAG_OF_FIELD[head]}: {rest}"
    if head in {f.name for f in dataclasses.fields(RunConfig)}:
        return f"--{head.replace('_', '-')}: {rest}"
    return f"{head}: {rest}"


def _load_run_file(ctx: click.Context, path: Path | None) -> Path | None:
    """Read a TOML run file into the command's defaults, so flags on the command line still win."""
    if path is None:
        return None
    hint = f"--config {path}"
    try:
        table = tomllib.loads(path.read_text())
    except OSError as e:
        raise click.BadParameter(f"cannot read it ({e.strerror or e})", param_hint=hint) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise click.BadParameter(f"not a TOML file: {e}", param_hint=hint) from None
    by_key: dict[str, click.Parameter] = {}
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name == "config_file":
            continue
        for opt in [*param.opts, *param.secondary_opts]:
            if opt.startswith("--"):
                key = opt[2:]
                by_key[key] = by_key[key.replace("-", "_")] = param
        if param.name is not None:
            by_key[param.name] = by_key[param.name.replace("_", "-")] = param
    defaults: dict[str, Any] = {}
    for key, value in table.items():
        found = by_key.get(key)
        if found is None or found.name is None or key.startswith(("no-", "no_")):
            keys = sorted({k for k in by_key if "_" not in k and not k.startswith("no-") and k != "attack-param"})
            raise click.BadParameter(
                f"unknown key {key!r}; the keys are the options of run without their dashes: {', '.join(keys)}",
                param_hint=hint,
            )
        param = found
        if param.name == "attack_params":
            if not isinstance(value, dict):
                raise click.BadParameter(f"{key}: a table, e.g. [{key}] epsilon = 100", param_hint=hint)
            value = [f"{k}={v}" for k, v in value.items()]
        elif isinstance(value, (dict, list)):
            raise click.BadParameter(f"{key}: a single value, got a {type(value).__name__}", param_hint=hint)
        defaults[param.name] = value
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return path


@main.command("export")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The .npz to write [default: DATA_DIR/model.npz]; a torch model's state_dict goes beside it (.pt).",
)
@click.option("--round", "round_", type=click.IntRange(min=0), default=None, help="[default: the last completed]")
def export_cmd(data_dir: Path, out: Path | None, round_: int | None) -> None:
    """Export a run's trained model: numpy .npz (named parts, flat params, metadata), and a torch state_dict."""
    from zerotrustml.export import export_model

    if out is not None:
        _check_output(out, "--out")
    try:
        written = export_model(data_dir, out, round=round_)
    except (ValidationError, StoreError, OSError) as e:
        raise click.ClickException(str(e)) from None
    for path in written:
        click.echo(str(path))


@main.command("plugins")
def plugins_cmd() -> None:
    """List the registered plug-ins (attacks, aggregators, models, datasets) and where each comes from.

    Installed packages register theirs through the entry point group zerotrustml.plugins; see
    zerotrustml.plugins for how to write one.
    """
    found = plugins.registered()
    if not found:
        click.echo("no plug-ins registered (entry point group: zerotrustml.plugins)")
        return
    table = Table("kind", "name", "from", "parameters", "what it does", title="plug-ins")
    for p in found:
        params = ", ".join(f"{k}={v}" for k, v in p.params.items())
        table.add_row(p.kind, p.name, p.origin, params, p.description)
    Console(soft_wrap=True).print(table)


@main.command()
@click.argument("run_path", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PNG path [default: beside the run's summary, .png].",
)
def plot(run_path: Path, out: Path | None) -> None:
    """Plot a run (its summary JSON, its JSON lines or its data directory) to a PNG."""
    try:
        rounds, summary = plot_mod.locate(run_path)
        if isinstance(rounds, Path):
            out = out or rounds.with_suffix(".png")
            name = rounds.stem
        else:  # a data directory whose JSON lines are elsewhere: its store's round records
            out = out or run_path / "run.png"
            name = run_path.name
        plot_mod.plot_run(rounds, out, title=plot_mod.run_title(summary) if summary else name)
    except (ValueError, OSError, StoreError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(str(out))


@main.command("conductor")
@click.option("--admin-port", type=click.IntRange(1, 65535), required=True, help="The conductor's admin port.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True)
def conductor(admin_port: int, host: str, timeout: float) -> None:
    """Check a running Holochain conductor: its installed apps and app interfaces, or why it cannot be reached."""
    import asyncio

    from zerotrustml.holochain import AdminClient, ConductorError

    async def status() -> tuple[list[dict[str, Any]], list[int]]:
        admin = await AdminClient.connect(admin_port, host=host, timeout=timeout)
        try:
            return await admin.list_apps(), await admin.list_app_interfaces()
        finally:
            await admin.close()

    try:
        apps, ports = asyncio.run(status())
    except ConductorError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"conductor at ws://{host}:{admin_port}: {len(apps)} app(s), app interfaces on {ports or 'none'}")
    for app in apps:
        status_ = app.get("status", {})
        state = status_.get("type", status_) if isinstance(status_, dict) else status_
        click.echo(f"  {app.get('installed_app_id')}: {state}")


@main.group("admission")
def admission() -> None:
    """Close a network to a known membership: the admission key and the membrane proofs it signs.

    \b
    zerotrustml admission keygen --out admission.key    # keep it secret
    zerotrustml admission property --key admission.key  # the DNA's `admission` property
    zerotrustml admission issue --key admission.key --agent uhCAk... --network-seed my-federation
    """


def _read_admission_key(path: Path) -> Any:
    import nacl.signing

    try:
        raw = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as e:
        raise click.BadParameter(f"{path}: not a readable admission key ({e})", param_hint="--key") from None
    if len(raw) != 32:
        raise click.BadParameter(
            f"{path}: an admission key is 32 bytes (64 hex digits), got {len(raw)}", param_hint="--key"
        )
    return nacl.signing.SigningKey(raw)


@admission.command("keygen")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="File for the secret key (hex)."
)
def admission_keygen(out: Path) -> None:
    """Write a fresh admission key (mode 0600) and print the DNA property that names it."""
    import os

    from zerotrustml.holochain.admission import admission_property, generate_admission_key

    if out.exists():
        raise click.BadParameter(f"{out}: exists; refusing to overwrite an admission key", param_hint="--out")
    key = generate_admission_key()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(bytes(key).hex() + "\n")
    click.echo(admission_property(key))


@admission.command("property")
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
def admission_property_cmd(key_file: Path) -> None:
    """Print the DNA's `admission` property for an admission key."""
    from zerotrustml.holochain.admission import admission_property

    click.echo(admission_property(_read_admission_key(key_file)))


@admission.command("issue")
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--agent", required=True, help="The joining agent's public key (uhCAk..., as hc and launchers show it).")
@click.option("--network-seed", required=True, help="The network seed the agent installs with.")
@click.option("--format", "fmt", type=click.Choice(["base64", "hex"]), default="base64", show_default=True)
def admission_issue(key_file: Path, agent: str, network_seed: str, fmt: str) -> None:
    """Print the membrane proof that admits AGENT to the network with NETWORK_SEED."""
    import base64

    from zerotrustml.holochain.admission import issue_admission
    from zerotrustml.holochain.wire import AGENT_PREFIX, hash_from_b64

    try:
        raw = hash_from_b64(agent)
    except ValueError as e:
        raise click.BadParameter(f"not an agent key ({e})", param_hint="--agent") from None
    if len(raw) != 39 or raw[:3] != AGENT_PREFIX:
        raise click.BadParameter("not an agent public key (uhCAk..., 39 bytes)", param_hint="--agent")
    proof = issue_admission(_read_admission_key(key_file), raw, network_seed)
    click.echo(base64.b64encode(proof).decode() if fmt == "base64" else proof.hex())


@admission.command("beacon")
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--committee-seed", required=True, help="The DNA's committee_seed property.")
@click.option("--round", "round_", type=click.IntRange(min=0, max=2**63 - 1), required=True, help="The round.")
@click.option("--format", "fmt", type=click.Choice(["base64", "hex"]), default="base64", show_default=True)
def admission_beacon(key_file: Path, committee_seed: str, round_: int, fmt: str) -> None:
    """Print ROUND's committee beacon (release it when the round starts; every vote of the round carries it)."""
    import base64

    from zerotrustml.holochain.admission import issue_beacon

    beacon = issue_beacon(_read_admission_key(key_file), committee_seed, round_)
    click.echo(base64.b64encode(beacon).decode() if fmt == "base64" else beacon.hex())


@main.command("matrix")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("results/matrix"),
    show_default=True,
    help="Directory for cells.jsonl, matrix.json, MATRIX.md and matrix.png; a directory holding cells resumes.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes; with --executor ray, the local Ray instance's CPUs, or on a cluster the most cells in "
    "flight [default: CPU count; on a cluster, as many as it takes].",
)
@click.option(
    "--executor",
    type=click.Choice(("local", "ray")),  # zerotrustml.matrix.EXECUTORS
    default="local",
    show_default=True,
    help="Where the cells run: processes on this machine, or Ray tasks (pip install 'zerotrustml[ray]').",
)
@click.option(
    "--ray-address",
    default=None,
    metavar="ADDR",
    help="With --executor ray: the cluster to run on (auto, host:port or ray://host:10001; zerotrustml must be "
    "installed on its nodes) [default: start a local Ray instance, stopped afterwards].",
)
@click.option("--seeds", type=int, multiple=True, help="Report seed (repeatable) [default: 101, 102, 103].")
@click.option("--rounds", type=click.IntRange(min=1), default=None, help="Training rounds per run [default: 30].")
@click.option("--nodes", type=click.IntRange(min=1), default=None, help="Nodes per run [default: 20].")
@click.option(
    "--dataset",
    type=click.Choice(tuple(dict.fromkeys(data.DATASETS + data.PATH_DATASETS))),
    default=None,
    help="Dataset [default: mnist].",
)
@click.option(
    "--model",
    type=click.Choice(models.MODELS + models.TORCH_MODELS + plugins.names("model")),
    default=None,
    help="Model [default: softmax].",
)
@click.option(
    "--attacks",
    "attack_list",
    default=None,
    metavar="LIST",
    help="Comma list, e.g. 'alie,ipm(eps=100)'; a bare ipm means eps 0.1 and 100 [default: every attack].",
)
@click.option(
    "--defences",
    default=None,
    metavar="LIST",
    help="Comma list; pipeline_known_f is the pipeline given the true f, pipeline_personal the pipeline with the "
    "personal view [default: every aggregator, pipeline, pipeline_known_f and pipeline_personal].",
)
@click.option(
    "--fractions", default=None, metavar="LIST", help="Comma list of Byzantine fractions [default: 0.3,0.4,0.5,0.6]."
)
@click.option(
    "--distributions",
    default=None,
    metavar="LIST",
    help="Comma list, e.g. iid,dirichlet:0.5,dirichlet:0.1 (the default).",
)
@click.option(
    "--defence-config",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Defence settings file for every run (the tuned parameters; .env-style or .json).",
)
@click.option("--small", is_flag=True, help="The test preset: synthetic data, 8 nodes, 2 rounds, 9 cells.")
@click.option(
    "--yes", "-y", is_flag=True, help=f"Start without asking when more than {MATRIX_ASK_ABOVE} cells are to run."
)
@click.option(
    "--summarise-only",
    is_flag=True,
    help="Run nothing; summarise the cells already in --out (for the spec of the options given, else spec.json).",
)
def matrix(
    out_dir: Path,
    workers: int | None,
    executor: str,
    ray_address: str | None,
    seeds: tuple[int, ...],
    rounds: int | None,
    nodes: int | None,
    dataset: str | None,
    model: str | None,
    attack_list: str | None,
    defences: str | None,
    fractions: str | None,
    distributions: str | None,
    defence_config: str | None,
    small: bool,
    yes: bool,
    summarise_only: bool,
) -> None:
    """Sweep attacks x Byzantine fractions x distributions x defences x seeds.

    Runs every cell in parallel processes (or as Ray tasks: --executor ray),
    appending each finished cell to <out>/cells.jsonl (rerun the same
    command to resume), then writes
    matrix.json, MATRIX.md (tables, a per-defence summary and the targets for the pipeline)
    and matrix.png (TPR, FPR and accuracy-gap heatmaps).
    """

    from rich.progress import BarColumn as _Bar
    from rich.progress import MofNCompleteColumn as _MofN
    from rich.progress import Progress as _Progress
    from rich.progress import TextColumn as _Text
    from rich.progress import TimeElapsedColumn as _Elapsed
    from rich.progress import TimeRemainingColumn as _Remaining
    from rich.table import Table as _Table

    from zerotrustml import matrix as mx
    from zerotrustml.exceptions import ValidationError as _ValidationError

    if ray_address is not None and executor != "ray":
        raise click.BadParameter(f"needs --executor ray (got --executor {executor})", param_hint="--ray-address")
    if not summarise_only:
        try:
            mx.check_executor(executor, ray_address)  # Ray installed? (imported here only when chosen)
        except _ValidationError as e:
            field, _, message = str(e).partition(": ")
            raise click.BadParameter(message, param_hint=f"--{field.replace('_', '-')}") from None

    overrides: dict[str, Any] = {}
    parsers: list[tuple[str, str, str | None, Any]] = [
        ("--attacks", "attacks", attack_list, mx.parse_attacks),
        ("--defences", "defences", defences, mx.parse_defences),
        ("--fractions", "fractions", fractions, mx.parse_fractions),
        ("--distributions", "distributions", distributions, mx.parse_distributions),
    ]
    for hint, name, raw, parse in parsers:
        if raw is not None:
            try:
                overrides[name] = parse(raw)
            except _ValidationError as e:
                raise click.BadParameter(str(e), param_hint=hint) from None
    for name, value in (
        ("rounds", rounds),
        ("nodes", nodes),
        ("dataset", dataset),
        ("model", model),
        ("defence_config", defence_config),
    ):
        if value is not None:
            overrides[name] = value
    if seeds:
        if any(s < 0 for s in seeds):
            raise click.BadParameter("seeds must be >= 0", param_hint="--seeds")
        overrides["seeds"] = tuple(dict.fromkeys(seeds))
    spec = dataclasses.replace(mx.MatrixSpec.small() if small else mx.MatrixSpec(), **overrides)
    try:
        spec.validate()
    except _ValidationError as e:
        raise click.UsageError(str(e)) from None

    console = Console()
    failed = 0
    try:
        if overrides or small or not summarise_only:
            mx.check_report_is_ours(spec, out_dir)
        if not summarise_only:
            cells = spec.cells()
            pending = mx.pending_cells(spec, out_dir)
            if pending > MATRIX_ASK_ABOVE and not yes:
                question = (
                    f"{pending} of {len(cells)} cells are to run (each a full training run; the default matrix "
                    "takes hours on two cores)"
                )
                if not sys.stdin.isatty():
                    raise click.UsageError(f"{question}; pass --yes to start them, or narrow the options")
                click.confirm(f"{question}. Start?", abort=True)
            console.print(
                f"[bold]ZeroTrustML matrix[/]: {len(cells)} cells ({len(spec.attacks)} attacks x "
                f"{len(spec.fractions)} fractions x {len(spec.distributions)} distributions x "
                f"{len(spec.defences)} defences x {len(spec.seeds)} seeds"
                f"{', plus no-attack cells' if spec.include_clean else ''}), {spec.dataset}, {spec.nodes} nodes, "
                f"{spec.rounds} rounds, into {out_dir}"
                + ("" if executor == "local" else f", on Ray ({ray_address or 'a local instance'})")
            )
            with _Progress(
                _Text("[progress.description]{task.description}"),
                _Bar(),
                _MofN(),
                _Elapsed(),
                _Remaining(),
                console=console,
            ) as bar:
                task = bar.add_task("starting", total=pending)
                reused: list[int] = []

                def on_cell(event: mx.CellProgress) -> None:
                    # Reused cells take no time: counting them would make the time left look shorter than it is.
                    if not reused:
                        reused.append(event.done)
                    done, total = event.done - reused[0], event.total - reused[0]
                    bar.update(task, completed=done, total=total, description=event.label or "starting")

                try:
                    result = mx.run_matrix(
                        spec, out_dir, workers=workers, progress=on_cell, executor=executor, ray_address=ray_address
                    )
                except KeyboardInterrupt:
                    console.print(f"interrupted; finished cells are in {out_dir / mx.CELLS_FILE}: rerun to resume")
                    raise click.exceptions.Exit(130) from None
            failed = result.failed
            console.print(
                f"{result.ran} run, {result.not_applicable} n/a, {result.reused} reused, {result.failed} failed "
                f"in {result.elapsed_s:.1f} s"
            )
        given = bool(overrides) or small
        doc = mx.summarise(out_dir, spec=spec if (given or not summarise_only) else None)
    except (OSError, ValueError) as e:
        raise click.ClickException(str(e)) from None

    table = _Table("target", "measured", "threshold", "status", title=f"targets for {doc['target_defence']}")
    for t in doc["targets"]:
        value = "–" if t["value"] is None else f"{t['value']:.3f}{t['unit']}"
        colour = {"PASS": "green", "MISS": "red"}.get(t["status"], "yellow")
        table.add_row(
            t["name"], value, f"{t['comparison']} {t['threshold']:g}{t['unit']}", f"[{colour}]{t['status']}[/]"
        )
    console.print(table)
    console.print(
        f"cells: {out_dir / mx.CELLS_FILE}\nsummary: {doc['paths']['json']}\ntable: {doc['paths']['markdown']}\n"
        f"heatmap: {doc['paths']['png']}"
    )
    if failed:
        raise click.ClickException(
            f"{failed} cells failed (see {out_dir / mx.ERRORS_FILE}); rerun the same command to retry them"
        )


# The service's commands live in its wing; they import the web framework only when they run.
main.add_command(serve)
main.add_command(node)
main.add_command(cluster)


if __name__ == "__main__":
    main()
