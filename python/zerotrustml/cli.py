"""The ``zerotrustml`` command line."""

from __future__ import annotations

import time
from typing import Any

import click
import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from zerotrustml import __version__, aggregators

ATTACKS = ("sign_flip", "gaussian", "alie")


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


@click.group()
@click.version_option(__version__)
def main() -> None:
    """ZeroTrustML: Byzantine-resilient federated learning."""


@main.command()
@click.option("--nodes", default=20, show_default=True, help="Number of updates per round.")
@click.option("--byzantine-fraction", default=0.3, show_default=True, help="Share of Byzantine updates.")
@click.option("--dim", default=100_000, show_default=True, help="Parameters per update.")
@click.option("--attack", type=click.Choice(ATTACKS), default="sign_flip", show_default=True)
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


if __name__ == "__main__":
    main()
