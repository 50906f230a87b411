-- uses: subs, live_paypal
-- Checks 1-3: every live PayPal subscription falls in exactly one of them.
select * from live_paypal
