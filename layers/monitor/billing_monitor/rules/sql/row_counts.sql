-- uses:
-- How many rows the scan reads in each of the four relations, in its snapshot (source_shrank compares them with
-- the previous saved scan's). One parallel count each (bench/scan_bench.py prints what it costs).
select (select count(*) from {source}.contacts)      as contacts,
       (select count(*) from {source}.products)      as products,
       (select count(*) from {source}.subscriptions) as subscriptions,
       (select count(*) from {source}.transactions)  as transactions
