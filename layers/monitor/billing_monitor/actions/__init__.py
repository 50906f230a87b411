"""What the monitor does about a finding (design.md's `actions/`): the approval message (approval.py), who may
send one (approvers.py), carrying it out in PayPal (cancel.py: cancellations and refunds) and, with issue 19,
the auto-cancel policy (policy.py). Nothing here is imported by the scan itself."""
