"""The Measurement Protocol's limits and reserved names, as data.

Why constants and not scattered literals: the transform, the loader's batcher, the validator and the
local collector must agree to the character on what GA4 accepts. GA4's production endpoint answers
2xx even when it drops an event, so a limit that drifts between two stages is a silent data loss.

Sources: Google's Measurement Protocol reference ("Reserved names", "Limitations"), the user-properties
page, and /work/shared/reference/measurement-protocol.md. The reserved event list is the MP
reference's list (cross-checked against several independent implementations that cite it), plus
names that are app-only or auto-collected (``app_background``, ``in_app_purchase``, ``screen_view``,
``ad_impression``): refusing them locally costs nothing, since a web stream must never send them.
``ad_impression`` in particular: Google's MP event reference says "This event is available only for App
streams" (developers.google.com/analytics/devguides/collection/protocol/ga4/reference/events), and the
reserved-names list (support.google.com/analytics/answer/13316687) reserves it for web streams. mpetl
sends to web streams only (``client_id``), so it is reserved here.
"""

from __future__ import annotations

import re

# --- limits (per request / per event) -------------------------------------------------------
MAX_EVENTS_PER_REQUEST = 25
MAX_PARAMS_PER_EVENT = 25
MAX_USER_PROPERTIES = 25
MAX_EVENT_NAME_LEN = 40
MAX_PARAM_NAME_LEN = 40
MAX_PARAM_VALUE_LEN = 100
MAX_USER_PROPERTY_NAME_LEN = 24
MAX_USER_PROPERTY_VALUE_LEN = 36
MAX_ITEMS_PER_EVENT = 200
MAX_BODY_BYTES = 130_000
MAX_EVENT_AGE_HOURS = 72
MAX_USER_ID_LEN = 256  # GA4: user_id must be under 256 characters
FUTURE_TOLERANCE_S = 300  # clock skew allowed for "now"-ish timestamps

# Amounts (value, tax, shipping, item price, discount) beyond this are poison, not revenue: a double holds
# integers exactly only up to 2**53 (about 9e15), so a larger amount cannot even be stored to the unit, and
# a 400-digit cell parses to infinity. No order in any currency comes near it.
MAX_ABS_AMOUNT = 1e15
# Item quantities beyond this are a unit mix-up or a corrupt cell, not an order line.
MAX_ITEM_QUANTITY = 1_000_000_000

# Integer values land in BigQuery INT64 columns: anything wider cannot be stored as sent.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# --- names --------------------------------------------------------------------------------
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
"""Event, param and user-property names: a letter first, then letters, digits or underscores."""

RESERVED_PREFIXES = ("google_", "ga_", "firebase_")

RESERVED_EVENT_NAMES = frozenset(
    {
        "ad_activeview",
        "ad_click",
        "ad_exposure",
        "ad_impression",
        "ad_query",
        "ad_reward",
        "adunit_exposure",
        "app_background",
        "app_clear_data",
        "app_exception",
        "app_install",
        "app_remove",
        "app_store_refund",
        "app_update",
        "app_upgrade",
        "dynamic_link_app_open",
        "dynamic_link_app_update",
        "dynamic_link_first_open",
        "error",
        "firebase_campaign",
        "firebase_in_app_message_action",
        "firebase_in_app_message_dismiss",
        "firebase_in_app_message_impression",
        "first_open",
        "first_visit",
        "in_app_purchase",
        "notification_dismiss",
        "notification_foreground",
        "notification_open",
        "notification_receive",
        "notification_send",
        "os_update",
        "screen_view",
        "session_start",
        "user_engagement",
    }
)

RESERVED_PARAM_NAMES = frozenset({"firebase_conversion"})

RESERVED_USER_PROPERTY_NAMES = frozenset(
    {"first_open_time", "first_visit_time", "last_deep_link_referrer", "user_id", "first_open_after_install"}
)

# --- request shape ----------------------------------------------------------------------------
REQUEST_FIELDS = frozenset(
    {
        "client_id",
        "app_instance_id",
        "user_id",
        "timestamp_micros",
        "user_properties",
        "consent",
        "non_personalized_ads",
        "events",
        "user_data",
        "user_location",
        "device",
        "user_agent",
        "ip_override",
        "validation_behavior",
    }
)
EVENT_FIELDS = frozenset({"name", "params", "timestamp_micros"})
CONSENT_FIELDS = frozenset({"ad_user_data", "ad_personalization"})
CONSENT_VALUES = frozenset({"GRANTED", "DENIED"})
VALIDATION_BEHAVIORS = frozenset({"RELAXED", "ENFORCE_RECOMMENDATIONS"})

FORBIDDEN_REQUEST_FIELDS = ("user_data", "ip_override")
"""Fields mpetl never sends (hashed personal data, a user's IP): an error under ``strict=True``."""

EVENTS_REQUIRING_TRANSACTION_ID = frozenset({"purchase", "refund"})

# --- validation codes (the debug endpoint's vocabulary) ----------------------------------------
VALUE_INVALID = "VALUE_INVALID"
VALUE_REQUIRED = "VALUE_REQUIRED"
NAME_INVALID = "NAME_INVALID"
NAME_RESERVED = "NAME_RESERVED"
VALUE_OUT_OF_BOUNDS = "VALUE_OUT_OF_BOUNDS"
EXCEEDED_MAX_ENTITIES = "EXCEEDED_MAX_ENTITIES"
NAME_DUPLICATED = "NAME_DUPLICATED"
VALIDATION_CODES = frozenset(
    {VALUE_INVALID, VALUE_REQUIRED, NAME_INVALID, NAME_RESERVED, VALUE_OUT_OF_BOUNDS, EXCEEDED_MAX_ENTITIES, NAME_DUPLICATED}
)

# --- ISO 4217 -----------------------------------------------------------------------------
# List one (current currency and funds codes), including precious metals and the testing/"no
# currency" codes, which are valid ISO codes even if odd for revenue. Four codes withdrawn in
# 2021-2025 (ANG → XCG, SLL → SLE, ZWL → ZWG, CUC) stay accepted: source systems still write them
# and GA4 still converts them, and rejecting a whole order over a currency transition helps nobody.
_ISO_4217_TEXT = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN
    BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD
    CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK
    DJF DKK DOP DZD
    EGP ERN ETB EUR
    FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD
    HKD HNL HTG HUF
    IDR ILS INR IQD IRR ISK
    JMD JOD JPY
    KES KGS KHR KMF KPW KRW KWD KYD KZT
    LAK LBP LKR LRD LSL LYD
    MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN
    NAD NGN NIO NOK NPR NZD
    OMR
    PAB PEN PGK PHP PKR PLN PYG
    QAR
    RON RSD RUB RWF
    SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL
    THB TJS TMT TND TOP TRY TTD TWD TZS
    UAH UGX USD USN UYI UYU UYW UZS
    VED VES VND VUV
    WST
    XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XTS XUA XXX
    YER
    ZAR ZMW ZWG ZWL
"""
ISO_4217_CODES = frozenset(_ISO_4217_TEXT.split())
