"""Which params each event may carry: the minimisation policy, as data (shared by transform and load).

Why an allowlist and not a blocklist: a new CRM column must never start leaving just because someone
mapped it. Anything beyond these lists has to be declared in the config (`[privacy] extra_params`) and
is still scanned for personal data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from etl.errors import MpetlError

#: The markers the sender adds: `mpetl_run` (the sending run) on every event, and `mpetl_resend` (the
#: resend's run id) on an event `mpetl resend` sent again, so reconciliation can tell a copy from its original.
RUN_MARKER_PARAM = "mpetl_run"
RESEND_MARKER_PARAM = "mpetl_resend"
MARKER_PARAMS = 2  # of GA4's 25 params per event, kept free for the markers

#: Params every event carries: session attribution, engagement, and the markers reconciliation joins on.
COMMON_PARAMS = frozenset({"session_id", "engagement_time_msec", RUN_MARKER_PARAM, RESEND_MARKER_PARAM})

ECOMMERCE_PARAMS = frozenset(
    {"transaction_id", "value", "currency", "tax", "shipping", "coupon", "affiliation", "payment_type", "items"}
)
# Lead events carry the CRM record id as `transaction_id`: it is how reconciliation finds them.
LEAD_PARAMS = frozenset({"transaction_id", "value", "currency", "lead_source", "lead_status", "unconvert_lead_reason"})
LEAD_EVENTS = (
    "generate_lead",
    "qualify_lead",
    "disqualify_lead",
    "working_lead",
    "close_convert_lead",
    "close_unconvert_lead",
)

EVENT_PARAMS: dict[str, frozenset[str]] = {
    "purchase": ECOMMERCE_PARAMS,
    "refund": ECOMMERCE_PARAMS,
    **{name: LEAD_PARAMS for name in LEAD_EVENTS},
}

ITEM_PARAMS = frozenset(
    {
        "item_id",
        "item_name",
        "price",
        "quantity",
        "item_category",
        "item_category2",
        "item_category3",
        "item_brand",
        "item_variant",
        "discount",
        "coupon",
        "index",
        "affiliation",
        "location_id",
    }
)

#: Params whose values are numbers in the MP body (everything else is sent as a string).
NUMERIC_PARAMS = frozenset({"value", "tax", "shipping", "price", "quantity", "discount", "engagement_time_msec", "index"})

#: Request-level fields mpetl may use. Never `user_data`, never `ip_override` (a person's address: a
#: store's `user_location` is a place, and GA ignores `ip_override` beside it anyway). `validation_behavior`
#: carries no data: `validate --debug-endpoint` sends "ENFORCE_RECOMMENDATIONS", as Google recommends.
#: `app_instance_id` replaces `client_id` for an app stream.
REQUEST_FIELDS = frozenset({"client_id", "app_instance_id", "user_id", "consent", "events", "timestamp_micros",
                            "validation_behavior", "user_location", "device"})

#: The members of the request's `user_location` and `device` objects (MP reference: "Geographic
#: information", "Device information"); anything else inside them is a bug upstream.
PLACE_FIELDS = {
    "user_location": frozenset({"city", "region_id", "country_id", "subcontinent_id", "continent_id"}),
    "device": frozenset({"category", "language", "screen_resolution", "operating_system", "operating_system_version",
                         "model", "brand", "browser", "browser_version"}),
}


class PrivacyViolation(MpetlError):
    """A param outside the allowlist would leave: the run stops before the first request (exit 2)."""


def allowed_params(event_name: str, extra: Mapping[str, Iterable[str]] | None = None) -> frozenset[str]:
    """The params `event_name` may carry: its list, the common ones, and what the config declared."""
    declared = frozenset((extra or {}).get(event_name, ()))
    return EVENT_PARAMS.get(event_name, frozenset()) | COMMON_PARAMS | declared


def check_params(
    event_name: str, params: Iterable[str], *, source: str, extra: Mapping[str, Iterable[str]] | None = None
) -> None:
    """Raise PrivacyViolation naming the source and the params that are not allowed for this event."""
    outside = sorted(set(params) - allowed_params(event_name, extra))
    if outside:
        raise PrivacyViolation(
            f"source {source!r}: params {', '.join(outside)} are not in the allowlist for event "
            f"{event_name!r}; declare them under [privacy] extra_params if they are not personal data"
        )
