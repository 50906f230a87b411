-- uses: subs
-- The PayPal ids the reconciliation may watch (paypal-reconciliation.md, "What is asked"): every id of PayPal's
-- form held only by ended rows, and the ids given as %(kind1)s (the billing_disconnects' and the cancelling
-- post_cancellation_charges'). For each: whether every row holding it is ended, P (the latest end time among its
-- ended rows), K (the latest end time of the ended Kajabi subscriptions its rows match, null when one of its rows
-- matches a live Kajabi subscription) and the Kajabi id of that match, and its latest-ended row (ties: the lowest
-- row id, in text order) with its contact.
held as (
    select s.* from subs s
    where (s.raw_paypal_id is not null or s.raw_kajabi_id like '%%I-%%')
      and s.paypal_id collate "C" ~ '^I-[A-Z0-9]+$'
),
per_id as (
    select h.paypal_id,
           bool_and(h.ended) as all_ended,
           max(h.end_time) filter (where h.ended) as p_time,
           (array_agg(h.id order by h.end_time desc, h.id::text) filter (where h.ended))[1] as latest_row
    from held h
    group by h.paypal_id
),
candidates as (
    select * from per_id where all_ended or paypal_id = any(%(kind1)s)
),
kajabi_matches as (
    select h.paypal_id,
           bool_or(not k.ended) as live_match,
           max(k.end_time) filter (where k.ended) as k_time,
           (array_agg(k.kajabi_id_text order by k.end_time desc, k.id::text) filter (where k.ended))[1] as k_kajabi_id
    from held h
    join candidates c on c.paypal_id = h.paypal_id
    join subs k on k.contact_id = h.contact_id
    where (k.paypal_id is null and k.cycle = h.cycle and k.cur = h.cur
           and abs(k.amount - h.amount) <= %(tol)s) is true
    group by h.paypal_id
)
select c.paypal_id, c.all_ended, c.p_time,
       case when m.live_match then null else m.k_time end as k_time,
       case when m.live_match then null else m.k_kajabi_id end as k_kajabi_id,
       r.id as subscription_id, r.contact_id, r.amount, r.cur, r.cycle,
       ct.id is null as orphaned, ct.email, ct.first_name, ct.last_name
from candidates c
left join kajabi_matches m on m.paypal_id = c.paypal_id
left join subs r on r.id = c.latest_row
left join {source}.contacts ct on ct.id = r.contact_id
order by c.paypal_id
