"""cproxy.memo: results of short arguments are remembered, long ones never are."""

from __future__ import annotations

from cproxy.memo import memoised_when_short


def test_short_arguments_are_remembered_and_long_ones_computed_each_time() -> None:
    calls: list[str] = []

    def upper(text: str) -> str:
        calls.append(text)
        return text.upper()

    f = memoised_when_short(upper, max_len=3, maxsize=2)
    assert [f("abc"), f("abc"), f("abcd"), f("abcd")] == ["ABC", "ABC", "ABCD", "ABCD"]
    assert calls == ["abc", "abcd", "abcd"]
    # At most maxsize remembered: the least recently used goes first.
    f("x"), f("y"), f("abc")
    assert calls[-3:] == ["x", "y", "abc"]
    assert f.__name__ == "upper"
