"""Documentation names only files the repository holds.

Every ``*.md`` document and every ``docs/...`` path named in the package's sources (docstrings
and comments of the Python, Cython and C files), the README, the examples, the benchmarks and the
shipped documents exists in the repository: a reader can open what a docstring cites. The
paper's brief that the package was written from (``PAPER.md``) is not shipped, so citing it
fails this test.
"""
from __future__ import annotations

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ("fastcascade", "docs", "examples", "benchmarks", "tests")
SUFFIXES = (".py", ".pyx", ".pxd", ".h", ".md", ".toml", ".pyi")
# outputs that documents name as written by a command and not committed (said so where named)
OUTPUTS = {"docs/paper/raw"}
# a document name (x.md) or a path under docs/
REFERENCE = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.md|docs/[\w./-]*\w)")


def _texts():
    yield os.path.join(ROOT, "README.md")
    for top in SOURCES:
        for folder, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [d for d in dirs if d not in ("build", "__pycache__") and
                       not d.endswith(".egg-info")]
            for name in files:
                if name.endswith(SUFFIXES):
                    yield os.path.join(folder, name)


def _basenames():
    names = set()
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "build"]
        names.update(files)
    return names


BASENAMES = _basenames()


def _exists(ref, source):
    """A path relative to the root or to the citing file; a bare name (an output such as a
    report.md that a command writes) anywhere in the repository."""
    here = os.path.dirname(source)
    if any(os.path.exists(os.path.join(base, ref)) for base in (ROOT, here)):
        return True
    return "/" not in ref and ref in BASENAMES


def references(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    return sorted(set(REFERENCE.findall(text)))


def test_the_scan_finds_references_and_flags_a_missing_one(tmp_path):
    fake = tmp_path / "x.py"
    fake.write_text('"""See PAPER.md Eq. 5 and docs/model.md, and README.md."""')
    refs = references(str(fake))
    assert refs == ["PAPER.md", "README.md", "docs/model.md"]
    assert [r for r in refs if not _exists(r, str(fake))] == ["PAPER.md"]


def test_every_named_document_exists():
    missing = []
    for path in _texts():
        if os.path.basename(path) == "test_docs_references.py":
            continue  # names PAPER.md on purpose, as the example of what must fail
        for ref in references(path):
            if ref not in OUTPUTS and not _exists(ref, path):
                missing.append(f"{os.path.relpath(path, ROOT)}: {ref}")
    assert missing == []


def test_the_model_document_holds_the_equations_and_metrics():
    with open(os.path.join(ROOT, "docs", "model.md"), encoding="utf-8") as f:
        text = f.read()
    for needle in ("Eq. 1", "Eq. 5", "Per-sample", "four PCG64", "Stable gradient norm",
                   "Stable iteration complexity", "Spike events", "Theorem 1", "Theorem 2",
                   "record_decay", "Perturbation.op"):
        assert needle in text, needle
