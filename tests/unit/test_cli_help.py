"""The CLI's help speaks to a person: what the tool does, each command in a sentence, every option explained."""

from __future__ import annotations

import argparse

import pytest

from billing_monitor.cli import COMMANDS, build_parser, main


def subcommands() -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def sentences() -> dict[str, str]:
    [action] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return {choice.dest: choice.help for choice in action._choices_actions}


def run_help(capsys, monkeypatch, *argv) -> str:
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def flat(text: str) -> str:
    return " ".join(text.split())


def test_every_command_is_in_the_parser():
    assert set(subcommands()) == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_help(name):
    parser = subcommands()[name]
    for action in parser._actions:
        assert action.help, f"{name} {action.option_strings or action.dest} has no help"
        assert action.help != argparse.SUPPRESS


def test_help_says_in_three_lines_what_the_tool_does(capsys, monkeypatch):
    out = run_help(capsys, monkeypatch)
    paragraphs = out.split("\n\n")
    assert paragraphs[0].startswith("usage: billing-monitor")
    description = paragraphs[1].splitlines()
    assert len(description) == 3
    assert all(len(line) <= 100 for line in description)
    assert "finding" in paragraphs[1]          # the word the commands use, said where it first appears


def test_help_lists_each_command_with_its_sentence(capsys, monkeypatch):
    out = flat(run_help(capsys, monkeypatch))
    for name, sentence in sentences().items():
        assert sentence, name
        assert flat(f"{name} {sentence}") in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_help_opens_with_its_sentence(capsys, monkeypatch, name):
    out = run_help(capsys, monkeypatch, name)
    assert flat(sentences()[name]).lower() in flat(out).lower()


def test_dsn_and_tolerance_are_explained_where_they_first_appear(capsys, monkeypatch):
    scan = flat(run_help(capsys, monkeypatch, "scan"))
    assert "DSN (connection string): postgresql://USER:PASSWORD@HOST:5432/DBNAME" in scan
    assert "percent-encoded (@ as %40)" in scan
    assert "password='...'" in scan
    assert "still count as the same price" in scan
    # explained once: the other commands point back at it
    for name in ("history", "approve", "actions"):
        assert "as for scan" in flat(run_help(capsys, monkeypatch, name))
