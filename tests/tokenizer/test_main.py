"""Tests of the command line ``python -m gptjax.tokenizer``: train (and its ``--verbose`` merge
log), encode, decode, show and parity, and one ``error:`` line with exit status 2 for each user
mistake."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gptjax import tokenizer as tk
from gptjax.tokenizer import __main__ as cli

GPT2 = ["--pattern", "gpt2", "--special", "<|endoftext|>=50256"]


@pytest.fixture
def trained(tmp_path, data_file, capsys):
    out = tmp_path / "tok.bpe"
    assert (
        cli.main(
            [
                "train",
                "--input",
                str(data_file("tinyshakespeare.txt")),
                "--vocab-size",
                "600",
                "--pattern",
                "gpt4",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return out


def test_train_writes_a_loadable_tokenizer(trained, capsys):
    assert "trained 340 merges (vocab_size 600, pattern gpt4)" in capsys.readouterr().out
    assert tk.load(trained).vocab_size == 600


def test_train_verbose_prints_the_worked_example(tmp_path, capsys):
    src = _write(tmp_path, "abab abab")
    out = tmp_path / "t.bpe"
    argv = ["train", "--input", str(src), "--vocab-size", "262", "--out", str(out), "--verbose"]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [
        "merge 1 (id 260): a + b -> ab  count 4",
        "merge 2 (id 261): ab + ab -> abab  count 2",
    ]
    assert lines[2].startswith("trained 2 merges") and len(lines) == 3


def test_train_verbose_logs_every_merge_of_the_plain_trainer(tmp_path, data_file, capsys):
    text = data_file("hugo_miserables_fr.txt").read_text(encoding="utf-8")[:50_000]
    src = _write(tmp_path, text)
    out = tmp_path / "t.bpe"
    argv = ["train", "--input", str(src), "--vocab-size", "300", "--out", str(out), "--verbose"]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    # Computed independently: the plain trainer's merges and counts.
    learned = []
    tok = tk.train_plain(text, 300, "gpt4", on_merge=lambda *m: learned.append(m))
    assert len(lines) == len(learned) + 1 == 41
    shown = lambda i: cli.readable(tok.token_bytes(i))
    for line, (new, left, right, count) in zip(lines, learned, strict=False):
        parts = f"{shown(left)} + {shown(right)} -> {shown(new)}"
        assert line == f"merge {new - 259} (id {new}): {parts}  count {count:,}"
    # On this slice the 4th merge joins the two bytes of "é".
    assert learned[3][:3] == (263, 0xC3, 0xA9) and tok.token_bytes(263) == "é".encode()
    assert lines[3] == f"merge 4 (id 263): 0xC3 + 0xA9 -> é  count {learned[3][3]:,}"
    assert lines[0] == f"merge 1 (id 260): ␠ + d -> ␠d  count {learned[0][3]:,}"


def test_readable_shows_text_when_it_can_and_hex_otherwise():
    assert cli.readable("é".encode()) == "é"
    assert cli.readable(b"\xc3") == "0xC3"  # half a character
    assert cli.readable(b" \xc3") == "0x20 0xC3"
    assert cli.readable(b" the") == "␠the"
    assert cli.readable(b"\n\n") == "\\n\\n"
    assert cli.readable("\u00a0".encode()) == "0xC2 0xA0"  # a no-break space is invisible


def test_encode_decode_round_trip(tmp_path, trained, capsys):
    text = "Wherefore art thou Roméo? 🙂\n"
    src = tmp_path / "in.txt"
    src.write_text(text, encoding="utf-8")
    capsys.readouterr()
    assert cli.main(["encode", "--tokenizer", str(trained), "--input", str(src)]) == 0
    ids_text = capsys.readouterr().out
    assert [int(w) for w in ids_text.split()] == tk.encode(tk.load(trained), text)
    ids = tmp_path / "ids.txt"
    ids.write_text(ids_text, encoding="utf-8")
    assert cli.main(["decode", "--tokenizer", str(trained), "--input", str(ids)]) == 0
    assert capsys.readouterr().out == text


def test_show_makes_boundaries_visible(trained, capsys):
    capsys.readouterr()
    assert cli.main(["show", "--tokenizer", str(trained), "--text", "xkzbrt"]) == 0
    lines = capsys.readouterr().out.splitlines()
    tok = tk.load(trained)
    ids = tk.encode(tok, "xkzbrt")
    # The invented word is split into known pieces, never <unk>: tutorial question 2.
    assert lines[0] == "".join(f"[{tok.token_bytes(i).decode()}]" for i in ids)
    assert lines[0].replace("[", "").replace("]", "") == "xkzbrt" and len(ids) > 1
    assert lines[-1] == f"{len(ids)} tokens, 6 bytes, {6 / len(ids):.2f} bytes/token"


def test_parity_on_gpt2_ranks_and_mismatch_exit_status(data_file, capsys, monkeypatch):
    ranks = str(data_file("gpt2.tiktoken"))
    stress = str(data_file("unicode_stress.txt"))
    assert cli.main(["parity", "--tokenizer", ranks, *GPT2, "--input", stress]) == 0
    assert capsys.readouterr().out == "unicode_stress.txt: 44,131 bytes, 24,749 tokens, identical\n"
    # A broken encoder must be caught: drop one token from the reference output.
    reference = tk.encode_ordinary
    monkeypatch.setattr(cli.tk, "encode_ordinary", lambda tok, t: reference(tok, t)[1:])
    assert cli.main(["parity", "--tokenizer", ranks, *GPT2, "--input", stress]) == 1
    assert "MISMATCH at token 0" in capsys.readouterr().out


def _error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as info:
        status = cli.main(argv)
        raise SystemExit(status)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1 and "Traceback" not in "\n".join(err)
    return err[-1]


def test_user_mistakes_get_one_error_line(tmp_path, trained, capsys):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("déjà vu".encode("latin-1"))
    train = ["train", "--out", str(tmp_path / "t.bpe"), "--input"]
    line = _error(capsys, [*train, str(latin1), "--vocab-size", "300"])
    assert f"'{latin1}' is not UTF-8: byte 1 (0xe9)" in line
    assert "vocab_size >= 260" in _error(capsys, [*train, str(trained), "--vocab-size", "100"])
    assert "unknown pattern 'bpe'" in _error(
        capsys, [*train, str(trained), "--vocab-size", "300", "--pattern", "bpe"]
    )
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    assert "empty corpus" in _error(capsys, [*train, str(empty), "--vocab-size", "300"])
    bad = tmp_path / "bad.bpe"
    bad.write_text(trained.read_text(encoding="utf-8")[:5000], encoding="utf-8")
    assert "truncated" in _error(capsys, ["show", "--tokenizer", str(bad), "--text", "x"])
    assert "NAME=ID" in _error(
        capsys, ["show", "--tokenizer", str(trained), "--special", "eot", "--text", "x"]
    )
    ids = _write(tmp_path, "72 999")
    line = _error(capsys, ["decode", "--tokenizer", str(trained), "--input", str(ids)])
    assert "id 999 is not in this vocabulary, whose ids are 0..599" in line
    line = _error(capsys, ["show", "--tokenizer", str(trained), "--text", "caf\udce9"])
    assert "--text is not valid UTF-8 text (character 3)" in line


def test_stdin_that_is_not_utf8_is_one_error_line(trained, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("déjà".encode("latin-1"))))
    line = _error(capsys, ["encode", "--tokenizer", str(trained)])
    assert "stdin is not UTF-8: byte 1 (0xe9)" in line


def test_special_token_text_names_the_flag_that_encodes_it(tmp_path, trained, capsys):
    src = _write(tmp_path, "To be<eos> or not")
    encode = ["encode", "--tokenizer", str(trained), "--input", str(src)]
    line = _error(capsys, encode)
    assert "special token '<eos>' at character 5: pass --allow-special" in line
    assert "allowed_special" not in line
    # The advice works: with the flag, the text encodes with <eos> as its single id.
    assert cli.main([*encode, "--allow-special"]) == 0
    ids = [int(w) for w in capsys.readouterr().out.split()]
    assert ids == tk.encode(tk.load(trained), "To be<eos> or not", allowed_special="all")
    assert 259 in ids


def test_train_out_that_cannot_be_written_is_refused_before_training(tmp_path, capsys):
    src = _write(tmp_path, "abab abab")
    train = ["train", "--input", str(src), "--vocab-size", "262", "--out"]
    missing = tmp_path / "no" / "such" / "tok.bpe"
    line = _error(capsys, [*train, str(missing)])
    assert f"the folder {missing.parent} does not exist; mkdir -p {missing.parent} first" in line
    assert "trained" not in capsys.readouterr().out
    missing.parent.mkdir(parents=True)  # the advice works
    assert cli.main([*train, str(missing)]) == 0 and tk.load(missing).vocab_size == 262
    folder = tmp_path / "runs"
    folder.mkdir()
    line = _error(capsys, [*train, str(folder)])
    assert f"--out {folder} is a folder; give the path of the file to write" in line
    assert cli.main([*train, line.rsplit("e.g. --out ", 1)[1]]) == 0  # the advice works
    assert tk.load(folder / "tok.bpe").vocab_size == 262
    line = _error(capsys, [*train, str(src / "tok.bpe")])  # under a file
    assert f"the folder {src} is a file, not a folder; choose another path" in line


def test_tokenizer_file_mistakes_get_cli_advice_that_works(tmp_path, trained, data_file, capsys):
    ranks = str(data_file("gpt2.tiktoken"))
    show = ["show", "--text", "Hello world"]
    line = _error(capsys, [*show, "--tokenizer", ranks])
    assert "rank file, which carries no pattern: add --pattern" in line
    advice = line.split("e.g. ", 1)[1].removesuffix(" for GPT-2").split()
    assert advice == ["--pattern", "gpt2", "--special", "'<|endoftext|>=50256'"]
    assert cli.main([*show, "--tokenizer", ranks, *GPT2]) == 0
    assert "ids: 15496 995" in capsys.readouterr().out  # tiktoken's documented example
    line = _error(capsys, [*show, "--tokenizer", str(trained), "--pattern", "gpt4"])
    assert "is a gptjax .bpe file, which records its own pattern" in line
    assert "drop --pattern and --special" in line
    binary = tmp_path / "model.bin"
    binary.write_bytes(bytes(range(256)))
    line = _error(capsys, [*show, "--tokenizer", str(binary)])
    assert f"'{binary}' is not a tokenizer file (neither a gptjax .bpe file" in line
    line = _error(capsys, [*show, "--tokenizer", ranks, "--pattern", "gpt2", "--special", "x=5"])
    assert "special token 'x' has id 5" in line and "<|endoftext|>=50256" in line


def test_specials_repeated_or_comma_separated(data_file, capsys):
    ranks = str(data_file("gpt2.tiktoken"))
    base = ["show", "--tokenizer", ranks, "--pattern", "gpt2", "--text", "<|endoftext|><|x|>"]
    repeated = [*base, "--special", "<|endoftext|>=50256", "--special", "<|x|>=50257"]
    assert cli.main(repeated) == 0
    assert "ids: 50256 50257" in capsys.readouterr().out
    assert cli.main([*base, "--special", "<|endoftext|>=50256,<|x|>=50257"]) == 0
    assert "ids: 50256 50257" in capsys.readouterr().out


def test_an_internal_error_keeps_its_traceback(trained, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("a bug in the encoder")

    monkeypatch.setattr(cli.tk, "encode", broken)
    with pytest.raises(ValueError, match="a bug in the encoder"):
        cli.main(["show", "--tokenizer", str(trained), "--text", "x"])


def _write(tmp_path, text):
    path = tmp_path / "text.txt"
    path.write_text(text, encoding="utf-8")
    return path


def test_module_entry_point(trained):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gptjax.tokenizer",
            "show",
            "--tokenizer",
            str(trained),
            "--text",
            "To be",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].endswith("bytes/token")
