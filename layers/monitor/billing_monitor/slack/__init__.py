"""Slack: the scan's message and its buttons (message.py, buttons.py), posting (post.py), clicks (clicks.py)."""
