-- uses:
-- How many rows the scan reads in each of the four tables, in its snapshot (source_shrank compares them with the
-- previous saved scan's). PostgreSQL counts in parallel: about a tenth of the scan's time at 5M transactions.
select (select count(*) from public.contacts)      as contacts,
       (select count(*) from public.products)      as products,
       (select count(*) from public.subscriptions) as subscriptions,
       (select count(*) from public.transactions)  as transactions
