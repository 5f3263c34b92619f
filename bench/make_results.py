"""`make results`: every table, figure and quoted number of README.md and docs/ rebuilt from bench/results alone.

Each study in ``STUDIES`` is a bench script exposing ``rebuild(results, out)``: it reads only the raw records under
``results`` and writes its derived files (tables, JSON summaries, figures) under ``out`` at the paths they are
committed at. No study trains anything here. Then every generated block of README.md and docs/*.md,

    <!-- results:NAME -->
    ...
    <!-- /results:NAME -->

is rendered from ``bench/templates/NAME.md.j2`` with ``load(relpath)`` (a JSON or CSV file under ``out``) and
``fmt(x, digits)``, so a number quoted in prose lives only in a summary the records rebuild.

``--check`` rebuilds into a separate folder and changes nothing: it lists every block and derived text file that
differs from the committed one (the first differing line of each) and exits 1, so a claim whose number no longer
follows from its records fails the build. Figures are compared by existence only: their bytes depend on the
installed fonts and renderer.

Usage:
    python bench/make_results.py                     # rebuild into bench/results, rewrite the blocks
    python bench/make_results.py --check             # rebuild into a temporary folder, report what differs
    python bench/make_results.py --results DIR --out DIR2 --check
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import math
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TEMPLATES = ROOT / "bench" / "templates"
# The bench scripts whose published results are rebuilt, each with rebuild(results, out).
STUDIES = [
    "bench/sampler_study.py",
    "bench/compare_tables.py",
    "bench/aggregate_tables.py",
    "bench/attacks_table.py",
    "bench/long_sequence.py",
    "bench/subnormal_flush.py",
    "bench/tune_defaults.py",
    "bench/pbt_study.py",
    "bench/ablation.py",
    "bench/tuning_wide.py",
    "bench/retune_fixed_search.py",
    "bench/packing.py",
    "bench/cost_ratios.py",
    "bench/klom_power.py",
    "bench/sweep_overhead.py",
    "bench/raw_records.py",  # last: it measures bench/results as the others leave it
]
# The figures the docs site shows (mkdocs serves only docs/): each a copy of a rebuilt one, path under ``out``.
DOC_FIGURES = {
    "docs/img/sampler-study.png": "sampler-study.png",
    "docs/img/packing.png": "packing.png",
    "docs/img/pbt-study-seed0.png": "pbt-study/seed0/pbt-study.png",
    "docs/img/pbt-study-seed1.png": "pbt-study/seed1/pbt-study.png",
    "docs/long-streams/digits-curves.png": "long-digits-curves.png",
    "docs/long-streams/digits-methods_kl_oracle.png": "long-digits-methods_kl_oracle.png",
    "docs/long-streams/mnist1d-curves.png": "long-mnist1d-curves.png",
    "docs/long-streams/mnist1d-methods_kl_oracle.png": "long-mnist1d-methods_kl_oracle.png",
    "docs/img/klom-margins.png": "klom_power-margins.png",
    "docs/img/attacks/ulira_roc.png": "attacks-digits-rigorous/ulira_roc.png",
    "docs/img/attacks/epsilon_histogram.png": "attacks-digits-rigorous/epsilon_histogram.png",
}
TEXT_SUFFIXES = {".md", ".json", ".csv"}
BLOCK = re.compile(r"<!-- results:(?P<name>[\w.-]+) -->\n(?P<body>.*?)<!-- /results:(?P=name) -->", re.DOTALL)
OPENING = re.compile(r"<!-- results:([\w.-]+) -->")


class ResultsError(Exception):
    """A block or template that cannot be rendered: reported in one line."""


def study_rebuild(relpath: str) -> Callable[[Path, Path], None]:
    """The script's rebuild(), imported by path: bench/ is not a package."""
    path = ROOT / relpath
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))  # the scripts import their helpers (table.py) as their own run does
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ResultsError(f"{relpath}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    if not hasattr(module, "rebuild"):
        raise ResultsError(f"{relpath}: has no rebuild(results, out)")
    return module.rebuild


def rebuild_all(results: Path, out: Path, studies: list[str] = STUDIES, log: Callable[[str], None] = print) -> None:
    """Each study's derived files from the records under ``results`` into ``out``, each study's time printed."""
    out.mkdir(parents=True, exist_ok=True)
    for relpath in studies:
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the scripts print their tables as a run does
            study_rebuild(relpath)(results, out)
        log(f"{relpath}: {time.perf_counter() - start:.2f} s")


def fmt(x: float, digits: int = 3) -> str:
    """``x`` to ``digits`` significant figures, trailing zeros kept (0.500), never in exponent form; whole
    numbers at or above 10^(digits-1) print whole."""
    x = float(x)
    if not math.isfinite(x) or x == 0:
        return f"{x:g}"
    magnitude = math.floor(math.log10(abs(x)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{x:.{decimals}f}"


def loader(out: Path) -> Callable[[str], Any]:
    """load(relpath) for the templates: a JSON file parsed, a CSV (or .csv.gz) file as a list of row dicts."""

    def load(relpath: str) -> Any:
        path = out / relpath
        if not path.is_file():
            raise ResultsError(f"load({relpath!r}): no such file under {out}")
        if path.suffix == ".json":
            return json.loads(path.read_text())
        if path.name.endswith((".csv", ".csv.gz")):
            return pd.read_csv(path).to_dict("records")
        raise ResultsError(f"load({relpath!r}): only .json and .csv files are loaded")

    return load


def environment(out: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,  # markdown, not HTML
    )
    env.globals.update(load=loader(out), fmt=fmt, rebuilt=lambda relpath: (out / relpath).is_file())
    return env


def render_blocks(text: str, where: str, env: jinja2.Environment) -> str:
    """``text`` with every generated block's body rendered anew from its template."""
    names = OPENING.findall(text)
    closed = {m.group("name") for m in BLOCK.finditer(text)}
    for name in names:
        if name not in closed:
            raise ResultsError(f"{where}: block {name!r} has no closing <!-- /results:{name} -->")

    def body(match: re.Match[str]) -> str:
        name = match.group("name")
        if not (TEMPLATES / f"{name}.md.j2").is_file():
            raise ResultsError(f"{where}: block {name!r} has no template bench/templates/{name}.md.j2")
        try:
            rendered = env.get_template(f"{name}.md.j2").render().strip("\n")
        except jinja2.TemplateError as err:
            raise ResultsError(f"{where}: block {name!r}: {type(err).__name__}: {err}") from err
        return f"<!-- results:{name} -->\n{rendered}\n<!-- /results:{name} -->"

    return BLOCK.sub(body, text)


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def first_difference(old: str, new: str) -> str:
    """The first line that differs, as ``line N: 'old' -> 'new'``."""
    a, b = old.splitlines(), new.splitlines()
    for n, (x, y) in enumerate(zip(a, b, strict=False), start=1):
        if x != y:
            return f"line {n}: {x!r} -> {y!r}"
    n = min(len(a), len(b)) + 1
    return f"line {n}: {a[n - 1] if len(a) >= n else '(end)'!r} -> {b[n - 1] if len(b) >= n else '(end)'!r}"


def block_differences(old: str, new: str, where: str) -> list[str]:
    """One line per block whose rendering differs from the committed one."""
    committed = {m.group("name"): m.group("body") for m in BLOCK.finditer(old)}
    rendered = {m.group("name"): m.group("body") for m in BLOCK.finditer(new)}
    return [
        f"{where}: block {name}: {first_difference(committed[name], rendered[name])}"
        for name in committed
        if committed[name] != rendered[name]
    ]


def file_differences(out: Path, committed: Path) -> list[str]:
    """One line per derived file in ``out`` that differs from (or is missing beside) the committed one."""
    lines = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out)
        target = committed / rel
        if not target.is_file():
            lines.append(f"{rel}: rebuilt, but not committed")
        elif path.suffix in TEXT_SUFFIXES:
            old, new = target.read_text(), path.read_text()
            if old != new:
                lines.append(f"{rel}: {first_difference(old, new)}")
    return lines


def make(
    results: Path, out: Path, check: bool, studies: list[str] = STUDIES, log: Callable[[str], None] = print
) -> list[str]:
    """Rebuild ``studies``, render every block and copy the docs' figures. Writes the blocks and figures in place
    unless ``check``; returns the differences (always a figure not rebuilt; the rest in check only)."""
    start = time.perf_counter()
    rebuild_all(results, out, studies, log)
    env = environment(out)
    differences = []
    for doc in documents():
        where = str(doc.relative_to(ROOT))
        old = doc.read_text()
        new = render_blocks(old, where, env)
        if check:
            differences += block_differences(old, new, where)
        elif new != old:
            doc.write_text(new)
            log(f"{where}: blocks rewritten")
    for doc_path, rel in DOC_FIGURES.items():
        if not (out / rel).is_file():
            differences.append(f"{doc_path}: its source {rel} was not rebuilt")
        elif not check:
            shutil.copyfile(out / rel, ROOT / doc_path)
    if check:
        differences += file_differences(out, RESULTS)
    log(f"rebuilt in {time.perf_counter() - start:.1f} s")
    return differences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS, help="the raw records [bench/results]")
    parser.add_argument(
        "--out", type=Path, help="where the derived files go [bench/results; a temporary folder with --check]"
    )
    parser.add_argument("--check", action="store_true", help="change nothing; report what differs, exit 1 if any")
    args = parser.parse_args(argv)
    try:
        if not args.check:
            missing = make(args.results, args.out or RESULTS, check=False)
            for line in missing:
                print(f"error: {line}", file=sys.stderr)
            return 1 if missing else 0
        if args.out is not None and args.out.resolve() == RESULTS.resolve():
            raise ResultsError("--check compares against bench/results, so it rebuilds into another --out")
        with tempfile.TemporaryDirectory() as tmp:
            differences = make(args.results, args.out or Path(tmp), check=True)
    except ResultsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for line in differences:
        print(f"differs: {line}")
    print(f"{len(differences)} difference(s)" if differences else "every block and derived file is as committed")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
