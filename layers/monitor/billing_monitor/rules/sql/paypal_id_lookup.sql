-- uses: subs
-- One PayPal id looked up with the scan's own terms (a webhook's charge, issue 21), without reading transactions:
-- the rows holding %(paypal_id)s (either id column, trimmed; subscription_findings' superset filter on the raw
-- columns), and for each its Kajabi matches among the subscriptions of the same contact only (the same match as
-- subscription_findings and paypal_watched: no PayPal id, same cycle and currency, amount within %(tol)s).
-- Per row: ended or live, its end time, whether a live Kajabi subscription matches it, the latest end of the
-- ended ones it matches (and that one's Kajabi id), and its contact. rules/lookup.py draws the verdict.
held as materialized (
    select s.* from subs s
    where (s.raw_paypal_id is not null or s.raw_kajabi_id like '%%I-%%')
      and s.paypal_id = %(paypal_id)s
),
family as materialized (
    select k.* from subs k where k.contact_id in (select h.contact_id from held h)
),
matches as (
    select h.id as hid, k.id as kid, k.ended, k.end_time, k.kajabi_id_text
    from held h
    join family k on k.contact_id = h.contact_id
    where (k.paypal_id is null and k.cycle = h.cycle and k.cur = h.cur
           and abs(k.amount - h.amount) <= %(tol)s) is true
),
per_row as (
    select hid,
           bool_or(not ended) as live_match,
           max(end_time) filter (where ended) as k_time,
           (array_agg(kajabi_id_text order by end_time desc, kid) filter (where ended))[1] as k_kajabi_id
    from matches
    group by hid
)
select h.id as subscription_id, h.contact_id, h.ended, h.end_time, h.amount, h.cur, h.cycle,
       coalesce(m.live_match, false) as live_match, m.k_time, m.k_kajabi_id,
       c.id is null as orphaned, c.email, c.first_name, c.last_name
from held h
left join per_row m on m.hid = h.id
left join {source}.contacts c on c.id = h.contact_id
order by h.end_time desc nulls last, h.id::text
