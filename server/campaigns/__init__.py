"""Rollout campaigns: waves, canaries, error thresholds, pause/resume/abort, rollback.

- ``rollout.py``: the pure core, ``derive`` (state from facts; no I/O);
- ``manager.py``: ``CampaignManager``, the registry's rollout policy, over the
  fleet, campaign, report and model ports;
- ``service.py``: the Campaigns gRPC service and its client;
- ``cli.py``: ``ota campaign``.
"""
