-- uses: subs
-- One pass over subscriptions: checks 1-3 (each live PayPal subscription is in exactly one of
-- billing_disconnect, duplicate_subscription, paypal_only), orphaned_subscription, misfiled_paypal_id.
--
-- Row estimates: PostgreSQL has no statistics on the normalised columns, so pp also filters on the
-- raw columns (a superset test it can estimate: a PayPal id contains 'I-' or is in the PayPal
-- column), which makes it hash the few live PayPal rows rather than every Kajabi row; and the match
-- conditions on normalised columns are wrapped in `is true` so that they are checked on the rows
-- of the same contact only, instead of being worked out for every row as hash keys.
pp as not materialized (
    select * from subs s
    where (s.raw_paypal_id is not null or s.raw_kajabi_id like '%%I-%%')
      and s.paypal_id is not null and not s.ended
),
matches as (
    select p.id as pid, k.id as kid, k.ended, k.end_time, k.kajabi_id_text, abs(k.amount - p.amount) as diff
    from pp p
    join subs k on k.contact_id = p.contact_id
    where (k.paypal_id is null and k.cycle = p.cycle and k.cur = p.cur
           and abs(k.amount - p.amount) <= %(tol)s) is true
),
per_paypal as (
    select pid,
           bool_or(not ended) as has_live_match,
           max(end_time) filter (where ended) as kajabi_canceled_at,
           (array_agg(kajabi_id_text order by end_time desc, kid) filter (where ended))[1] as ended_match_kajabi_id,
           (array_agg(kajabi_id_text order by diff, kid) filter (where not ended))[1] as live_match_kajabi_id
    from matches
    group by pid
)
select s.id as subscription_id, s.contact_id, s.paypal_id, s.kajabi_id_text, s.amount, s.cur, s.cycle,
       c.id is null as orphaned, s.misfiled, c.email, c.first_name, c.last_name,
       case when s.paypal_id is null or s.ended then null
            when m.has_live_match then 'duplicate_subscription'
            when m.kajabi_canceled_at is not null then 'billing_disconnect'
            else 'paypal_only'
       end as check_name,
       case when m.has_live_match then m.live_match_kajabi_id else m.ended_match_kajabi_id end as match_kajabi_id,
       case when m.has_live_match then null else m.kajabi_canceled_at end as kajabi_canceled_at
from subs s
left join {source}.contacts c on c.id = s.contact_id
left join per_paypal m on m.pid = s.id
where (s.paypal_id is not null and not s.ended) or s.misfiled or c.id is null
