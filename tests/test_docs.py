"""The docs agree with the code: the priority bands table is the code's ``BANDS``, every
python block of the testing guide is code the suite runs, and the migration note names
only options, settings and flags that exist. Example::

    OFFLOAD_TEST_DB=sqlite python -m pytest tests/test_docs.py
"""

import re

import pytest

from tests.conftest import ROOT

DOCS = ROOT / "docs"


def python_blocks(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def section(path, heading):
    text = path.read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else len(text)]


def test_the_bands_table_is_the_codes_bands():
    from offload.dashboard.queries import BANDS, band_of

    rows = re.findall(r"^\| `(\w+)` \| (-?\d+) to (-?\d+) \|$", section(DOCS / "priorities.md", "Priority bands"),
                      flags=re.M)
    highs = [100] + [low - 1 for _, low in BANDS[:-1]]
    assert [(name, int(low), int(high)) for name, low, high in rows] == [
        (name, low, high) for (name, low), high in zip(BANDS, highs, strict=True)]
    assert BANDS[-1][1] == -100  # the table covers every priority Django allows
    for name, low, high in rows:
        assert band_of(int(low)) == band_of(int(high)) == name


def test_every_example_of_the_testing_guide_is_run_by_the_suite():
    """Each block appears word for word in tests/test_testing_guide.py or tests/guide/,
    ``myapp`` standing for ``tests.guide``."""
    sources = "\n".join(p.read_text() for p in [ROOT / "tests" / "test_testing_guide.py",
                                                 *sorted((ROOT / "tests" / "guide").glob("*.py"))])
    blocks = python_blocks(DOCS / "testing.md")
    assert len(blocks) >= 8
    for block in blocks:
        assert block.replace("myapp.", "tests.guide.") in sources, f"not run by the suite:\n{block}"


def test_the_migration_note_names_what_exists():
    from dataclasses import fields

    from django.tasks import Task

    from offload.backend import OffloadTask
    from offload.conf import Options

    text = (DOCS / "migrating.md").read_text()
    for block in python_blocks(DOCS / "migrating.md"):
        compile(block, "docs/migrating.md", "exec")
    for name in re.findall(r'OPTIONS\["(\w+)"\]', text):
        assert name in {f.name for f in fields(Options)}, f'OPTIONS["{name}"]'
    task_options = {f.name for f in fields(OffloadTask)} | {"takes_context"}
    offload_side = text[text.index("# Offload\n"):]
    for call in re.findall(r"(?:@task|\.using)\(([^)]*)\)", offload_side):
        for name in re.findall(r"(\w+)=", call):
            assert name in task_options, name
    assert {"max_attempts", "retry_backoff", "timeout"} <= task_options - {f.name for f in fields(Task)}
    command = (ROOT / "src" / "offload" / "management" / "commands" / "offload.py").read_text()
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    # Offload's side: the lines naming its commands, and of a table row the last column.
    lines = [line.split("|")[-2] if line.startswith("|") else line
             for line in prose.splitlines() if re.search(r"offload (worker|prune)", line)]
    flags = {flag for line in lines for span in re.findall(r"`([^`]+)`", line)
             for flag in re.findall(r"--[a-z-]+", span)}
    assert {"--queues", "--burst", "--threads", "--processes", "--queue-limit"} <= flags
    for flag in flags:
        assert f'"{flag}"' in command, f"offload has no flag {flag}"


@pytest.mark.parametrize("doc", ["testing.md", "migrating.md", "priorities.md"])
def test_links_between_docs_resolve(doc):
    text = (DOCS / doc).read_text()
    for target, anchor in re.findall(r"\]\((?!https?:)([^)#]+)(?:#([^)]+))?\)", text):
        path = (DOCS / target).resolve()
        assert path.exists(), f"{doc} links to {target}, which does not exist"
        if anchor and path.suffix == ".md":
            slugs = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-")
                     for h in re.findall(r"^#+ (.+)$", path.read_text(), flags=re.M)}
            assert anchor in slugs, f"{doc} links to {target}#{anchor}: no such heading"
