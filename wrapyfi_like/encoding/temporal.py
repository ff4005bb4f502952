"""datetime, date, time and timedelta as plain lists, exact to the microsecond and the tzinfo.

Time zones keep their identity where they have one: a ``zoneinfo.ZoneInfo`` travels by key, a
``datetime.timezone`` by offset and name. Any other tzinfo (pytz, dateutil) travels as the fixed
offset it has at that instant, which keeps the instant exact.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from wrapyfi_like.exceptions import DecodeError, EncodeError


def _tz_to_wire(tz: Optional[dt.tzinfo], offset: Optional[dt.timedelta]) -> Any:
    if tz is None:
        return None
    key = getattr(tz, "key", None)
    if isinstance(key, str):
        return ["zone", key]
    if offset is None:
        raise EncodeError(f"tzinfo {tz!r} gives no UTC offset here, so the value cannot be sent exactly")
    name = tz.tzname(None) if isinstance(tz, dt.timezone) else None
    return ["offset", offset.days, offset.seconds, offset.microseconds, name]


def _tz_from_wire(wire: Any) -> Optional[dt.tzinfo]:
    if wire is None:
        return None
    if wire[0] == "zone":
        import zoneinfo

        return zoneinfo.ZoneInfo(wire[1])
    if wire[0] == "offset":
        offset = dt.timedelta(wire[1], wire[2], wire[3])
        return dt.timezone(offset, wire[4]) if wire[4] is not None else dt.timezone(offset)
    raise DecodeError(f"unknown tzinfo kind {wire[0]!r:.40}")


def datetime_to_wire(value: dt.datetime) -> list:
    return [value.year, value.month, value.day, value.hour, value.minute, value.second,
            value.microsecond, value.fold, _tz_to_wire(value.tzinfo, value.utcoffset())]


def datetime_from_wire(wire: list) -> dt.datetime:
    *fields, fold, tz = wire
    return dt.datetime(*fields, fold=fold, tzinfo=_tz_from_wire(tz))


def time_to_wire(value: dt.time) -> list:
    return [value.hour, value.minute, value.second, value.microsecond, value.fold,
            _tz_to_wire(value.tzinfo, value.utcoffset())]


def time_from_wire(wire: list) -> dt.time:
    *fields, fold, tz = wire
    return dt.time(*fields, fold=fold, tzinfo=_tz_from_wire(tz))


def date_to_wire(value: dt.date) -> list:
    return [value.year, value.month, value.day]


def date_from_wire(wire: list) -> dt.date:
    return dt.date(*wire)


def timedelta_to_wire(value: dt.timedelta) -> list:
    return [value.days, value.seconds, value.microseconds]


def timedelta_from_wire(wire: list) -> dt.timedelta:
    return dt.timedelta(*wire)
