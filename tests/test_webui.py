"""The web UI in headless Debian chromium (selenium + chromium-driver; scripts/install_browser.sh
installs them): type a message, watch the answer stream in, reload, regenerate, edit and resend,
see a tool call; the markdown renderer escapes everything. Saves test-artifacts/webui.png."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from serve_model import STORY, LiveServer, make_chat_run

webdriver = pytest.importorskip("selenium.webdriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip("chromium and chromium-driver are not installed (run scripts/install_browser.sh)",
                allow_module_level=True)

By = pytest.importorskip("selenium.webdriver.common.by").By
Keys = pytest.importorskip("selenium.webdriver.common.keys").Keys
WebDriverWait = pytest.importorskip("selenium.webdriver.support.ui").WebDriverWait
StaleElement = pytest.importorskip("selenium.common.exceptions").StaleElementReferenceException

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,900"]

# records every text the answer showed, so the test can tell streaming from a single update
WATCH = """
window.__seen = [];
new MutationObserver(() => {
  const m = document.querySelectorAll('.msg.assistant .body');
  if (m.length) window.__seen.push(m[m.length - 1].textContent.length);
}).observe(document.getElementById('messages'), {childList: true, subtree: true, characterData: true});
"""


@pytest.fixture(scope="module")
def ui_server(prepared_run, tmp_path_factory):
    s = LiveServer(make_chat_run(prepared_run, tmp_path_factory.mktemp("webui") / "run"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="picochat-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def wait(driver, condition, timeout=30):
    """Polls `condition`; an element the page re-rendered between find and read is polled again."""
    return WebDriverWait(driver, timeout, poll_frequency=0.05,
                         ignored_exceptions=(StaleElement,)).until(lambda d: condition(d))


def last_answer(driver) -> str:
    bodies = driver.find_elements(By.CSS_SELECTOR, ".msg.assistant .body")
    return bodies[-1].text if bodies else ""


def idle(driver) -> bool:
    return not driver.find_elements(By.CSS_SELECTOR, ".msg.streaming") and \
        driver.find_element(By.ID, "stop").get_attribute("hidden") is not None


def test_chat_in_the_browser(ui_server, browser):
    d = browser
    d.get(ui_server.url + "/")
    settings = {"system": "", "temperature": 0, "top_p": 1, "max_tokens": 200, "seed": "", "api_key": ""}
    d.execute_script("localStorage.setItem('picochat.v1', arguments[0])",
                     json.dumps({"settings": settings, "conversations": [], "current": None}))
    d.refresh()
    wait(d, lambda d: d.find_element(By.ID, "model-name").text)      # the page reached /v1/models
    d.execute_script(WATCH)

    box = d.find_element(By.ID, "input")
    box.send_keys("Tell me a story.")
    box.send_keys(Keys.ENTER)
    wait(d, lambda d: idle(d) and last_answer(d))
    assert last_answer(d) == STORY
    seen = d.execute_script("return window.__seen")
    assert any(0 < n < len(STORY) for n in seen), seen        # partial answers were shown: it streamed
    assert d.find_element(By.CSS_SELECTOR, ".msg.user .body").text == "Tell me a story."
    assert "Tell me a story." in d.find_element(By.ID, "conversations").text

    # kept across a reload
    d.refresh()
    wait(d, lambda d: last_answer(d) == STORY)

    # regenerate: the answer is produced again (greedy: the same)
    d.find_element(By.XPATH, "//div[contains(@class,'assistant')]//button[text()='Regenerate']").click()
    wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, ".msg.streaming") or last_answer(d) != STORY, 10)
    wait(d, lambda d: idle(d) and last_answer(d) == STORY)
    assert len(d.find_elements(By.CSS_SELECTOR, ".msg")) == 2

    # edit and resend: a question the model answers with the calculator, shown collapsed
    d.find_element(By.XPATH, "//div[contains(@class,'user')]//button[text()='Edit']").click()
    edit = d.find_element(By.CSS_SELECTOR, "textarea.edit")
    edit.clear()
    edit.send_keys("What is 123*456?")
    d.find_element(By.XPATH, "//div[contains(@class,'user')]//button[text()='Send']").click()
    wait(d, lambda d: idle(d) and last_answer(d) == "123*456 = 56088.")
    tool = d.find_element(By.CSS_SELECTOR, ".msg.assistant details")
    assert "calculator" in tool.text and tool.get_attribute("open") is None      # collapsed
    tool.find_element(By.TAG_NAME, "summary").click()
    assert "56088" in tool.text
    assert len(d.find_elements(By.CSS_SELECTOR, ".msg")) == 2

    ARTIFACTS.mkdir(exist_ok=True)
    d.find_element(By.ID, "settings").find_element(By.TAG_NAME, "summary").click()
    time.sleep(0.2)
    d.save_screenshot(str(ARTIFACTS / "webui.png"))
    assert (ARTIFACTS / "webui.png").stat().st_size > 10_000


def test_markdown_renders_and_escapes(ui_server, browser):
    d = browser
    d.get(ui_server.url + "/")
    html = d.execute_script("return renderMarkdown(arguments[0])",
                            "# Title\n**bold** and *it* and `x<y`\n\n```python\nif a < b:\n    print('<b>')\n```\n"
                            "- one\n- two\n\n[link](https://example.org) [bad](javascript:alert(1))\n"
                            "<img src=x onerror=alert(1)><script>alert(1)</script>")
    assert "<h1>Title</h1>" in html and "<strong>bold</strong>" in html and "<em>it</em>" in html
    assert "<code>x&lt;y</code>" in html
    assert '<pre data-lang="python"><code>if a &lt; b:\n    print(&#39;&lt;b&gt;&#39;)</code></pre>' in html
    assert "<ul><li>one</li><li>two</li></ul>" in html
    assert '<a href="https://example.org"' in html and 'href="javascript' not in html
    assert "<img" not in html and "<script" not in html and "&lt;script&gt;" in html


# --- feedback and the labeling page ---------------------------------------------------------------
def test_thumbs_and_which_was_better_reach_the_store(ui_server, browser):
    from picochat.prefs.store import Store

    d = browser
    d.get(ui_server.url + "/")
    settings = {"system": "", "temperature": 0, "top_p": 1, "max_tokens": 200, "seed": "", "api_key": ""}
    d.execute_script("localStorage.setItem('picochat.v1', arguments[0])",
                     json.dumps({"settings": settings, "conversations": [], "current": None}))
    d.refresh()
    wait(d, lambda d: d.find_element(By.ID, "model-name").text)
    box = d.find_element(By.ID, "input")
    box.send_keys("Tell me a story.")
    box.send_keys(Keys.ENTER)
    wait(d, lambda d: idle(d) and last_answer(d) == STORY)
    d.find_element(By.CSS_SELECTOR, ".msg.assistant .rate-down").click()
    wait(d, lambda d: "sent" in d.find_element(By.CSS_SELECTOR, ".msg.assistant .rate-down").text)
    # the greedy model would regenerate the same story: make the answer on screen an older one
    d.execute_script("const c = current(); c.messages[c.messages.length - 1].content = 'An older answer.';"
                     "save(); renderMessages();")
    d.find_element(By.XPATH, "//div[contains(@class,'assistant')]//button[text()='Regenerate']").click()
    wait(d, lambda d: idle(d) and d.find_elements(By.CSS_SELECTOR, ".compare"))
    d.find_element(By.XPATH, "//div[contains(@class,'compare')]//button[text()='The previous one']").click()
    wait(d, lambda d: not d.find_elements(By.CSS_SELECTOR, ".compare"))
    contents = Store(ui_server.run / "prefs").read()
    assert [(r.rating, r.answer[-1]["content"]) for r in contents.ratings] == [("down", STORY)]
    [label] = [lab for lab in contents.labels if lab.source == "feedback"]
    pair = contents.pairs[label.pair]
    assert label.label == "b" and pair.a[-1]["content"] == STORY and pair.b[-1]["content"] == "An older answer."


@pytest.fixture(scope="module")
def label_page(ui_server):
    from picochat.prefs import sources
    from picochat.prefs.store import Store

    store = Store(ui_server.run / "prefs")
    for rule in ("identity", "refusal", "unknowable"):
        prompt, chosen, rejected = sources.RULE_MAKERS[rule](__import__("random").Random(rule), "train")
        store.add_pair(prompt, chosen, rejected, "test-waiting")
    s = LiveServer(ui_server.run, command="label")
    yield s, store
    s.stop()


def test_labeling_page_labels_undoes_and_stores(label_page, browser):
    server, store = label_page
    waiting = [p for p in store.read().pairs.values() if p.source == "test-waiting"]
    d = browser
    d.get(server.url + "/")
    name = d.find_element(By.ID, "labeler")
    wait(d, lambda d: "labeling" in d.find_element(By.ID, "instructions").text.lower() or
         d.find_element(By.ID, "version").text)
    name.clear()
    name.send_keys("tester")
    name.send_keys(Keys.TAB)                                    # change: the first pair loads
    first = d.find_element(By.CSS_SELECTOR, "#answer-a .text")
    wait(d, lambda d: first.text)
    d.find_element(By.TAG_NAME, "body").send_keys("1")          # A is better, by key
    wait(d, lambda d: "you: 1 labels" in d.find_element(By.ID, "progress").text)
    second_a = d.find_element(By.CSS_SELECTOR, "#answer-a .text").text
    d.find_element(By.XPATH, "//button[@data-label='b']").click()
    wait(d, lambda d: "you: 2 labels" in d.find_element(By.ID, "progress").text)
    d.find_element(By.TAG_NAME, "body").send_keys("u")          # undo: the second pair comes back
    wait(d, lambda d: "you: 1 labels" in d.find_element(By.ID, "progress").text)
    assert d.find_element(By.CSS_SELECTOR, "#answer-a .text").text == second_a
    d.find_element(By.ID, "better").send_keys("I'm picochat, and I can't help with that.")
    d.find_element(By.XPATH, "//button[@data-label='both_bad']").click()
    wait(d, lambda d: "you: 2 labels" in d.find_element(By.ID, "progress").text)
    mine = [lab for lab in store.read().labels if lab.labeler == "tester"]
    assert [(lab.pair, lab.label) for lab in mine] == [(waiting[0].id, "a"), (waiting[1].id, "both_bad")]
    assert mine[0].source == "human" and mine[0].instructions.startswith("labeling.md@")
    assert mine[1].better[-1]["content"] == "I'm picochat, and I can't help with that."
    assert any(m[-1]["content"].startswith("I'm picochat, and") for m in store.written_answers())
    ARTIFACTS.mkdir(exist_ok=True)
    d.save_screenshot(str(ARTIFACTS / "label.png"))
