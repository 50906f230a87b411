-- uses:
-- A lower bound of the newest transactions.created_at, read from the table's last 8 pages only (a TID
-- range scan: imports append, so the newest rows are almost always there). Any row's created_at is a
-- lower bound of the newest; transaction_findings' first stage then keeps every row imported after it, so
-- the exact newest (the bound, or the newest of those) comes out of the pass the scan makes anyway
-- (stale_import: no second pass). Rows imported together share a created_at: strictly after keeps a
-- bulk import's rows out.
-- Null when those pages hold no row (empty table, or rows deleted at its end): checks.py then asks
-- for the exact max, which is a pass, but only in that case.
select max(t.created_at) as newest_hint
from public.transactions t
where t.ctid >= ('(' || greatest(pg_relation_size('public.transactions')
                                 / current_setting('block_size')::bigint - 8, 0) || ',0)')::tid
