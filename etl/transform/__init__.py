"""Transform: extracted rows → valid, minimal MP events, with every row's fate explicit.

Public surface: `transform_chunk`, `TransformOptions`, `TransformResult`, `refund_deltas` and
`order_ids` (cumulative refunds → deltas over the ledger's history, applied by the pipeline), the allowlist
(`allowed_params`, `check_params`, `PrivacyViolation`) used to stop a run before anything leaves.
"""

from etl.policy import PrivacyViolation, allowed_params, check_params
from etl.transform.context import TransformOptions
from etl.transform.events import TransformResult, transform_chunk
from etl.transform.refunds import Deltas, order_ids, refund_deltas

__all__ = ["Deltas", "PrivacyViolation", "TransformOptions", "TransformResult", "allowed_params", "check_params",
           "order_ids", "refund_deltas", "transform_chunk"]
