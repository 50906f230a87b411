"""The scan's Slack message (Block Kit), within Slack's limits whatever the number of findings, with the
buttons of slack-actions.md when the signing secret is configured (moved here from notify.py).

A message names every customer at risk (the registry's AT_RISK_CHECKS) with what to do and the money,
shows a stale import first, counts the findings that need no action in one line, and never says "all
clear" while anyone is at risk. With buttons: Cancel in PayPal and Refund <total> under each customer named
(each a confirmation dialog naming the customer, the PayPal id and the money), and one Acknowledge menu per
counted check. A customer the blocks cannot carry with buttons is still named, with the command. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass

from billing_monitor.notify import (
    APPROVE,
    DAILY,
    LABEL_MAX,
    _due_and_auto,
    _refund_lines,
    _what_happened,
    _what_to_do,
    at_risk_findings,
    auto_cancel_lines,
    clip,
    counted_line,
    headline,
    heartbeat_line,
    is_acknowledged,
    is_at_risk,
    is_named,
    is_owed_only,
    owed_findings,
    paypal_status_line,
    stale_findings,
    stale_line,
)
from billing_monitor.report import by_due, charges_money, customer_label, display_money, prevented_line
from billing_monitor.rules.registry import COUNTED_ONLY_CHECKS, STALE_IMPORT
from billing_monitor.slack.buttons import (
    ACKNOWLEDGE,
    ACKNOWLEDGE_FOR,
    ACKNOWLEDGE_LABELS,
    APPROVE_CANCEL,
    APPROVE_REFUND,
    ButtonMac,
)
from billing_monitor.store.scans import ScanDiff

# Slack's limits (https://api.slack.com/reference/block-kit/blocks) ...
SLACK_MAX_BLOCKS = 50
SLACK_SECTION_MAX = 3000
SLACK_HEADER_MAX = 150
SLACK_ACTIONS_MAX = 25              # elements in an actions block
SLACK_BUTTON_TEXT_MAX = 75
SLACK_CONFIRM_TEXT_MAX = 300
SLACK_OPTIONS_MAX = 100             # options of a select menu
SLACK_OPTION_TEXT_MAX = 75
# ... and one it does not document: past about 13,000 characters of block text it answers
# msg_blocks_too_long. The whole message's text (buttons' and menus' texts counted too) stays under this.
SLACK_TEXT_BUDGET = 12_000
ACKNOWLEDGE_TEXT_BUDGET = 3_000     # the Acknowledge menus' option texts, all checks together
MORE_COMMAND = "`billing-monitor scan`"


def slack_escape(text: str) -> str:
    """Slack's mrkdwn treats &, < and > as markup: escape them in any text that comes from data."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def customer_line_slack(f: dict, report: dict | None = None) -> str:
    """One customer at risk, in mrkdwn: who, PayPal id, the money or 'about to be charged', the due, the approval."""
    who = clip(slack_escape(customer_label(f.get("contact"))), LABEL_MAX)
    paypal = clip(slack_escape(f.get("paypal_subscription_id") or "-"), 60).replace("`", "'")
    line = f"*{who}* · PayPal `{paypal}` · {_what_happened(f, lambda s: f'*{s}*')}"
    line += "".join(f"\n{slack_escape(x)}" for x in _due_and_auto(f, report))
    if f.get("action"):
        line += f"\nApprove: `{APPROVE.format(finding_id=f['finding_id'])}`"
    elif _what_to_do(f):
        line += f"\n{_what_to_do(f)}"
    return line + _refund_lines(f, lambda s: f"`{s}`")


# ---------------------------------------------------------------- Slack


@dataclass
class _Groups:
    """The customers at risk a message names, by what happened to them since the last scan."""

    new: list[dict]
    changed: list[dict]
    still: list[dict]          # unchanged: named by the monthly message only
    oldest_months: int          # of the still-open ones (new ones excluded)
    still_open_count: int       # open at risk and not new: the "still open" of the status line
    owed: list[dict] = None     # owed, charging stopped, unchanged: named by the monthly message only


def _groups(report: dict, diff: ScanDiff) -> _Groups:
    order = {f["finding_id"]: i for i, f in enumerate(report["findings"])}
    by_order = lambda fs: by_due(sorted(fs, key=lambda f: order.get(f["finding_id"], len(order))))  # noqa: E731
    new = [f for f in diff.new if is_named(f)]
    new += [o.finding for o in diff.still_open if is_named(o.finding) and o.unreported and not o.changed]
    changed = [o.finding for o in diff.still_open if is_named(o.finding) and o.changed]
    shown = {f["finding_id"] for f in new + changed}
    still_open = [o for o in diff.still_open if is_at_risk(o.finding)]
    still = [o.finding for o in still_open if o.finding["finding_id"] not in shown]
    owed = [o.finding for o in diff.still_open if is_owed_only(o.finding) and o.finding["finding_id"] not in shown]
    return _Groups(by_order(new), by_order(changed), by_order(still),
                   max((o.months_open for o in still_open), default=0), len(still_open), by_order(owed))


def has_news(diff: ScanDiff) -> bool:
    """Something a daily scan posts about: new, changed or resolved findings, or ones no post has carried."""
    return bool(diff.new or diff.resolved or diff.changed or any(o.unreported for o in diff.still_open))


def _section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SLACK_SECTION_MAX)}}


def _text_of(block: dict) -> str:
    if block["type"] == "context":
        return "".join(e.get("text", "") for e in block["elements"])
    if block["type"] == "actions":
        return "".join(_element_text(e) for e in block["elements"])
    return block["text"]["text"]


def _element_text(element: dict) -> str:
    """The characters an element shows (its label, its dialog, its options), counted in the text budget."""
    text = element.get("text", {}).get("text", "") + element.get("placeholder", {}).get("text", "")
    confirm = element.get("confirm")
    if confirm:
        text += "".join(confirm[k]["text"] for k in ("title", "text", "confirm", "deny"))
    options = list(element.get("options") or ()) + [o for g in element.get("option_groups") or () for o in g["options"]]
    return text + "".join(o["text"]["text"] for o in options)


def _more(n: int) -> str:
    return f"…and {n} more: {MORE_COMMAND}"


def _plain(text: str, limit: int) -> dict:
    return {"type": "plain_text", "text": clip(text, limit), "emoji": False}


def _confirm(title: str, text: str, yes: str) -> dict:
    return {"title": _plain(title, 100), "text": {"type": "mrkdwn", "text": clip(text, SLACK_CONFIRM_TEXT_MAX)},
            "confirm": _plain(yes, 30), "deny": _plain("Not now", 30), "style": "danger"}


def owed_total(f: dict) -> str | None:
    """'462.00 USD': what a Refund button refunds (the finding's refund block, the CLI's default), when some
    owed charge has no refund recorded yet; else None (no Refund button)."""
    refund = f.get("refund") or {}
    recorded = {r["transaction_id"] for r in f.get("refunds") or ()}
    if not refund.get("transactions") or all(t in recorded for t in refund["transactions"]):
        return None
    return f"{display_money(refund.get('total') or '0.00')} {f.get('currency') or ''}".strip()


def customer_buttons(f: dict, macs: ButtonMac) -> list[dict]:
    """Cancel in PayPal (a finding whose action cancels) and Refund <total> (one with charges owed), each with
    a dialog naming the customer, the PayPal id and the money."""
    who = customer_label(f.get("contact"))
    paypal_id = f.get("paypal_subscription_id") or (f.get("action") or {}).get("paypal_subscription_id") or "-"
    first = who.split(" <")[0]
    buttons = []
    if (f.get("action") or {}).get("type") == "cancel_paypal_subscription":
        pid = f["action"]["paypal_subscription_id"]
        money = charges_money(f) if (f.get("charges") or {}).get("count") else "not charged after canceling yet"
        buttons.append({
            "type": "button", "action_id": APPROVE_CANCEL, "style": "danger",
            "text": _plain(f"Cancel in PayPal: {first}", SLACK_BUTTON_TEXT_MAX),
            "value": macs.value(APPROVE_CANCEL, f["finding_id"]),
            "confirm": _confirm("Cancel in PayPal?", f"Cancel PayPal subscription `{slack_escape(pid)}` of"
                                f" *{slack_escape(who)}*? Charged after canceling: {slack_escape(money)}.",
                                "Cancel it")})
    total = owed_total(f)
    if total:
        refund = f["refund"]
        n = len(refund["transactions"])
        pid = slack_escape(refund.get("paypal_subscription_id") or paypal_id)
        buttons.append({
            "type": "button", "action_id": APPROVE_REFUND,
            "text": _plain(f"Refund {total}: {first}", SLACK_BUTTON_TEXT_MAX),
            "value": macs.value(APPROVE_REFUND, f["finding_id"]),
            "confirm": _confirm(f"Refund {total}?", f"Refund *{slack_escape(total)}* ({n} charge{'s' if n != 1 else ''})"
                                f" to *{slack_escape(who)}*, PayPal `{pid}`?",
                                "Refund")})
    return buttons


def _option_label(f: dict) -> str:
    """'Ada Lovelace · I-ABC123' (the name, else the e-mail; the PayPal id, else the finding id): short, so that a
    menu carries many."""
    if f["check"] == STALE_IMPORT:
        return "the stale import"
    contact = f.get("contact") or {}
    who = contact.get("name") or contact.get("email") or "(contact missing)"
    return f"{who} · {f.get('paypal_subscription_id') or f['finding_id']}"


def acknowledge_blocks(report: dict, macs: ButtonMac, budget: int = ACKNOWLEDGE_TEXT_BUDGET) -> tuple[list[dict], int]:
    """One actions block per check of findings that need no action: a menu of its findings (Acknowledge) and
    how long (until it changes, 30 days, 90 days). Returns the blocks and how many findings no menu carries
    (`billing-monitor ack` reaches them)."""
    candidates: dict[str, list[dict]] = {}
    for f in report["findings"]:
        if (f["check"] in COUNTED_ONLY_CHECKS or f["check"] == STALE_IMPORT) and not is_acknowledged(f) \
                and not f.get("action") and not owed_total(f):
            candidates.setdefault(f["check"], []).append(f)
    if not candidates:
        return [], 0
    share = budget // len(candidates)
    blocks, left_out = [], 0
    for check, findings in candidates.items():
        options, used = [], 0
        for f in findings:
            label = clip(_option_label(f), SLACK_OPTION_TEXT_MAX)
            if len(options) == SLACK_OPTIONS_MAX or used + len(label) > share:
                break
            options.append({"text": _plain(label, SLACK_OPTION_TEXT_MAX), "value": macs.value(ACKNOWLEDGE, f["finding_id"])})
            used += len(label)
        left_out += len(findings) - len(options)
        if not options:
            continue
        durations = [{"text": _plain(f"Acknowledge {label}", 75), "value": value}
                     for value, label in ACKNOWLEDGE_LABELS.items()]
        blocks.append({"type": "actions", "block_id": f"ack:{check}", "elements": [
            {"type": "static_select", "action_id": ACKNOWLEDGE,
             "placeholder": _plain(f"Acknowledge a {check}…", 150), "options": options},
            {"type": "static_select", "action_id": ACKNOWLEDGE_FOR, "placeholder": _plain("For how long", 150),
             "options": durations, "initial_option": durations[0]}]})
    return blocks, left_out


def _pack(groups: list[tuple[str, list[tuple[str, list[dict], str]]]], max_blocks: int, max_chars: int) -> list[dict]:
    """Sections for the groups of customer lines, within `max_blocks` blocks and `max_chars` characters.

    Each item is (line, buttons, finding_id). Every group gets its title and a fair share: the groups take
    one line each in turn while lines fit (several lines to a section); a line with buttons ends its section,
    followed by an actions block, while the blocks allow; after that lines go on without their buttons (their
    text names the command). What a group cannot show is counted on its last line ("…and 37 more:
    `billing-monitor scan`").
    """
    groups = [(title, items) for title, items in groups if items]
    reserve = 1 + len(_more(10**6))         # room kept in each group's last section for its count
    sections = [[[title, None, None]] for title, _ in groups]     # [text, buttons, finding_id]
    shown = [0] * len(groups)
    chars = sum(len(title) + reserve for title, _ in groups)
    blocks = len(groups)        # slack_message keeps its other blocks short: these always fit
    open_groups = set(range(len(groups)))
    while open_groups:
        for i in sorted(open_groups):
            items = groups[i][1]
            if shown[i] == len(items):
                open_groups.discard(i)
                continue
            line, buttons, finding_id = items[shown[i]]
            last = sections[i][-1]
            closed = last[1] is not None
            fits_last = not closed and len(last[0]) + 2 + len(line) + reserve <= SLACK_SECTION_MAX
            placed = False
            if buttons:
                cost = len(line) + sum(len(_element_text(b)) for b in buttons)
                need = 1 + (0 if fits_last else 1)
                # one block per group stays free for the lines that come after the buttons run out
                if chars + cost + 2 <= max_chars and blocks + need <= max_blocks - len(groups):
                    if fits_last:
                        last[0] += "\n\n" + line
                        last[1], last[2] = buttons, finding_id
                    else:
                        sections[i].append([line, buttons, finding_id])
                    chars += cost + 2
                    blocks += need
                    placed = True
            if not placed:
                new_section = not fits_last
                cost = len(line) + (0 if new_section else 2)
                if chars + cost > max_chars or blocks + new_section > max_blocks:
                    open_groups.discard(i)          # its order is kept: the rest of it is counted
                    continue
                if new_section:
                    sections[i].append([line, None, None])
                    blocks += 1
                else:
                    last[0] += "\n\n" + line
                chars += cost
            shown[i] += 1
    out = []
    for i, (_, items) in enumerate(groups):
        if shown[i] < len(items):
            sections[i][-1][0] += "\n" + _more(len(items) - shown[i])
        for text, buttons, finding_id in sections[i]:
            out.append(_section(text))
            if buttons:
                out.append({"type": "actions", "block_id": f"finding:{finding_id}", "elements": buttons})
    return out


def slack_message(report: dict, diff: ScanDiff, *, schedule: str, buttons: ButtonMac | None = None) -> dict | None:
    """The Block Kit payload; None when a daily scan has nothing new to say.

    The monthly message (and a scan started by hand) always posts: it names every customer at risk and
    carries the heartbeat line. A daily one posts only news: what is new, changed or resolved.
    `buttons` (the signing secret's ButtonMac): the message carries the buttons of slack-actions.md; without
    it, the commands alone. Acknowledged findings are left out of the counts.
    """
    everything = schedule != DAILY
    if not everything and not has_news(diff):
        return None
    title = headline(report)
    groups = _groups(report, diff)
    at_risk_open = bool(at_risk_findings(report))
    stale = stale_findings(report)

    top = [{"type": "header", "text": {"type": "plain_text", "text": clip(title, SLACK_HEADER_MAX)}}]
    if len(title) > SLACK_HEADER_MAX:       # the money line is always stated in full
        top.append(_section(f"*{slack_escape(title)}*"))
    top.extend(_section(f":warning: *{clip(slack_escape(stale_line(f)), 1000)}*") for f in stale
               if not is_acknowledged(f))

    status = []
    if diff.resolved:
        resolved_at_risk = sum(is_at_risk(f) for f in diff.resolved)
        status.append(f"Resolved since the last scan: {len(diff.resolved)}"
                      + (f" ({resolved_at_risk} of them at risk)" if resolved_at_risk else ""))
    if groups.still_open_count and everything:
        status.append(f"Still open: {groups.still_open_count} at risk (oldest {groups.oldest_months} month(s))")
    counted = counted_line(report)
    acknowledging, left_out = acknowledge_blocks(report, buttons) if buttons else ([], 0)
    if counted:
        new_counted = sum(f["check"] in COUNTED_ONLY_CHECKS and not is_acknowledged(f) for f in diff.new)
        status.append(counted + (f" ({new_counted} of them new)" if new_counted else "")
                      + (f"; {left_out} more to acknowledge with `billing-monitor ack`" if left_out else ""))
    paypal_problem = paypal_status_line(report)
    if paypal_problem:
        status.append(f":warning: {slack_escape(paypal_problem)}")
    status += [f":robot_face: {slack_escape(line)}" for line in auto_cancel_lines(report)]
    if everything and prevented_line(report):
        status.append(f":shield: {prevented_line(report)}")
    if [f for f in stale if is_acknowledged(f)]:
        status.append("The imports look stopped (stale_import, acknowledged): the data may be out of date.")
    if not at_risk_open and not stale and not owed_findings(report) and not paypal_problem:
        status.append(":white_check_mark: All clear: nobody is charged, or about to be charged, after canceling.")
    tail = [_section(clip("\n".join(status), 1500))] if status else []
    tail.extend(acknowledging)
    tail.append({"type": "context", "elements": [{"type": "mrkdwn", "text": clip(
        f"{heartbeat_line(report, schedule)} Scan {slack_escape(report['scan_id'])}.", 500)}]})

    listed = [(f"*New: {len(groups.new)} at risk*", groups.new),
              (f"*Changed since the last scan: {len(groups.changed)}*", groups.changed)]
    if everything:
        listed.append((f"*Still at risk: {len(groups.still)} (monthly reminder)*", groups.still))
        listed.append((f"*Owed: {len(groups.owed)} (charging stopped, not refunded yet)*", groups.owed))
    fixed_chars = sum(len(_text_of(b)) for b in top + tail)
    middle = _pack([(t, [(customer_line_slack(f, report), customer_buttons(f, buttons) if buttons else [], f["finding_id"])
                         for f in fs]) for t, fs in listed],
                   SLACK_MAX_BLOCKS - len(top) - len(tail), SLACK_TEXT_BUDGET - fixed_chars)
    return {"text": clip(title, SLACK_SECTION_MAX), "blocks": top + middle + tail}


def failure_message(scan_date: str, reason: str, done: str) -> dict:
    """One line: 'The scan of 2026-12-01 failed: cannot connect to … (nothing was saved, published or posted).'"""
    reason = " ".join(reason.split())
    return {"text": clip(f":x: The scan of {scan_date} failed: {slack_escape(reason)} ({done}).", SLACK_SECTION_MAX)}

