-- uses:
-- A lower bound of the newest transactions.created_at, without a pass over the table: the newest of
-- the rows in the table's last 8 pages (a TID range scan: imports append, so the newest rows are almost
-- always there) and of a 0.5% sample of its pages (in case the last pages hold older rows, e.g. a
-- backfill that kept its source's times). Every row's created_at is a lower bound of the newest;
-- transaction_findings' first stage then keeps every row imported strictly after it, so the exact
-- newest (the bound, or the newest of those few rows) comes out of the pass the scan makes anyway.
-- Rows imported together share a created_at: strictly after keeps a bulk import's rows out.
-- The TID is a scalar subquery, computed once: pg_relation_size() is volatile, and written inline it
-- made PostgreSQL scan the whole table calling it on every row (measured: 7-13 s at 5M rows).
-- Only for a table (a view has no pages: checks.py asks for the exact max instead).
-- Null when neither finds a row (an empty table, or rows deleted at its end): checks.py then asks for
-- the exact max, which is a pass, but only in that case.
select greatest(
    (select max(t.created_at)
     from {source}.transactions t
     where t.ctid >= (select ('(' || greatest(pg_relation_size(({source_text} || '.transactions')::regclass)
                                              / current_setting('block_size')::bigint - 8, 0) || ',0)')::tid)),
    (select max(s.created_at) from {source}.transactions s tablesample system (0.5) repeatable (2023))
) as newest_hint
