-- uses: subs, live_paypal
-- One pass over subscriptions: checks 1-3 (each live PayPal subscription is in exactly one of
-- billing_disconnect, duplicate_subscription, paypal_only), orphaned_subscription, misfiled_paypal_id.
select s.id as subscription_id, s.contact_id, s.paypal_id, s.kajabi_id_text, s.amount, s.cur, s.cycle,
       c.id is null as orphaned, s.misfiled, c.email, c.first_name, c.last_name,
       lp.check_name, lp.kajabi_id as match_kajabi_id, lp.kajabi_canceled_at
from subs s
left join live_paypal lp on lp.subscription_id = s.id
left join public.contacts c on c.id = s.contact_id
where lp.subscription_id is not null or c.id is null or s.misfiled
