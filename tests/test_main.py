"""`python -m spacy_spandec COMMAND` / `spacy-spandec COMMAND`: every command is
reachable and names itself in its usage, as the docs write it."""

import pytest

from spacy_spandec.__main__ import COMMANDS, main


def test_no_command_lists_the_commands(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    for command in COMMANDS:
        assert command in err


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_its_usage(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m spacy_spandec {command}")
