"""Where and on what: each row's `user_location` (its store, looked up in `[locations]`, or its own
columns) and the source's fixed `device`, as the request-level members MP takes.

Why per row and request-level: MP carries `user_location` and `device` once per request, for every
event in it (MP reference, "Geographic information"), so they are part of a request's identity: the
sender never groups two stores' orders into one request (etl/load/batching.py).

Checks (etl/protocol/place.py: pycountry for ISO 3166-1/-2, Babel for UN M49): a code that is not one
rejects its row, naming the row and the column, never the value; a region of another country than the
row's `country_id` too. A location column that holds a street address, a postcode or any other
personal data (etl/transform/privacy.py, `detect_place_data`) rejects its row and is never sent. A store
column's value is only a key: what leaves is the `[locations]` entry, so the column itself is not
scanned. A blank store or location cell sends the event without `user_location` (an online order:
GA derives its geo from the site's own tag) and is counted (`without_location`).

The values are checked once per distinct value (a night has a handful of stores, not a million), so
the rule costs a few dictionary lookups per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from etl.accounting import Notes
from etl.protocol.place import (
    CODE_CHECKS,
    PLACE_PREFIX,
    city_problem,
    completed_location,
    region_problem,
    request_members,
)
from etl.transform.arrow_text import strip
from etl.transform.context import RuleContext
from etl.transform.privacy import detect_place_data

_CODE_COLUMNS = ("region_id", "country_id", "subcontinent_id", "continent_id")


@dataclass(frozen=True)
class Place:
    """Per row the request members `"user_location":{…},"device":{…}` (text, NA: none), or None for a
    source that sends neither."""

    members: pd.Series | None


def apply(ctx: RuleContext) -> Place:
    config = ctx.config
    device = config.device.device() if config.device is not None else None
    device_text = request_members(None, device)
    place = config.place
    if place is None:
        return Place(None if device_text is None else pd.Series(device_text, index=ctx.frame.index, dtype="string"))
    if place.fixed_store is not None:
        location = ctx.options.locations[place.fixed_store].user_location()
        text = request_members(location, device)
        ctx.tally.notes += Notes(with_location=int((~ctx.reasons.not_sent).sum()))
        return Place(pd.Series(text, index=ctx.frame.index, dtype="string"))
    if place.columns():
        located = _from_columns(ctx, place.columns(), device)
    else:
        located = _from_store(ctx, place.unknown_store, device)
    sent = ~ctx.reasons.not_sent
    ctx.tally.notes += Notes(with_location=int((located.notna().to_numpy(dtype=bool) & sent).sum()),
                             without_location=int((located.isna().to_numpy(dtype=bool) & sent).sum()))
    return Place(located.fillna(device_text) if device_text is not None else located)


def _from_store(ctx: RuleContext, unknown: str, device: dict[str, str] | None) -> pd.Series:
    """Each row's members by its store column, looked up in `[locations]` (trimmed, ignoring case)."""
    label = ctx.label(PLACE_PREFIX + "store")
    table = {name.strip().casefold(): request_members(entry.user_location(), device)
             for name, entry in ctx.options.locations.items()}
    keys = strip(ctx.get(PLACE_PREFIX + "store")).str.casefold()
    found = keys.map(table).astype("string")
    unknown_rows = (keys.notna() & found.isna()).to_numpy(dtype=bool)
    if unknown_rows.any() and unknown == "reject":
        ctx.reasons.add(unknown_rows, "user_location",
                        f"column {label!r} names a store that is not in [locations] (value not shown): add it there, "
                        "or set [sources.location] unknown_store = \"omit\" to send such rows without a location",
                        "VALUE_INVALID")
    return found


def _from_columns(ctx: RuleContext, columns: dict[str, str], device: dict[str, str] | None) -> pd.Series:
    """Each row's location from its own columns: personal data and bad codes reject the row."""
    values: dict[str, pd.Series] = {}
    for field in columns:
        name = PLACE_PREFIX + field
        label = ctx.label(name)
        text = strip(ctx.get(name))
        # A place's codes are three digits at most (M49): a postcode rule would flag them.
        detected = detect_place_data(text, postcodes=field in ("city", "region_id", "country_id"))
        hits = detected.notna().to_numpy(dtype=bool)
        for detector in pd.unique(detected[hits]):
            mask = hits & (detected == detector).fillna(False).to_numpy(dtype=bool)
            ctx.tally.detectors[detector] += int(mask.sum())
            ctx.reasons.add(mask, f"user_location.{field}",
                            f"column {label!r} looks like personal data (detector: {detector}); a location is a "
                            "place (city, region, country), never an address: the value is not shown and was not sent",
                            "PERSONAL_DATA")
        text = text.mask(hits)
        check = city_problem if field == "city" else CODE_CHECKS.get(field)
        if check is not None:
            _reject_bad(ctx, text, field, label, check)
        values[field] = text
    if "region_id" in values:
        pairs = pd.DataFrame({"r": values["region_id"], "c": values.get("country_id", pd.Series(pd.NA, index=ctx.frame.index))})
        verdict = {key: region_problem(key[0], None if pd.isna(key[1]) else key[1], named=False)
                   for key in pairs.dropna(subset=["r"]).drop_duplicates().itertuples(index=False, name=None)}
        problem = pd.Series([verdict.get((r, c)) if not pd.isna(r) else None for r, c in pairs.itertuples(index=False, name=None)],
                            index=ctx.frame.index, dtype=object)
        _add_problems(ctx, problem, "region_id", ctx.label(PLACE_PREFIX + "region_id"))
    return _members(values, ctx.frame.index, device)


def _reject_bad(ctx: RuleContext, text: pd.Series, field: str, label: str, check) -> None:
    verdict = {value: check(value) for value in pd.unique(text.dropna())}
    _add_problems(ctx, text.map(verdict), field, label)


def _add_problems(ctx: RuleContext, problem: pd.Series, field: str, label: str) -> None:
    for why in pd.unique(problem.dropna()):
        mask = (problem == why).fillna(False).to_numpy(dtype=bool)
        ctx.reasons.add(mask, f"user_location.{field}", f"column {label!r}: {why} (value not shown)", "VALUE_INVALID")


def _members(values: dict[str, pd.Series], index: pd.Index, device: dict[str, str] | None) -> pd.Series:
    """Each row's request members (NA where every location field is blank), built once per distinct place."""
    frame = pd.DataFrame(values, index=index).astype("string")
    codes, uniques = pd.MultiIndex.from_frame(frame.fillna("")).factorize()
    texts = []
    for key in uniques:
        given = {f: v for f, v in zip(frame.columns, key, strict=True) if v}
        texts.append(request_members(completed_location(given), device) if given else None)
    return pd.Series(np.array(texts, dtype=object)[codes], index=index, dtype="string")
