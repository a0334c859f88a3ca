"""Where and on what: MP's `user_location` and `device` objects and app-stream identity, as data.

Why a module of its own: the config checks a store table's codes, the transform checks a column's, the
sender's last gate allows only these fields, and the local collector turns them into the export's
`geo.*` / `device.*` the way GA does. All four must agree on one list of fields and one reading of
the codes, and none of them may import another stage.

Google's MP reference (developers.google.com/analytics/devguides/collection/protocol/ga4/reference,
"Geographic information" and "Device information"):

* `user_location`: `city` (a name), `region_id` ("The ISO 3166 country and subdivision", e.g. `US-CA`,
  `GB-LND`), `country_id` (ISO 3166-1 alpha-2, e.g. `US`), `subcontinent_id` and `continent_id` ("UN M49
  format", e.g. `021`, `019`). "We recommend `country_id` and `region_id` at a minimum." "If you send
  `user_location`, Google Analytics ignores `ip_override`." mpetl never sends `ip_override` anyway.
* `device`: `category` (e.g. `desktop`, `tablet`, `mobile`, `smart TV`), `language` (ISO 639-1, e.g.
  `en`, `en-US`), `screen_resolution` (`WIDTHxHEIGHT`), `operating_system`, `operating_system_version`,
  `model`, `brand`, `browser`, `browser_version`. With `device`, `user_agent` is ignored.
* App streams: the query takes `firebase_app_id` instead of `measurement_id`, the body `app_instance_id`
  (32 hexadecimal digits, Firebase's `getAppInstanceId()`) instead of `client_id`.

The codes are read from maintained data, never a hand list: ISO 3166-1 and 3166-2 from pycountry (the
Debian iso-codes database), UN M49 areas and the English names GA shows (CLDR: "Northern America",
"Southeast Asia", "United States") from Babel. M49's five continental regions are M49's own top level;
which sub-region a country lies in is not shipped by either package, so a `subcontinent_id` is checked
to be an M49 area, not to contain the country (docs/locations.md).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import orjson

#: The extract's columns for `[sources.location]` (place.store, place.city, …), as the transform reads them.
PLACE_PREFIX = "place."
USER_LOCATION_FIELDS = ("city", "region_id", "country_id", "subcontinent_id", "continent_id")
DEVICE_FIELDS = ("category", "language", "screen_resolution", "operating_system", "operating_system_version",
                 "model", "brand", "browser", "browser_version")
DEVICE_CATEGORIES = ("desktop", "tablet", "mobile", "smart TV")  # the reference's values, as GA's Device category shows them
#: M49's continental regions (the level above sub-regions): Africa, Oceania, Americas, Asia, Europe.
M49_CONTINENTS = ("002", "009", "019", "142", "150")
_M49_WORLD = "001"
MAX_PLACE_TEXT = 100  # GA4 takes at most 100 characters in a param value; no place name needs more

FIREBASE_APP_ID = re.compile(r"^\d+:\d+:(?P<platform>android|ios|web):[0-9a-f]+$")
APP_INSTANCE_ID = re.compile(r"^[0-9A-Fa-f]{32}$")
APP_INSTANCE_ID_PATTERN = APP_INSTANCE_ID.pattern
_RESOLUTION = re.compile(r"^[1-9]\d{1,4}x[1-9]\d{1,4}$")
_LANGUAGE = re.compile(r"^(?P<lang>[A-Za-z]{2})(?:[-_](?P<region>[A-Za-z]{2}|\d{3}))?$")


@functools.cache
def _countries() -> dict[str, str]:
    import pycountry

    return {c.alpha_2: c.name for c in pycountry.countries}


@functools.cache
def _regions() -> dict[str, tuple[str, str]]:
    """ISO 3166-2 code → (its country's alpha-2, its name)."""
    import pycountry

    return {s.code: (s.country_code, s.name) for s in pycountry.subdivisions}


@functools.cache
def _cldr_names() -> Mapping[str, str]:
    """CLDR's English territory names: alpha-2 countries and three-digit M49 areas (what GA4 displays)."""
    from babel import Locale

    return Locale("en").territories


@functools.cache
def _languages() -> frozenset[str]:
    import pycountry

    return frozenset(lang.alpha_2 for lang in pycountry.languages if hasattr(lang, "alpha_2"))


def country_problem(code: str) -> str | None:
    """Why `code` is not an ISO 3166-1 alpha-2 country code (None: it is)."""
    if code not in _countries():
        return "expected an ISO 3166-1 alpha-2 country code in capitals, such as 'GB' or 'US'"
    return None


def region_problem(code: str, country: str | None = None, *, named: bool = True) -> str | None:
    """Why `code` is not an ISO 3166-2 subdivision (of `country`, when given). `named=False` for a
    row's cells: the message then names neither code (a reject never shows a cell's value)."""
    found = _regions().get(code)
    if found is None:
        return "expected an ISO 3166-2 region code such as 'GB-MAN' or 'US-CA' (country, '-', subdivision)"
    if country is not None and found[0] != country:
        return f"is a region of {found[0]}, not of country_id {country}" if named else \
            "is a region of another country than the row's country_id"
    return None


def subcontinent_problem(code: str) -> str | None:
    if not (len(code) == 3 and code.isdigit()) or code not in _cldr_names() or code in M49_CONTINENTS \
            or code == _M49_WORLD:
        return "expected a UN M49 sub-region code of three digits, such as '154' (Northern Europe) or '021'"
    return None


def continent_problem(code: str) -> str | None:
    if code not in M49_CONTINENTS:
        return "expected a UN M49 continental region: '002', '009', '019', '142' or '150'"
    return None


def city_problem(text: str) -> str | None:
    """A city is a place's name: never an address, and a postcode or house number is digits."""
    if not text.strip() or len(text) > MAX_PLACE_TEXT:
        return f"expected a city name of 1 to {MAX_PLACE_TEXT} characters"
    if any(ch.isdigit() for ch in text):
        return "a city name holds no digits (a street address or a postcode is personal data, never sent)"
    if any(ord(ch) < 32 for ch in text):
        return "a city name holds no control characters"
    return None


CODE_CHECKS = {"country_id": country_problem, "subcontinent_id": subcontinent_problem,
               "continent_id": continent_problem}


def location_problems(location: Mapping[str, str]) -> dict[str, str]:
    """Field → why it is wrong, for one `user_location` (region checked against the country when both are set)."""
    out: dict[str, str] = {}
    for name, value in location.items():
        if name == "city":
            problem = city_problem(value)
        elif name == "region_id":
            problem = region_problem(value, location.get("country_id"))
        elif name in CODE_CHECKS:
            problem = CODE_CHECKS[name](value)
        else:
            problem = f"is not a field of user_location (expected one of: {', '.join(USER_LOCATION_FIELDS)})"
        if problem:
            out[name] = problem
    return out


def completed_location(location: Mapping[str, str]) -> dict[str, str]:
    """The location with `country_id` filled from `region_id` when only the region was given, in MP's field order."""
    out = dict(location)
    region = out.get("region_id")
    if region and "country_id" not in out and region in _regions():
        out["country_id"] = _regions()[region][0]
    return {k: out[k] for k in USER_LOCATION_FIELDS if out.get(k)}


def device_problem(name: str, value: str) -> str | None:
    """Why `value` is not a valid `device.<name>` (None: it is)."""
    if name not in DEVICE_FIELDS:
        return f"is not a field of device (expected one of: {', '.join(DEVICE_FIELDS)})"
    if not value.strip() or len(value) > MAX_PLACE_TEXT or any(ord(ch) < 32 for ch in value):
        return f"expected text of 1 to {MAX_PLACE_TEXT} characters"
    if name == "category" and value not in DEVICE_CATEGORIES:
        return f"expected one of {', '.join(repr(c) for c in DEVICE_CATEGORIES)} (Google's device categories)"
    if name == "language":
        match = _LANGUAGE.match(value)
        if not match or match["lang"].lower() not in _languages():
            return "expected an ISO 639-1 language, optionally with its region, such as 'en' or 'en-GB'"
    if name == "screen_resolution" and not _RESOLUTION.match(value):
        return "expected WIDTHxHEIGHT in pixels, such as '1080x1920'"
    return None


def app_platform(firebase_app_id: str) -> str:
    """The export's `platform` for an app id (`1:123:android:ab…` → ANDROID, `ios` → IOS)."""
    match = FIREBASE_APP_ID.match(firebase_app_id)
    return match["platform"].upper() if match else "WEB"


def request_members(location: Mapping[str, str] | None, device: Mapping[str, str] | None) -> str | None:
    """`"user_location":{…},"device":{…}` as the request carries them (MP's field order), or None."""
    parts = []
    if location:
        parts.append('"user_location":' + orjson.dumps(dict(location)).decode())
    if device:
        parts.append('"device":' + orjson.dumps({k: device[k] for k in DEVICE_FIELDS if device.get(k)}).decode())
    return ",".join(parts) or None


# --- what GA makes of them in the export ---------------------------------------------------------------

def export_geo(location: Any) -> dict[str, str | None] | None:
    """The export's `geo` record for a request's `user_location` (None when it carried none).

    GA takes each field it can read and leaves the others unset: the production endpoint answers 2xx
    whatever the codes (RELAXED "only rejects requests that are malformed"), so an unknown `region_id`
    or `country_id` costs that field, not the event. Names are CLDR's English names (GA4's display
    names: "United Kingdom", "Northern Europe"); the region's name is ISO 3166-2's (pycountry), and a
    metro area (Nielsen DMA) is never derived. Deviation kept small and documented: GA may map a UK
    region to its country part (England) where we keep the subdivision's name.
    """
    if not isinstance(location, dict) or not location:
        return None
    text = {k: v for k, v in location.items() if isinstance(v, str) and v}
    names = _cldr_names()
    country = text.get("country_id")
    region = text.get("region_id")
    found_region = _regions().get(region) if region else None
    if country is None and found_region is not None:
        country = found_region[0]
    if found_region is not None and country is not None and found_region[0] != country:
        found_region = None  # a region of another country: GA cannot place it
    sub = text.get("subcontinent_id")
    continent = text.get("continent_id")
    city = text.get("city")
    return {
        "city": city if city and city_problem(city) is None else None,
        "country": names.get(country) if country and country_problem(country) is None else None,
        "continent": names.get(continent) if continent and continent_problem(continent) is None else None,
        "region": found_region[1] if found_region else None,
        "sub_continent": names.get(sub) if sub and subcontinent_problem(sub) is None else None,
        "metro": None,
    }


def export_device(device: Any) -> dict[str, Any] | None:
    """The export's `device` record for a request's `device` (None when it carried none).

    Export names (BigQuery event schema): `category` (lower case, as the export writes "smart tv"),
    `mobile_brand_name`, `mobile_model_name`, `operating_system`, `operating_system_version`, `language`
    (lower case), `web_info.browser` / `web_info.browser_version`. The export has no screen resolution.
    """
    if not isinstance(device, dict) or not device:
        return None
    text = {k: v for k, v in device.items() if isinstance(v, str) and v and device_problem(k, v) is None}
    category = text.get("category")
    language = text.get("language")
    browser, version = text.get("browser"), text.get("browser_version")
    return {
        "category": category.lower() if category else None,
        "mobile_brand_name": text.get("brand"),
        "mobile_model_name": text.get("model"),
        "operating_system": text.get("operating_system"),
        "operating_system_version": text.get("operating_system_version"),
        "language": language.lower().replace("_", "-") if language else None,
        "web_info": {"browser": browser, "browser_version": version} if browser or version else None,
    }
