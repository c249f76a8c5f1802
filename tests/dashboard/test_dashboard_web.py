"""The dashboard in a real headless chromium, over a real registry with real agents."""

from __future__ import annotations

import pytest

from server.campaigns.rollout import CampaignSpec, TargetSelection, WaveSpec
from server.campaigns.service import CampaignClient
from testkit.helpers import publish_released, with_provenance

MODEL = "squeezenet1.0"
pytestmark = pytest.mark.browser
expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect


def test_dashboard_shows_campaign_progress_and_updates_after_a_report(
    registry_server, dashboard, make_agent, squeezenet_bytes, page
) -> None:
    reg = registry_server.registry
    publish_released(reg, MODEL, "1.0.0", squeezenet_bytes)
    cars = {vid: make_agent(vid, tags=("fleet=dash",)) for vid in ("car-a", "car-b")}
    for a in cars.values():
        assert a.update_once()[0].status == "installed"
    reg.publish_bytes(MODEL, "1.0.1", with_provenance(squeezenet_bytes, "1.0.1"))
    view = reg.rollouts.create(
        CampaignSpec(
            "dashboard test",
            MODEL,
            "1.0.1",
            TargetSelection(tags=("fleet=dash",)),
            waves=(WaveSpec(50, 1.0, 3600.0), WaveSpec(100, 1.0, 0.0)),
        )
    )
    cid = view.campaign_id
    [canary] = [v for v, w in view.wave_of.items() if w == 0]

    page.goto(dashboard.base_url + "?poll_ms=250#token=s3cret-token")
    camp = page.locator(f'[data-campaign="{cid}"]')
    camp.wait_for(timeout=30_000)
    assert "running" in camp.inner_text().lower()
    first_wave_ok = camp.locator('[data-wave="0"] .wave-ok')
    assert first_wave_ok.inner_text() == "0/1"
    bar = camp.locator('[data-wave="0"] .bar > span')
    expect(bar).to_have_attribute("style", "width: 0%;")
    assert "#token" not in page.url, "the token leaves the address bar once read"
    rows = page.locator("#vehicles tbody tr")
    assert rows.count() == 2
    assert "1.0.0" in page.locator('[data-vehicle="car-a"]').inner_text()
    # Both encodings of 1.0.1 and their sizes are listed.
    model_row = page.locator('[data-model="squeezenet1.0 1.0.1"]').inner_text()
    assert "full: 5," in model_row and "from 1.0.0" in model_row

    [o] = cars[
        canary
    ].update_once()  # installs 1.0.1 and reports it: the page must follow, unreloaded
    assert o.status == "installed", o.reason
    expect(first_wave_ok).to_have_text("1/1", timeout=30_000)
    expect(bar).to_have_attribute("style", "width: 100%;")  # the page re-renders: no stale handles
    assert "1.0.1" in page.locator(f'[data-vehicle="{canary}"]').inner_text()

    page.fill("#filter", f'tags.fleet = "dash" AND model.{MODEL} = "1.0.1"')
    page.click("#filter-form button[type=submit]")
    expect(rows).to_have_count(1, timeout=30_000)
    assert page.locator("#vehicles tbody tr").inner_text().startswith(canary)
    page.fill("#filter", "colour = red")
    page.click("#filter-form button[type=submit]")
    page.locator("#filter-error").filter(has_text="unknown field").wait_for(timeout=30_000)
    # Paused over gRPC with the publisher's certificate: the history names that identity.
    with CampaignClient(registry_server.address, tls_files=registry_server.publisher_tls) as cc:
        cc.pause(cid, "checking the canary")
    paused = camp.locator('.history tr[data-event="paused"]')
    expect(paused.locator(".event-actor")).to_have_text("publisher:ml-team", timeout=30_000)
    assert "checking the canary" in paused.inner_text()
    expect(camp.locator(".state")).to_have_text("paused")
    shot = page.shot("dashboard")
    assert shot.stat().st_size > 10_000
    assert page.js_errors == []


def test_dashboard_page_without_token_says_how_to_get_in(dashboard, page) -> None:
    page.goto(dashboard.base_url)
    page.locator("#status.bad").filter(has_text="not authenticated").wait_for(timeout=30_000)
    assert page.locator("#vehicles tbody tr").count() == 0
