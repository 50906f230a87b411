-- Checks 1-3 (billing_disconnect, duplicate_subscription, paypal_only): each live PayPal
-- subscription with what its Kajabi matches say (shared CTE: one row per live PayPal subscription).
pp as (
    select * from subs where paypal_id is not null and not ended
),
kj as (
    select * from subs where paypal_id is null
),
matches as (
    select p.id as pid, k.id as kid, k.ended, k.end_time, k.kajabi_id_text, abs(k.amount - p.amount) as diff
    from pp p
    join kj k on k.contact_id = p.contact_id and k.cycle = p.cycle and k.cur = p.cur
             and abs(k.amount - p.amount) <= %(tol)s
),
per_paypal as (
    select pid,
           bool_or(not ended) as has_live_match,
           max(end_time) filter (where ended) as kajabi_canceled_at,
           (array_agg(kajabi_id_text order by end_time desc, kid) filter (where ended))[1] as ended_match_kajabi_id,
           (array_agg(kajabi_id_text order by diff, kid) filter (where not ended))[1] as live_match_kajabi_id
    from matches
    group by pid
),
live_paypal as (
    select case
               when m.has_live_match then 'duplicate_subscription'
               when m.kajabi_canceled_at is not null then 'billing_disconnect'
               else 'paypal_only'
           end as check_name,
           p.id as subscription_id, p.paypal_id, p.contact_id,
           p.amount, p.cur, p.cycle,
           case when m.has_live_match then m.live_match_kajabi_id else m.ended_match_kajabi_id end as kajabi_id,
           case when m.has_live_match then null else m.kajabi_canceled_at end as kajabi_canceled_at
    from pp p
    left join per_paypal m on m.pid = p.id
)
