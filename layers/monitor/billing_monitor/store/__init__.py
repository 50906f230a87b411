"""The monitor's own schema (billing_monitor): migrations, scan history, actions."""

from billing_monitor.store.history import (
    ScanDiff,
    apply_migrations,
    list_actions,
    list_scans,
    load_finding,
    mark_reported,
    open_store,
    save_scan,
)

__all__ = ["ScanDiff", "apply_migrations", "list_actions", "list_scans", "load_finding", "mark_reported",
           "open_store", "save_scan"]
