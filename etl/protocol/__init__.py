"""The Measurement Protocol as code: limits, reserved names and a validator.

Shared by the transform (rejects), the loader (checks each request before sending, ``strict=True``)
and the local collector (decides what a real GA4 would have recorded). Messages use the debug
endpoint's shape: ``{"fieldPath", "description", "validationCode"}``.
"""

from etl.protocol.body import parse_body, validate_body_bytes
from etl.protocol.messages import Message, event_index_of, message, scrub_message, split_by_event
from etl.protocol.micros import to_micros
from etl.protocol.rules import (
    CONSENT_VALUES,
    EXCEEDED_MAX_ENTITIES,
    FORBIDDEN_REQUEST_FIELDS,
    ISO_4217_CODES,
    MAX_BODY_BYTES,
    MAX_EVENT_AGE_HOURS,
    MAX_EVENT_NAME_LEN,
    MAX_EVENTS_PER_REQUEST,
    MAX_ITEMS_PER_EVENT,
    MAX_PARAM_NAME_LEN,
    MAX_PARAM_VALUE_LEN,
    MAX_PARAMS_PER_EVENT,
    MAX_USER_ID_LEN,
    MAX_USER_PROPERTIES,
    MAX_USER_PROPERTY_NAME_LEN,
    MAX_USER_PROPERTY_VALUE_LEN,
    NAME_DUPLICATED,
    NAME_INVALID,
    NAME_PATTERN,
    NAME_RESERVED,
    RESERVED_EVENT_NAMES,
    RESERVED_PARAM_NAMES,
    RESERVED_PREFIXES,
    RESERVED_USER_PROPERTY_NAMES,
    VALIDATION_CODES,
    VALUE_INVALID,
    VALUE_OUT_OF_BOUNDS,
    VALUE_REQUIRED,
)
from etl.protocol.validate import validate_request

__all__ = [
    "CONSENT_VALUES",
    "EXCEEDED_MAX_ENTITIES",
    "FORBIDDEN_REQUEST_FIELDS",
    "ISO_4217_CODES",
    "MAX_BODY_BYTES",
    "MAX_EVENT_AGE_HOURS",
    "MAX_EVENT_NAME_LEN",
    "MAX_EVENTS_PER_REQUEST",
    "MAX_ITEMS_PER_EVENT",
    "MAX_PARAM_NAME_LEN",
    "MAX_PARAM_VALUE_LEN",
    "MAX_PARAMS_PER_EVENT",
    "MAX_USER_ID_LEN",
    "MAX_USER_PROPERTIES",
    "MAX_USER_PROPERTY_NAME_LEN",
    "MAX_USER_PROPERTY_VALUE_LEN",
    "Message",
    "NAME_DUPLICATED",
    "NAME_INVALID",
    "NAME_PATTERN",
    "NAME_RESERVED",
    "RESERVED_EVENT_NAMES",
    "RESERVED_PARAM_NAMES",
    "RESERVED_PREFIXES",
    "RESERVED_USER_PROPERTY_NAMES",
    "VALIDATION_CODES",
    "VALUE_INVALID",
    "VALUE_OUT_OF_BOUNDS",
    "VALUE_REQUIRED",
    "event_index_of",
    "message",
    "parse_body",
    "scrub_message",
    "split_by_event",
    "validate_body_bytes",
    "to_micros",
    "validate_request",
]
