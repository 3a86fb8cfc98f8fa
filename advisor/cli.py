"""``advisor``: which transfer strategy and backbone for N images from domain D, answered from the study's results.

Sub-commands (each takes ``--results SOURCE``: a store URL, a ``.db`` file or an export folder; default: the
committed reference study ``results/reference/``, else ``results/study.db``)::

    advisor fit                                  fit and say what the advisor was fitted on
    advisor recommend --n-images 2000 --domain medical [--n-classes K] [--image-size S] [--backbone B]
                      [--budget MINUTES] [--data-dir PATH] [--source-dir PATH] [--json]
                      (--data-dir tickets.csv, or class folders of .txt files: text strategies, advisor.text)
    advisor rules                                the advice as a few rules of thumb
    advisor evaluate [--json] [--probes FILE]    leave-one-dataset-out regret of the advisor and every baseline
    advisor probes [--out FILE]                  probe every study cell's N training images (advisor.probes)
    advisor train --data-dir PATH --out DIR [--domain D] [--strategy S] [--backbone B] [--trials T]
                  [--image-size S] [--epochs E] [--seed N] [--force] [--no-gap]
                                                 train the advised model and export .keras + TFLite (advisor.deploy)
    advisor predict --model DIR IMAGE|FOLDER... [--tflite float32|float16|int8] [--json]

Every command takes ``-v`` / ``--verbose`` to show TensorFlow's own start-up and log lines (hidden otherwise).

The advisor is fitted from the tables at every call (about a second; nothing pickled is shipped).
``--domain`` is required unless ``--data-dir`` is given: then the measured domain gap carries the information and
the domain defaults to ``other`` (with a note). Errors are one line on stderr with exit status 2; ``advisor predict``
exits 1 when it predicted some images but could not read others (each named on its own stderr line).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from advisor.data import OTHER, AdvisorError
from advisor.fitted import load_fitted
from advisor.render import imbalance_note
from study.cli_support import add_verbose_flag, quiet_tensorflow
from study.data.datasets import known_domains
from study.errors import StudyError
from study.train.deploy import VARIANTS

TOP_SHOWN = 6
PREDICT_PARTIAL = 1
"""``advisor predict`` exit status when some images were predicted and others could not be read."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _domain_labels() -> str:
    """The registry's domain labels (``study.data.datasets.known_domains``) plus ``other``, for help and errors."""
    return ", ".join([*known_domains(), OTHER])


def _parser() -> argparse.ArgumentParser:
    verbosity = argparse.ArgumentParser(add_help=False)
    add_verbose_flag(verbosity, default=argparse.SUPPRESS)  # after the sub-command too: `advisor train -v ...`
    common = argparse.ArgumentParser(add_help=False, parents=[verbosity])
    common.add_argument("--results", metavar="SOURCE", help="results store URL, .db file or export folder "
                        "(default: results/reference/, else results/study.db)")  # fmt: skip
    p = _Parser(prog="advisor", description=__doc__.splitlines()[0])
    add_verbose_flag(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    sub.add_parser("fit", parents=[common], help="fit and print what the advisor was fitted on")
    rec = sub.add_parser("recommend", parents=[common], help="ranked strategies and backbones for a dataset")
    rec.add_argument("--n-images", type=int, help="labelled training images you have")
    rec.add_argument("--domain", help=f"domain label: one of {_domain_labels()} (README: which label fits your data)")
    rec.add_argument("--n-classes", type=int, help="number of classes")
    rec.add_argument("--image-size", type=int, help="network input size in pixels (default: the study's)")
    rec.add_argument("--backbone", help="only this backbone (and backbone-free strategies)")
    rec.add_argument("--budget", type=float, metavar="MINUTES", help="training budget in minutes (study machine)")
    rec.add_argument("--data-dir", help="measure the traits from this image folder (one sub-folder per class)")
    rec.add_argument("--source-dir", metavar="PATH", help="a labelled related source folder (same class names): "
                     "which of source_only / dann / target_only / source_then_target the study measured best at your "
                     "number of labelled target images (--data-dir's count or --n-images; advisor.adaptation)")
    rec.add_argument("--pilot", type=float, metavar="MINUTES", help="with --data-dir: train the top candidates on "
                     "a quarter of your training images within MINUTES, score them on others (never the held-out "
                     "split) and re-rank (advisor.pilot; on the reference study it did not improve the advice on "
                     "average: advisor evaluate --pilot)")  # fmt: skip
    rec.add_argument("--json", action="store_true", help="print the full recommendation as JSON")
    sub.add_parser("rules", parents=[common], help="the fitted advice as a short rule list")
    ev = sub.add_parser("evaluate", parents=[common], help="leave-one-dataset-out regret vs the textbook rule")
    ev.add_argument("--json", action="store_true", help="print the table as JSON records")
    ev.add_argument("--pilot", action="store_true", help="also score the pilot (recommend --pilot): the held-out "
                    "dataset's study cell at a quarter of n is the pilot, read on one half of the test set, the "
                    "picks scored on the other half (advisor.pilot.evaluate_pilot)")  # fmt: skip
    ev.add_argument("--probes", metavar="FILE", help="the study's cell probes (default: probes.parquet beside the "
                    "results; advisor probes writes it)")  # fmt: skip
    pb = sub.add_parser("probes", parents=[common], help="probe every study cell's N training images (linear probe, "
                        "kNN, LogME per backbone) into a table beside the results")  # fmt: skip
    pb.add_argument("--out", metavar="FILE", help="Parquet file to write (default: probes.parquet beside the results)")
    pb.add_argument("--datasets", help="only these datasets (comma-separated)")
    pb.add_argument("--limit", type=int, help="stop after this many new cells")
    tr = sub.add_parser("train", parents=[common], help="train the advised strategy on a folder and export it")
    tr.add_argument("--data-dir", required=True, help="image folder: one sub-folder per class, or train/ + test/ "
                    "(a val/ beside them joins train/)")  # fmt: skip
    tr.add_argument("--domain", help=f"domain label: one of {_domain_labels()} (default: other; the measured domain "
                    "gap informs the advice)")  # fmt: skip
    tr.add_argument("--strategy", help="train this strategy instead of the advisor's top one")
    tr.add_argument("--backbone", help="use this backbone instead of the advisor's")
    tr.add_argument("--trials", type=int, default=1, help="tuning trials (the study's Optuna budget; default 1)")
    tr.add_argument("--image-size", type=int, help="network input size, 8 to 1024 pixels (default: the advisor's)")
    tr.add_argument("--epochs", type=int, default=10, help="epochs per training phase (early stopping; default 10)")
    tr.add_argument("--seed", type=int, default=0, help="split and training seed, 0 to 2**32-1 (default 0)")
    tr.add_argument("--out", required=True, metavar="DIR", help="folder to write the model, TFLite files and metrics")
    tr.add_argument("--force", action="store_true", help="replace an --out folder that advisor train wrote before "
                    "(it holds advisor-model.json); any other non-empty folder is refused")  # fmt: skip
    tr.add_argument("--pilot", type=float, metavar="MINUTES", help="pilot the top candidates first (as recommend "
                    "--pilot) and train the pilot's first choice")  # fmt: skip
    tr.add_argument("--max-length", type=int, help="text only: token budget, 2 to 512 (default 128, the text grid's)")
    tr.add_argument("--no-gap", action="store_true", help="skip measuring the domain gap (faster; the advisor then "
                    "assumes the study's typical gap for the domain)")  # fmt: skip
    pr = sub.add_parser("predict", parents=[verbosity], help="classify images with a model written by advisor train",
                        description="Classify images with a model written by advisor train.",
                        epilog=f"Exit status: 0 every image predicted; {PREDICT_PARTIAL} some images could not be "
                        "read (each is named on stderr, the others are predicted); 2 a bad model folder or flag, or "
                        "no image could be read.")  # fmt: skip
    pr.add_argument("--model", required=True, metavar="DIR", help="folder written by advisor train")
    pr.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or folders (every image under them); "
                    "for a text model: texts, .txt files or a .csv with a text column")  # fmt: skip
    pr.add_argument("--tflite", choices=list(VARIANTS), help="use this TFLite model, not model.keras")
    pr.add_argument("--json", action="store_true", help="print every class probability as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``advisor`` script; a bad input is one line on stderr and exit status 2."""
    args = _parser().parse_args(argv)
    quiet_tensorflow(args.verbose)  # before anything imports TensorFlow
    try:
        commands = {"fit": _fit, "recommend": _recommend, "rules": _rules, "evaluate": _evaluate, "train": _train,
                    "predict": _predict, "probes": _probes}  # fmt: skip
        return commands[args.command](args)
    except StudyError as error:  # AdvisorError included
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `advisor rules | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's documented idiom for SIGPIPE
        return 0


def _fit(args: argparse.Namespace) -> int:
    advisor, runs, _, seconds = load_fitted(args.results)
    f = advisor.fitted_on_
    r = advisor.runs_
    print(f"fitted on {f['source']}: {f['n_rows']} runs ({f['n_excluded_degenerate']} degenerate excluded), "
          f"checksum {f['checksum']}, in {seconds:.1f} s")  # fmt: skip
    print(f"datasets ({len(f['datasets'])}): {', '.join(f['datasets'])}")
    print(f"domains: {', '.join(advisor.domains_)}")
    lo, hi = advisor.ranges_["n_images"]
    sizes = ", ".join(str(s) for s in sorted(r["image_size"].unique()))
    print(f"training-set sizes {lo:g}-{hi:g}; image sizes {sizes} px")
    print(f"strategies: {', '.join(advisor.strategies_)}; backbones: {', '.join(advisor.backbones_)}")
    return 0


def _recommend(args: argparse.Namespace) -> int:
    from advisor.model import Traits

    if args.source_dir:  # a labelled related source: the domain-adaptation question (N_t may be 0)
        from advisor.adaptation import print_adaptation_advice

        return print_adaptation_advice(args.source_dir, args.data_dir, args.n_images, args.json, args.results)
    if args.n_images is None and not args.data_dir:
        raise AdvisorError("--n-images is required (or --data-dir to count the images)")
    if args.pilot is not None and (not args.data_dir or not args.pilot > 0):
        raise AdvisorError("--pilot MINUTES needs --data-dir (the pilot trains on your images) and a positive "
                           f"number of minutes, got {args.pilot:g}")  # fmt: skip
    if args.n_images is not None and args.n_images <= 0:
        raise AdvisorError(f"--n-images must be a positive number of labelled images, got {args.n_images}")
    if args.data_dir:
        from advisor.text import is_text_input, print_text_recommendation

        if is_text_input(args.data_dir):  # a text,label CSV or class folders of .txt files
            if args.pilot is not None:
                raise AdvisorError("--pilot runs on image folders only; drop it for text")
            return print_text_recommendation(args.data_dir, args.results, args.n_images, args.json)
    if args.domain is None and not args.data_dir:
        raise AdvisorError(f"--domain is required (one of {_domain_labels()}) unless --data-dir is given")
    domain = args.domain or OTHER
    folder = None
    if args.data_dir:
        from advisor.traits import check_folder

        folder = check_folder(args.data_dir)
    # validate the numbers before anything slow happens
    Traits(n_images=args.n_images or 1, domain=domain, n_classes=args.n_classes, image_size=args.image_size,
           budget_minutes=args.budget)  # fmt: skip
    advisor, runs, similarity, _ = load_fitted(args.results)
    advisor._check_domain(domain)
    values: dict[str, Any] = {"domain": domain, "n_classes": args.n_classes, "image_size": args.image_size,
                              "backbone": args.backbone, "budget_minutes": args.budget}  # fmt: skip
    measured: dict[str, Any] = {}
    if folder is not None:
        from advisor.traits import measure

        measured = measure(folder, domain, gap_scales=advisor.gap_scales_, image_size=args.image_size,
                           warn=lambda m: print(f"warning: {m}", file=sys.stderr))  # fmt: skip
        if args.domain is None:
            print("note: no --domain given: the advice rests on the measured domain gap", file=sys.stderr)
        values.update(n_images=measured["n_images"], gap=measured["gap"], imbalance=measured["imbalance"])
        if args.n_classes is None:
            values["n_classes"] = measured["n_classes"]
    if args.n_images is not None:
        values["n_images"] = args.n_images
    rec = advisor.recommend(Traits(**values))
    probes = probe_advice = pilot = None
    if folder is not None:
        probes, probe_advice, pilot = _probe_advice(args, folder, advisor, runs, similarity, values)
    if args.json:
        out = rec.to_dict()
        if measured:
            out["measured"] = measured
        if probes is not None:
            out["probes"] = json.loads(probes.to_json(orient="records"))
        if probe_advice is not None:
            out["probe_advice"] = json.loads(probe_advice.to_json(orient="records"))
        if pilot is not None:
            out["pilot"] = {"size": pilot["size"], "scored": pilot["scored"], "seconds": pilot["seconds"],
                            "ranking": json.loads(pilot["ranking"].to_json(orient="records"))}  # fmt: skip
        if folder is None:
            out["note"] = SHARPER
        print(json.dumps(out, indent=2))
        return 0
    if probe_advice is not None:  # measured on the user's images: this ranking leads (advisor evaluate: why)
        print(format_probes(probes, probe_advice))
        print()
        if pilot is not None:
            print(format_pilot(pilot, args.pilot))
            print()
        print("Without the probes, from the traits alone (the first advisor):")
        print(format_recommendation(rec, measured))
        return 0
    print(format_recommendation(rec, measured))
    if probes is not None:
        print()
        print(format_probes(probes, probe_advice))
    if folder is None:
        print(f"Note: {SHARPER}")
    return 0


SHARPER = ("measuring your images (--data-dir FOLDER) would sharpen this advice: the frozen backbones are then "
           "probed on your own classes (linear probe, kNN, LogME) and the options ranked from what they measure")


def _probe_advice(args: argparse.Namespace, folder: Any, advisor: Any, runs: Any, similarity: Any,
                  values: dict[str, Any]) -> tuple[Any, Any, Any]:  # fmt: skip
    """The folder's probes per backbone, the gain model's ranking when the results carry cell probes, and with
    ``--pilot`` the pilot's runs and re-ranking (``advisor.pilot.run_pilot``)."""
    from advisor.pilot import pilot_gain, run_pilot
    from advisor.probes import probe_ranking

    def warn(message: str) -> None:
        print(f"warning: {message}", file=sys.stderr)

    gain = pilot_gain(runs, similarity, args.results) if args.pilot is not None else None
    probes, ranking = probe_ranking(folder, advisor, runs, similarity, values, args.results, backbone=args.backbone,
                                    image_size=args.image_size, warn=warn, gain=gain)  # fmt: skip
    if gain is None or ranking is None:
        return probes, ranking, None
    pilot = run_pilot(folder, ranking, values, gain, minutes=args.pilot,
                      image_size=args.image_size or advisor.default_size_, warn=warn)  # fmt: skip
    return probes, ranking, pilot


def format_pilot(pilot: dict[str, Any], minutes: float) -> str:
    """The pilot's measured candidates and the ranking after it."""
    lines = [f"Pilot ({minutes:g} min budget, {pilot['seconds']:.0f} s): the top candidates trained on "
             f"{pilot['size']} of your training images, scored on {pilot['scored']} others (never the held-out "
             "split); expected accuracy at your n shifted by how far the prediction at the pilot's size missed:"]
    for i, r in enumerate(pilot["ranking"].itertuples(index=False), 1):
        if r.piloted:
            at_m = f"pilot {r.pilot:.3f} vs predicted {r.predicted_m:.3f} at {pilot['size']}"
        else:
            at_m = "not piloted (budget)"
        lines.append(f"{i:>2}  {r.strategy:<20}{r.backbone:<20}{r.accuracy:.3f} ({r.low:.3f}-{r.high:.3f})  "
                     f"[{at_m}]")  # fmt: skip
    return "\n".join(lines)


def format_probes(probes: Any, advice: Any) -> str:
    """The folder's measured probes and, when the study's cell probes exist, the ranking built on them."""
    repeats = int(probes["repeats"].max()) if "repeats" in probes and probes["repeats"].notna().any() else 1
    partitions = f", averaged over {repeats} fold partitions" if repeats > 1 else ""
    lines = [f"Measured on your training images (5-fold cross-validated{partitions}; the held-out split never enters):",
             f"  {'backbone':<20}{'linear probe':<22}{'kNN':<8}{'LogME':<9}seconds (features + probes)"]  # fmt: skip
    for r in probes.itertuples(index=False):
        probe = f"{r.linear_probe_accuracy:.3f} ± {r.linear_probe_std:.3f}"
        lines.append(f"  {r.backbone:<20}{probe:<22}{r.knn_accuracy:<8.3f}{r.logme:<9.3f}"
                     f"{r.extract_seconds:.1f} + {r.probe_seconds:.1f}")  # fmt: skip
    if advice is None:
        return "\n".join(lines)
    lines += ["", "Recommendation from your probes and the study's gains over them (80 % intervals from held-out "
              "datasets):"]  # fmt: skip
    shown = advice.head(TOP_SHOWN)
    sw, bw = (max(len(x) for x in shown[c].astype(str)) + 2 for c in ("strategy", "backbone"))
    for i, r in enumerate(shown.itertuples(index=False), 1):
        flag = "  EXTRAPOLATED: never measured at this n" if r.extrapolated else ""
        basis = "your probe, weighed by n" if r.frozen else "gain model"  # shrunk: advisor.gain.ProbeShrinkage
        lines.append(f"{i:>2}  {r.strategy:<{sw}}{r.backbone:<{bw}}{r.accuracy:.3f} ({r.low:.3f}-{r.high:.3f}), "
                     f"{basis}{flag}")  # fmt: skip
    return "\n".join(lines)


def format_recommendation(rec: Any, measured: dict[str, Any] | None = None) -> str:
    """The recommendation as the text ``advisor recommend`` prints."""
    t = rec.traits
    lines = [f"Advice for {t['n_images']} training images, domain {t['domain']}: {t['n_classes']} classes, "
             f"{t['image_size']} px, domain gap {t['gap']:.2f}."]  # fmt: skip
    if measured:
        lines.append(f"  measured from the folder: {measured['n_images']} images, {measured['n_classes']} classes, "
                     f"largest class {measured['imbalance']:.0%}, native size ~{measured['native_size']} px"
                     + (f", gap {measured['gap']:.2f}" if measured.get("gap") is not None else ""))  # fmt: skip
        note = imbalance_note(measured)
        if note:
            lines.append(f"  {note}")
    for a in rec.assumed:
        lines.append(f"  assumed: {a}")
    f = rec.fitted_on
    lines.append(f"  fitted on {f['n_rows']} runs of {len(f['datasets'])} datasets from {f['source']} "
                 f"(checksum {f['checksum']})")  # fmt: skip
    lines.append("")
    sw = max([len("strategy"), *(len(o.strategy) for o in rec.options)]) + 2  # names of any length stay in columns
    bw = max([len("backbone"), *(len(o.backbone) for o in rec.options)]) + 2
    lines.append(f" #  {'strategy':<{sw}}{'backbone':<{bw}}{'expected accuracy':<28}training cost")
    for o in rec.options[:TOP_SHOWN]:
        acc = f"{o.accuracy:.3f} ({rec.interval:.0%}: {o.low:.3f}-{o.high:.3f})"
        cost = f"{o.cost_minutes:.1f} min" + ("" if o.within_budget else " (over budget)")
        lines.append(f"{o.rank:>2}  {o.strategy:<{sw}}{o.backbone:<{bw}}{acc:<28}{cost}")
    if len(rec.options) > TOP_SHOWN:
        lines.append(f"    ... {len(rec.options) - TOP_SHOWN} more (--json lists all)")
    best = rec.best
    r = best.recipe
    lines += ["", f"Recipe for {best.strategy} / {best.backbone} (best runs of the {r.get('from_cells', 0)} nearest "
              "measured cells):"]  # fmt: skip
    if r.get("freeze"):
        lines.append(f"  freeze: {r['freeze']}")
    hp = [f"{k} {r[k]:g}" for k in ("lr_head", "lr_finetune", "dropout", "weight_decay", "linear_c", "top_k") if k in r]
    if hp:
        lines.append(f"  hyper-parameters that worked: {', '.join(hp)}")
    if r.get("epochs"):
        lines.append("  epochs run (early stopping): " + ", ".join(f"{p} {n}" for p, n in r["epochs"].items()))
    if r.get("strategy_recipe"):
        lines.append(f"  {r['strategy_recipe']}")
    lines += ["", "Evidence: nearest measured cells (seed mean, 95 % interval):"]
    for o in rec.options[:3]:
        for e in o.evidence[:3]:
            lines.append(
                f"  {e.dataset} ({e.domain}) n={e.n_images} {e.strategy}/{e.backbone}: {e.accuracy:.3f} "
                f"[{e.ci_low:.3f}, {e.ci_high:.3f}], {e.n_seeds} seeds, distance {e.distance:.2f}"
            )
    lines.append("")
    if rec.extrapolation:
        lines.append("EXTRAPOLATING:")
        lines += [f"  - {x}" for x in rec.extrapolation]
    else:
        lines.append("Within the study's measured range.")
    lines.append(f"Trust: {rec.trust}" + (f" ({'; '.join(rec.trust_reasons)})" if rec.trust_reasons else ""))
    lines.append(f"The textbook 2x2 rule would say: {rec.textbook}.")
    return "\n".join(lines)


def _train(args: argparse.Namespace) -> int:
    from advisor.deploy import format_train, train
    from advisor.text import is_text_input

    if is_text_input(args.data_dir):  # a text,label CSV or class folders of .txt files
        if args.pilot is not None:
            raise AdvisorError("--pilot runs on image folders only; drop it for text")
        return _train_text(args)
    if args.pilot is not None and (not args.pilot > 0 or args.strategy or args.backbone):
        raise AdvisorError("--pilot MINUTES must be a positive number of minutes, and chooses the option itself: "
                           "drop --strategy/--backbone to pilot")  # fmt: skip

    outcome = train(args.data_dir, args.out, domain=args.domain, strategy=args.strategy, backbone=args.backbone,
                    trials=args.trials, image_size=args.image_size, epochs=args.epochs, seed=args.seed,
                    force=args.force, results=args.results, measure_gap=not args.no_gap, pilot_minutes=args.pilot,
                    warn=lambda m: print(f"warning: {m}", file=sys.stderr),
                    say=lambda m: print(m, file=sys.stderr))  # fmt: skip
    print(format_train(outcome))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from advisor.deploy import predict
    from advisor.text_deploy import is_text_model

    if is_text_model(args.model):
        return _predict_text(args)

    rows, problems = predict(args.model, args.images, tflite=args.tflite)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['image']}: {r['class']} {r['probability']:.3f}")
    for problem in problems:  # every readable image was predicted; each unreadable one is named on its own line
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return PREDICT_PARTIAL if rows else 2
    return 0


def _train_text(args: argparse.Namespace) -> int:
    """``advisor train`` on a text CSV or folder (``advisor.text_deploy``); image-only flags are refused."""
    from advisor.text_deploy import DEFAULT_MAX_LENGTH, format_train_text, train_text

    for flag, value in (("--backbone", args.backbone), ("--image-size", args.image_size), ("--domain", args.domain)):
        if value is not None:
            raise AdvisorError(f"{flag} applies to image folders; for text use --strategy and --max-length")
    outcome = train_text(args.data_dir, args.out, strategy=args.strategy, max_length=args.max_length or
                         DEFAULT_MAX_LENGTH, trials=args.trials, epochs=args.epochs, seed=args.seed, force=args.force,
                         results=args.results, say=lambda m: print(m, file=sys.stderr),
                         warn=lambda m: print(f"warning: {m}", file=sys.stderr))  # fmt: skip
    print(format_train_text(outcome))
    return 0


def _predict_text(args: argparse.Namespace) -> int:
    """``advisor predict`` with a text model: one line per text (same exit statuses as for images)."""
    from advisor.text_deploy import predict_text

    if args.tflite:
        raise AdvisorError("--tflite: text models have no TFLite files; drop the flag")
    rows, problems = predict_text(args.model, args.images)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['text']}: {r['class']} {r['probability']:.3f}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return PREDICT_PARTIAL if rows else 2
    return 0


def _rules(args: argparse.Namespace) -> int:
    from advisor.fitted import cached_fit
    from advisor.probes import fit_gain, load_probes
    from advisor.rules import ProbeRules

    advisor, runs, similarity, _ = load_fitted(args.results)
    probes = load_probes(args.results)
    if probes is not None:
        rules = ProbeRules().fit(fit_gain(runs, similarity, probes))
        print(rules.text(), flush=True)
        regret = cached_fit("rules-regret", lambda: _rules_regret(runs, similarity, probes, say=True), runs,
                            similarity, probes)  # fmt: skip
        print(regret)
        print()
        print("Without measuring your images (traits only):")
    print(advisor.rules_text())
    return 0


def _rules_regret(runs: Any, similarity: Any, probes: Any, say: bool = False) -> str:
    """The rules' leave-one-dataset-out regret beside the probe advisor's and the best constant's (the rules and
    the advisor refitted without each held-out dataset, as in advisor evaluate; the traits-only advisor is not
    needed here, so a cheap one fills its slot). ``advisor rules`` keeps the line in the cache (``cached_fit``)."""
    import math

    if say:
        print("measuring these rules' leave-one-dataset-out regret (a couple of minutes on the broad reference; "
              "kept in the cache for next time)", file=sys.stderr, flush=True)  # fmt: skip

    from advisor.evaluate import ADVISOR_PROBES, RULES, evaluate_methods, method_summary
    from advisor.gain import GainModel
    from advisor.model import Advisor

    _, picks = evaluate_methods(runs, similarity, Advisor(bandwidth=math.inf, n_estimators=10), probes=probes,
                                gain=GainModel())  # fmt: skip
    table = method_summary(picks).set_index("method")
    hindsight = next((m for m in table.index if m.startswith("best constant")), None)
    named = (("these rules", RULES), ("the probe advisor", ADVISOR_PROBES), (hindsight, hindsight))
    parts = [f"{name} {table.loc[m, 'mean_regret']:.2f}" for name, m in named if m in table.index]
    cells = int(table.loc[RULES, "cells"]) if RULES in table.index else 0
    return (f"Leave-one-dataset-out mean regret over {cells} held-out cells, in accuracy points: " + ", ".join(parts)
            + " (advisor evaluate has the full table).")


def _evaluate(args: argparse.Namespace) -> int:
    from advisor.data import load_results
    from advisor.evaluate import (
        ADVISOR,
        ADVISOR_PROBES,
        BEST_PROBE,
        HINDSIGHT,
        TEXTBOOK,
        evaluate_methods,
        method_summary,
        noise_floor,
        paired_difference,
        same_cells,
        summary,
    )
    from advisor.gain import GainModel
    from advisor.probes import load_probes

    runs, similarity = load_results(args.results)
    probes = _read_probes(args.probes) if args.probes else load_probes(args.results)
    table, picks = evaluate_methods(runs, similarity, probes=probes, gain=GainModel() if probes is not None else None)
    s = summary(table)
    s["noise_floor"] = noise_floor(runs, similarity)
    s["probe_advisor_configs"] = {k: int(v) for k, v in picks.attrs.get("gain_configs", {}).items()}
    methods = method_summary(picks)
    common = method_summary(same_cells(picks)) if probes is not None else None
    pilot = None
    pairs = [(ADVISOR_PROBES, b) for b in (HINDSIGHT, TEXTBOOK, BEST_PROBE, ADVISOR)] if probes is not None else []
    paired = [d for d in (paired_difference(picks, m, b) for m, b in pairs) if d is not None]
    if args.pilot:
        from advisor.pilot import WITH_PILOT, evaluate_pilot, pilot_summary

        if probes is None:
            raise AdvisorError("advisor evaluate --pilot needs the study's cell probes (advisor probes writes them)")
        pilot_rows = evaluate_pilot(runs, similarity, probes, GainModel())
        pilot = pilot_summary(pilot_rows)
        for baseline in (ADVISOR_PROBES, HINDSIGHT):
            d = paired_difference(pilot_rows, WITH_PILOT, baseline)
            if d is not None:
                paired.append({**d, "scoring": "half-split (the pilot's evaluation)"})
    if args.json:
        same = None if common is None else json.loads(common.to_json(orient="records"))
        print(json.dumps({"summary": s, "methods": json.loads(methods.to_json(orient="records")),
                          "methods_same_cells": same,
                          "pilot": None if pilot is None else json.loads(pilot.to_json(orient="records")),
                          "paired_differences": paired,
                          "cells": json.loads(table.to_json(orient="records")),
                          "picks": json.loads(picks.to_json(orient="records"))}, indent=2))  # fmt: skip
        return 0
    if common is not None and int(common["cells"].max()) < int(methods["cells"].max()):
        print(format_methods(common, True, f"the {int(common['cells'].max())} held-out cells with probes"))
        print()
    print(format_methods(methods, probes is not None, "every held-out cell"))
    if paired:
        print(format_paired([d for d in paired if "scoring" not in d]))
    floor = s["noise_floor"]
    print(f"Noise floor: the option that won on one seed, scored on the other seed, loses {floor['regret_points']:.2f} "
          f"points on average ({floor['cells']} cells): measurement noise among close options, not advice.")
    if s["probe_advisor_configs"]:
        chosen = ", ".join(f"{k} in {v}" for k, v in s["probe_advisor_configs"].items())
        print(f"The probe advisor's form, chosen by its nested inner leave-one-dataset-out per fold: {chosen} folds.")
    print()
    print(format_evaluation(table, s))
    if pilot is not None:
        print()
        print(format_pilot_evaluation(pilot))
        print(format_paired([d for d in paired if "scoring" in d]))
    return 0


def format_paired(paired: list[dict[str, Any]]) -> str:
    """Paired regret differences with dataset-bootstrap 95 % intervals (``advisor.evaluate.paired_difference``)."""
    lines = ["Paired differences in mean regret (points; 95 % interval from resampling held-out datasets; below 0 = "
             "the first method loses less):"]  # fmt: skip
    for d in paired:
        lines.append(f"  {d['method']} - {d['baseline']}: {d['difference']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}] "
                     f"over {d['cells']} cells of {d['datasets']} datasets")  # fmt: skip
    return "\n".join(lines)


def format_pilot_evaluation(pilot: Any) -> str:
    """The pilot's leave-one-dataset-out table (``advisor.pilot.pilot_summary``)."""
    lines = ["The pilot (recommend --pilot), leave-one-dataset-out on the held-out cells whose dataset has a study "
             "cell at a quarter of n: the top 4 candidates' accuracy there, read on one half of the test set, picks "
             "scored on the other half (both ways; every method on the same halves):",
             f"  {'method':<58}{'cells':>6}{'mean':>8}{'median':>8}{'max':>8}{'top-1':>8}"]  # fmt: skip
    for r in pilot.itertuples(index=False):
        lines.append(f"  {r.method:<58}{r.cells:>6}{r.mean_regret:>8.2f}{r.median_regret:>8.2f}{r.max_regret:>8.2f}"
                     f"{r.top1_agreement:>8.0%}")  # fmt: skip
    cost = float(pilot["pilot_seconds_median"].iloc[0])
    lines.append(f"  regret in accuracy points; the pilot's runs cost {cost:.0f} s per cell (median, the study's "
                 "train + extract seconds of the candidates at the pilot's size)")  # fmt: skip
    return "\n".join(lines)


def _read_probes(path: str) -> Any:
    import pandas as pd

    try:
        return pd.read_parquet(path)
    except Exception as error:  # pyarrow raises many types; all mean "unreadable"
        raise AdvisorError(f"cannot read --probes {path}: {str(error).splitlines()[0]}") from None


def format_methods(methods: Any, with_probes: bool, which: str) -> str:
    """Every method side by side on the held-out cells (regret in accuracy points)."""
    lines = [f"Every method on {which} (leave-one-dataset-out; regret = best measured option minus the pick, in "
             "points)", "",
             "| method | cells | mean regret | median | max | top-1 agreement | strategy agreement | interval coverage "
             "(pick / all options) |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in methods.itertuples(index=False):
        cov = "" if r.pick_coverage != r.pick_coverage else f"{r.pick_coverage:.0%} / {r.option_coverage:.0%}"
        cells = f"{r.cells}" + (f" ({r.cells_without_pick} without a pick)" if r.cells_without_pick else "")
        lines.append(f"| {r.method} | {cells} | {r.mean_regret:.2f} | {r.median_regret:.2f} | {r.max_regret:.1f} | "
                     f"{r.top1_agreement:.0%} | {r.strategy_agreement:.0%} | {cov} |")  # fmt: skip
    lines.append("")
    lines.append("A constant falls back, where its option was not measured, to the measured option on its backbone "
                 "closest in freezing level; the hindsight constant chose itself on these very cells.")  # fmt: skip
    if not with_probes:
        lines.append("No cell probes beside these results: the probe baselines and the probe-based advisor are left "
                     "out (run advisor probes --results SOURCE first).")  # fmt: skip
    return "\n".join(lines)


def _probes(args: argparse.Namespace) -> int:
    from pathlib import Path

    from advisor.data import load_results
    from advisor.probes import cell_probes, probes_path

    runs, _ = load_results(args.results)
    out = Path(args.out) if args.out else probes_path(args.results)
    if out is None:
        raise AdvisorError("--results is a store URL: pass --out FILE for the probes table")
    if args.limit is not None and args.limit <= 0:
        raise AdvisorError(f"--limit must be a positive number of cells, got {args.limit}")
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()] if args.datasets else None
    table = cell_probes(runs, out, limit=args.limit, datasets=datasets)
    print(f"{len(table)} cell probes in {out}")
    return 0


def format_evaluation(table: Any, s: dict[str, Any]) -> str:
    """The leave-one-dataset-out table and its headline, as ``advisor evaluate`` prints them."""
    lines = [f"Leave-one-dataset-out over {s['datasets']} datasets, {s['cells']} cells (regret in accuracy points)",
             "", "| dataset | n | best measured (any backbone) | acc | advisor | regret | textbook | regret |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in table[~table["is_summary"].astype(bool)].itertuples(index=False):
        lines.append(f"| {r.dataset} | {r.n_images} | {r.best_strategy}/{r.best_backbone} | {r.best_accuracy:.3f} | "
                     f"{r.advisor_strategy}/{r.advisor_backbone} | {100 * r.advisor_regret:.1f} | "
                     f"{r.textbook_strategy}/{r.textbook_backbone} | {100 * r.textbook_regret:.1f} |")  # fmt: skip
    verdict = "met" if s["target_met"] else "NOT met"
    like = "met" if s["target_met_strategies"] else "NOT met"
    lines += [
        "",
        f"advisor:  mean regret {s['advisor_regret_points']:.2f} points (max {s['advisor_max_regret_points']:.1f}), "
        f"top-1 strategy agreement {s['advisor_agreement']:.0%}; its strategies on their best backbone: "
        f"{s['advisor_strategy_regret_points']:.2f} points",
        f"textbook: mean regret {s['textbook_regret_points']:.2f} points (its strategy on its best backbone), "
        f"top-1 strategy agreement {s['textbook_agreement']:.0%}",
        f"with the backbone fixed by the user (each backbone in turn): advisor "
        f"{s['advisor_fixed_backbone_regret_points']:.2f}, textbook {s['textbook_fixed_backbone_regret_points']:.2f} "
        "points",
        f"target (advisor below the textbook and <= 1 point): {verdict}; like for like (strategies on their best "
        f"backbone): {like}",
        f"nested: each fold chose its own settings on the training datasets only ({', '.join(s['advisor_configs'])})",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
