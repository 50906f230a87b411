-- source_shrank (alerts.md): how many rows each saved scan read in each of the four tables ({"contacts": 4000, ...});
-- null for scans saved before this migration (nothing to compare with). And an approval's mark of the canceled
-- row that touched no row (row level security, a grant, a row gone): said in the audit, never passed over.
alter table billing_monitor.scan_runs add column row_counts jsonb;
alter table billing_monitor.actions add column mark_problem text;
