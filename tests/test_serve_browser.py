"""The upload page in a real headless browser (Debian's chromium + chromedriver, Selenium),
driven with real clicks and keys: the example photos (a click colorizes one), the export's
evaluation in words, upload (chooser and drop), the progress indicator, the before/after
slider, download, the samples gallery, the temperature, colour hints (placed by clicking the
photo; the output moves toward each hint's colour), clips (their option shown only for a
clip), every rejected upload's message, the keyboard, a 1280 x 800 window (result, slider and
Download in it without scrolling), a phone-sized window, no broken images, a quiet log.

CI installs them (`.ci/run`) and sets COLORJAX_REQUIRE_BROWSER=1, so there a missing browser
fails the test; elsewhere it skips and says what is missing.

Screenshots: with COLORJAX_SCREENSHOTS=DIR the tests also save the page as DIR/page_*.png
(the README's and docs/images' come from
``COLORJAX_SCREENSHOTS=docs/images python -m pytest tests/test_serve_browser.py``).
"""

import base64
import inspect
import io
import os
import pathlib
import shutil
import threading
import time

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from colorjax import color
from colorjax.inference.colorizer import Colorizer
from colorjax.serve import make_server

import test_export  # the shared tiny export (tests/ is on sys.path under pytest)

CHROMIUM = os.environ.get("COLORJAX_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("COLORJAX_CHROMEDRIVER", shutil.which("chromedriver")
                              or "/usr/bin/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--force-device-scale-factor=1"]
DESKTOP = (1280, 800)  # a common laptop window: the result must fit it
PHONE = (390, 844)  # CSS pixels of a common phone
SCREENSHOTS = os.environ.get("COLORJAX_SCREENSHOTS")


def _missing():
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -r requirements.txt)"
    for path, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} not found (apt-get install -y {pkg}; .ci/run does)"
    return None


MISSING = _missing()
REQUIRED = os.environ.get("COLORJAX_REQUIRE_BROWSER") == "1"
pytestmark = pytest.mark.skipif(MISSING is not None and not REQUIRED, reason=str(MISSING))


def _serve(colorizer, quiet=True, **limits):
    srv = make_server(colorizer, "127.0.0.1", 0, quiet=quiet, **{"max_samples": 3, **limits})
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    host, port = srv.server_address[:2]
    return srv, f"http://{host}:{port}/"


class _Served:
    def __init__(self, colorizer, **limits):
        self.srv, self.url = _serve(colorizer, **limits)

    def __enter__(self):
        return self.url

    def __exit__(self, *exc):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture(scope="module")
def colorizer(tmp_path_factory):
    path = test_export.tiny_export(tmp_path_factory.getbasetemp() / "colorjax_export")[0]
    return Colorizer.load(str(path))


@pytest.fixture(scope="module")
def page_url(colorizer):
    with _Served(colorizer) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if MISSING:
        pytest.fail(f"COLORJAX_REQUIRE_BROWSER=1 but {MISSING}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    # Driver and browser paths given: Selenium Manager (which would go online) is not used.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser):
    """The browser at the desktop size (a test may change it), with the page's errors
    collected: none may be logged."""
    _viewport(browser, *DESKTOP)
    yield browser
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"
              and "api/colorize" not in e["message"]]  # a 4xx answer is logged; it is expected
    assert not errors, errors


def _viewport(driver, w, h, mobile=False):
    """Make the page's viewport w x h CSS pixels (a phone's with `mobile`)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": w, "height": h, "deviceScaleFactor": 1, "mobile": mobile})


def _screenshot(driver, name):
    """The whole page (not only the viewport) as SCREENSHOTS/page_<name>.png."""
    if SCREENSHOTS:
        path = pathlib.Path(SCREENSHOTS)
        path.mkdir(parents=True, exist_ok=True)
        driver.execute_script("document.activeElement && document.activeElement.blur()")
        size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                     "scale": 1}})
        (path / f"page_{name}.png").write_bytes(base64.b64decode(shot["data"]))


def _by():
    from selenium.webdriver.common.by import By
    return By


def _find(driver, css):
    return driver.find_element(_by().CSS_SELECTOR, css)


def _watch_busy(driver):
    """Record every text the progress line shows (it may come and go between polls)."""
    driver.execute_script("""
      window.busySeen = [];
      new MutationObserver(() => {
        const b = document.getElementById('busy');
        if (!b.hidden) window.busySeen.push(document.getElementById('busy-text').textContent);
      }).observe(document.getElementById('busy'), {attributes: true, childList: true,
                                                   subtree: true, characterData: true});""")


def _answered(driver) -> int:
    """How many answers the page has shown (results, refusals in the page or the server's)."""
    return driver.execute_script("return S.answered")


def _act(driver, action, timeout=120):
    """Do `action` (clicks, keys), then wait for the page's next answer and no request in
    flight or scheduled; the status line."""
    from selenium.webdriver.support.ui import WebDriverWait

    before = _answered(driver)
    action()
    WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: d.execute_script(
        "return S.answered > arguments[0] && !S.xhr && !S.timer && $('busy').hidden", before))
    return _find(driver, "#status")


def _upload(driver, path):
    return _act(driver, lambda: _find(driver, "#file").send_keys(str(path)))


def _data_url_image(url):
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def _shown(driver):
    """The colour image now in the comparison, as an RGB array."""
    return np.asarray(_data_url_image(_find(driver, "#after").get_attribute("src")).convert("RGB"))


def _photo(tmp_path, w, h, name="astronaut.jpg"):
    path = tmp_path / name
    Image.fromarray(skdata.astronaut()).resize((w, h), Image.BILINEAR).save(path, quality=90)
    return path


def _chroma(png) -> float:
    """Mean |ab| of a screenshot's pixels (0 for gray)."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.float32) / 255.0
    lab = np.asarray(color.rgb_to_lab(rgb))
    return float(np.hypot(lab[..., 1], lab[..., 2]).mean())


def _examples_loaded(driver):
    """The example buttons' names, once every thumbnail has loaded (none broken)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30, poll_frequency=0.1).until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('.example img')].every(i => i.complete)"))
    assert driver.execute_script(
        "return [...document.querySelectorAll('.example img')].every(i => i.naturalWidth > 0)")
    return [b.get_attribute("data-name")
            for b in driver.find_elements(_by().CSS_SELECTOR, "#example-row .example")]


def _in_window(driver, *selectors):
    """Each element's box lies wholly inside the window, with the page not scrolled."""
    assert driver.execute_script("return [scrollX, scrollY]") == [0, 0]
    w, h = driver.execute_script("return [innerWidth, innerHeight]")
    for css in selectors:
        r = driver.execute_script("return arguments[0].getBoundingClientRect().toJSON()",
                                  _find(driver, css))
        assert r["width"] > 0 and r["height"] > 0, (css, r)
        assert r["left"] >= 0 and r["top"] >= 0 and r["right"] <= w and r["bottom"] <= h, \
            (css, r, (w, h))


@pytest.mark.slow
def test_before_any_upload_the_page_greets_with_examples(page, page_url):
    page.get(page_url)
    assert "unet" in page.title
    assert page.execute_script("return [innerWidth, innerHeight]") == list(DESKTOP)
    # The examples, in gray (what the model sees), are the only images: no broken placeholder.
    assert _examples_loaded(page) == ["astronaut", "coffee", "chelsea", "rocket"]
    images = page.find_elements(_by().TAG_NAME, "img")
    assert len(images) == 4 and all(i.is_displayed() for i in images)
    assert all("grayscale(1)" in i.value_of_css_property("filter") for i in images)
    assert "Try it on an example" in _find(page, "#examples").text
    assert "Eileen Collins" in _find(page, "#examples").text  # captions
    _in_window(page, "#drop", "#example-row .example:last-child")
    assert not _find(page, "#result").is_displayed()
    assert "gray input" not in page.find_element(_by().TAG_NAME, "body").text
    assert "drop" in _find(page, "#drop").text
    assert "at most 20 MiB" in _find(page, "#limits").text
    # The export's own evaluation against gray, in words (the tiny export's table).
    assert _find(page, "#evaluation").text == (
        "On its validation photos, this model is better than leaving them gray on 1 of 1 "
        "metric: SSIM 0.500 (gray 0.400).")
    about = _find(page, "#about").text
    assert about == "a regression model, trained for 2 steps at 32 px", about
    # A deterministic model: no samples, no temperature, no hints; no clip option before a
    # clip is chosen (this server takes clips).
    assert page.execute_script("return INFO.video") is True
    for hidden in ("#samples-label", "#temperature-label", "#hints-panel", "#gallery-panel",
                   "#stabilize-label", "#options", "#go"):
        assert not _find(page, hidden).is_displayed(), hidden
    # The first Tab reaches the file chooser (its drop zone shows the focus).
    from selenium.webdriver.common.keys import Keys
    _find(page, "body").send_keys(Keys.TAB)
    assert page.switch_to.active_element.get_attribute("id") == "file"
    assert page.execute_script("return getComputedStyle(document.getElementById('drop'))"
                               ".outlineStyle") != "none"
    _screenshot(page, "empty")


def test_a_click_on_an_example_colorizes_it_within_the_window(page, page_url):
    """A click on an example photo: its colorization, compared with its gray input, with
    the slider and Download inside the 1280 x 800 window (no scrolling); the examples become
    a strip beside it; another example replaces it."""
    page.get(page_url)
    _examples_loaded(page)
    _watch_busy(page)
    status = _act(page, _find(page, '.example[data-name="astronaut"]').click)
    assert status.text == "Done: astronaut.jpg, 512\u00d7512 px.", status.text
    seen = page.execute_script("return window.busySeen")
    assert any(t.startswith("Colorizing astronaut.jpg") for t in seen), seen
    assert _shown(page).shape == (512, 512, 3)
    assert _find(page, '.example[data-name="astronaut"]').get_attribute("aria-pressed") == "true"
    assert _find(page, "#download").get_attribute("download") == "astronaut_color.png"
    _in_window(page, "#stage", "#compare", "#download", "#status")
    stage = _find(page, "#stage").rect
    assert stage["height"] > 0.6 * DESKTOP[1]  # large, not a thumbnail
    # The examples stay to hand, smaller, beside the result.
    _in_window(page, "#example-row .example:last-child")
    assert _find(page, "#example-row .example").rect["width"] < 0.3 * stage["width"]
    assert not _find(page, "#stabilize-label").is_displayed()  # a photo: no clip option
    _screenshot(page, "result")
    # A wide photo, and the slider row still in the window.
    status = _act(page, _find(page, '.example[data-name="rocket"]').click)
    assert status.text.startswith("Done: rocket.jpg, 512\u00d7"), status.text
    assert _find(page, '.example[data-name="astronaut"]').get_attribute("aria-pressed") == "false"
    _in_window(page, "#stage", "#compare", "#download")


@pytest.mark.slow
def test_upload_compare_with_the_slider_and_download(page, page_url, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    photo = _photo(tmp_path, 333, 517)
    page.get(page_url)
    _watch_busy(page)
    status = _upload(page, photo)
    assert status.text.startswith("Done: astronaut.jpg, 333\u00d7517 px"), status.text
    seen = page.execute_script("return window.busySeen")
    assert any(t.startswith("Colorizing astronaut.jpg") for t in seen), seen  # the progress
    assert not _find(page, "#busy").is_displayed()

    after, before = _find(page, "#after"), _find(page, "#before")
    for img in (after, before):
        assert page.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]",
                                   img) == [333, 517]
        assert img.is_displayed()
    # The two lie on each other at the same size.
    assert after.rect == before.rect
    assert not page.find_elements(_by().CSS_SELECTOR, "#gallery img")  # one result: no gallery
    _in_window(page, "#stage", "#compare", "#download")  # a tall photo fits the window too

    # The slider: a real click near its left end shows almost all colour, End all gray,
    # Home all colour (the stage's own pixels, as the screen shows them).
    slider, stage = _find(page, "#compare"), _find(page, "#stage")
    ActionChains(page).move_to_element_with_offset(
        slider, -slider.rect["width"] // 2 + 4, 0).click().perform()
    assert int(slider.get_attribute("value")) < 10
    assert _find(page, "#divider").rect["x"] < stage.rect["x"] + 0.1 * stage.rect["width"]
    slider.send_keys(Keys.END)
    assert slider.get_attribute("value") == "100"
    all_gray = _chroma(stage.screenshot_as_png)
    slider.send_keys(Keys.HOME)
    assert slider.get_attribute("value") == "0"
    all_color = _chroma(stage.screenshot_as_png)
    assert all_gray < 1.5 < all_color, (all_gray, all_color)
    for _ in range(5):
        slider.send_keys(Keys.ARROW_RIGHT)
    assert slider.get_attribute("value") == "5"
    slider.send_keys(Keys.END)
    for _ in range(50):
        slider.send_keys(Keys.ARROW_LEFT)

    # Keyboard: Tab from the slider reaches the download link.
    slider.send_keys(Keys.TAB)
    link = page.switch_to.active_element
    assert link.get_attribute("id") == "download"
    assert link.get_attribute("download") == "astronaut_color.png"
    out = _data_url_image(link.get_attribute("href"))
    assert out.size == (333, 517) and out.mode == "RGB"
    rgb = np.asarray(out).astype(int)
    assert np.abs(rgb[..., 0] - rgb[..., 2]).max() > 0  # colour, not gray
    np.testing.assert_array_equal(np.asarray(out.convert("RGB")), _shown(page))

    # Nothing to change and colorize again for a deterministic model.
    assert not _find(page, "#go").is_displayed()


def _drop(driver, *paths, target="#drop"):
    """Drop files on `target` the way a file manager does: a drop event whose DataTransfer
    holds the files (Selenium cannot drag from outside the browser)."""
    holder = driver.execute_script(
        "const i = document.createElement('input'); i.type = 'file'; i.multiple = true;"
        "i.id = 'drop-source'; i.style.display = 'none'; document.body.append(i); return i;")
    holder.send_keys("\n".join(str(p) for p in paths))
    driver.execute_script("""
      const [holder, target] = arguments;
      const dt = new DataTransfer();
      for (const f of holder.files) dt.items.add(f);
      holder.remove();
      for (const type of ['dragenter', 'dragover', 'drop'])
        target.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: dt}));
    """, holder, _find(driver, target))


def test_drag_and_drop_a_photo(page, page_url, tmp_path):
    photo = _photo(tmp_path, 120, 90, "dropped.png")
    page.get(page_url)
    status = _act(page, lambda: _drop(page, photo))
    assert status.text.startswith("Done: dropped.png, 120\u00d790 px"), status.text
    assert "over" not in _find(page, "#drop").get_attribute("class")
    assert _shown(page).shape == (90, 120, 3)
    assert _find(page, "#download").get_attribute("download") == "dropped_color.png"
    # Dropped beside the box, on the result: taken too (never opened in place of the page).
    second = _photo(tmp_path, 64, 80, "second.jpg")
    status = _act(page, lambda: _drop(page, second, target="#stage"))
    assert status.text.startswith("Done: second.jpg, 64\u00d780"), status.text
    assert page.current_url == page_url


def test_every_rejected_upload_says_why(page, colorizer, tmp_path):
    """In the page: several files, not an image type, empty, over the size limit. From the
    server: not an image file, too many pixels; the message is the server's."""
    photo = _photo(tmp_path, 150, 100)
    text = tmp_path / "notes.txt"
    text.write_text("not a photo")
    fake = tmp_path / "notes.jpg"
    fake.write_text("not a photo either")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    big = tmp_path / "big.bmp"
    Image.fromarray(skdata.astronaut()).resize((200, 120)).save(big)  # 72 KB of BMP
    huge = tmp_path / "huge.png"
    Image.new("L", (400, 300), 128).save(huge)  # small file, 120,000 pixels

    with _Served(colorizer, max_upload_mb=0.05, max_pixels=100_000) as url:
        page.get(url)

        def refused(action, *needles):
            status = _act(page, action)
            assert "error" in status.get_attribute("class"), status.text
            for needle in needles:
                assert needle in status.text, status.text
            assert not _find(page, "#result").is_displayed()
            assert all(i.get_attribute("src") for i in page.find_elements(_by().TAG_NAME, "img"))
            return status.text

        refused(lambda: _drop(page, photo, fake), "2 files were given", "one photo at a time")
        refused(lambda: _drop(page, text), "notes.txt is not an image (text/plain)")
        refused(lambda: _find(page, "#file").send_keys(str(empty)), "empty.png is empty")
        refused(lambda: _find(page, "#file").send_keys(str(big)),
                "big.bmp is 0.069 MiB; the limit is 0.05 MiB")
        refused(lambda: _find(page, "#file").send_keys(str(fake)),
                "Refused:", "not an image file")
        # A good photo, then a refused one: the old result goes (it is not the new photo's).
        assert _upload(page, photo).text.startswith("Done")
        assert _find(page, "#result").is_displayed()
        refused(lambda: _find(page, "#file").send_keys(str(huge)),
                "Refused:", "120,000 pixels; the limit is 100,000")
        _screenshot(page, "refused")


def test_a_sampling_model_shows_its_samples_as_a_gallery(page, colorizer, tmp_path):
    from selenium.webdriver.support.ui import Select

    from test_colorize import NoisyObjective  # the tiny unet plus rng-dependent noise

    sampler = Colorizer(NoisyObjective(colorizer.objective), colorizer.variables,
                        colorizer.config, dict(colorizer.metadata, samples=True,
                                               family="diffusion"))
    with _Served(sampler) as url:
        photo = tmp_path / "camera.png"
        Image.fromarray(skdata.camera()).resize((101, 67)).save(photo)
        page.get(url)
        select = _find(page, "#samples")
        assert select.is_displayed() and select.is_enabled()
        assert [o.text for o in Select(select).options] == ["1", "2", "3"]
        Select(select).select_by_value("3")
        assert _upload(page, photo).text.startswith("Done: camera.png, 101\u00d767 px, 3 samples")
        thumbs = page.find_elements(_by().CSS_SELECTOR, "#gallery button.sample")
        assert len(thumbs) == 3 and all(t.is_displayed() for t in thumbs)
        links = page.find_elements(_by().CSS_SELECTOR, "#gallery a.sample-download")
        assert [a.get_attribute("download") for a in links] == \
            [f"camera_sample{i}_color.png" for i in (1, 2, 3)]
        images = [np.asarray(_data_url_image(a.get_attribute("href"))) for a in links]
        assert images[0].shape == (67, 101, 3)
        assert not np.array_equal(images[0], images[1])
        # The first is compared; a click on the second puts it there and in the download.
        np.testing.assert_array_equal(_shown(page), images[0])
        thumbs[1].click()
        np.testing.assert_array_equal(_shown(page), images[1])
        assert thumbs[1].get_attribute("aria-pressed") == "true"
        assert thumbs[0].get_attribute("aria-pressed") == "false"
        download = _find(page, "#download")
        assert download.get_attribute("download") == "camera_sample2_color.png"
        assert download.text == "Download sample 2"
        # The samples fit the window with the comparison (a smaller stage makes room).
        _in_window(page, "#stage", "#compare", "#download", "#gallery figure:last-child")
        _screenshot(page, "samples")
        # Fewer samples, colorized again: the gallery follows.
        Select(select).select_by_value("2")
        assert _act(page, _find(page, "#go").click).text.endswith("2 samples.")
        assert len(page.find_elements(_by().CSS_SELECTOR, "#gallery button.sample")) == 2


@pytest.mark.slow  # trains a tiny classification model first
def test_a_classification_model_offers_a_temperature(page, page_url, tmp_path_factory, tmp_path):
    """`colorful`: a temperature slider (0.05 to 1) at the model's default, sent with the
    upload; a new value, colorized again, gives a new answer; the unet page has none."""
    from selenium.webdriver.common.keys import Keys

    import test_colorize_temperature as temperature_tests

    path = temperature_tests.colorful_export(tmp_path_factory.getbasetemp()
                                             / "colorjax_colorful")[0]
    with _Served(Colorizer.load(str(path))) as url:
        photo = tmp_path / "gray.png"
        Image.fromarray(skdata.camera()).resize((61, 47)).save(photo)
        page.get(url)
        field = _find(page, "#temperature")
        assert field.is_displayed() and field.is_enabled()
        assert [field.get_attribute(a) for a in ("min", "max", "step")] == ["0.05", "1", "0.01"]
        assert float(field.get_attribute("value")) == 0.38
        assert "low = vivid, 1 = the mean" in _find(page, "#temperature-label").text
        first = _upload(page, photo).text
        assert first.startswith("Done") and "temperature 0.38" in first, first
        vivid = _shown(page)
        # The keyboard moves the slider (a step of 0.01 a key), Enter on the button resends.
        field.send_keys(Keys.HOME)
        assert _find(page, "#temperature-value").text == "0.05"
        for _ in range(15):
            field.send_keys(Keys.ARROW_RIGHT)
        assert _find(page, "#temperature-value").text == "0.20"
        field.send_keys(Keys.END)
        assert _find(page, "#temperature-value").text == "1.00"
        field.send_keys(Keys.TAB)  # to "Colorize again"; Enter presses it
        assert page.switch_to.active_element.get_attribute("id") == "go"
        status = _act(page, lambda: page.switch_to.active_element.send_keys(Keys.ENTER))
        assert "temperature 1.00" in status.text, status.text
        assert not np.array_equal(_shown(page), vivid)
    page.get(page_url)  # the tiny unet: no temperature
    assert not _find(page, "#temperature-label").is_displayed()


def test_a_phone_sized_window(page, page_url, tmp_path):
    """390 x 844 CSS pixels: nothing wider than the screen, the photo fits, controls usable."""
    _viewport(page, *PHONE, mobile=True)
    page.get(page_url)
    assert page.execute_script("return innerWidth") == PHONE[0]
    assert _upload(page, _photo(tmp_path, 640, 480)).text.startswith("Done")
    assert page.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
    for css in ("#stage", "#compare", "#download", "#drop", "#status"):
        r = _find(page, css).rect
        assert r["x"] >= 0 and r["x"] + r["width"] <= PHONE[0], (css, r)
    stage = _find(page, "#stage").rect
    assert stage["width"] > 0.8 * PHONE[0]
    assert abs(stage["height"] / stage["width"] - 480 / 640) < 0.03  # not distorted
    # Text stays readable: no font below 12 CSS px.
    smallest = page.execute_script(
        "return Math.min(...[...document.querySelectorAll('body *')].filter(e => e.offsetParent)"
        ".filter(e => e.childNodes.length && [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()))"
        ".map(e => parseFloat(getComputedStyle(e).fontSize)))")
    assert smallest >= 12, smallest
    _screenshot(page, "phone")


# --- colour hints ------------------------------------------------------------------------

try:
    import colorjax.hints as hints_module
except ImportError:  # before the hint backend
    hints_module = None
# Hint models end to end: Colorizer.colorize(..., hints=) and objectives reading config.model.hints.
HINT_BACKEND = (hints_module is not None
                and "hints" in inspect.signature(Colorizer.colorize).parameters)


class PaintsHints:
    """A stand-in hint model for the page and server (not for the model): the tiny unet's
    colorization with a disc of each hint's colour (rgb, at the photo's own lightness)."""

    RADIUS = 0.12  # of the shorter side
    uses_hints = True

    def __init__(self, base):
        self.base = base

    def __getattr__(self, name):
        return getattr(self.base, name)

    def colorize(self, image, num_samples=1, size=None, *, temperature=None, hints=None):
        out = self.base.colorize(image, num_samples, size, temperature=temperature)
        if not hints:
            return out
        photo = image
        lab = np.asarray(color.rgb_to_lab(np.asarray(out, np.float32)))
        h, w = lab.shape[:2]
        yy, xx = np.mgrid[:h, :w]
        for hint in hints:
            a, b = hints_module.hint_ab(hint, photo.l)
            disc = (xx - hint.x) ** 2 + (yy - hint.y) ** 2 <= (self.RADIUS * min(w, h)) ** 2
            lab[disc, 1], lab[disc, 2] = a, b
        return np.clip(np.asarray(color.lab_to_rgb(lab)), 0.0, 1.0).astype(np.float32)


# On the 240 x 180 astronaut photo: the plain wall between the flag and her head, and right
# of the shuttle (CIELAB L about 70). Both colours exist there at full strength (chroma 67
# and 70); on a near-black pixel (the helmet, L about 4, a point until issue 38) an sRGB
# colour at the photo's L is squeezed to within 7 units of gray, so "moves toward the hint"
# measured 8-bit rounding and the run's chance. Each point is also the centre of one pixel of the
# 32 px hint model (x = 7.5 k + 3.25, y = 5.625 k + 2.3), whose hint is that one pixel
# (`hints.inference_side(32)` = 1): the 5 x 5 px patch measured round it is mostly that
# pixel's colour, not half a neighbour's.
HINT_POINTS = [(48, 25), (221, 19)]
HINT_COLOURS = ["#20a040", "#e07010"]  # green, orange: far from the tiny models' colours


def _ab_at(rgb8, x, y, r=2):
    patch = np.asarray(rgb8[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1], np.float32) / 255.0
    return np.asarray(color.rgb_to_lab(patch))[..., 1:].reshape(-1, 2).mean(0)


def _rgb(hex_colour):
    return np.array(list(bytes.fromhex(hex_colour.lstrip("#"))))


def _set_colour(driver, li, hex_colour):
    """Choose a colour in point `li`'s colour input (the native picker is not scriptable;
    the page sees what a pick sends: input, then change)."""
    field = li.find_element(_by().CSS_SELECTOR, "input.hint-color")
    driver.execute_script("arguments[0].value = arguments[1];"
                          "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));"
                          "arguments[0].dispatchEvent(new Event('change', {bubbles: true}));",
                          field, hex_colour)


def _click_photo(driver, x, y, size):
    """A real click on the photo at its pixel (x, y) (of a photo of `size` = (w, h))."""
    from selenium.webdriver.common.action_chains import ActionChains

    stage = _find(driver, "#after")
    # Wholly in view (it is at most 72vh tall): Selenium's offsets are from the centre of
    # the element's visible part.
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", stage)
    r = stage.rect
    dx = (x + 0.5) / size[0] * r["width"] - r["width"] / 2
    dy = (y + 0.5) / size[1] * r["height"] - r["height"] / 2
    ActionChains(driver).move_to_element_with_offset(stage, int(round(dx)), int(round(dy))) \
        .click().perform()


def _hints_session(page, url, tmp_path, points, colours, check_moves_toward):
    """Upload, click `points` on the photo, give them `colours`; check the output at each
    point moves toward its colour; then move, undo, delete. Returns the final status."""
    w, h = 240, 180
    photo = _photo(tmp_path, w, h, "hinted.jpg")
    page.get(url)
    assert _find(page, "#hints-panel").is_displayed() is False  # until a photo is in
    status = _upload(page, photo).text
    assert status.startswith("Done: hinted.jpg"), status
    assert _find(page, "#hints-panel").is_displayed()
    plain = _shown(page)
    for i, (x, y) in enumerate(points):
        # The result shown now (the earlier hints spread colour across the whole photo).
        current = plain if i == 0 else _shown(page)
        status = _act(page, lambda: _click_photo(page, x, y, (w, h))).text
        assert status.endswith(f"{i + 1} hint{'s' if i else ''}."), status
        items = page.find_elements(_by().CSS_SELECTOR, "#hint-list li")
        assert len(items) == i + 1
        # A new point starts at the model's own colour there (the suggestion).
        suggestion = items[i].find_element(_by().CSS_SELECTOR, "button.suggest")
        got = items[i].find_element(_by().CSS_SELECTOR, "input.hint-color").get_attribute("value")
        assert np.abs(_rgb(got) - current[y, x]).max() <= 2, (got, current[y, x])
        assert suggestion.get_attribute("title") == "the model's colour here: " + got
        status = _act(page, lambda: _set_colour(page, items[i], colours[i])).text
        assert status.endswith(f"{i + 1} hint{'s' if i else ''}."), status
    markers = page.find_elements(_by().CSS_SELECTOR, "#markers .hint")
    assert len(markers) == len(points)
    for (x, y), m in zip(points, markers):  # each marker sits where it was clicked
        r, stage = m.rect, _find(page, "#after").rect
        cx = (r["x"] + r["width"] / 2 - stage["x"]) / stage["width"] * w
        cy = (r["y"] + r["height"] / 2 - stage["y"]) / stage["height"] * h
        assert abs(cx - x - 0.5) < 1.5 and abs(cy - y - 0.5) < 1.5, (cx, cy, x, y)
    assert [li.find_element(_by().CSS_SELECTOR, "button.select").text
            for li in page.find_elements(_by().CSS_SELECTOR, "#hint-list li")] == \
        [f"Point {i + 1} ({x}, {y})" for i, (x, y) in enumerate(points)]
    hinted = _shown(page)
    for (x, y), colour in zip(points, colours):
        lightness = float(np.asarray(color.rgb_to_lab(
            plain[y, x].reshape(1, 1, 3) / 255.0))[0, 0, 0])
        target = np.asarray(hints_module.rgb_to_ab_at(_rgb(colour), lightness))
        # The hint is a colour there, not a near-gray (the point is not too dark or light).
        assert np.hypot(*target) > 40.0, (x, y, lightness, target)
        check_moves_toward(_ab_at(plain, x, y), _ab_at(hinted, x, y), target)
    if SCREENSHOTS:  # all "after", to show the hints' effect
        from selenium.webdriver.common.keys import Keys
        _find(page, "#compare").send_keys(Keys.HOME)
    _screenshot(page, "hints")

    # Keyboard: the focused marker moves with an arrow key; Undo puts it back; Delete
    # removes it; Ctrl+Z brings it back. A drag moves a point; Remove all.
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    def point_labels():
        return [li.find_element(_by().CSS_SELECTOR, "button.select").text
                for li in page.find_elements(_by().CSS_SELECTOR, "#hint-list li")]

    def marker(i):
        return page.find_elements(_by().CSS_SELECTOR, "#markers .hint")[i]

    labels = point_labels()
    marker(0).click()
    assert page.switch_to.active_element.get_attribute("data-i") == "0"
    # Shift+arrow: a tenth of the photo (a plain arrow, a fiftieth, may stay in one pixel
    # of a small model).
    _act(page, lambda: page.switch_to.active_element.send_keys(Keys.SHIFT, Keys.ARROW_RIGHT))
    moved = point_labels()
    x0, y0 = points[0]
    assert moved[0] == f"Point 1 ({x0 + w // 10}, {y0})" and moved[1:] == labels[1:], moved
    assert not np.array_equal(_shown(page), hinted)
    _act(page, _find(page, "#undo").click)
    assert point_labels() == labels
    np.testing.assert_array_equal(_shown(page), hinted)  # the same hints: the same answer
    marker(1).click()
    status = _act(page, lambda: page.switch_to.active_element.send_keys(Keys.DELETE)).text
    assert point_labels() == labels[:1]
    assert status.endswith("1 hint."), status
    _act(page, lambda: ActionChains(page).key_down(Keys.CONTROL).send_keys("z")
         .key_up(Keys.CONTROL).perform())
    assert point_labels() == labels
    np.testing.assert_array_equal(_shown(page), hinted)
    _act(page, lambda: ActionChains(page).click_and_hold(marker(0)).move_by_offset(30, 15)
         .release().perform())
    assert point_labels()[0] != labels[0] and point_labels()[1] == labels[1]
    status = _act(page, _find(page, "#clear").click).text
    assert point_labels() == []
    np.testing.assert_array_equal(_shown(page), plain)
    return status


@pytest.mark.slow
@pytest.mark.skipif(hints_module is None, reason="hint backend not landed (colorjax.hints)")
def test_hints_are_placed_by_clicking_and_sent_with_the_photo(page, colorizer, tmp_path):
    """The page and server with a stand-in hint model (it paints each hint's colour round
    its point): two clicks, two colours, the output there becomes those colours."""
    painter = PaintsHints(colorizer)

    def becomes(plain, hinted, target):  # from far to (8-bit sRGB) near
        assert np.linalg.norm(plain - target) > 25.0, (plain, target)
        assert np.linalg.norm(hinted - target) < 6.0, (plain, hinted, target)

    with _Served(painter) as url:
        assert _find_info(page, url)["hints"] is True
        _hints_session(page, url, tmp_path, HINT_POINTS, HINT_COLOURS,
                       becomes)
        # Without a pointer: Tab to the photo, Enter places a point in its middle.
        from selenium.webdriver.common.keys import Keys
        page.execute_script("document.getElementById('compare').focus()")
        page.switch_to.active_element.send_keys(Keys.SHIFT, Keys.TAB)
        assert page.switch_to.active_element.get_attribute("id") == "stage"
        status = _act(page, lambda: page.switch_to.active_element.send_keys(Keys.ENTER)).text
        assert status.endswith("1 hint."), status
        assert page.switch_to.active_element.get_attribute("aria-label").startswith(
            "point 1 at 120, 90")


def _find_info(page, url):
    page.get(url)
    return page.execute_script("return INFO")


# --- a trained hint model ----------------------------------------------------------------

HINT_SIZE = 32


def hint_export(root, steps=200):
    """A tiny hint unet trained for `steps` steps on one batch whose colours only the
    hints can tell (random 4 x 4 blocks of colour under random lightness, CIELAB L 25-75,
    a seventh of the pixels given as hints): it learns to put a hint's colour where it is
    given. Its colours without hints are the run's chance (it never saw a photo, nor an
    example without hints), so the page test checks only moves toward each hint; at
    HINT_POINTS those are 13-70 Lab units (needed: 2) in every run tried for issue 38
    (seeds 0-6, 150-400 steps, XLA's default LLVM -O2 and the tests' -O0)."""
    import jax
    import jax.numpy as jnp

    from colorjax.training import export
    from colorjax.objectives import make_objective
    from conftest import STEADY_LR, tiny_config

    # The sparse planes alone (no hint_propagation): this batch teaches a local rule ("the
    # hint's colour where it is given") in a few steps, which is what the page test needs;
    # the spread planes are measured in docs/results.md.
    config = tiny_config("unet", size=HINT_SIZE, features=(8, 16),
                         **{"model.hints": True, "model.hint_propagation": False, **STEADY_LR,
                            "optimizer.learning_rate": 1e-2})
    obj = make_objective(config)
    rng = np.random.default_rng(0)
    n, s, block = 8, HINT_SIZE, 4

    def blocks(*shape):
        return np.kron(rng.uniform(-1, 1, (n, s // block, s // block) + shape),
                       np.ones((1, block, block) + (1,) * len(shape))).astype(np.float32)

    l_plane = 0.5 * blocks(1)
    ab = 0.5 * blocks(2)
    mask = (rng.random((n, s, s, 1)) < 1 / 7).astype(np.float32)
    batch = {"l": jnp.asarray(l_plane), "ab": jnp.asarray(ab),
             "hints": jnp.asarray(np.concatenate([ab * mask, mask], -1))}
    state = obj.init(jax.random.key(0), batch, steps)
    step = jax.jit(obj.train_step)
    for k in range(steps):
        state, _ = step(state, batch, jax.random.key(k))
    path = export.write_export(str(pathlib.Path(root) / "hint_export"),
                               obj.inference_variables(state), config, step=steps)
    return pathlib.Path(path)


@pytest.mark.slow  # trains a tiny hint model first
@pytest.mark.skipif(not HINT_BACKEND, reason="hint backend not landed")
def test_a_trained_hint_model_follows_two_clicked_hints(page, tmp_path_factory, tmp_path):
    """A real hint export: two clicked hints of distinct colours; the output's colour near
    each point moves toward its hint."""
    model = Colorizer.load(str(hint_export(tmp_path_factory.mktemp("hint_model"))))
    assert model.uses_hints

    def moves_toward(plain, hinted, target):
        assert np.linalg.norm(hinted - target) < np.linalg.norm(plain - target) - 2.0, \
            (plain, hinted, target)

    with _Served(model) as url:
        _hints_session(page, url, tmp_path, HINT_POINTS, HINT_COLOURS,
                       moves_toward)
        # Exported without an evaluation table: the page says so instead of figures.
        assert _find(page, "#evaluation").text.startswith(
            "This export holds no evaluation figures"), _find(page, "#evaluation").text


def test_a_model_without_hints_shows_no_hint_controls(page, page_url, tmp_path):
    page.get(page_url)
    assert page.execute_script("return INFO.hints") is False
    _upload(page, _photo(tmp_path, 80, 60))
    assert not _find(page, "#hints-panel").is_displayed()
    _click_photo(page, 40, 30, (80, 60))
    assert page.execute_script("return S.timer") is None  # a click on the photo places nothing
    assert page.find_elements(_by().CSS_SELECTOR, "#markers .hint") == []


def test_an_ordinary_visit_logs_only_its_requests(page, colorizer, capfd):
    """A real browser's visit (the page, its files, an example colorized), then idle past
    --timeout: the browser's keep-alive (and any spare) connections are closed without a
    word; the log holds one line per request, all answered 200."""
    import re

    srv, url = _serve(colorizer, quiet=False, timeout=1.0)
    try:
        capfd.readouterr()
        page.get(url)
        _examples_loaded(page)
        _act(page, _find(page, '.example[data-name="coffee"]').click)
        time.sleep(2.5)  # past --timeout: the server closes the idle connections
        log = capfd.readouterr().err.splitlines()
    finally:
        srv.shutdown()
        srv.server_close()
    answered = [line for line in log if re.search(r'"(GET|POST) \S+ HTTP/1.1" 200 -$', line)]
    assert answered == log, "\n".join(log)
    for request in ("GET / ", "GET /page.js ", "GET /examples/coffee.jpg ", "POST /api/colorize "):
        assert any(request in line for line in log), (request, log)


def test_a_clip_is_colorized_and_played_in_the_page(page, page_url, tmp_path):
    """A short clip through the same chooser: the progress line, then a <video> that plays
    the colorized MP4 (the browser reads its metadata: a positive duration), a download link;
    the "stabilise colours" checkbox is sent (Colorize again with it off)."""
    from colorjax.media import video_io

    y, x = np.mgrid[0:48, 0:64]
    frames = [np.stack([(x * 4 + i * 8) % 256, (y * 5) % 256, (x + y + i) % 256], -1)
              .astype(np.uint8) for i in range(8)]
    path = tmp_path / "clip.mp4"
    video_io.write_video(str(path), frames, fps=24, audio_seconds=0.4)
    page.get(page_url)
    assert "Clips (MP4" in _find(page, "#limits").text
    box = _find(page, "#stabilize")
    assert not box.is_displayed() and box.is_selected()  # a clip's option: not for photos
    _watch_busy(page)
    status = _upload(page, path)
    assert box.is_displayed() and box.is_selected()  # a clip is chosen: its option shows
    assert status.text.startswith("Done: clip.mp4, 64\u00d748 px, 8 frames, 0.33 s, colours "
                                  "stabilised"), status.text
    seen = page.execute_script("return window.busySeen")
    assert any(t.startswith("Colorizing the clip clip.mp4") for t in seen), seen
    video = _find(page, "#clip")
    assert video.get_attribute("src").startswith("blob:")
    state = page.execute_script("const v = arguments[0]; return [v.readyState, v.duration, "
                                "v.videoWidth, v.videoHeight]", video)
    assert state[0] >= 1 and state[1] > 0 and state[2:] == [64, 48], state
    link = _find(page, "#clip-download")
    assert link.get_attribute("download") == "clip_color.mp4"
    assert link.get_attribute("href") == video.get_attribute("src")
    assert not _find(page, "#result").is_displayed()  # no photo result, no broken images
    assert page.find_elements(_by().CSS_SELECTOR, "img:not(.example img)") == []
    _in_window(page, "#clip", "#clip-download")
    if SCREENSHOTS:  # a frame in the player, not its loading spinner
        from selenium.webdriver.support.ui import WebDriverWait
        WebDriverWait(page, 30).until(lambda d: d.execute_script(
            "return arguments[0].readyState >= 3", video))
        time.sleep(1.5)  # the player's controls drop their loading spinner a moment later
    _screenshot(page, "clip")
    box.click()
    status = _act(page, lambda: _find(page, "#go").click())
    assert "colours not stabilised" in status.text, status.text
    assert page.execute_script("return arguments[0].readyState", _find(page, "#clip")) >= 1
    # A photo next: the clip's option goes.
    status = _upload(page, _photo(tmp_path, 64, 48))
    assert status.text.startswith("Done: astronaut.jpg"), status.text
    assert not _find(page, "#stabilize-label").is_displayed()
    assert not _find(page, "#clip-result").is_displayed()
