"""spywatch automations as code: every alert the system sends, created (or replaced) on the Prefect
server at ``PREFECT_API_URL``.

The notification goes through one block, ``spywatch-alerts``, configured here from the
environment: ``SPYWATCH_ALERT_WEBHOOK_URL`` (a Slack incoming webhook, or any URL that accepts a
JSON POST ``{"title", "text", "subject", "body"}``). The URL is stored in the server's block
document as a secret (masked in the UI); it is never in this repository.

Automations (names start with ``spywatch:``; re-running this script replaces them):

- drift detected, collapse detected, champion lagging the baseline, model promoted, challenger
  training unhealthy, validation failed: the ``spywatch.*``
  events the nightly flow emits on ``spywatch.model.<TICKER>``, numbers from their payload;
- a flow run of nightly/retrain/backfill Failed or Crashed;
- no Completed nightly run in 26 hours (proactive; needs the ``nightly/nightly`` deployment, so
  run this after ``prefect deploy --all``). Weekend runs of the nightly deployment find Friday's
  session already published and complete in seconds, so weekends do not trip it.

Usage::

    SPYWATCH_ALERT_WEBHOOK_URL=https://hooks.slack.com/services/... python deployments/automations.py

With ``--signing-key-from-env`` it also saves ``SPYWATCH_SIGNING_KEY`` as the Secret block
``spywatch-signing-key``, which every flow loads into its worker's environment (the workers then
sign every model version they register and refuse an unsigned or altered one; docs/operations.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from dataclasses import dataclass
from uuid import UUID

BLOCK_NAME = "spywatch-alerts"
PREFIX = "spywatch: "
FLOWS = ["nightly", "retrain", "backfill"]


@dataclass(frozen=True)
class Alert:
    name: str
    event: str
    subject: str
    body: str


# The body is a Jinja template rendered by the server with the triggering event.
EVENT_ALERTS = (
    Alert("drift detected", "spywatch.drift.detected",
          "spywatch: drift detected ({{ event.resource.id }}, session {{ event.payload.session }})",
          "Drift: {{ event.payload.detail }}. Run {{ event.payload.run_id }}, synthetic={{ event.payload.synthetic }}."),
    Alert("collapse detected", "spywatch.collapse.detected",
          "spywatch: model collapse ({{ event.resource.id }}, session {{ event.payload.session }})",
          "Verdict {{ event.payload.verdict }}, probable cause {{ event.payload.cause }}. "
          "Findings: {{ event.payload.findings }}. Run {{ event.payload.run_id }}."),
    Alert("model promoted", "spywatch.model.promoted",
          "spywatch: new champion {{ event.payload.version }} ({{ event.resource.id }})",
          "Promoted at session {{ event.payload.session }}. Gate: {{ event.payload.gate }}. "
          "Run {{ event.payload.run_id }}."),
    Alert("champion lagging the baseline", "spywatch.model.lagging",
          "spywatch: champion {{ event.payload.version }} lags the Random Forest ({{ event.resource.id }})",
          "At session {{ event.payload.session }} the champion is {{ event.payload.detail }} "
          "(sessions {{ event.payload.span }}). The default policy retrains on it after its cooldown. "
          "Run {{ event.payload.run_id }}."),
    Alert("challenger training unhealthy", "spywatch.training.unhealthy",
          "spywatch: challenger {{ event.payload.version }} refused on its training ({{ event.resource.id }})",
          "Training verdict {{ event.payload.verdict }} at session {{ event.payload.session }}; the champion stays. "
          "Findings: {{ event.payload.findings }}. Run {{ event.payload.run_id }}."),
    Alert("validation failed", "spywatch.validation.failed",
          "spywatch: data validation failed ({{ event.resource.id }}, session {{ event.payload.session }})",
          "{{ event.payload.n_failures }} failed check(s); nothing was published, the last good predictions "
          "are marked stale. {{ event.payload.failures }}. Run {{ event.payload.run_id }}."),
)


def save_notification_block(url: str) -> UUID:
    """The ``spywatch-alerts`` block for ``url`` (Slack webhooks get Prefect's Slack block)."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook

    if url.startswith("https://hooks.slack.com/"):
        block = SlackWebhook(url=url)
    else:
        block = CustomWebhookNotificationBlock(
            name=BLOCK_NAME, url="{{ url }}", secrets={"url": url}, method="POST",
            headers={"Content-Type": "application/json"},
            json_data={"title": "{{ subject }}", "text": "{{ body }}", "subject": "{{ subject }}", "body": "{{ body }}"})
    return block.save(BLOCK_NAME, overwrite=True)


def build_automations(block_id: UUID, nightly_deployment_id: UUID | None, ticker_glob: str = "*",
                      stale_after: dt.timedelta = dt.timedelta(hours=26)) -> list:
    from prefect.automations import Automation
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    out = [Automation(name=PREFIX + a.name, description=f"notify on {a.event}",
                      trigger=EventTrigger(expect={a.event}, match={"prefect.resource.id": f"spywatch.model.{ticker_glob}"},
                                           posture=Posture.Reactive, threshold=1, within=dt.timedelta(0)),
                      actions=[SendNotification(block_document_id=block_id, subject=a.subject, body=a.body)])
           for a in EVENT_ALERTS]
    out.append(Automation(
        name=PREFIX + "flow run failed or crashed", description="a nightly, retrain or backfill run Failed or Crashed",
        trigger=EventTrigger(expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
                             match={"prefect.resource.id": "prefect.flow-run.*"},
                             match_related={"prefect.resource.role": "flow", "prefect.resource.name": FLOWS},
                             posture=Posture.Reactive, threshold=1, within=dt.timedelta(0)),
        actions=[SendNotification(
            block_document_id=block_id,
            subject="spywatch: {{ flow.name }} run {{ flow_run.name }} {{ flow_run.state.name }}",
            body="Flow run {{ flow_run.name }} ({{ flow.name }}) entered {{ flow_run.state.name }}: "
                 "{{ flow_run.state.message }}. Flow run id {{ flow_run.id }}.")]))
    if nightly_deployment_id is not None:
        out.append(Automation(
            name=PREFIX + "no successful nightly run", description=f"no Completed nightly run in {stale_after}",
            trigger=EventTrigger(expect={"prefect.flow-run.Completed"}, match={"prefect.resource.id": "prefect.flow-run.*"},
                                 match_related={"prefect.resource.id": f"prefect.deployment.{nightly_deployment_id}"},
                                 posture=Posture.Proactive, threshold=1, within=stale_after),
            actions=[SendNotification(
                block_document_id=block_id, subject="spywatch: no successful nightly run",
                body=f"No nightly run has Completed in the last {stale_after}. Predictions are going stale: "
                     "check the cpu worker, the server and the last runs (a stuck run holds the concurrency slot).")]))
    return out


def nightly_deployment_id(name: str) -> UUID | None:
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_deployment_by_name(name).id
        except ObjectNotFound:
            return None


def replace_automations(automations: list) -> list:
    """Delete the ``spywatch:`` automations with these names, then create them."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        for automation in automations:
            for old in client.read_automations_by_name(automation.name):
                client.delete_automation(old.id)
    return [a.create() for a in automations]


def save_signing_key_block() -> UUID | None:
    """``SPYWATCH_SIGNING_KEY`` as the Secret block the flows load (``tasks.night.use_signing_key_block``)."""
    from prefect.blocks.system import Secret

    from spywatch.artifact import SIGNING_KEY_BLOCK, signing_key

    try:
        key = signing_key()
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return None
    if key is None:
        print("SPYWATCH_SIGNING_KEY is not set: no key to save", file=sys.stderr)
        return None
    return Secret(value=key.decode()).save(SIGNING_KEY_BLOCK, overwrite=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nightly", default="nightly/nightly", help="the nightly deployment (flow/deployment)")
    parser.add_argument("--stale-hours", type=float, default=26.0, help="alert when no nightly run Completed for this long")
    parser.add_argument("--signing-key-from-env", action="store_true",
                        help="save SPYWATCH_SIGNING_KEY as the Secret block spywatch-signing-key (model signing)")
    args = parser.parse_args(argv)
    if args.signing_key_from_env and save_signing_key_block() is None:
        return 2
    url = os.environ.get("SPYWATCH_ALERT_WEBHOOK_URL", "").strip()
    if not url:
        print("SPYWATCH_ALERT_WEBHOOK_URL is not set: where should alerts go?", file=sys.stderr)
        return 2
    block_id = save_notification_block(url)
    deployment_id = nightly_deployment_id(args.nightly)
    if deployment_id is None:
        print(f"warning: deployment {args.nightly} not found; the 'no successful nightly run' automation is "
              f"skipped (run `prefect deploy --all` first, then this again)", file=sys.stderr)
    created = replace_automations(build_automations(block_id, deployment_id,
                                                    stale_after=dt.timedelta(hours=args.stale_hours)))
    for automation in created:
        print(f"{automation.id}  {automation.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
