"""Shared by the tests of ``kitchenlab.checks``: a check grades, prints, and never raises."""


def ok(check, *args, capsys, **kwargs):
    """``check(*args, **kwargs)`` accepts the answer and says so."""
    assert check(*args, **kwargs) is True
    assert "well done" in capsys.readouterr().out


def wrong(check, *args, capsys, **kwargs):
    """``check(*args, **kwargs)`` refuses the answer (without raising) and says so; the
    printed feedback is returned for tests that read its hint."""
    assert check(*args, **kwargs) is False
    out = capsys.readouterr().out
    assert "not yet" in out and "✘" in out
    return out
