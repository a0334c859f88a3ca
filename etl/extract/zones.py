"""Vendor time-zone labels → IANA names.

Square (like Rails' ActiveSupport) writes zones as display names such as
"Pacific Time (US & Canada)". The transform needs IANA names to turn local times into UTC across DST
changes; an unknown label is passed through unchanged so the transform rejects those rows, naming it.
"""

from __future__ import annotations

import pandas as pd

DISPLAY_NAMES = {
    "pacific time (us & canada)": "America/Los_Angeles",
    "mountain time (us & canada)": "America/Denver",
    "central time (us & canada)": "America/Chicago",
    "eastern time (us & canada)": "America/New_York",
    "atlantic time (canada)": "America/Halifax",
    "newfoundland": "America/St_Johns",
    "arizona": "America/Phoenix",
    "alaska": "America/Juneau",
    "hawaii": "Pacific/Honolulu",
    "indiana (east)": "America/Indiana/Indianapolis",
    "saskatchewan": "America/Regina",
    "mexico city": "America/Mexico_City",
    "puerto rico": "America/Puerto_Rico",
    "utc": "Etc/UTC",
    "london": "Europe/London",
    "edinburgh": "Europe/London",
    "dublin": "Europe/Dublin",
    "lisbon": "Europe/Lisbon",
    "madrid": "Europe/Madrid",
    "paris": "Europe/Paris",
    "amsterdam": "Europe/Amsterdam",
    "brussels": "Europe/Brussels",
    "berlin": "Europe/Berlin",
    "rome": "Europe/Rome",
    "vienna": "Europe/Vienna",
    "stockholm": "Europe/Stockholm",
    "copenhagen": "Europe/Copenhagen",
    "athens": "Europe/Athens",
    "helsinki": "Europe/Helsinki",
    "tokyo": "Asia/Tokyo",
    "sydney": "Australia/Sydney",
    "canberra": "Australia/Canberra",
    "melbourne": "Australia/Melbourne",
    "brisbane": "Australia/Brisbane",
    "adelaide": "Australia/Adelaide",
    "darwin": "Australia/Darwin",
    "perth": "Australia/Perth",
    "hobart": "Australia/Hobart",
    "auckland": "Pacific/Auckland",
    "wellington": "Pacific/Auckland",
    # Abbreviations some exports write instead; each names the zone's usual region.
    "pst": "America/Los_Angeles", "pdt": "America/Los_Angeles",
    "mst": "America/Denver", "mdt": "America/Denver",
    "cst": "America/Chicago", "cdt": "America/Chicago",
    "est": "America/New_York", "edt": "America/New_York",
    "akst": "America/Anchorage", "akdt": "America/Anchorage", "hst": "Pacific/Honolulu",
    "gmt": "Etc/UTC", "bst": "Europe/London",
    "aest": "Australia/Sydney", "aedt": "Australia/Sydney", "awst": "Australia/Perth",
}


def to_iana(labels: pd.Series) -> pd.Series:
    """Map display names and abbreviations; IANA names and unknown labels pass through unchanged."""
    mapped = labels.str.strip().str.casefold().map(DISPLAY_NAMES)
    return mapped.fillna(labels).astype(labels.dtype)

