"""Customer emails never reach the logs: every log line is masked on its way out."""

from __future__ import annotations

import re

EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")


def mask_emails(text: str) -> str:
    """'ada.lovelace@example.com' -> 'a***@example.com'."""
    return EMAIL.sub(r"\1***@\2", text)


def powertools_logger(service: str = "billing-monitor"):
    """A Powertools Logger (JSON) whose every line has emails masked."""
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    class MaskingFormatter(LambdaPowertoolsFormatter):
        def serialize(self, log: dict) -> str:
            return mask_emails(super().serialize(log))

    return Logger(service=service, logger_formatter=MaskingFormatter())
