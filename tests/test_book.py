"""The book (``make book``): every chapter page and figure exists, relative links resolve, nothing remote."""
import importlib.util
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest

from companion import figures

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# Sphinx warnings that mean a page or an image is missing (notebook style warnings are tolerated).
BROKEN = re.compile(r"nonexisting document|unknown document|undefined label|image file not readable|"
                    r"toctree glob pattern .* didn't match|Could not lex|failed to (?:read|copy)", re.IGNORECASE)

pytestmark = pytest.mark.slow


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_book", ROOT / "docs" / "build_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def book():
    """One build per source digest, shared with tests/ui (build/test-book/DIGEST)."""
    return _load_builder().cached_build()


def test_fresh_build_into_a_temporary_folder(tmp_path):
    # The cache must not hide a broken build: stage (no Sphinx) from scratch and check what goes in.
    contents = _load_builder().stage(tmp_path / "src")
    assert contents["chapters"] == [p.stem for p in CHAPTERS]
    assert all((tmp_path / "src" / "chapters" / p.name).exists() for p in CHAPTERS)
    assert all((tmp_path / "src" / "figures" / f"{n}.png").exists() for n in contents["figures"])
    chapter_map = (tmp_path / "src" / "_chapter_map.md").read_text(encoding="utf-8")
    assert all(f"<chapters/{p.stem}>" in chapter_map for p in CHAPTERS)


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.ids, self.remote = [], set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for key in ("href", "src"):
            value = attrs.get(key)
            if not value:
                continue
            if urlsplit(value).scheme in ("http", "https") or value.startswith("//"):
                if tag in ("script", "link", "img", "iframe"):
                    self.remote.append(f"<{tag} {key}={value}>")
            else:
                self.refs.append(value)


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_no_missing_pages_reported(book):
    broken = [line for line in book["warnings"].splitlines() if BROKEN.search(line)]
    assert not broken, "\n".join(broken)


def test_every_chapter_has_a_page(book):
    html = book["html"]
    assert book["chapters"] == [p.stem for p in CHAPTERS]
    index = (html / "index.html").read_text(encoding="utf-8")
    for path in CHAPTERS:
        page = html / "chapters" / f"{path.stem}.html"
        assert page.exists(), f"no page for {path.name}"
        assert f'href="chapters/{path.stem}.html"' in index, f"the index does not link {path.stem}"
        nb = nbformat.read(path, as_version=4)
        if any(c.cell_type == "code" and any(o.get("data", {}).get("image/png") for o in c.outputs) for c in nb.cells):
            assert "<img" in page.read_text(encoding="utf-8"), f"{path.stem}: stored figure outputs are not shown"
    for page in ("notation.html", "figures.html", "genindex.html"):
        assert (html / page).exists()


def test_every_figure_is_in_the_index(book):
    html = book["html"]
    specs = figures.load_all()
    assert specs and set(book["figures"]) == set(specs)
    page = _parse(html / "figures.html")
    images = {Path(unquote(urlsplit(ref).path)).name for ref in page.refs if ref.endswith(".png")}
    for name in specs:
        assert f"{name}.png" in images, f"figure {name} is not on the figure index"
        image = html / "_images" / f"{name}.png"
        assert image.exists() and image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_relative_links_resolve_and_nothing_is_remote(book):
    html = book["html"]
    pages = sorted(p for p in html.rglob("*.html") if "_static" not in p.relative_to(html).parts)  # _static: theme templates
    parsed = {page.resolve(): _parse(page) for page in pages}
    problems = []
    for page, links in parsed.items():
        problems += [f"{page.relative_to(html.resolve())}: remote asset {r}" for r in links.remote]
        for ref in links.refs:
            parts = urlsplit(ref)
            if parts.scheme in ("mailto", "data", "javascript", "about") or parts.scheme:
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{page.relative_to(html.resolve())}: {ref} does not exist")
            elif parts.fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else _parse(target).ids
                if parts.fragment not in ids:
                    problems.append(f"{page.relative_to(html.resolve())}: {ref} has no anchor #{parts.fragment}")
    assert not problems, "\n".join(problems[:30])
