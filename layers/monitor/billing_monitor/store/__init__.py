"""The monitor's own schema (billing_monitor): migrations, scan history, actions."""

from billing_monitor.store.actions import ActionRecord, list_actions, mark_subscription_canceled, record_action
from billing_monitor.store.migrations import SCHEMA, apply_migrations, has_table, open_store, read_store
from billing_monitor.store.scans import ScanDiff, list_scans, load_finding, mark_reported, save_scan

__all__ = ["SCHEMA", "ActionRecord", "ScanDiff", "apply_migrations", "has_table", "list_actions", "list_scans", "load_finding",
           "mark_reported", "mark_subscription_canceled", "open_store", "read_store", "record_action", "save_scan"]
