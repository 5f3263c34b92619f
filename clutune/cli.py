"""``clutune`` command line. Every input is validated before any work starts; bad input exits 2 with one line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clutune.errors import UserError


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="a YAML file or a preset name from configs/")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (dotted, e.g. oracle.epochs=30) or a method hyperparameter (gamma=2)",
    )


def cmd_run(args: argparse.Namespace) -> int:
    from clutune.config import bare_overrides, load_config
    from clutune.experiment import method_hparams, prepare, run_experiment, validate_methods_section
    from clutune.results import format_row, write_results

    config = load_config(args.config, args.sets)
    if args.seed is not None:
        config.seed = args.seed
    validate_methods_section(config)
    hparams = method_hparams(config, args.method, config.dataset.name, bare_overrides(args.sets))
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    prep = prepare(config)
    total = len(prep.scenario)
    rows: list[dict] = []
    predictions = out / "predictions" if args.save_predictions else None
    print(f"clutune run: {args.method} on {config.name} ({config.dataset.name}, {total} requests, seed {config.seed})")

    def on_row(row: dict, _method: object) -> None:
        rows.append(row)
        write_results(out / "results.parquet", rows)
        print(format_row(row, total), flush=True)

    run_experiment(prep, args.method, hparams, config.seed, on_row=on_row, predictions_dir=predictions)
    print(f"wrote {out / 'results.parquet'} ({len(rows)} rows)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clutune", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run one method through a scenario and write results.parquet")
    _add_config_args(p)
    p.add_argument("--method", required=True, help="method name (see README, Methods)")
    p.add_argument("--out", required=True, help="output folder for results.parquet (and predictions/)")
    p.add_argument("--seed", type=int, default=None, help="run seed (model init, shuffling); default: config seed")
    p.add_argument("--save-predictions", action="store_true", help="also write predictions/request-<k>.parquet")
    p.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"clutune: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        from clutune.clu.runner import Diverged

        if not isinstance(e, Diverged):
            raise
        print(f"clutune: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("clutune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
