-- Approvals proven by their sender, and cancellations with PayPal's own time (issue: approvals that can't be
-- forged, forced or forgotten).
alter table billing_monitor.actions
    add column sender_id          text,         -- the SQS message's SenderId (IAM unique id)
    add column sender_arn         text,         -- the approver it proved to be; null when it proved none
    add column paypal_canceled_at timestamptz,  -- PayPal's status_update_time of the cancellation
    add column message_length     int;          -- characters of the body as received (the stored one may be cut)
