-- Every subscription with the terms of detection-rules.md worked out once.
-- Text is trimmed of blanks, tabs and line breaks; status/cycle lower-cased, currency upper-cased.
subs as materialized (
    select s.id,
           s.contact_id,
           nullif(btrim(s.kajabi_subscription_id, E' \t\r\n'), '') as kajabi_id_text,
           s.amount,
           upper(btrim(s.currency, E' \t\r\n'))      as cur,
           lower(btrim(s.billing_cycle, E' \t\r\n')) as cycle,
           lower(btrim(s.status, E' \t\r\n')) in ('canceled', 'cancelled', 'expired') as ended,
           coalesce(s.canceled_at, s.ended_at, s.updated_at) as end_time,
           btrim(s.kajabi_subscription_id, E' \t\r\n') collate "C" ~ '^I-[A-Z0-9]+$' as misfiled,
           case
               when btrim(s.paypal_subscription_id, E' \t\r\n') collate "C" ~ '^I-[A-Z0-9]+$'
                   then btrim(s.paypal_subscription_id, E' \t\r\n')
               when btrim(s.kajabi_subscription_id, E' \t\r\n') collate "C" ~ '^I-[A-Z0-9]+$'
                   then btrim(s.kajabi_subscription_id, E' \t\r\n')
               -- set but not of PayPal's form: still a PayPal subscription (the column says so)
               else nullif(btrim(s.paypal_subscription_id, E' \t\r\n'), '')
           end as paypal_id
    from public.subscriptions s
)
