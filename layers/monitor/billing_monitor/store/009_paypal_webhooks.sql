-- PayPal's webhooks and the hourly net (issue 21, docs/spec/paypal-webhooks.md). (008 is another change's number:
-- the runner applies each missing number, gaps allowed.)

-- Every event handled, once by its id: a verified delivery, or one found by listing the webhook's past events.
create table billing_monitor.paypal_events (
    event_id       text primary key,
    event_type     text not null,
    resource_id    text,                          -- the sale, refund or subscription the event is about
    created_at     timestamptz,                   -- PayPal's create_time
    received_at    timestamptz not null,
    via            text not null,                 -- webhook | listing
    outcome        text not null                  -- what handling it did, one line
);

-- Every subscription payment heard of, once by its sale id (PayPal may send one charge under two event ids, and
-- the hourly search finds it again). `finding_id` is set when the charge was on a customer at risk (it was posted
-- to Slack); the scan counts such a charge until the imports bring it in (scan.py, add_recorded_sales).
create table billing_monitor.paypal_sales (
    sale_id                 text primary key,
    paypal_subscription_id  text not null,
    amount                  numeric(14, 2) not null,
    currency                text not null,
    charged_at              timestamptz not null,
    state                   text not null default 'completed',   -- completed | refunded | reversed
    refunded                numeric(14, 2) not null default 0,
    check_name              text,                 -- billing_disconnect | paypal_still_active | null (healthy)
    finding_id              text,
    canceled_at             timestamptz,          -- when the customer canceled (the finding's cancellation time)
    posted_at               timestamptz,          -- when Slack was told
    via                     text not null,        -- webhook | listing | search
    event_id                text,
    recorded_at             timestamptz not null
);
create index paypal_sales_by_subscription on billing_monitor.paypal_sales (paypal_subscription_id);

-- The latest subscription status PayPal announced (BILLING.SUBSCRIPTION.*), with the event that said it.
create table billing_monitor.paypal_subscription_events (
    paypal_subscription_id  text primary key,
    status                  text not null,        -- CANCELLED, SUSPENDED, EXPIRED, ACTIVE
    event_type              text not null,
    event_id                text not null,
    changed_at              timestamptz not null
);

-- The hourly net's memory: how far Transaction Search and the event listing have looked, and since when the
-- search has been failing (told to Slack after a day).
create table billing_monitor.paypal_net (
    name            text primary key,             -- search | events
    looked_to       timestamptz,                  -- the end of the last complete look
    failing_since   timestamptz,
    failure_told_at timestamptz,
    last_error      text,
    updated_at      timestamptz not null
);
