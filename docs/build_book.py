"""Build the companion's book: ``python docs/build_book.py [--out build/book]`` (``make book``).

Stages a Sphinx source folder ``OUT/src`` (and a local MathJax 2 in ``OUT/static``) from

* ``docs/*.md`` (index, notation) and ``docs/conf.py``,
* every ``notebooks/*.ipynb`` (as ``chapters/``, shown with their stored outputs),
* the figure registry: a page with every registered figure, taken from
  ``figures/NAME.png`` or rendered when that file is missing,
* a chapter map generated from the notebooks that exist,

then runs ``sphinx-build -b html`` into ``OUT/html``.  Nothing is downloaded.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

# One line per chapter for the chapter map (the README's wording).
SUMMARIES = {
    "00": "what the companion covers, the notation used everywhere, how to run it",
    "01": "uniform grids, bit widths, round-to-nearest, the rounding error, torch's fake quantization",
    "02": "the noisy-model derivation, the two correct samplers and the biased mixtures, the hat probabilities",
    "03": "the categorical for logistic/Gaussian/uniform noise, clamp vs truncate, E[x̂|x] and its slope",
    "04": "RQ's concrete relaxation, RQ-ST, the local grid, quantized networks, a deterministic model",
    "05": "REINFORCE, ST, ARM/DisARM, Gumbel: bias and variance against closed forms",
    "06": "straight-through derived as the derivative of the mean; exact gradients by enumeration",
    "07": "analytic means and variances (AP1/AP2) through quantized networks",
    "08": "every method on real data: accuracy, cost, and the deterministic extraction",
}

# Local MathJax copies, first found wins: the jupyter-server-mathjax package, Debian's libjs-mathjax.
MATHJAX_CANDIDATES = [
    ("jupyter_server_mathjax", "static"),
    (None, "/usr/share/javascript/mathjax"),
]
MATHJAX_CONFIGS = ("TeX-AMS-MML_HTMLorMML-full", "TeX-AMS_CHTML", "TeX-AMS-MML_HTMLorMML")


def notebook_title(nb, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def chapter_map(chapters: list[Path]) -> str:
    lines = ["| chapter | what it teaches |", "|---|---|"]
    for path in chapters:
        title = notebook_title(nbformat.read(path, as_version=4), path.stem).replace("|", "\\|")
        summary = SUMMARIES.get(path.stem[:2], "").replace("|", "\\|")
        lines.append(f"| {{doc}}`{path.stem[:2]} {title} <chapters/{path.stem}>` | {summary} |")
    return "\n".join(lines) + "\n"


def figures_page(src: Path) -> list[str]:
    """Copy (or render) every registered figure into src/figures and write src/figures.md; returns the names."""
    from companion import figures

    specs = figures.load_all()
    out = src / "figures"
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Figure index",
        "",
        "Every figure is a function in the registry `companion/figures.py` (defined in `companion/plots/`).",
        "`make figures` regenerates all of them into `figures/` (PNG and PDF, byte-identical on rerun);",
        "`python -m companion.figures NAME` makes one.",
        "",
    ]
    for name, spec in specs.items():
        stored = ROOT / "figures" / f"{name}.png"
        if stored.exists():
            shutil.copy2(stored, out / stored.name)
        else:
            print(f"figures/{name}.png is missing: rendering it for the book (run `make figures`)")
            figures.save(name, out)
        lines += [f"## {spec.title}", "", f"`{name}` · chapter {spec.chapter} · `python -m companion.figures {name}`", "",
                  f"![{spec.title}](figures/{name}.png)", ""]
    (src / "figures.md").write_text("\n".join(lines), encoding="utf-8")
    return list(specs)


def find_mathjax() -> Path | None:
    import importlib.util

    for module, where in MATHJAX_CANDIDATES:
        if module is None:
            folder = Path(where)
        else:
            spec = importlib.util.find_spec(module)
            if spec is None or spec.origin is None:
                continue
            folder = Path(spec.origin).parent / where
        found = sorted(folder.rglob("MathJax.js")) if folder.is_dir() else []
        if found:
            return found[0].parent
    return None


def stage(src: Path) -> dict:
    """Assemble the Sphinx source folder; returns what went in (chapters, figures, mathjax)."""
    for old in (src, src.parent / "static"):
        if old.exists():
            shutil.rmtree(old)
    (src / "chapters").mkdir(parents=True)
    for page in DOCS.glob("*.md"):
        shutil.copy2(page, src / page.name)
    chapters = sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in chapters:
        shutil.copy2(path, src / "chapters" / path.name)
    (src / "_chapter_map.md").write_text(chapter_map(chapters), encoding="utf-8")
    names = figures_page(src)
    mathjax = find_mathjax()
    if mathjax is not None:
        shutil.copytree(mathjax, src.parent / "static" / "mathjax", dirs_exist_ok=True)
    return {"chapters": [p.stem for p in chapters], "figures": names, "mathjax": mathjax}


def build(out, quiet: bool = True) -> dict:
    """Stage into OUT/src and build HTML into OUT/html; returns the staged contents and the html folder."""
    out = Path(out).resolve()
    start = time.perf_counter()
    contents = stage(out / "src")
    html = out / "html"
    env = dict(os.environ)
    env.pop("COMPANION_MATHJAX", None)
    if contents["mathjax"] is not None:
        configs = [c for c in MATHJAX_CONFIGS if (contents["mathjax"] / "config" / f"{c}.js").exists()]
        env["COMPANION_MATHJAX"] = f"mathjax/MathJax.js?config={configs[0] if configs else MATHJAX_CONFIGS[0]}"
        env["COMPANION_BOOK_STATIC"] = str(out / "static")
        fonts = contents["mathjax"] / "fonts" / "HTML-CSS"
        env["COMPANION_MATHJAX_FONT"] = "TeX" if (fonts / "TeX").is_dir() or not fonts.is_dir() else "STIX-Web"
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(DOCS), "-j", "1", "-E",
               str(out / "src"), str(html)] + (["-q"] if quiet else [])
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"sphinx-build failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    contents.update(html=html, warnings=result.stderr, seconds=time.perf_counter() - start)
    return contents


def source_digest() -> str:
    """A hash of everything the book is built from (pages, chapters, figures and their code)."""
    import hashlib

    digest = hashlib.sha256()
    files = [*DOCS.glob("*"), *(ROOT / "notebooks").glob("*.ipynb"), *(ROOT / "figures").glob("*.png"),
             *(ROOT / "companion" / "plots").glob("*.py"), ROOT / "companion" / "figures.py"]
    for path in sorted(p for p in files if p.is_file()):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def cached_build(cache=ROOT / "build" / "test-book") -> dict:
    """Build once per source digest into ``cache/DIGEST`` and reuse it (tests share one build).

    A file lock serialises concurrent callers (pytest-xdist workers): the second waits and reuses.
    """
    import fcntl
    import json

    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    key = source_digest()
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = cache / key / "contents.json"
        if not record.exists():
            for old in cache.iterdir():
                if old.is_dir():
                    shutil.rmtree(old)
            contents = build(cache / key)
            contents = {**contents, "html": str(contents["html"]), "mathjax": str(contents["mathjax"] or "")}
            record.write_text(json.dumps(contents), encoding="utf-8")
        contents = json.loads(record.read_text(encoding="utf-8"))
    return {**contents, "html": Path(contents["html"])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python docs/build_book.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "build" / "book"), help="output folder (default: build/book)")
    args = parser.parse_args(argv)
    contents = build(args.out, quiet=False)
    print(contents["warnings"], file=sys.stderr)
    math = "MathJax from " + str(contents["mathjax"]) if contents["mathjax"] else "no local MathJax: TeX shown as text"
    print(f"book: {len(contents['chapters'])} chapter(s), {len(contents['figures'])} figure(s), {math}; "
          f"{contents['html'] / 'index.html'} in {contents['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
