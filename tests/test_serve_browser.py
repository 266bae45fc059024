"""The upload page in a real headless browser (Debian's chromium + chromedriver, Selenium):
upload a real photo, get a colorized image of the same size, download it.

CI installs them (`.ci/run`) and sets COLORJAX_REQUIRE_BROWSER=1, so there a missing browser
fails the test; elsewhere it skips and says what is missing.
"""

import base64
import io
import os
import shutil
import threading

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from colorjax.colorize import Colorizer
from colorjax.serve import make_server

import test_export  # the shared tiny export (tests/ is on sys.path under pytest)

CHROMIUM = os.environ.get("COLORJAX_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("COLORJAX_CHROMEDRIVER", shutil.which("chromedriver")
                              or "/usr/bin/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]


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


def _serve(colorizer):
    srv = make_server(colorizer, "127.0.0.1", 0, quiet=True, max_samples=3)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    host, port = srv.server_address[:2]
    return srv, f"http://{host}:{port}/"


@pytest.fixture(scope="module")
def colorizer(tmp_path_factory):
    path = test_export.tiny_export(tmp_path_factory.getbasetemp() / "colorjax_export")[0]
    return Colorizer.load(str(path))


@pytest.fixture(scope="module")
def page_url(colorizer):
    srv, url = _serve(colorizer)
    yield url
    srv.shutdown()
    srv.server_close()


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
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    # Driver and browser paths given: Selenium Manager (which would go online) is not used.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait_status(driver, timeout=120):
    """The page's status line once a request has finished (success or error)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: d.find_element(By.ID, "status").text.startswith(("Done", "The ", "Choose"))
        or "error" in d.find_element(By.ID, "status").get_attribute("class"))
    return driver.find_element(By.ID, "status")


def test_upload_a_photo_and_download_the_colorized_one(browser, page_url, tmp_path):
    from selenium.webdriver.common.by import By

    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(skdata.astronaut()).resize((333, 517), Image.BILINEAR).save(photo, quality=90)
    browser.get(page_url)
    assert "unet" in browser.title
    # A deterministic model: no samples selector.
    assert not browser.find_element(By.ID, "samples-label").is_displayed()

    browser.find_element(By.ID, "file").send_keys(str(photo))
    browser.find_element(By.ID, "go").click()
    status = _wait_status(browser)
    assert status.text.startswith("Done"), status.text

    img = browser.find_element(By.CSS_SELECTOR, "img.color")
    browser.execute_script("return arguments[0].decode()", img)  # wait until it is decoded
    size = browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]",
                                  img)
    assert size == [333, 517]
    gray = browser.find_element(By.ID, "gray")
    assert browser.execute_script("return arguments[0].naturalWidth", gray) == 333
    assert gray.is_displayed()
    assert img.is_displayed()

    link = browser.find_element(By.CSS_SELECTOR, "a.download")
    assert link.get_attribute("download") == "astronaut_color.png"
    png = base64.b64decode(link.get_attribute("href").split(",", 1)[1])
    out = Image.open(io.BytesIO(png))
    assert out.size == (333, 517)
    assert out.mode == "RGB"
    rgb = np.asarray(out).astype(int)
    assert np.abs(rgb[..., 0] - rgb[..., 2]).max() > 0  # colour, not gray


def test_a_bad_file_shows_the_servers_message(browser, page_url, tmp_path):
    from selenium.webdriver.common.by import By

    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    browser.get(page_url)
    browser.find_element(By.ID, "file").send_keys(str(bad))
    browser.find_element(By.ID, "go").click()
    status = _wait_status(browser)
    assert "error" in status.get_attribute("class")
    assert "not an image file" in status.text


def test_a_sampling_model_offers_and_returns_several_samples(browser, colorizer, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from test_colorize import NoisyObjective  # the tiny unet plus rng-dependent noise

    sampler = Colorizer(NoisyObjective(colorizer.objective), colorizer.variables,
                        colorizer.config, dict(colorizer.metadata, samples=True,
                                               family="diffusion"))
    srv, url = _serve(sampler)
    try:
        photo = tmp_path / "gray.png"
        Image.fromarray(skdata.camera()).resize((101, 67)).save(photo)
        browser.get(url)
        select = browser.find_element(By.ID, "samples")
        assert select.is_displayed()
        assert select.is_enabled()
        assert [o.text for o in Select(select).options] == ["1", "2", "3"]
        Select(select).select_by_value("2")
        browser.find_element(By.ID, "file").send_keys(str(photo))
        browser.find_element(By.ID, "go").click()
        assert _wait_status(browser).text.startswith("Done")
        links = browser.find_elements(By.CSS_SELECTOR, "a.download")
        assert [a.get_attribute("download") for a in links] == \
            ["gray_sample1_color.png", "gray_sample2_color.png"]
        images = [np.asarray(Image.open(io.BytesIO(base64.b64decode(
            a.get_attribute("href").split(",", 1)[1])))) for a in links]
        assert images[0].shape == (67, 101, 3)
        assert not np.array_equal(images[0], images[1])
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_classification_model_offers_a_temperature(browser, page_url, tmp_path_factory,
                                                      tmp_path):
    """`colorful`: a temperature slider (0.05 to 1) at the model's default, sent with the
    upload; the unet page has none."""
    from selenium.webdriver.common.by import By

    import test_colorize_temperature as temperature_tests

    path = temperature_tests.colorful_export(tmp_path_factory.getbasetemp()
                                             / "colorjax_colorful")[0]
    srv, url = _serve(Colorizer.load(str(path)))
    try:
        photo = tmp_path / "gray.png"
        Image.fromarray(skdata.camera()).resize((61, 47)).save(photo)
        browser.get(url)
        field = browser.find_element(By.ID, "temperature")
        assert field.is_displayed() and field.is_enabled()
        assert [field.get_attribute(a) for a in ("min", "max", "step")] == ["0.05", "1", "0.01"]
        assert float(field.get_attribute("value")) == 0.38
        assert "low = vivid, 1 = the mean" in browser.find_element(
            By.ID, "temperature-label").text
        browser.execute_script("arguments[0].value = '0.2';"
                               "arguments[0].dispatchEvent(new Event('input'))", field)
        assert browser.find_element(By.ID, "temperature-value").text == "0.20"
        browser.find_element(By.ID, "file").send_keys(str(photo))
        browser.find_element(By.ID, "go").click()
        status = _wait_status(browser)
        assert status.text.startswith("Done") and "temperature 0.20" in status.text, status.text
    finally:
        srv.shutdown()
        srv.server_close()
    browser.get(page_url)  # the tiny unet: no temperature
    assert not browser.find_element(By.ID, "temperature-label").is_displayed()
