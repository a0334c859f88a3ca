"""Salesforce Opportunity and HubSpot deal exports: one row per deal, only won stages are events.

Why keep the other stages: nothing may vanish between the export and the report. A deal in
"Negotiation" is not an event, so it leaves here with no event name and a `skip_reason`, and the
transform counts it as rejected with that reason.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from etl.config import SourceConfig
from etl.extract.canonical import TEXT, field_text, mapped_fields
from etl.extract.fields import SKIP_REASON, FieldSpec, ResolvedColumns, specs_for
from etl.extract.kinds import Built
from etl.extract.kinds.generic import identity_extra
from etl.extract.raw import RawChunk, rechunk

STAGE = "stage"


class _Crm:
    default_won: tuple[str, ...] = ()
    defaults: tuple[FieldSpec, ...] = ()

    def specs(self, source: SourceConfig) -> list[FieldSpec]:
        return specs_for(source, self.defaults, helpers=(STAGE,))

    def won_stages(self, source: SourceConfig) -> set[str]:
        stages = source.options.get("won_stages", list(self.default_won))
        if isinstance(stages, str):
            stages = [stages]
        return {str(s).strip().casefold() for s in stages}

    def build(self, source: SourceConfig, raw: Iterator[RawChunk], cols: ResolvedColumns, chunk_rows: int) -> Iterator[Built]:
        won = self.won_stages(source)
        for chunk in rechunk(raw, chunk_rows):
            fields, names = mapped_fields(chunk, cols, source)
            stage = field_text(chunk, cols, STAGE)
            is_won = stage.fillna("").str.casefold().isin(won).to_numpy()
            fields["event_name"] = pd.Series(source.event, index=stage.index, dtype=TEXT).where(is_won)
            # The stage text is not shown: a reject names the column and the rule, never a cell's value.
            reason = f"column {cols.headers[STAGE]!r} is not a won stage (value not shown)"
            fields[SKIP_REASON] = pd.Series(reason, index=stage.index, dtype=TEXT).mask(is_won)
            names["event_name"] = names[SKIP_REASON] = cols.headers[STAGE]
            yield Built(chunk.rows, fields, names, len(chunk), chunk.skipped_blank, identity_extra(chunk, cols))


_CONSENT = (
    FieldSpec("consent_analytics", ("Analytics Consent", "Analytics_Consent__c", "GA Analytics Consent")),
    FieldSpec("ad_user_data", ("Ad User Data Consent", "Ad_User_Data_Consent__c", "Ad User Data")),
    FieldSpec("ad_personalization", ("Ad Personalization Consent", "Ad_Personalization_Consent__c", "Ad Personalization")),
)


class Salesforce(_Crm):
    default_won = ("Closed Won",)
    defaults = (
        FieldSpec("transaction_id", ("Opportunity ID", "Opportunity ID (18)", "Id"), required=True),
        FieldSpec("timestamp", ("Close Date", "CloseDate"), required=True),
        FieldSpec("value", ("Amount",), required=True),
        FieldSpec(STAGE, ("Stage", "StageName"), required=True),
        FieldSpec("currency", ("Opportunity Currency", "Currency", "Amount Currency", "CurrencyIsoCode")),
        FieldSpec("client_id", ("GA_Client_ID__c", "GA Client ID")),
        FieldSpec("session_id", ("GA_Session_ID__c", "GA Session ID")),
        *_CONSENT,
        FieldSpec("param.lead_source", ("Lead Source", "LeadSource")),
    )


class HubSpot(_Crm):
    default_won = ("closedwon", "Closed Won")
    defaults = (
        FieldSpec("transaction_id", ("Record ID", "Deal ID"), required=True),
        FieldSpec("timestamp", ("Close Date",), required=True),
        FieldSpec("value", ("Amount",), required=True),
        FieldSpec(STAGE, ("Deal Stage",), required=True),
        FieldSpec("currency", ("Deal currency code", "Currency")),
        FieldSpec("client_id", ("GA Client ID", "ga_client_id")),
        FieldSpec("session_id", ("GA Session Cookie", "GA Session ID", "ga_session_id")),
        *_CONSENT,
        FieldSpec("param.lead_source", ("Lead Source", "lead_source")),
    )
