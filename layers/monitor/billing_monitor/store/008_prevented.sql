-- Prevention (issue 19, prevention.md). 007 is the acknowledgements' (issue 20).
-- The charge each cancellation prevented: PayPal's next_billing_time and the amount it would have taken, as the
-- cancel function read them just before canceling (null when nothing was prevented: already canceled, no due,
-- or a due already past).
alter table billing_monitor.actions
    add column prevented_due timestamptz,
    add column prevented_amount numeric(12, 2),
    add column prevented_currency text;
-- Which schedule saved a scan (monthly, daily, manual): the monthly message counts what was prevented since the
-- previous monthly one. Null for scans saved before this migration or by the CLI.
alter table billing_monitor.scan_runs add column schedule text;
-- Auto-cancel's memory: a PayPal id it queued an approval for is never queued by it again (criterion 6), whatever
-- the cancel function then did with it.
create table billing_monitor.auto_cancel_queued (
    paypal_subscription_id text primary key,
    finding_id             text not null,
    scan_id                uuid,
    queued_at              timestamptz not null,
    policy                 text not null,
    message                jsonb not null
);
