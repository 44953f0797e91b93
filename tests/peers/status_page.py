"""The status page in a real browser: Debian's Chromium driven by Playwright (no browser
download). Usage: status_page.py BASE_URL CAMERA SETUP_URI SCREENSHOT.

Checks, printed as one JSON object: the camera's card appears; its snapshot <img> decodes
(naturalWidth > 0); the QR <svg> decodes (zxing-cpp, on a screenshot of the element) to the
setup URI; a motion event triggered through the API appears in the card without a reload; then,
after printing READY (the test pairs a hub and records a clip), the recorded clip appears and
the QR code is gone, still without a reload; and how many JavaScript errors the page raised."""
import io
import json
import sys
import urllib.parse
import urllib.request

import zxingcpp
from PIL import Image
from playwright.sync_api import sync_playwright

base, camera, setup_uri, shot = sys.argv[1:5]
result = {"js_errors": []}
with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"]
    )
    page = browser.new_page(viewport={"width": 420, "height": 900})  # a phone's width
    page.on("pageerror", lambda e: result["js_errors"].append(str(e)))
    page.on(
        "console",
        lambda m: result["js_errors"].append(m.text) if m.type == "error" else None,
    )
    page.goto(base + "/")
    card = page.locator(f'.card[data-camera="{camera}"]')
    card.wait_for(timeout=15000)
    page.wait_for_function(
        "() => { const i = document.querySelector('.card .snapshot');"
        " return i && i.complete && i.naturalWidth > 0; }",
        timeout=20000,
    )
    result["snapshot_width"] = page.evaluate(
        "() => document.querySelector('.card .snapshot').naturalWidth"
    )
    svg = card.locator(".pair svg")
    svg.wait_for(timeout=10000)
    png = svg.screenshot()
    codes = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    result["qr"] = [c.text for c in codes]
    result["setup_code_shown"] = card.locator(".pair .code").inner_text()
    before = card.locator("ul.events li[data-id]").count()
    req = urllib.request.Request(
        f"{base}/api/cameras/{urllib.parse.quote(camera)}/motion",
        data=json.dumps({"detected": True}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(req, timeout=10).read()
    page.wait_for_function(
        f"() => document.querySelectorAll('.card ul.events li[data-id]').length > {before}",
        timeout=10000,
    )
    result["events_before"] = before
    result["events_after"] = card.locator("ul.events li[data-id]").count()
    result["first_event"] = card.locator("ul.events li[data-id]").first.inner_text()
    print("READY", flush=True)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.card ul.events li[data-id] .badge')]"
        ".some(b => b.textContent === 'recorded')",
        timeout=60000,
    )
    result["recorded_event"] = card.locator("ul.events li[data-id]").first.inner_text()
    page.wait_for_function(
        "() => document.querySelector('.card .pair').hidden", timeout=10000
    )
    result["qr_hidden_after_pairing"] = True
    page.screenshot(path=shot, full_page=True)
    browser.close()
print(json.dumps(result))
