"""What framecast will not generate: the prompt policy (see policy.py for the rules)."""

import logging

from .policy import CATEGORIES, Decision, PolicyViolation, check_prompt, enforce

logging.getLogger("framecast.safety").addHandler(logging.NullHandler())

__all__ = ["CATEGORIES", "Decision", "PolicyViolation", "check_prompt", "enforce"]
