-- Approved refunds of PayPal charges (issue 14): one row per PayPal capture, written as 'pending' before PayPal
-- is asked (so a crash between PayPal's answer and the record is retried with the same PayPal-Request-Id), then
-- completed with PayPal's answer. The primary key makes a capture refundable by the monitor once.
create table billing_monitor.refunds (
    transaction_id         text primary key,         -- the PayPal capture (transaction) id
    finding_id             text not null,
    paypal_subscription_id text,
    request_id             text not null,            -- the PayPal-Request-Id sent (derived from finding and transaction)
    state                  text not null check (state in ('pending', 'refunded', 'already_refunded', 'failed')),
    paypal_refund_id       text,
    paypal_status          text,                     -- PayPal's refund status (COMPLETED, PENDING, ...)
    amount                 numeric(12, 2),
    currency               text,
    charged_at             timestamptz,              -- when PayPal took the charge (the report's refund.charges)
    approved_by            text,
    sender_arn             text,
    message_id             text,
    detail                 text,
    requested_at           timestamptz not null default now(),
    recorded_at            timestamptz
);
create index refunds_finding on billing_monitor.refunds (finding_id);
