-- Every subscription with the terms of detection-rules.md worked out once (inlined where used,
-- so the big scans stay parallel). Text is trimmed of blanks, tabs and line breaks. Keywords are
-- compared in the "C" collation: lower()/upper() there fold ASCII letters only, which is all the
-- keywords (canceled, month, USD, ...) hold, and is several times cheaper than a locale's folding.
-- The PayPal id pattern is only tried on text that contains 'I-' at all. The relations are the source schema's
-- (checks.load_query puts it in, quoted).
subs as not materialized (
    select s.id,
           s.contact_id,
           s.paypal_subscription_id as raw_paypal_id,      -- as stored: for filters whose row
           s.kajabi_subscription_id as raw_kajabi_id,      -- estimates need the column statistics
           nullif(btrim(s.kajabi_subscription_id, E' \t\r\n'), '') as kajabi_id_text,
           s.amount,
           upper(btrim(s.currency::text, E' \t\r\n') collate "C")      as cur,
           -- the usual spellings folded (rules/registry.py BILLING_CYCLE_FOLDS); any other only equals itself
           case lower(btrim(s.billing_cycle::text, E' \t\r\n') collate "C")
               when 'monthly' then 'month' when 'yearly' then 'year' when 'annual' then 'year'
               when 'annually' then 'year'
               else lower(btrim(s.billing_cycle::text, E' \t\r\n') collate "C")
           end                                                             as cycle,
           -- ::text: a status may be an enum (import-layouts.md)
           lower(btrim(s.status::text, E' \t\r\n') collate "C") in ('canceled', 'cancelled', 'expired') as ended,
           coalesce(s.canceled_at, s.ended_at, s.updated_at) as end_time,
           coalesce(strpos(s.kajabi_subscription_id, 'I-') > 0
                    and btrim(s.kajabi_subscription_id, E' \t\r\n') collate "C" ~ '^I-[A-Z0-9]+$', false) as misfiled,
           case
               when strpos(s.paypal_subscription_id, 'I-') > 0
                    and btrim(s.paypal_subscription_id, E' \t\r\n') collate "C" ~ '^I-[A-Z0-9]+$'
                   then btrim(s.paypal_subscription_id, E' \t\r\n')
               when strpos(s.kajabi_subscription_id, 'I-') > 0
                    and btrim(s.kajabi_subscription_id, E' \t\r\n') collate "C" ~ '^I-[A-Z0-9]+$'
                   then btrim(s.kajabi_subscription_id, E' \t\r\n')
               -- set but not of PayPal's form: still a PayPal subscription (the column says so)
               else nullif(btrim(s.paypal_subscription_id, E' \t\r\n'), '')
           end as paypal_id
    from {source}.subscriptions s
)
