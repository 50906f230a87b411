-- PayPal ids a saved reconciliation found settled: CANCELLED or EXPIRED at PayPal (final: never charges again)
-- with nothing owed. Never asked about again as ended-only ids (paypal-reconciliation.md, "What is asked").
create table billing_monitor.paypal_settled (
    paypal_subscription_id text primary key,
    paypal_status          text not null,                -- CANCELLED or EXPIRED, as PayPal said
    settled_scan           uuid not null references billing_monitor.scan_runs,
    settled_at             timestamptz not null
);
