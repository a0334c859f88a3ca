"""Transform: extracted rows → valid, minimal MP events, with every row's fate explicit.

Public surface: `transform_chunk`, `TransformOptions`, `TransformResult`, the allowlist
(`allowed_params`, `check_params`, `PrivacyViolation`) used to stop a run before anything leaves.
"""

from etl.policy import PrivacyViolation, allowed_params, check_params
from etl.transform.context import TransformOptions
from etl.transform.events import TransformResult, transform_chunk

__all__ = ["PrivacyViolation", "TransformOptions", "TransformResult", "allowed_params", "check_params",
           "transform_chunk"]
