"""Sphinx configuration of the companion's book (built by ``docs/build_book.py``, ``make book``).

Offline by construction: notebooks are shown with their stored outputs
(nb_execution_mode "off"), no intersphinx, no remote JavaScript (MathJax only
from a local copy that build_book.py finds; otherwise TeX is shown as text).
"""
import os

project = "Stochastic quantization and binarization: a teaching companion"
author = "The companion authors"
copyright = "the companion authors (MIT licence)"

extensions = ["myst_nb"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
suppress_warnings = ["mystnb.unknown_mime_type", "misc.highlighting_failure"]

nb_execution_mode = "off"
# ipywidgets would load require.js and the widget manager from a CDN: no remote scripts.
nb_ipywidgets_js = {}
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]

html_theme = "sphinx_book_theme"
html_title = "Stochastic quantization companion"
html_theme_options = {"show_toc_level": 2, "use_download_button": True}
html_static_path = []
html_last_updated_fmt = None
html_context = {"default_mode": "auto"}  # else the theme logs a console error on a first visit

# MathJax 2: a local copy that build_book.py staged in the folder COMPANION_BOOK_STATIC, loaded
# from COMPANION_MATHJAX (relative to _static); without one, a renderer that shows the TeX and loads nothing.
_mathjax = os.environ.get("COMPANION_MATHJAX")
if _mathjax:
    html_static_path = [os.environ["COMPANION_BOOK_STATIC"]]
    mathjax_path = _mathjax
    # The font that the local copy ships (jupyter-server-mathjax keeps only STIX-Web).
    _font = os.environ.get("COMPANION_MATHJAX_FONT", "TeX")
    mathjax2_config = {
        # The theme marks the page body tex2jax_ignore; Sphinx's math spans carry the class "math".
        "tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]],
                    "processClass": "math|output_area", "ignoreClass": "tex2jax_ignore|mathjax_ignore|document"},
        "HTML-CSS": {"availableFonts": [], "preferredFont": None, "webFont": _font, "imageFont": None},
    }
else:
    html_math_renderer = "plain-tex"


def _visit_inline(self, node):
    self.body.append(self.starttag(node, "span", "", CLASS="math notranslate") + self.encode(f"${node.astext()}$") + "</span>")
    from docutils import nodes

    raise nodes.SkipNode


def _visit_block(self, node):
    from docutils import nodes

    self.body.append(self.starttag(node, "div", "", CLASS="math notranslate") + self.encode(f"$${node.astext()}$$") + "</div>\n")
    raise nodes.SkipNode


def setup(app):
    if not _mathjax:
        app.add_html_math_renderer("plain-tex", (_visit_inline, None), (_visit_block, None))
