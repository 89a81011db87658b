"""Every command of the French course (docs/CONCEPTS_LLM.md, docs/fr/*.md), run and checked.

Marked ``course``: the default run leaves it out, ``.ci/run`` runs it
(``python -m pytest -m course``). Measured on 2026-12-02 on the 2-core CPU machine: 2 min 24 s
(5 min 49 s with other jobs running), of which the one training run the pages share is about 40 s,
the pictures 13 s, and each snippet that loads the run a few seconds (importing JAX and orbax).

The pages' conventions (also written in docs/CONCEPTS_LLM.md, section "Comment lire les
commandes"):

* A ```console block holds commands and their output. A line starting with ``$ `` is a command
  (run by bash; a line ending in ``\\`` continues on the next one); the lines after it, up to the
  next ``$ `` line, are what it prints, stdout and stderr together, compared exactly (trailing
  spaces and trailing empty lines aside; of a line rewritten in place with ``\\r``, as tqdm does,
  only the last state counts, as on a terminal). Two markers relax the comparison:

  - a line ``[…]`` stands for any number of lines (zero included): the parts that are too long to
    show, or that change from run to run such as progress bars;
  - a line ending in `` ⏱`` stands for exactly one line, whatever it says: a line holding a
    duration or a speed, shown as it was measured, never compared.

  A command must exit with status 0 (bash runs it with ``-o pipefail``: every command of a
  pipeline counts).
* A ```python block is a whole script, run alone with ``python -`` in the page's folder. When a
  ```text block follows it (blank lines between them only), that block is what the script prints,
  compared with the same rules.
* Every page runs in its own temporary folder, in order, one block after the other: ``configs/``
  and ``data/`` are links to the repository's, ``runs/`` is shared by all pages. PYTHONPATH is
  the repository, ``GPTJAX_CACHE_DIR`` a temporary folder, ``GPTJAX_DATA_DIR`` is unset and the
  HTTP proxies point at a closed local port: the course needs no network and no corpus but the
  committed excerpt.
* The training run the pages share is the one command of the course that starts with
  ``python -m gptjax.main`` (in docs/CONCEPTS_LLM.md). It is run once per test session, into
  ``runs/``, before any page; the page that shows it is compared with that run's output.
* Pictures: every ``docs/img/NAME.png`` a page shows is in ``docs/make_images.py``'s ``IMAGES``
  and the other way round, each is a PNG file, and ``docs/make_images.py`` run on the shared
  training run writes exactly those files (the test regenerates them into a temporary folder; it
  does not compare their pixels, which depend on matplotlib's version and fonts).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.course

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PAGES = [DOCS / "CONCEPTS_LLM.md", *sorted((DOCS / "fr").glob("*.md"))]
ANY_LINES = "[…]"
ONE_LINE = " ⏱"
TRAIN_PREFIX = "python -m gptjax.main "
# One command of the course at most this long; the training run has its own, larger, limit.
COMMAND_TIMEOUT_S = 300
TRAIN_TIMEOUT_S = 900

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
_IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def blocks(page: Path) -> list[tuple[str, str, str | None]]:
    """The page's runnable blocks, in order: (kind, code, expected output or None)."""
    found = [
        (m.group(1), m.group(2), m.start(), m.end()) for m in _FENCE.finditer(page.read_text())
    ]
    text = page.read_text()
    out = []
    for i, (kind, body, _, end) in enumerate(found):
        if kind == "console":
            out.append(("console", body, None))
        elif kind == "python":
            expected = None
            if i + 1 < len(found) and found[i + 1][0] == "text":
                between = text[end : found[i + 1][2]]
                if not between.strip():
                    expected = found[i + 1][1]
            out.append(("python", body, expected))
    return out


def console_commands(body: str) -> list[tuple[str, str]]:
    """A console block's (command, expected output) pairs."""
    pairs: list[list] = []
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\") and i + 1 < len(lines):
                i += 1
                command = command + "\n" + lines[i]
            pairs.append([command, []])
        elif not pairs:
            raise ValueError(f"a console block must start with a '$ ' command line, not {line!r}")
        else:
            pairs[-1][1].append(line)
        i += 1
    return [(c, "\n".join(o)) for c, o in pairs]


def screen_lines(output: str) -> list[str]:
    """The lines a terminal would show: the last state of a line redrawn with \\r, no trailing
    spaces, no trailing empty lines."""
    lines = [line.split("\r")[-1].rstrip() for line in output.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whether ``actual`` fits ``expected``, with ``[…]`` any lines and `` ⏱`` any one line."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head == ANY_LINES:
        return any(matches(rest, actual[k:]) for k in range(len(actual) + 1))
    if not actual:
        return False
    if head.endswith(ONE_LINE) or head == actual[0]:
        return matches(rest, actual[1:])
    return False


def check_output(where: str, expected: str, actual: str) -> None:
    want = screen_lines(expected)
    got = screen_lines(actual)
    if not matches(want, got):
        pytest.fail(
            f"{where}: the output differs from the page.\n--- page:\n"
            + "\n".join(want)
            + "\n--- real:\n"
            + "\n".join(got)
        )


def environment(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPTJAX_")}
    env.update(
        PYTHONPATH=str(REPO),
        GPTJAX_CACHE_DIR=str(cache),
        # The same interpreter as the tests, whatever `python` means on the PATH.
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        MPLBACKEND="Agg",
        COLUMNS="100",
        LC_ALL="C.UTF-8",
        PYTHONIOENCODING="utf-8",
    )
    # No network: a download through Python's HTTP clients goes to a closed local port and fails.
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[name] = "http://127.0.0.1:9"
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)
    return env


def run_shell(command: str, cwd: Path, env: dict[str, str], timeout: int) -> tuple[int, str]:
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )
    return done.returncode, done.stdout.decode("utf-8", errors="replace")


def page_folder(root: Path, name: str, runs: Path) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "configs").symlink_to(REPO / "configs")
    (folder / "data").symlink_to(REPO / "data")
    (folder / "runs").symlink_to(runs)
    return folder


def training_command() -> tuple[Path, str]:
    """The course's one training command, and its page."""
    found = [
        (page, command)
        for page in PAGES
        for kind, body, _ in blocks(page)
        if kind == "console"
        for command, _ in console_commands(body)
        if command.startswith(TRAIN_PREFIX)
    ]
    assert len(found) == 1, f"the course must show one training command, found {found}"
    return found[0]


@pytest.fixture(scope="session")
def course(tmp_path_factory):
    """The session's folders, and the shared training run, trained once: (root, env, output)."""
    root = tmp_path_factory.mktemp("course")
    runs = root / "runs"
    runs.mkdir()
    env = environment(root / "cache")
    _, command = training_command()
    folder = page_folder(root, "training", runs)
    rc, output = run_shell(command, folder, env, TRAIN_TIMEOUT_S)
    assert rc == 0, f"{command} failed ({rc}):\n{output}"
    return root, env, output


def test_every_page_is_found():
    assert (DOCS / "CONCEPTS_LLM.md").is_file()
    names = [p.name for p in PAGES]
    for part in range(1, 11):
        assert any(n.startswith(f"{part:02d}-") for n in names), f"no page for part {part}"


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_page_commands(page, course):
    root, env, training_output = course
    folder = page_folder(root, page.stem, root / "runs")
    n_commands = 0
    for k, (kind, body, expected) in enumerate(blocks(page)):
        if kind == "python":
            where = f"{page.name}, python block {k + 1}"
            done = subprocess.run(
                [sys.executable, "-"],
                input=body.encode(),
                cwd=folder,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=COMMAND_TIMEOUT_S,
            )
            output = done.stdout.decode("utf-8", errors="replace")
            assert done.returncode == 0, f"{where} failed:\n{output}"
            if expected is not None:
                check_output(where, expected, output)
            n_commands += 1
            continue
        for command, shown in console_commands(body):
            where = f"{page.name}: $ {command}"
            if command.startswith(TRAIN_PREFIX):
                rc, output = 0, training_output  # run once for the session, by `course`
            else:
                rc, output = run_shell(command, folder, env, COMMAND_TIMEOUT_S)
            assert rc == 0, f"{where} exited with {rc}:\n{output}"
            check_output(where, shown, output)
            n_commands += 1
    if page.name[:2].isdigit() or page.name == "CONCEPTS_LLM.md":  # the glossary has none
        assert n_commands, f"{page.name} shows no command"


def referenced_images() -> set[str]:
    names = set()
    for page in PAGES:
        for target in _IMAGE.findall(page.read_text()):
            path = (page.parent / target).resolve()
            assert path.parent == DOCS / "img", f"{page.name}: {target} is not under docs/img/"
            names.add(path.name)
    return names


def image_list() -> list[str]:
    sys.path.insert(0, str(DOCS))
    try:
        import make_images
    finally:
        sys.path.remove(str(DOCS))
    return list(make_images.IMAGES)


def test_images_are_the_scripts(course):
    listed = image_list()
    assert len(listed) == len(set(listed))
    assert referenced_images() == set(listed)
    for name in listed:
        data = (DOCS / "img" / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), f"docs/img/{name} is not a PNG file"
    root, env, _ = course
    out = root / "img"
    rc, output = run_shell(
        f"python {DOCS / 'make_images.py'} --workdir runs/french_tiny --out {out}",
        page_folder(root, "images", root / "runs"),
        env,
        COMMAND_TIMEOUT_S,
    )
    assert rc == 0, output
    assert sorted(p.name for p in out.iterdir()) == sorted(listed)


def test_matching_rules():
    """The comparison itself: it can fail, and the two markers do what the pages say."""
    assert matches(["a", "b"], ["a", "b"])
    assert not matches(["a", "b"], ["a", "c"])
    assert not matches(["a"], ["a", "b"])
    assert matches(["a", ANY_LINES, "d"], ["a", "b", "c", "d"])
    assert matches(["a", ANY_LINES, "d"], ["a", "d"])
    assert not matches(["a", ANY_LINES, "d"], ["a", "b"])
    assert matches(["x 1.2 s ⏱", "y"], ["x 3.4 s", "y"])
    assert not matches(["x 1.2 s ⏱"], [])
    assert screen_lines("10%\r50%\r100%\nfin  \n\n") == ["100%", "fin"]
    assert console_commands("$ echo a \\\n  b\na b\n$ true\n") == [
        ("echo a \\\n  b", "a b"),
        ("true", ""),
    ]


def test_page_parsing(tmp_path):
    """Which blocks run, and which text block is whose output."""
    page = tmp_path / "page.md"
    page.write_text(
        "```console\n$ echo a\na\n```\n\n```python\nprint(1)\n```\n\n```text\n1\n```\n"
        "```python\nx = 2\n```\nUne phrase.\n\n```text\nrien\n```\n```bash\nls\n```\n"
    )
    assert blocks(page) == [
        ("console", "$ echo a\na\n", None),
        ("python", "print(1)\n", "1\n"),
        ("python", "x = 2\n", None),
    ]
    with pytest.raises(ValueError, match="must start"):
        console_commands("sortie sans commande\n")
