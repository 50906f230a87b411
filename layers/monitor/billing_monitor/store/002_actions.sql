-- Approved cancellations: every approval handled, done or refused, with what PayPal answered.
create table billing_monitor.actions (
    action_id          bigint generated always as identity primary key,
    idempotency_key    text not null,            -- finding_id:paypal_subscription_id
    action             text,
    finding_id         text,
    paypal_subscription_id text,
    subscription_id    uuid,                      -- the production row marked canceled, if any
    approved_by        text,
    reason             text,
    forced             boolean not null default false,
    outcome            text not null check (outcome in ('canceled', 'already_canceled', 'refused')),
    detail             text not null,
    paypal_status_before text,
    paypal_status_after  text,
    row_status_before  text,
    row_status_after   text,
    message            jsonb,                     -- the approval as received (raw text when not JSON)
    handled_at         timestamptz not null default now()
);
create index actions_key on billing_monitor.actions (idempotency_key);
