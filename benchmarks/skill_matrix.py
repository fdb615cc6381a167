"""Every family's default on every skill case, next to the floor: one command for issue 13's table.

Runs :mod:`skill` once per (case, model) with the model's defaults (``--fit '{"model": M}'``; the
library default without ``model=``) and once per case for the independent floor net, appending
every row to ``results/skill_runs.jsonl`` under the label ``<tag>-<model>``, then prints one
markdown table: RMSE / bicubic (CRPS against the default deterministic model's MAE for the
ensembles), updates and fit seconds. A model that refuses a case (e.g. one that takes no
covariates, on a ``+cov`` case) is listed with the first line of its error. The whole matrix
takes hours on 2 cores; ``--cases`` and ``--models`` pick a part.

    PYTHONPATH=. python benchmarks/skill_matrix.py --threads 2 [--cases tair4,radolan8] [--models default,liif]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import skill  # noqa: E402

# case -> skill.py arguments (the floor's batch is smaller where whole fields are large)
CASES = {
    "tair4": ["--factor", "4"], "tair2": ["--factor", "2"],
    "pr4": ["--var", "pr", "--factor", "4"], "pr2": ["--var", "pr", "--factor", "2"],
    "msl4": ["--data", "meteonet", "--var", "msl", "--floor-batch", "8"],
    "msl4+cov": ["--data", "meteonet", "--var", "msl", "--covariates", "--floor-batch", "8"],
    "tp4": ["--data", "meteonet", "--var", "tp", "--floor-batch", "8"],
    "tp4+cov": ["--data", "meteonet", "--var", "tp", "--covariates", "--floor-batch", "8"],
    "radolan8": ["--data", "radolan", "--factor", "8", "--floor-batch", "8"],
}
MODELS = ["default", "cnn", "convgru", "flowconvgru", "gan", "rnngan", "diffusion", "maunet", "maunet-light", "liif"]


def run_case(case: str, models: list[str], args) -> list[dict]:
    base = CASES[case] + ["--threads", str(args.threads), "--out", args.out]
    out = []
    if not case.endswith("+cov"):  # the floor never sees covariates: once per field
        skill.main(base + ["--no-default", "--label", f"{args.tag}-floor"])
    for model in models:
        fit = {} if model == "default" else {"model": model}
        try:
            skill.main(base + ["--no-floor", "--label", f"{args.tag}-{model}", "--fit", json.dumps(fit)])
        except Exception as err:  # a refusal is a result too: the table shows it
            out.append({"case": case, "model": model, "refused": str(err).splitlines()[0]})
            print(f"{case} {model}: refused: {out[-1]['refused']}", flush=True)
    return out


def summary(path: Path, tag: str, refusals: list[dict]) -> str:
    rows = [json.loads(line) for line in open(path)]
    rows = [r for r in rows if str(r.get("label", "")).startswith(f"{tag}-")]
    lines = ["| case | model | RMSE / bicubic | CRPS | updates | fit s |", "|---|---|---|---|---|---|"]
    for r in rows:
        case = f"{r['data']} {r['var']} x{r['factor']}" + (" +cov" if "+orog" in r["label"] else "")
        model = r["label"][len(tag) + 1 :].replace("+orog,lsm", "")
        if not r["method"].startswith("fit"):
            model = r["method"]
        crps = f"{r['crps']:.4g}" if "crps" in r else ""
        lines.append(f"| {case} | {model} | {r['ratio']:.3f} | {crps} | {r['updates']} | {r['fit_s']:.0f} |")
    for r in refusals:
        lines.append(f"| {r['case']} | {r['model']} | refused: {r['refused']} | | | |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tag", default="matrix-" + time.strftime("%Y%m%d"))
    p.add_argument("--out", default=str(skill.RESULTS / "skill_runs.jsonl"))
    args = p.parse_args()
    unknown = [c for c in args.cases.split(",") if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {unknown}: choose from {', '.join(CASES)}")
    refusals = []
    for case in args.cases.split(","):
        refusals += run_case(case, args.models.split(","), args)
    print(summary(Path(args.out), args.tag, refusals))


if __name__ == "__main__":
    main()
