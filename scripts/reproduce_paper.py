"""Reproduce one setting of the paper (Hu et al., TMLR 2023): collect, fit, report, compare.

For a setting (``sparse_parities``, ``mnist``, ``modular_addition``,
``modular_addition_stabilized``, ``cifar100``, ``cifar100_destabilized``, and the
CPU stand-ins ``digits``, ``modular_addition_reduced``,
``modular_addition_reduced_stabilized``) this runs

1. ``python -m bayes_trainmap collect`` over 40 seeds (resumable: finished runs are
   skipped; not run at all with ``--data DIR`` or ``--demo``, which fits the set
   shipped in ``bayes_trainmap/demo_data/`` for ``sparse_parities``, ``digits`` and
   ``modular_addition_reduced``);
2. ``python -m bayes_trainmap fit --mode mle`` and ``--mode svi`` into
   ``FITS/<setting>-<mode>`` (each with its report);
3. ``FITS/<setting>-comparison.{json,md}``: our Table-1 row, Table-2 coefficients (MLE
   and SVI medians with 90% intervals), Table-4 row, next to the paper's numbers.

Every step is a plain command printed before it runs (``--dry-run`` prints them only),
so the numbers in ``docs/reproduction.md`` can be re-run one by one. Examples::

    # full paper size on a GPU machine (about 40 x the per-seed time; resumable)
    python scripts/reproduce_paper.py modular_addition --device auto
    # the CPU runs of docs/reproduction.md
    python scripts/reproduce_paper.py sparse_parities --device cpu --demo
    python scripts/reproduce_paper.py modular_addition_reduced_stabilized --device cpu

"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

from bayes_trainmap.analysis import paper_reference

REPO = Path(__file__).resolve().parents[1]
SEEDS = "0-39"

# Collection settings. ``task``/``variant`` name the built-in task; ``collect`` are extra
# arguments of `collect` (the full-size settings use the task defaults, which follow the
# paper's appendix D); ``threshold_task`` is the `fit --task` threshold preset.
SETTINGS: dict[str, dict] = {
    "modular_addition": {"task": "modular_addition", "variant": "default", "collect": [], "paper": "modular_addition"},
    "modular_addition_stabilized": {
        "task": "modular_addition",
        "variant": "stabilized",
        "collect": [],
        "paper": "modular_addition_stabilized",
    },
    "mnist": {"task": "mnist", "variant": "default", "collect": [], "paper": "mnist", "needs_data": True},
    "cifar100": {"task": "cifar100", "variant": "default", "collect": [], "paper": "cifar100", "needs_data": True},
    "cifar100_destabilized": {
        "task": "cifar100",
        "variant": "destabilized",
        "collect": [],
        "paper": "cifar100_destabilized",
        "threshold_task": "cifar100_destabilized",
        "needs_data": True,
    },
    "sparse_parities": {
        "task": "sparse_parities",
        "variant": "default",
        "collect": ["--steps", "25000", "--eval-every", "125"],
        "paper": "sparse_parities",
        "demo": "bayes_trainmap/demo_data/sparse_parities",
    },
    # CPU stand-ins (docs/reproduction.md)
    "digits": {
        "task": "digits",
        "variant": "default",
        "collect": ["--steps", "2400", "--eval-every", "10"],
        "paper": "mnist",
        "demo": "bayes_trainmap/demo_data/digits",
    },
    # The task's 'reduced' variant (p=23, 70% split trained full batch, width 64, 1200
    # steps); the stabilised counterpart makes the paper's two changes (section 3.3):
    # layer norm added back and a batch 1/8 as large (370 -> 46; the paper: 2048 -> 256).
    "modular_addition_reduced": {
        "task": "modular_addition",
        "variant": "reduced",
        "collect": [],
        "paper": "modular_addition",
        "demo": "bayes_trainmap/demo_data/modular_addition",
    },
    "modular_addition_reduced_stabilized": {
        "task": "modular_addition",
        "variant": "reduced",
        "collect": ["--set", "layer_norm=true", "--set", "batch_size=46"],
        "paper": "modular_addition_stabilized",
    },
}

# The paper's numbers (Tables 1, 2 and 4), shared with notebooks/03_paper_tables.py.
PAPER = paper_reference.PAPER


def _run(cmd: list[str], *, dry_run: bool) -> None:
    print("+", " ".join(shlex.quote(c) for c in cmd), flush=True)
    if not dry_run:
        subprocess.run(cmd, check=True, cwd=REPO)


def collect_command(name: str, out: Path, args) -> list[str]:
    s = SETTINGS[name]
    cmd = [sys.executable, "-m", "bayes_trainmap", "collect", "--task", s["task"], "--variant", s["variant"]]
    cmd += ["--seeds", args.seeds, "--out", str(out), "--device", args.device, "--no-progress", *s["collect"]]
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    if args.download:
        cmd += ["--download"]
    if args.ensemble_size:
        cmd += ["--ensemble-size", str(args.ensemble_size)]
    for override in args.overrides:
        cmd += ["--set", override]
    return cmd


def fit_command(name: str, data: Path, out: Path, mode: str, args) -> list[str]:
    s = SETTINGS[name]
    cmd = [sys.executable, "-m", "bayes_trainmap", "fit", "--mode", mode, "--data", str(data), "--out", str(out)]
    cmd += ["--task", s.get("threshold_task", s["task"]), "--device", args.device, "--seed", str(args.seed)]
    return cmd + ["--quiet"]


# --- comparison with the paper ---------------------------------------------------------


def _num(v, digits=3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if v != 0 and abs(v) < 10 ** -digits:
        return f"{v:.1e}"
    return f"{v:.{digits}f}" if abs(v) < 1000 else f"{v:.0f}"


def comparison(name: str, fits: dict[str, Path]) -> dict:
    """Our numbers (from each fit's report.json) next to the paper's."""
    ours = {}
    for mode, fit_dir in fits.items():
        rep = json.loads((fit_dir / "report.json").read_text())
        reg = rep["regression"]
        conv = rep["convergence"]
        unc = rep.get("uncertainty") or {}
        unc_states = {row["state"]: row for row in unc.get("states", [])}
        states = []
        for row in rep["states"]:
            u = unc_states.get(row["state"], {})
            states.append(
                {
                    "state": row["state"],
                    "occupancy": row["occupancy"],
                    "n_runs": row["n_runs"],
                    "coefficient": row["coefficient"],
                    "ci_low": row["ci_low"],
                    "ci_high": row["ci_high"],
                    "detour": row["detour"],
                    "coef_median": u.get("coef_median"),
                    "coef_lo": u.get("coef_lo"),
                    "coef_hi": u.get("coef_hi"),
                    "p_detour": u.get("p_detour"),
                }
            )
        ours[mode] = {
            "fit_dir": str(fit_dir),
            "n_states": rep["fit"]["n_states"],
            "n_runs": rep["fit"]["n_runs"],
            "table1": rep["table1"],
            "r_squared_interval": unc.get("r_squared"),
            "interval": unc.get("interval"),
            "n_converged": conv["n_converged"],
            "never_converged": conv["never_converged"],
            "threshold": conv["threshold"],
            "convergence_mean": conv["mean"],
            "convergence_sd": conv["sd"],
            "states": states,
            "detour_states": rep["detour_states"],
            "edges": [(e["source"], e["target"], e["n_runs"]) for e in rep["edges"]],
            "table4": rep["table4"],
            "regression_warning": reg.get("warning"),
        }
    return {"setting": name, "paper_setting": SETTINGS[name]["paper"], "paper": paper_reference.paper_reference(SETTINGS[name]["paper"]), "ours": ours}


def _r_squared_text(o: dict, detailed: bool) -> str:
    """R² of one fit, with its posterior interval when there is one (median and mass if ``detailed``)."""
    text = _num(o["table1"]["r_squared"])
    ri = o["r_squared_interval"]
    if not ri:
        return text
    if detailed:
        return text + f" (posterior median {_num(ri['median'])}, {int(100 * o['interval'])}% [{_num(ri['lo'])}, {_num(ri['hi'])}])"
    return text + f" [{_num(ri['lo'], 2)}, {_num(ri['hi'], 2)}]"


def render_comparison(c: dict) -> str:
    paper = c["paper"]
    lines = [f"### {c['setting']} (paper: {c['paper_setting']})", ""]
    lines += ["**Table 1**", "", "| | K | R² | p | dissimilarity | forking | converged runs |", "|---|---|---|---|---|---|---|"]
    t = paper["table1"]
    k_paper = paper["table4"]["hmm"][0]
    lines.append(f"| paper | {k_paper} | {_num(t['r_squared'])} | {_num(t['p_value'])} | {_num(t['dissimilarity'])} | {_num(t['forking'])} | not reported |")
    for mode, o in c["ours"].items():
        t = o["table1"]
        r2 = _r_squared_text(o, detailed=True)
        lines.append(
            f"| ours, {mode} | {o['n_states']} | {r2} | {_num(t['p_value'])} | {_num(t['dissimilarity'])} | "
            f"{_num(t['forking'])} | {o['n_converged']} of {o['n_runs']} (threshold {o['threshold']}) |"
        )
    lines += ["", "**Table 2** (coefficient per state, SD units; ✱ = detour state)", ""]
    if paper["table2"]:
        coefs = ", ".join(
            f"{k}: {v:+.2f}{'✱' if k in paper['table2']['detours'] else ''}" for k, v in enumerate(paper["table2"]["coefficients"])
        )
        lines.append(f"- paper: {coefs}")
    else:
        lines.append("- paper: no table (linear map, no detour states)")
    for mode, o in c["ours"].items():
        parts = []
        for s in o["states"]:
            mark = "✱" if s["detour"] else ""
            if mode != "mle" and s["coef_median"] is not None:
                parts.append(f"{s['state']}: {_num(s['coef_median'], 2)}{mark} [{_num(s['coef_lo'], 2)}, {_num(s['coef_hi'], 2)}] P(detour) {_num(s['p_detour'], 2)}")
            else:
                parts.append(f"{s['state']}: {_num(s['coefficient'], 2)}{mark} (OLS 95% CI [{_num(s['ci_low'], 2)}, {_num(s['ci_high'], 2)}], {s['n_runs']} runs)")
        lines.append(f"- ours, {mode}: " + "; ".join(parts))
    lines += ["", "**Table 4** (components, BIC)", "", "| | k-means | HMM-1 | HMM |", "|---|---|---|---|"]
    t4 = paper["table4"]
    lines.append("| paper | " + " | ".join(f"{t4[m][0]}, {_num(float(t4[m][1]), 1)}" for m in paper_reference.TABLE4_KEYS.values()) + " |")
    for mode, o in c["ours"].items():
        by = {paper_reference.table4_key(row["model"]): row for row in o["table4"]}
        cells = []
        for key in paper_reference.TABLE4_KEYS.values():
            row = by.get(key)
            cells.append(f"{row['components']}, {_num(row['bic'], 1)}" if row else "–")
        lines.append(f"| ours, {mode} | " + " | ".join(cells) + " |")
    lines.append("")
    for mode, o in c["ours"].items():
        edges = ", ".join(f"{a}→{b} ({n})" for a, b, n in o["edges"])
        lines.append(f"Edges, {mode} (source → target, runs using it): {edges}")
    return "\n".join(lines) + "\n"


def render_summary(comparisons: list[dict]) -> str:
    """One Markdown row per setting and mode: our Table-1 row, detours, and the paper's."""
    rows = [
        "| setting (paper's) | fit | K | R² | p | dissimilarity | forking | detours | paper: K, R², p, dissimilarity, forking |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        p1, k_paper = c["paper"]["table1"], c["paper"]["table4"]["hmm"][0]
        paper = f"{k_paper}, {_num(p1['r_squared'])}, {_num(p1['p_value'])}, {_num(p1['dissimilarity'])}, {_num(p1['forking'])}"
        for mode, o in c["ours"].items():
            t = o["table1"]
            r2 = _r_squared_text(o, detailed=False)
            detours = ", ".join(str(k) for k in o["detour_states"]) or "none"
            rows.append(
                f"| {c['setting']} ({c['paper_setting']}) | {mode} | {o['n_states']} | {r2} | {_num(t['p_value'])} | "
                f"{_num(t['dissimilarity'])} | {_num(t['forking'])} | {detours} | {paper} |"
            )
    return "\n".join(rows) + "\n"


# --- driver ----------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("setting", nargs="?", choices=sorted(SETTINGS))
    parser.add_argument("--runs", type=Path, default=Path("runs/reproduce"), help="collections go to RUNS/<setting>")
    parser.add_argument("--fits", type=Path, default=Path("fits/reproduce"), help="fit directories go to FITS/<setting>-<mode>")
    parser.add_argument("--data", type=Path, help="fit this trajectory set instead of collecting (e.g. a demo set)")
    parser.add_argument("--demo", action="store_true", help="fit the shipped demo set of this setting")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (collect and fit)")
    parser.add_argument("--seeds", default=SEEDS)
    parser.add_argument("--seed", type=int, default=0, help="fit seed (run split, restarts, SVI)")
    parser.add_argument("--modes", nargs="+", default=["mle", "svi"], choices=["mle", "map", "svi"])
    parser.add_argument("--data-root", help="data directory (mnist, cifar100)")
    parser.add_argument("--download", action="store_true", help="let torchvision download mnist/cifar100")
    parser.add_argument("--ensemble-size", type=int, help="most seeds trained together (memory)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="task config override for collect (repeatable)"
    )
    parser.add_argument("--skip-collect", action="store_true")
    parser.add_argument("--skip-fit", action="store_true", help="only (re)write the comparison from existing fits")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    parser.add_argument("--summary", action="store_true", help="print the summary table of every FITS/*-comparison.json")
    args = parser.parse_args(argv)

    if args.summary:
        files = sorted(args.fits.resolve().glob("*-comparison.json"))
        print(render_summary([json.loads(f.read_text()) for f in files]), end="")
        return 0
    if args.setting is None:
        parser.error("a setting is required")
    name = args.setting
    s = SETTINGS[name]
    args.runs, args.fits = args.runs.resolve(), args.fits.resolve()
    if not args.dry_run:
        args.fits.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1" if args.device == "cpu" else os.environ.get("OMP_NUM_THREADS", "4"))

    if args.demo:
        if "demo" not in s:
            parser.error(f"no demo set is shipped for {name}")
        args.data = REPO / s["demo"]
    data = args.data.resolve() if args.data else args.runs / name
    if args.data is None and not args.skip_collect:
        if s.get("needs_data") and not (args.data_root or args.download):
            print(f"note: {s['task']} reads torchvision data; pass --data-root DIR (or --download)", file=sys.stderr)
        _run(collect_command(name, data, args), dry_run=args.dry_run)
    fits = {}
    for mode in args.modes:
        out = args.fits / f"{name}-{mode}"
        if not args.skip_fit:
            _run(fit_command(name, data, out, mode, args), dry_run=args.dry_run)
        fits[mode] = out
    if args.dry_run:
        return 0
    c = comparison(name, fits)
    (args.fits / f"{name}-comparison.json").write_text(json.dumps(c, indent=1, default=str))
    text = render_comparison(c)
    (args.fits / f"{name}-comparison.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
