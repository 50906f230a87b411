"""Customer emails never reach the logs: every log line is masked on its way out."""

from __future__ import annotations

import logging
import re

EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")


def mask_emails(text: str) -> str:
    """'ada.lovelace@example.com' -> 'a***@example.com'."""
    return EMAIL.sub(r"\1***@\2", text)


def powertools_logger(service: str = "billing-monitor"):
    """A Powertools Logger (JSON) whose every line has emails masked.

    The billing_monitor package's own loggers (already imported) get the same handler and formatter,
    so what the domain code logs is JSON and masked too.
    """
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
    from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

    class MaskingFormatter(LambdaPowertoolsFormatter):
        def serialize(self, log: dict) -> str:
            return mask_emails(super().serialize(log))

    logger = Logger(service=service, logger_formatter=MaskingFormatter())
    logging.getLogger("billing_monitor")  # a real logger, not a placeholder: its children propagate to it
    copy_config_to_registered_loggers(source_logger=logger, include={"billing_monitor"})
    return logger
