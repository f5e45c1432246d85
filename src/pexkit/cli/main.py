"""The ``pexkit`` command line: analyze, demo, simulate, serve, export."""

from __future__ import annotations

import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from pexkit.analysis import AnalysisResult, analyze
from pexkit.data import LoggedData
from pexkit.evaluation import ab_readout
from pexkit.exceptions import InvalidParameterError, PexkitError, PexkitWarning
from pexkit.optimize import Guardrail
from pexkit.policy import LinearPolicy
from pexkit.simulate import SCENARIOS, simulate
from pexkit.spec import ExperimentSpec

_PLAIN_TYPES = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "path": "PATH",
                "list[str]": "TEXT", "bool": "BOOLEAN"}


def _plain_type(display: str | None) -> str | None:
    """Typer's ``<int>``-style type tag as a click-style metavar (INTEGER, PATH, TEXT)."""
    if display is None:
        return None
    bare = display.removeprefix("<").removesuffix(">")
    return _PLAIN_TYPES.get(bare, bare.upper())


class _Option(TyperOption):
    """Help without type tags on flags (``--progress``, ``--help``), PATH/TEXT on values."""

    def display_type_rich(self, ctx: Any) -> str | None:
        if self.is_flag or self.count:
            return None
        return self.metavar or _plain_type(self.display_type(ctx))


class _Argument(TyperArgument):
    """``LOG`` in the usage line and the help (typer's default reads ``{log}``)."""

    @property
    def display_name_raw(self) -> str:
        return self.metavar or str(self.name or "").upper()

    def display_type_rich(self, ctx: Any) -> str | None:
        return _plain_type(self.display_type(ctx))

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name if self.nargs == 1 else name + "..."


def _plain_help(params: list[Any]) -> list[Any]:
    for param in params:
        if type(param) is TyperOption:
            param.__class__ = _Option
        elif type(param) is TyperArgument:
            param.__class__ = _Argument
    return params


class _Command(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_help(super().get_params(ctx))


class _Group(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_help(super().get_params(ctx))


app = typer.Typer(
    help="pexkit: personalized experimentation. Learn per-user effects from a randomized "
    "experiment, turn them into multi-objective policies, and evaluate those policies "
    "off-policy with confidence intervals.",
    no_args_is_help=True,
    add_completion=False,
    cls=_Group,
)
# scorecards are wide: piped output (no terminal, no COLUMNS) gets 160 columns, not 80
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160)
err = Console(stderr=True, soft_wrap=True)


def _show_version(value: bool) -> None:
    if value:
        from pexkit import __version__

        console.print(f"pexkit {__version__}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """pexkit: personalized experimentation. Learn per-user effects from a randomized
    experiment, turn them into multi-objective policies, and evaluate those policies
    off-policy with confidence intervals."""


def _scorecard(title: str, rows: list[Any], label: str | None, *,
               headers: tuple[str, ...] | None = None, extra: tuple[str, ...] = ()) -> Table:
    """A scorecard (pexkit.report.scorecard rows) as a rich table: green good, red bad,
    grey inconclusive, by each metric's goal."""
    from rich.text import Text

    from pexkit.report.scorecard import COLUMNS, RICH_STYLES

    table = Table(title=title)
    for col in ([label] if label else []) + ["Metric", *(headers or COLUMNS), *extra]:
        table.add_column(col)
    for row in rows:
        table.add_row(*(Text(c.text, style=RICH_STYLES[c.tone] if c.tone else "")
                        for c in row.cells()))
    return table


def _print_result(result: AnalysisResult) -> None:
    spec = result.data.spec
    srm = result.data.srm
    console.print(
        f"[bold]{spec.name}[/bold]: {result.data.n_units:,} units, arms "
        f"{result.data.arm_counts}"
    )
    rows = result.summary.get("outcome_rows") or {}
    partial = {o: c for o, c in rows.items() if c < result.data.n_units}
    if partial:
        console.print("outcomes observed on fewer rows (missing: drop; each is fitted and "
                      "evaluated on its own rows): "
                      + ", ".join(f"{o}: {c:,}" for o, c in partial.items()))
    diag = getattr(result.data, "propensity_diagnostics", None)
    if diag:
        console.print(
            f"propensities estimated ({diag['method']}): {diag['share_below_0.05']:.1%} of units "
            f"have some arm under 5%; smallest logged-arm propensity {diag['min']:.3g}; "
            "effective sample size per arm "
            + ", ".join(f"{a}: {v:,.0f}" for a, v in diag["effective_sample_size"].items())
        )
    if srm is not None:
        verdict = "[red]MISMATCH[/red]" if srm.mismatch else "ok"
        console.print(f"sample ratio test: chi2={srm.chi2:.2f}, p={srm.p_value:.3g} ({verdict})")
    from pexkit.report.scorecard import COLUMNS, ScoreRow, guardrail_limits

    goals = {o.name: o.goal for o in spec.outcomes}
    guards = guardrail_limits(result.summary.get("guardrails"))
    control = result.policies[f"all {spec.control}"].value
    chosen = {
        (r["treatment"], r["outcome"]): r["learner"]
        for r in result.model.selection_.to_dict(orient="records")
    }
    ate_rows = [
        ScoreRow(row["outcome"], goals[row["outcome"]], row["estimate"], row["ci_low"],
                 row["ci_high"], control_mean=float(control[spec.outcome_index(row["outcome"])]),
                 label=str(row["treatment"]), guardrail=guards.get(row["outcome"]),
                 extra=(chosen[(row["treatment"], row["outcome"])],))
        for row in result.ate.to_dict(orient="records")
    ]
    console.print(_scorecard(
        f"Average effects vs {spec.control} (DR, 95% CI; control mean: the DR value of "
        f"all-{spec.control})", ate_rows, "Treatment", extra=("Learner",)))
    prows: list[ScoreRow] = []
    shares: list[str] = []
    for name, value in result.policies.items():
        if name == f"all {spec.control}":  # control against itself is not a row
            continue
        prows += [
            ScoreRow(o, goals[o], value.lift[m], value.lift_ci[m, 0], value.lift_ci[m, 1],
                     control_mean=float(control[m]), treatment_mean=float(value.value[m]),
                     label=name, guardrail=guards.get(o))
            for m, o in enumerate(spec.outcome_names)
        ]
        shares.append(f"{name}: " + ", ".join(f"{a} {s:.0%}" for a, s in value.share.items()))
    console.print(_scorecard(
        f"Policies: DR lift vs all-{spec.control} (95% CI)", prows, "Policy",
        headers=("Control mean", "Policy mean", *COLUMNS[2:])))
    console.print("who gets what: " + "; ".join(shares), markup=False, highlight=False)
    summary = result.summary
    source = {"spec": "the spec's weights", "given": "the weights given",
              "default": "a default"}[summary["utility_weights_source"]]
    console.print(f"utility = {summary['utility']} ({source})")
    if summary.get("utility_note"):
        console.print(f"[yellow]warning:[/yellow] {summary['utility_note']}")
    pers = summary.get("personalization")
    if pers:
        console.print(f"[bold]personalization[/bold]: {pers['sentence']}")
    from pexkit.report.scorecard import fmt_interval

    for block in summary.get("longterm") or []:
        diag = block["diagnostics"]
        effects = ", ".join(f"{r['treatment']} " + " ".join(fmt_interval(
            r["estimate"], r["ci_low"], r["ci_high"])) for r in block["ate"])
        utility = block.get("policy_lift", {}).get("utility")
        lift = ("; utility policy " + " ".join(fmt_interval(
            utility["lift"], utility["lift_ci_low"], utility["lift_ci_high"]))
            if utility and "lift_ci_low" in utility else "")
        verdict = "ok" if block["trusted"] else "[red]DO NOT TRUST[/red]"
        console.print(
            f"[bold]long-term {escape(block['target'])}[/bold] (surrogate index "
            f"{escape(block['outcome'])}, r2 {diag['r2']:.2f} on {diag['n_history']:,} earlier "
            f"units; 95% CI with the index's error): {escape(effects)}{escape(lift)} vs "
            f"{escape(spec.control)} ({verdict}): {escape(block['note'])}", soft_wrap=True,
        )


@app.command("analyze", cls=_Command)
def analyze_cmd(
    log: Annotated[Path, typer.Argument(help="Experiment log: a CSV or Parquet file, one row per unit.")],
    spec: Annotated[Path, typer.Option("--spec", help="YAML spec: treatment, outcomes, features.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for summary.json and effects.parquet.")] = Path("pexkit-out"),
    learner: Annotated[str, typer.Option(help="Meta-learner: auto, t, s, x or dr.")] = "auto",
    base: Annotated[str, typer.Option(help="Base learner: lightgbm or xgboost.")] = "lightgbm",
    folds: Annotated[int, typer.Option(help="Cross-fitting folds (>= 2).")] = 3,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the summary JSON here.")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    optimize: Annotated[bool, typer.Option(help="Search for the Pareto front and write policies.json and report.html.")] = True,
    method: Annotated[str, typer.Option(help="Optimizer: sobol, qnparego or nsga2.")] = "sobol",
    budget: Annotated[int | None, typer.Option(help="Policies evaluated by the optimizer (default: 2000 for sobol and nsga2, 200 for qnparego).", show_default=False)] = None,
    candidates: Annotated[int, typer.Option(help="Policies picked for the online test.")] = 4,
    biases: Annotated[bool, typer.Option(help="Search per-treatment biases as well as weights.")] = True,
    guardrail: Annotated[list[str] | None, typer.Option(help="OUTCOME:MAX_CHANGE[:ci], e.g. unsubscribe:0.02 (repeatable).")] = None,
    cluster: Annotated[str | None, typer.Option(help="Run on Dask: tcp://HOST:PORT of a scheduler, or local:N worker processes. LOG is then a Parquet file or a directory of parts; effects are written per part to OUT/effects/ and no report is written.", show_default=False)] = None,
    surrogate_index: Annotated[list[str] | None, typer.Option("--surrogate-index", metavar="TARGET:HISTORY", help="Estimate a long-term outcome the log lacks through a surrogate index fitted on HISTORY (CSV or Parquet: an earlier cohort with LOG's arm column, features and short-term outcomes, plus the column TARGET), e.g. retention_90d:earlier.csv; TARGET@minimize:HISTORY when less is better (default: the spec's goal for TARGET, else maximize). Repeatable.", show_default=False)] = None,
) -> None:
    """Analyze an experiment log: per-user effects, policies, Pareto front and report.

    Writes OUT/summary.json (average effects with CIs, learner choice, DR value of
    all-control, each single treatment and the spec's utility policy),
    OUT/effects.parquet (per-user effect estimates), OUT/policies.json (the Pareto
    front and the candidates for an online test) and OUT/report.html. With
    --surrogate-index, each long-term target is a weight-0 outcome TARGET~ (its
    surrogate index) and summary.json and the report carry its estimate with the
    index's diagnostics and surrogacy check.
    """
    experiment = ExperimentSpec.from_yaml(spec)
    longterm = _surrogate_options(surrogate_index or [], experiment, log, cluster)
    if longterm:
        experiment = _without_targets(experiment, longterm, log)
    if not experiment.features:  # nothing to personalize on: the A/B readout
        if longterm:
            raise InvalidParameterError(
                f"--surrogate-index: expected a spec with features (the index conditions on "
                f"them and the long-term estimate is reported with the personalized analysis); "
                f"{spec} lists none. Add the features to the spec, or drop --surrogate-index."
            )
        _ab_readout(LoggedData.from_path(log, experiment), out, json_path)
        console.print(f"next: add features to {spec} to personalize, or read "
                      f"{out / 'summary.json'}", markup=False, highlight=False, soft_wrap=True)
        return
    client = local = None
    if cluster is not None:
        from pexkit.execution.dask import connect

        client, local = connect(cluster)
    try:
        if client is not None:
            data: Any = LoggedData.from_parquet(log, experiment, cluster=client)
        else:
            data = LoggedData.from_path(log, experiment)
        guards = _guardrails(guardrail or [])
        indices = []
        short = [o for o in data.spec.outcome_names if o not in {t.target for t in longterm}]
        for item in longterm:  # every index on the log's own outcomes, not on another index
            index, data = _apply_surrogate_index(item, data, short, seed, progress)
            indices.append(index)
        result = analyze(
            data, learner=learner, base=base, n_folds=folds, random_state=seed, out=out,
            progress=progress, optimize=optimize, method=method, budget=budget,
            n_candidates=candidates, biases=biases, guardrails=guards, surrogates=indices,
        )
        _print_result(result)
        if json_path is not None:
            json_path.write_text(json.dumps(result.summary, indent=2, default=float))
        _print_front(result)
    finally:
        if client is not None:
            client.close()
        if local is not None:
            local.close()
    if client is not None:
        console.print(f"wrote {out / 'summary.json'} and {out / 'effects'}/ (one file per part)")
        if result.front is not None:
            console.print(f"wrote {out / 'policies.json'} (no report.html on a cluster)")
        console.print(f"next: read {out / 'summary.json'}; to serve a policy, pexkit serve "
                      "(see pexkit serve --help)", markup=False, highlight=False, soft_wrap=True)
        return
    console.print(f"wrote {out / 'summary.json'} and {out / 'effects.parquet'}")
    if result.front is not None:
        console.print(f"wrote {out / 'policies.json'} and {out / 'report.html'}")
        console.print(f"next: open {out / 'report.html'} in a browser (the effects, the Pareto "
                      "front and the candidates for an online test)", markup=False,
                      highlight=False, soft_wrap=True)
    else:
        console.print(f"next: read {out / 'summary.json'}, or run again without --no-optimize "
                      "for the Pareto front and report.html", markup=False, highlight=False, soft_wrap=True)


@dataclass(frozen=True)
class _LongTerm:
    """One --surrogate-index: the target, its goal and the history file."""

    option: str
    target: str
    goal: str
    path: Path
    columns: tuple[str, ...]


def _columns(path: Path) -> list[str]:
    """The column names of a CSV or Parquet file (its header or schema; no rows read)."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        return list(pq.read_schema(path).names)
    import pandas as pd

    return [str(c) for c in pd.read_csv(path, nrows=0).columns]


def _surrogate_options(items: list[str], experiment: ExperimentSpec, log: Path,
                       cluster: str | None) -> list[_LongTerm]:
    """Parse --surrogate-index TARGET[@GOAL]:HISTORY items; check each file and its columns."""
    if items and cluster is not None:
        raise InvalidParameterError(
            "--surrogate-index: not supported with --cluster (the index is fitted and applied "
            "in one process); found both. Run without --cluster, or fit the index in Python "
            "(px.SurrogateIndex) and add its column to the log."
        )
    out: list[_LongTerm] = []
    for item in items:
        option = f"--surrogate-index {item!r}"
        head, sep, rest = item.partition(":")
        target, _, goal = head.partition("@")
        target, goal, rest = target.strip(), goal.strip().lower(), rest.strip()
        if not sep or not target or not rest:
            found = "no ':'" if not sep else "an empty TARGET" if not target else "an empty HISTORY"
            raise InvalidParameterError(
                f"{option}: expected TARGET:HISTORY (or TARGET@minimize:HISTORY), e.g. "
                f"retention_90d:earlier.csv; found {found}. Write the long-term outcome's "
                "column, a colon, then the history file."
            )
        if "@" in head and goal not in ("maximize", "minimize"):
            raise InvalidParameterError(
                f"{option}: expected the goal after '@' to be maximize or minimize; found "
                f"{goal!r}. Write e.g. churn@minimize:earlier.csv."
            )
        if not goal:
            goal = (experiment.outcomes[experiment.outcome_index(target)].goal
                    if target in experiment.outcome_names else "maximize")
        if any(t.target == target for t in out):
            raise InvalidParameterError(
                f"{option}: expected each TARGET once; found {target!r} twice. Give one "
                "history per long-term outcome."
            )
        path = Path(rest)
        if not path.is_file():
            raise InvalidParameterError(
                f"{option}: expected HISTORY to be a CSV or Parquet file; found no file "
                f"{str(path)!r}. Check the path (it is read relative to "
                f"{str(Path.cwd())!r})."
            )
        if path.suffix.lower() not in (".parquet", ".pq", ".csv", ".txt", ".gz"):
            raise InvalidParameterError(
                f"{option}: expected HISTORY to be a .csv or .parquet file; found extension "
                f"{path.suffix or '(none)'!r}. Rename the file or convert it."
            )
        try:
            columns = _columns(path)
        except Exception as exc:  # a malformed file: pandas' and pyarrow's errors differ
            raise InvalidParameterError(
                f"{option}: expected a readable CSV or Parquet file; reading {str(path)!r} "
                f"failed ({type(exc).__name__}: {exc}). Check the file."
            ) from None
        if target not in columns:
            raise InvalidParameterError(
                f"{option}: expected the history {str(path)!r} to have the long-term outcome's "
                f"column {target!r}; found the columns {columns[:30]}. Fix TARGET (the column's "
                "name in the history) or give the history where it was observed."
            )
        out.append(_LongTerm(option, target, goal, path, tuple(columns)))
    return out


def _without_targets(experiment: ExperimentSpec, longterm: list[_LongTerm],
                     log: Path) -> ExperimentSpec:
    """The spec for the experiment log: a long-term target the spec lists but the log lacks
    is dropped (the surrogate index stands in for it)."""
    listed = [t.target for t in longterm if t.target in experiment.outcome_names]
    if not listed:
        return experiment
    columns = set(_columns(log)) if log.is_file() else set()
    drop = {t for t in listed if t not in columns}
    if not drop:
        return experiment
    raw = experiment.to_dict()
    raw["outcomes"] = [o for o in raw["outcomes"] if o["name"] not in drop]
    if not raw["outcomes"]:
        raise InvalidParameterError(
            f"--surrogate-index: expected the spec to list short-term outcomes besides the "
            f"long-term target(s) {sorted(drop)}; found none. List the short-term outcomes "
            "(the surrogates) in the spec."
        )
    return ExperimentSpec.from_dict(raw)


def _apply_surrogate_index(item: _LongTerm, data: LoggedData, surrogates: list[str],
                           seed: int, progress: bool) -> tuple[Any, LoggedData]:
    """Fit ``SurrogateIndex(target)`` on the history, the log's short-term outcomes as
    surrogates, and add its outcome (weight 0) to the log."""
    import time

    from pexkit.data.propensity import ESTIMATE
    from pexkit.longterm import SurrogateIndex

    spec = data.spec
    if not surrogates:
        raise InvalidParameterError(
            f"{item.option}: expected the spec to list short-term outcomes besides "
            f"{item.target!r}; found {list(spec.outcome_names)}. List the short-term outcomes "
            "(the surrogates) in the spec."
        )
    raw = spec.to_dict()
    raw["outcomes"] = [o for o in raw["outcomes"] if o["name"] in surrogates] + [
        {"name": item.target, "goal": item.goal, "weight": 0.0}]
    hspec = ExperimentSpec.from_dict(raw)
    needed = [hspec.treatment, *surrogates, *hspec.features]
    needed += [c for c in (hspec.unit, None if hspec.propensity == ESTIMATE else hspec.propensity,
                           hspec.cluster) if c]
    missing = [c for c in needed if c not in item.columns]
    if missing:
        raise InvalidParameterError(
            f"{item.option}: expected the history to have the log's columns (arm, features, "
            f"short-term outcomes) {needed}; {missing} are missing from {str(item.path)!r}. "
            "Give a history with the same columns as the log, plus the long-term outcome."
        )
    try:
        history = LoggedData.from_path(item.path, hspec)
    except PexkitError as exc:
        raise InvalidParameterError(
            f"{item.option}: the history {str(item.path)!r} failed validation: {exc}"
        ) from None
    message = (f"fitting the surrogate index for {item.target} on {history.n_units:,} earlier "
               f"units (surrogates: {', '.join(surrogates)}) and its refits on resampled history")
    started = time.perf_counter()
    index = SurrogateIndex(item.target, surrogates=surrogates, random_state=seed)
    if progress and sys.stderr.isatty():
        with err.status(message):
            data = index.fit(history).transform(data, weight=0.0)
    else:
        if progress:
            err.print(message + " ...", markup=False, highlight=False, soft_wrap=True)
        data = index.fit(history).transform(data, weight=0.0)
    diag = index.diagnostics()
    console.print(
        f"surrogate index {index.name}: r2 {diag['r2']:.2f} on {diag['n_history']:,} earlier "
        f"units ({time.perf_counter() - started:.1f}s)", markup=False, highlight=False,
        soft_wrap=True,
    )
    return index, data


def _ab_readout(data: LoggedData, out: Path, json_path: Path | None) -> None:
    """A spec without features: each arm against control, and no personalization."""
    table = ab_readout(data)
    spec = data.spec
    summary: dict[str, Any] = {
        "experiment": spec.name,
        "n_units": data.n_units,
        "arms": data.arm_counts,
        "sample_ratio_test": data.srm.to_dict() if data.srm else None,
        "readout": "ab",
        "note": "the spec lists no features: an A/B readout (difference in means per arm "
                "against control, with 95% CIs); no effect model and no personalization",
        "ab": table.to_dict(orient="records"),
    }
    console.print(f"[bold]{spec.name}[/bold]: {data.n_units:,} units, arms {data.arm_counts}")
    if data.srm is not None:
        verdict = "[red]MISMATCH[/red]" if data.srm.mismatch else "ok"
        console.print(f"sample ratio test: chi2={data.srm.chi2:.2f}, p={data.srm.p_value:.3g} "
                      f"({verdict})")
    from pexkit.report.scorecard import ScoreRow, fmt_number

    goals = {o.name: o.goal for o in spec.outcomes}
    rows = [
        ScoreRow(
            str(row["outcome"]), goals[str(row["outcome"])], row["estimate"], row["ci_low"],
            row["ci_high"], control_mean=row["control_mean"],
            treatment_mean=row["treatment_mean"], label=str(row["treatment"]),
            extra=("< 0.0001" if row["p_value"] < 1e-4 else fmt_number(row["p_value"]),
                   f"{row['n_control']:,} / {row['n_treatment']:,}"),
        )
        for row in summary["ab"]
    ]
    console.print(_scorecard(
        f"A/B readout: each arm vs {spec.control} (difference in means, 95% CI)", rows,
        "Treatment", extra=("p-value", "Rows (control / treatment)")))
    console.print("the spec lists no features: no effect model, policies or report (add "
                  "features to personalize)")
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(summary, indent=2, default=float)
    (out / "summary.json").write_text(text)
    if json_path is not None:
        json_path.write_text(text)
    console.print(f"wrote {out / 'summary.json'}")


def _guardrails(items: list[str]) -> tuple[Guardrail, ...]:
    out = []
    for item in items:
        parts = item.split(":")
        if len(parts) not in (2, 3):
            raise InvalidParameterError(
                f"--guardrail {item!r}: expected OUTCOME:MAX_CHANGE or OUTCOME:MAX_CHANGE:ci, "
                "e.g. unsubscribe:0.02."
            )
        try:
            change = float(parts[1])
        except ValueError:
            raise InvalidParameterError(
                f"--guardrail {item!r}: MAX_CHANGE must be a number such as 0.02; got {parts[1]!r}."
            ) from None
        out.append(Guardrail(parts[0], change, "ci" if len(parts) == 3 and parts[2] == "ci" else "estimate"))
    return tuple(out)


def _print_front(result: AnalysisResult) -> None:
    front, cands = result.front, result.candidates
    if front is None or cands is None:
        return
    from pexkit.report import tradeoff_sentences

    control = np.asarray(front.meta["control_value"])
    idx = [(front.labels).index(lab) for lab in (cands.labels)]
    console.print(
        f"[bold]Pareto front[/bold]: {int(front.on_front.sum())} policies, hypervolume "
        f"{front.hypervolume():.4g} ({front.meta['method']}, {front.meta['n_evaluations']} evaluated)"
    )
    for sentence in tradeoff_sentences(front, control, idx):
        console.print(f"  • {sentence}")
    if cands.meta.get("distinct"):
        console.print(f"candidates: {cands.meta['distinct']}")


@app.command("analyze-sequential", cls=_Command)
def analyze_sequential_cmd(
    log: Annotated[Path, typer.Argument(help="Decision log: a CSV or Parquet file, one row per decision.")],
    spec: Annotated[Path, typer.Option("--spec", help="YAML sequential spec: unit, time, action, rewards, state, propensity.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for summary.json, agent.json and report.html.")] = Path("pexkit-sequential"),
    algorithm: Annotated[str, typer.Option(help="Offline RL algorithm: cql, ddqn or fqi.")] = "cql",
    estimator: Annotated[str, typer.Option(help="Off-policy estimator: dr, smis, wpdis, pdis or fqe.")] = "dr",
    epsilon: Annotated[float, typer.Option(help="Exploration the agent serves with (and is evaluated with).")] = 0.05,
    tune: Annotated[bool, typer.Option(help="Choose the agent's hyperparameters by held-out off-policy estimates.")] = False,
    front: Annotated[bool, typer.Option(help="Trace the trade-off between rewards (agents over reward weights).")] = True,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the summary JSON here.")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Learn a sequential policy from a decision log (offline RL) and evaluate it off-policy.

    Compares the agent with the logging policy, each action taken always and the
    myopic one-step policy, per reward with 95% CIs; traces the front over reward
    weights. Writes OUT/summary.json, OUT/agent.json (serve it with
    POST /v1/sequential/NAME/launch) and OUT/report.html.
    """
    from pexkit.sequential import SequentialSpec, TransitionLog
    from pexkit.sequential.analysis import analyze_sequential

    seq_spec = SequentialSpec.from_yaml(spec)
    data = TransitionLog.from_path(log, seq_spec)
    console.print(f"[bold]{seq_spec.name}[/bold]: {data.n_decisions:,} decisions, "
                  f"{data.n_episodes:,} episodes; actions {list(seq_spec.actions)}")
    result = analyze_sequential(data, algorithm=algorithm, estimator=estimator, epsilon=epsilon,
                                tune=tune, front=front, random_state=seed, out=out,
                                progress=progress)
    table = Table(title=f"policies ({estimator}; change vs the logging policy, 95% CI)")
    table.add_column("policy")
    for r in seq_spec.reward_names + ("utility",):
        table.add_column(r, justify="right")
    comp = result.comparison()
    from pexkit.report.scorecard import fmt_interval

    for name in result.values:
        cells = []
        for r in seq_spec.reward_names + ("utility",):
            row = comp[(comp["policy"] == name) & (comp["reward"] == r)].iloc[0]
            value = fmt_interval(row["value"], row["ci_low"], row["ci_high"], signed=False)
            cells.append(f"{value[0]} {value[1]}" if name == "logging" else
                         f"{value[0]} ({' '.join(fmt_interval(row['vs_logging'], row['vs_logging_ci_low'], row['vs_logging_ci_high']))})")
        table.add_row(name, *cells)
    console.print(table)
    if json_path is not None:
        json_path.write_text(json.dumps(result.summary, indent=2, default=float))
    console.print(f"wrote {out / 'summary.json'}, {out / 'agent.json'} and {out / 'report.html'}")
    console.print(f"next: open {out / 'report.html'}; to serve the agent, pexkit serve and POST "
                  f"{out / 'agent.json'} to /v1/sequential/NAME/launch", markup=False,
                  highlight=False, soft_wrap=True)


@app.command("simulate", cls=_Command)
def simulate_cmd(
    out: Annotated[Path, typer.Option("--out", help="Where to write the log (.csv or .parquet).")] = Path("simulated.csv"),
    spec_out: Annotated[Path | None, typer.Option("--spec-out", help="Where to write the spec YAML.")] = None,
    scenario: Annotated[str, typer.Option(help=f"One of: {', '.join(SCENARIOS)}, notification-volume (sequential decisions).")] = "notifications",
    n: Annotated[int, typer.Option("--n", help="Number of units.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Simulate a randomized experiment with known effects and write its log and spec.

    The spec carries the scenario's utility weights and its long-term outcome
    (weight 0: estimated and reported, not optimized), so analyzing the log
    answers the question `pexkit demo` does.
    """
    if scenario == "notification-volume":
        seq = simulate(scenario, n_units=n, seed=seed)
        if out.suffix.lower() in (".parquet", ".pq"):
            seq.frame.to_parquet(out, index=False)
        else:
            seq.frame.to_csv(out, index=False)
        spec_path = spec_out or out.with_suffix(".yaml")
        seq.spec.to_yaml(spec_path)
        console.print(
            f"wrote {len(seq.frame):,} decisions of {n:,} users to {out} and the spec to {spec_path}\n"
            f"next: pexkit analyze-sequential {out} --spec {spec_path} --out sequential/",
            markup=False, highlight=False, soft_wrap=True,
        )
        return
    sim = simulate(scenario, n_units=n, seed=seed)
    if out.suffix.lower() in (".parquet", ".pq"):
        sim.frame.to_parquet(out, index=False)
    else:
        sim.frame.to_csv(out, index=False)
    spec_path = spec_out or out.with_suffix(".yaml")
    spec = sim.analysis_spec()
    spec.to_yaml(spec_path)
    weights = ", ".join(f"{o.name} {o.weight:g}" for o in spec.outcomes)
    console.print(
        f"wrote {n:,} units to {out} and the spec to {spec_path} (outcome weights: {weights})\n"
        f"next: pexkit analyze {out} --spec {spec_path} --out analysis/",
        markup=False, highlight=False, soft_wrap=True,  # paths unbroken, to copy as they are
    )


@app.command("demo", cls=_Command)
def demo_cmd(
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("demo-out"),
    n: Annotated[int, typer.Option("--n", help="Units to simulate.")] = 30_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the summary JSON here.")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Run the main job on the built-in notifications simulator and compare with the truth."""
    out.mkdir(parents=True, exist_ok=True)
    sim = simulate("notifications", n_units=n, seed=seed)
    sim.frame.to_csv(out / "log.csv", index=False)
    full = sim.analysis_spec()  # the scenario's weights; the long-term outcome stays out
    spec = ExperimentSpec.from_dict(
        {**full.to_dict(), "outcomes": [o for o in full.to_dict()["outcomes"]
                                        if o["name"] in sim.spec.outcome_names]}
    )
    spec.to_yaml(out / "spec.yaml")
    console.print(f"simulated {n:,} units -> {out / 'log.csv'} (spec: {out / 'spec.yaml'})")
    data = LoggedData.from_path(out / "log.csv", spec)
    result = analyze(
        data, out=out, progress=progress, random_state=seed,
        guardrails=(Guardrail("unsubscribe", 0.25),),
    )
    _print_result(result)
    _print_front(result)
    utility = LinearPolicy(spec).choose(result.model.effects_)
    oracle = sim.oracle_value(utility)
    table = Table(title="Utility policy: estimated (DR) vs true lift (oracle)")
    for col in ("outcome", "DR lift", "95% CI", "true lift"):
        table.add_column(col)
    est = result.policies["utility"]
    lifts = {str(k): float(v) for k, v in oracle["lift"].items()}
    from pexkit.report.scorecard import fmt_interval, fmt_number

    for m, name in enumerate(spec.outcome_names):
        table.add_row(
            name, *fmt_interval(est.lift[m], est.lift_ci[m, 0], est.lift_ci[m, 1]),
            fmt_number(lifts[name], signed=True),
        )
    table.add_row("retention_90d (long-term)", "-", "-",
                  fmt_number(lifts["retention_90d"], signed=True))
    console.print(table)
    longterm = _demo_longterm(sim, data, result, utility, n, seed)
    summary: dict[str, Any] = {
        **result.summary,
        "oracle_utility_lift": lifts,
        "longterm": longterm,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    if json_path is not None:
        json_path.write_text(json.dumps(summary, indent=2, default=float))
    console.print(f"wrote {out / 'summary.json'}, {out / 'effects.parquet'}, {out / 'policies.json'} and {out / 'report.html'}")
    console.print(f"next: open {out / 'report.html'} in a browser; then try your own log: "
                  "pexkit analyze LOG.csv --spec SPEC.yaml --out OUT/ (pexkit simulate writes "
                  "an example of both)", markup=False, highlight=False, soft_wrap=True)


def _demo_longterm(sim: Any, data: LoggedData, result: AnalysisResult, utility: Any, n: int,
                   seed: int) -> dict[str, Any]:
    """The long-term outcome offline: an earlier cohort where retention_90d was observed gives
    a surrogate index (its estimate of the utility policy's long-term lift, next to the truth)
    and learned proxy weights (their policy next to the hand-set weights', in truth)."""
    from pexkit.effects import EffectModel
    from pexkit.longterm import SurrogateIndex, proxy_weights
    from pexkit.report.scorecard import fmt_interval, fmt_number

    history_sim = simulate("notifications", n_units=max(n // 2, 4000), seed=seed + 1)
    history = LoggedData.from_frame(history_sim.frame, history_sim.analysis_spec())
    short = list(data.spec.outcome_names)
    index = SurrogateIndex("retention_90d", surrogates=short, random_state=seed).fit(history)
    est = index.policy_lift(data, utility)
    check = index.surrogacy()
    hmodel = EffectModel(learner="t", n_folds=3, base_params={"n_estimators": 100},
                         random_state=seed, progress=False).fit(history)
    proxy = proxy_weights(hmodel, target="retention_90d", outcomes=short, random_state=seed)
    learned = LinearPolicy(data.spec, weights=proxy.weights).choose(result.model.effects_)
    # the policy optimized on the index: argmax of each unit's estimated effects on it
    raw = data.spec.to_dict()
    only = ExperimentSpec.from_dict({**raw, "outcomes": [
        {"name": index.name, "goal": "maximize", "weight": 1.0}]})
    frame = sim.frame.drop(columns=[o for o in sim.all_outcomes if o in sim.frame]).assign(
        **{index.name: index.predict(data)})
    imodel = EffectModel(n_folds=3, base_params={"n_estimators": 100}, random_state=seed,
                         progress=False).fit(LoggedData.from_frame(frame, only))
    on_index = LinearPolicy(only).choose(imodel.effects_)
    true_long = sim.true_cate(["retention_90d"])[:, :, 0]
    oracle_actions = true_long.argmax(axis=1)
    lift = {name: float(sim.oracle_value(acts)["lift"]["retention_90d"])
            for name, acts in (("hand-set weights", utility), ("learned proxy weights", learned),
                               ("the surrogate index (argmax of its effects)", on_index),
                               ("oracle (argmax of true long-term effects)", oracle_actions))}
    table = Table(title="retention_90d offline: surrogate index and learned proxy weights")
    for col in ("what", "estimate (95% CI)", "true"):
        table.add_column(col)
    table.add_row("utility policy's long-term lift, via the surrogate index",
                  " ".join(fmt_interval(est["lift"], est["ci_low"], est["ci_high"])),
                  fmt_number(lift["hand-set weights"], signed=True))
    for name, value in lift.items():
        table.add_row(f"policy with {name}" if "oracle" not in name else name, "-",
                      fmt_number(value, signed=True))
    console.print(table)
    weights = ", ".join(f"{k} {v:.3g} (se {proxy.se[k]:.2g})" for k, v in proxy.weights.items())
    flagged = [str(t) for t, ok in zip(check["treatment"], check["surrogacy_ok"], strict=True) if not ok]
    console.print(
        f"surrogate index: r2 {index.diagnostics()['r2']:.2f} on {index.diagnostics()['n_history']:,} "
        f"earlier units; learned proxy weights: {weights} (r2 {proxy.r2:.2f})"
        + (f"; surrogacy check FAILS for {flagged}: the arms move retention in ways the short-term "
           "outcomes do not show, so the index misses part of the effect" if flagged else ""),
        markup=False, highlight=False, soft_wrap=True,
    )
    best = lift["oracle (argmax of true long-term effects)"]
    share = {name: value / best if best > 0 else float("nan") for name, value in lift.items()
             if not name.startswith("oracle")}
    console.print(
        "in truth, of the oracle's long-term gain over all-control "
        f"({best:+.4f}), the policy on the surrogate index reaches "
        f"{share['the surrogate index (argmax of its effects)']:.0%}, the learned proxy weights "
        f"{share['learned proxy weights']:.0%} (one weight per outcome for everyone: they cannot "
        f"see that a visit keeps a dormant user but wears out a very active one) and the "
        f"hand-set weights {share['hand-set weights']:.0%}",
        markup=False, highlight=False, soft_wrap=True,
    )
    return {
        "surrogate_index": {"estimate": est, "r2": index.diagnostics()["r2"],
                            "surrogacy": check.to_dict(orient="records")},
        "proxy_weights": proxy.to_dict(),
        "true_retention_lift": lift,
        "share_of_oracle_gain": share,
    }


@app.command("serve", cls=_Command)
def serve_cmd(
    db: Annotated[
        str,
        typer.Option(
            "--db",
            help="Event store: sqlite:///PATH (default, created if absent) or "
            "postgresql://user@host:port/dbname.",
        ),
    ] = "sqlite:///pexkit.db",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    workers: Annotated[int, typer.Option(help="Worker processes (they share the store).")] = 1,
) -> None:
    """Start the decision service (HTTP API under /v1, dashboard at /).

    The first admin key comes from the environment variable PEXKIT_ADMIN_KEY;
    create further keys with POST /v1/keys. API docs: /docs and /openapi.json.
    """
    import os

    import uvicorn

    key = os.environ.get("PEXKIT_ADMIN_KEY")
    if not key:
        raise InvalidParameterError(
            "PEXKIT_ADMIN_KEY is not set: the service needs a first admin key. "
            "Run e.g. `PEXKIT_ADMIN_KEY=$(openssl rand -hex 24) pexkit serve`."
        )
    from pexkit.service.validation import LIMITS

    if len(key) < LIMITS.min_admin_key_length:
        raise InvalidParameterError(
            f"PEXKIT_ADMIN_KEY: expected at least {LIMITS.min_admin_key_length} characters; got "
            f"{len(key)}. Use a random key, e.g. `openssl rand -hex 24`."
        )
    if workers < 1:
        raise InvalidParameterError(f"--workers: expected 1 or more; got {workers}.")
    from pexkit.store.db import EventStore

    EventStore(db).close()  # fail fast on a bad URL, create the tables once
    os.environ["PEXKIT_DB"] = db
    err.print(f"pexkit serve: http://{host}:{port}/ (API /v1, docs /docs), store {db}, "
              f"{workers} worker(s)")
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    err.print(f"next: open the dashboard at http://{shown}:{port}/?key=$PEXKIT_ADMIN_KEY "
              "(your admin key; it moves into a cookie), or call it from Python: "
              f"px.Client('http://{shown}:{port}', KEY)", markup=False, highlight=False, soft_wrap=True)
    uvicorn.run(
        "pexkit.service.asgi:app", host=host, port=port, workers=workers,
        log_level="warning", access_log=False, loop=_loop(), http=_http(),
    )


def _loop() -> str:
    """uvloop when installed (a faster event loop), else asyncio."""
    try:
        import uvloop  # noqa: F401
    except ImportError:  # pragma: no cover - a dependency, but optional at run time
        return "asyncio"
    return "uvloop"


def _http() -> str:
    """httptools when installed (a faster HTTP parser), else h11."""
    try:
        import httptools  # noqa: F401
    except ImportError:  # pragma: no cover
        return "h11"
    return "httptools"


def _fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/bold red] {escape(message)}", markup=True)
    raise typer.Exit(2)


@app.command("export", cls=_Command)
def export_cmd(
    experiment: Annotated[str, typer.Argument(help="Experiment name in the event store.")],
    which: Annotated[str, typer.Argument(
        metavar="VERSION",
        help="Policy version to export (a linear or tree version), or 'launched': the "
        "version the experiment serves.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the policy artifact (JSON).")],
    db: Annotated[
        str,
        typer.Option(
            "--db", help="Event store: sqlite:///PATH or postgresql://user@host:port/dbname."
        ),
    ] = "sqlite:///pexkit.db",
) -> None:
    """Export a policy version as a JSON artifact that evaluator.py decides with numpy alone.

    Linear versions are compiled with their effect model's LightGBM trees; tree
    versions (distilled policies) keep their if/else rules. Copy the printed
    evaluator.py next to an application to decide without installing pexkit.
    """
    from pexkit.effects.persist import load_effect_model
    from pexkit.explain.persist import load_distilled
    from pexkit.serving import evaluator
    from pexkit.serving.artifact import export_distilled, export_policy, write_artifact
    from pexkit.store.db import EventStore

    try:
        store = EventStore(db)
    except PexkitError as exc:
        _fail(f"{type(exc).__name__}: {exc}")
    try:
        row = store.experiment(experiment)
        if row is None:
            _fail(
                f"experiment {experiment!r} is not in the store {db}; expected the name of an "
                "experiment created there (see the dashboard or GET /v1/experiments)."
            )
        version = _export_version(which, experiment, row)
        prow = store.policy(experiment, version)
        versions = [(int(p["version"]), str(p["kind"])) for p in store.policies(experiment)]
        exportable = [v for v, kind in versions if kind in ("linear", "tree")]
        if prow is None:
            _fail(
                f"experiment {experiment!r} has no policy version {version}; its versions are "
                f"{[f'{v} ({kind})' for v, kind in versions]}. Pick a linear or tree version."
            )
        kind = str(prow["kind"])
        if kind not in ("linear", "tree") or prow["model_id"] is None:
            _fail(
                f"policy version {version} of {experiment!r} is {kind!r}: it decides without "
                "features (uniform random), so there is nothing to export; expected a linear "
                f"or tree version. Exportable versions: {exportable or 'none yet'}."
            )
        try:
            blob = store.model_blob(int(prow["model_id"]))
        except Exception as exc:  # the store's not-found error differs by version and backend
            _fail(
                f"policy version {version} of {experiment!r} refers to model {prow['model_id']}, "
                f"which the store cannot return ({type(exc).__name__}: {exc})."
            )
    finally:
        store.close()
    try:
        if kind == "linear":
            model = load_effect_model(blob)
            params = prow["params"]
            policy = LinearPolicy(
                model.spec_, weights=params["weights"], biases=params.get("biases") or {}
            )
            artifact = export_policy(policy, model)
            what = f"linear policy over {artifact['linear']['n_trees']} trees"
        else:
            artifact = export_distilled(load_distilled(blob))
            what = "policy tree"
    except PexkitError as exc:
        _fail(f"policy version {version} of {experiment!r}: {type(exc).__name__}: {exc}")
    artifact["policy_version"] = version
    path = write_artifact(artifact, out)
    source = Path(evaluator.__file__)
    console.print(
        f"wrote {path}: {what}, version {version} of {experiment!r}, arms {artifact['arms']}.\n"
        f"next: to decide without pexkit (numpy only), copy {source} next to your "
        "application:\n"
        "    from evaluator import PolicyEvaluator\n"
        f"    policy = PolicyEvaluator.load({str(path)!r})\n"
        "    arm = policy.arms[policy.choose([features])[0]]  # features: dict of "
        f"{artifact['features']['numeric'] + artifact['features']['categorical']}",
        markup=False, highlight=False, soft_wrap=True,
    )


def _export_version(which: str, experiment: str, row: dict[str, Any]) -> int:
    """VERSION as a number: an integer, or 'launched' (the version the experiment serves)."""
    if which.strip().lower() == "launched":
        launched = (row.get("state") or {}).get("launched_version")
        if launched is None:
            _fail(
                f"experiment {experiment!r} has not launched a policy (phase "
                f"{(row.get('state') or {}).get('phase', row.get('phase'))!r}); pass a version "
                "number instead (see GET /v1/experiments/NAME/policies)."
            )
        return int(launched)
    try:
        return int(which)
    except ValueError:
        _fail(f"VERSION: expected a policy version number or 'launched'; got {which!r}.")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning pexkit errors into a clear message and exit 2."""
    warnings.simplefilter("default", PexkitWarning)
    try:
        app(args=argv, prog_name="pexkit")
    except PexkitError as exc:
        err.print(f"[bold red]error:[/bold red] {type(exc).__name__}: {exc}", markup=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
