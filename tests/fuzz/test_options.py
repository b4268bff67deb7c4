"""Property tests of option values: the client's conversion against ``validation`` strings.

``Option.encode`` turns Python values into the wire strings the platform expects and refuses bad
ones before any request. The properties: what it accepts round-trips (``python_value`` gives the
value back) and is accepted by the emulator's own, independently written validator (so the client
is never looser than the server); ``min``/``max`` are enforced exactly at the bounds; datetimes in
any time zone come out in the option's ``format=`` in UTC; constrained options take a value or a
display name in any case and nothing else; refusals are :class:`ValidationError` naming the option.
"""

from __future__ import annotations

import string
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from fusion_stac.emulator.errors import ApiError
from fusion_stac.emulator.processes import check_option_value
from fusion_stac.errors import ValidationError
from fusion_stac.models import Option

DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
DATETIME_VALIDATION = f"format={DATETIME_FORMAT};min=2017-01-01T00:00:00;max=2030-01-01T00:00:00"
LOW, HIGH = datetime(2017, 1, 1, tzinfo=timezone.utc), datetime(2030, 1, 1, tzinfo=timezone.utc)


def option(data_type: str, validation: str | None = None, **extra: Any) -> Option:
    return Option.from_api({"name": "opt", "data_type": data_type, "validation": validation, "value": None, **extra})


def server_accepts(opt: Option, wire: str | None) -> str | None:
    """The emulator's validator on the wire string (raises ApiError if it refuses)."""
    return check_option_value(dict(opt.raw), wire, "Option")


def server_refuses(opt: Option, wire: str) -> bool:
    try:
        server_accepts(opt, wire)
    except ApiError:
        return True
    return False


# -- numbers ---------------------------------------------------------------------------------------

bounds = st.tuples(st.integers(-10**6, 10**6), st.integers(0, 10**6)).map(lambda t: (t[0], t[0] + t[1]))


def numbers_between(low: int, high: int) -> st.SearchStrategy[Any]:
    """A number in [low, high] as int, float, Decimal or one of its string forms."""
    exact = st.decimals(min_value=low, max_value=high, allow_nan=False, allow_infinity=False, places=4)
    return st.one_of(
        st.integers(low, high),
        st.floats(low, high, allow_nan=False, allow_infinity=False),
        exact,
        exact.map(str),
        st.integers(low, high).map(lambda i: f"  {i}  "),
        exact.map(lambda d: f"{d:e}"),
    )


@given(data=st.data(), limits=bounds, kind=st.sampled_from(["numeric", "currency"]))
def test_numbers_within_bounds_round_trip_and_the_server_agrees(data: st.DataObject, limits: tuple[int, int],
                                                               kind: str) -> None:
    low, high = limits
    opt = option(kind, f"min={low};max={high}")
    value = data.draw(numbers_between(low, high))
    wire = opt.encode(value)
    assert wire is not None and wire == wire.strip()
    expected = Decimal(str(value).strip()) if not isinstance(value, float) else Decimal(repr(value))
    assert Decimal(wire) == expected
    decoded = Option.from_api(dict(opt.raw, value=wire)).python_value
    assert Decimal(str(decoded)) == expected if kind == "currency" else decoded == float(expected)
    assert Decimal(server_accepts(opt, wire) or "nan") == expected


@given(limits=bounds, beyond=st.integers(1, 10**6), below=st.booleans(), as_text=st.booleans())
def test_numbers_outside_bounds_are_refused_like_the_server(limits: tuple[int, int], beyond: int, below: bool,
                                                           as_text: bool) -> None:
    low, high = limits
    opt = option("numeric", f"min={low};max={high}")
    value = low - beyond if below else high + beyond
    with pytest.raises(ValidationError, match=("below the minimum" if below else "above the maximum")) as info:
        opt.encode(str(value) if as_text else value)
    assert info.value.field == "opt" and "'opt'" in str(info.value)
    assert server_refuses(opt, str(value))


@given(limits=bounds)
def test_the_bounds_themselves_are_accepted(limits: tuple[int, int]) -> None:
    low, high = limits
    opt = option("numeric", f"min={low};max={high}")
    assert opt.encode(low) == str(low) and opt.encode(high) == str(high)
    assert opt.encode(float(high)) is not None and opt.encode(Decimal(low)) == str(low)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "-Infinity", "NaN", "sNaN", "", "12abc", "1,5",
                                 True, False, None, [1], {"a": 1}, b"12"])
def test_what_is_not_a_finite_number_is_refused(bad: Any) -> None:
    opt = option("numeric", "min=0;max=100", required=True)
    with pytest.raises(ValidationError) as info:
        opt.encode(bad)
    assert info.value.field == "opt" and info.value.status is None  # caught client-side


@given(text=st.text(max_size=12))
def test_arbitrary_text_is_a_number_or_refused_never_a_crash(text: str) -> None:
    opt = option("numeric", "min=-1000;max=1000")
    try:
        wire = opt.encode(text)
    except ValidationError:
        return
    assert wire is not None and not server_refuses(opt, wire)


# -- booleans --------------------------------------------------------------------------------------

truthy = ["true", "t", "yes", "y", "1", "on"]
falsy = ["false", "f", "no", "n", "0", "off"]


def spelled(words: list[str]) -> st.SearchStrategy[str]:
    """The words in any letter case, with surrounding blanks."""
    return st.tuples(st.sampled_from(words), st.randoms(use_true_random=False), st.sampled_from(["", " ", "\t"])).map(
        lambda t: t[2] + "".join(c.upper() if t[1].random() < 0.5 else c for c in t[0]) + t[2])


@given(value=st.one_of(st.booleans(), spelled(truthy), spelled(falsy)))
def test_booleans_round_trip(value: Any) -> None:
    opt = option("boolean")
    wire = opt.encode(value)
    meant = value if isinstance(value, bool) else value.strip().lower() in truthy
    assert wire == ("true" if meant else "false")
    assert Option.from_api(dict(opt.raw, value=wire)).python_value is meant
    assert server_accepts(opt, wire) == wire


@given(text=st.text(max_size=8).filter(lambda s: s.strip().lower() not in truthy + falsy))
def test_other_booleans_are_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="expected true or false"):
        option("boolean").encode(text)


# -- datetimes -------------------------------------------------------------------------------------

offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
moments = st.datetimes(min_value=datetime(2016, 6, 1), max_value=datetime(2030, 6, 1),
                       timezones=st.one_of(st.none(), offsets))


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


@given(moment=moments, form=st.sampled_from(["datetime", "iso", "format", "date"]))
def test_datetimes_come_out_in_the_format_in_utc(moment: datetime, form: str) -> None:
    opt = option("datetime", DATETIME_VALIDATION)
    value: Any = {
        "datetime": moment,
        "iso": moment.isoformat(),
        "format": as_utc(moment).strftime(DATETIME_FORMAT),
        "date": moment.date(),
    }[form]
    meant = as_utc(datetime(moment.year, moment.month, moment.day)) if form == "date" else as_utc(moment)
    if form == "format":
        meant = meant.replace(microsecond=0)
    inside = LOW <= meant <= HIGH
    if not inside:
        with pytest.raises(ValidationError, match=r"(below the minimum|above the maximum)"):
            opt.encode(value)
        return
    wire = opt.encode(value)
    assert wire is not None
    assert datetime.strptime(wire, DATETIME_FORMAT).replace(tzinfo=timezone.utc) == meant.replace(microsecond=0)
    assert Option.from_api(dict(opt.raw, value=wire)).python_value == meant.replace(microsecond=0)
    assert server_accepts(opt, wire) == wire  # the client is never looser than the platform


@given(seconds=st.integers(1, 10**8), below=st.booleans())
def test_datetime_bounds_are_exact(seconds: int, below: bool) -> None:
    opt = option("datetime", DATETIME_VALIDATION)
    assert opt.encode(LOW) == "2017-01-01T00:00:00" and opt.encode(HIGH) == "2030-01-01T00:00:00"
    outside = LOW - timedelta(seconds=seconds) if below else HIGH + timedelta(seconds=seconds)
    with pytest.raises(ValidationError):
        opt.encode(outside)
    assert server_refuses(opt, outside.strftime(DATETIME_FORMAT))


@given(text=st.text(max_size=25))
def test_arbitrary_text_is_a_datetime_or_refused_never_a_crash(text: str) -> None:
    opt = option("datetime", DATETIME_VALIDATION)
    try:
        wire = opt.encode(text)
    except ValidationError:
        return
    assert wire is not None and not server_refuses(opt, wire)


@pytest.mark.parametrize("bad", [12, 3.5, True, [2021], date.max, "2021-02-30T00:00:00", "yesterday", "", " "])
def test_what_is_not_a_datetime_is_refused(bad: Any) -> None:
    with pytest.raises(ValidationError):
        option("datetime", DATETIME_VALIDATION).encode(bad)


# -- constrained values ----------------------------------------------------------------------------

# "None" and "null" are excluded: on the wire they mean "no value" (API doc 5.5), whatever the option.
tokens = st.text(alphabet=string.ascii_letters + string.digits + " -_.*", min_size=1, max_size=10).filter(
    lambda s: s.strip() == s and s.strip() != "" and s not in ("None", "null"))


@given(choices=st.lists(st.tuples(tokens, tokens), min_size=1, max_size=5, unique_by=(
    lambda t: t[0].casefold(), lambda t: t[1].casefold())), data=st.data())
def test_constrained_values_take_a_value_or_a_name_in_any_case(choices: list[tuple[str, str]],
                                                             data: st.DataObject) -> None:
    values, names = [c[0] for c in choices], [c[1] for c in choices]
    assume(not {v.casefold() for v in values} & {n.casefold() for n in names} - {
        v.casefold() for v, n in choices if v.casefold() == n.casefold()})
    opt = option("constrained", f"values={','.join(values)};names={','.join(names)}")
    index = data.draw(st.integers(0, len(values) - 1))
    given_as = data.draw(st.sampled_from([values[index], names[index], values[index].upper(), names[index].lower()]))
    wire = opt.encode(given_as)
    assert wire == values[index]
    assert server_accepts(opt, wire) == wire
    stranger = data.draw(tokens.filter(lambda t: t.casefold() not in {x.casefold() for x in values + names}))
    with pytest.raises(ValidationError, match="is not one of"):
        opt.encode(stranger)
    assert server_refuses(opt, stranger)


def test_a_required_option_cannot_be_unset_and_an_optional_one_can() -> None:
    with pytest.raises(ValidationError, match="a value is required"):
        option("numeric", "min=0;max=1", required=True).encode(None)
    assert option("numeric", "min=0;max=1").encode(None) is None
