"""JupyterLab in a headless Chromium, for the browser tests: what a student sees, not what the kernel holds.

    lab = JupyterLab(root, state, env={"MINIPEFT_QUICK": "1"})  # this environment's JupyterLab: a free port, a
    lab.start()                                                 #   token, its own Jupyter folders under state/
    page = Page(lab, screenshots)                               # Chromium through chromedriver
    page.load(); page.open("run/06_adapter_tuning.ipynb"); page.run_all(); page.wait_until_run(300)
    page.outputs(i); page.is_dirty(); page.screenshot("06-after-run-all")
    page.close(); lab.stop()

JupyterLab runs as a child process with its own JUPYTER_DATA_DIR (kernelspecs, the trust database),
JUPYTER_CONFIG_DIR, settings and workspaces, so the tests neither read nor change the user's Jupyter.
"""
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--no-first-run", "--disable-quic", "--window-size=1400,1000"]


def missing_browser() -> str:
    """Why the browser tests cannot run here ('' when they can): selenium, Chromium and chromedriver."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if not CHROMIUM or not CHROMEDRIVER:
        return "Chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)"
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    """This environment's JupyterLab serving `root`, on a free local port with a random token."""

    def __init__(self, root: Path, state: Path, env: dict | None = None):
        self.root, self.state, self.port, self.token = Path(root), Path(state), free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.state / "jupyterlab.log"
        self.env = {**os.environ, "JUPYTER_DATA_DIR": str(self.state / "data"),
                    "JUPYTER_CONFIG_DIR": str(self.state / "config"), "JUPYTER_RUNTIME_DIR": str(self.state / "run"),
                    "JUPYTER_PREFER_ENV_PATH": "0",  # our data folder (its kernelspec) before the environment's
                    **(env or {})}
        self.process = None

    def jupyter(self, *args) -> subprocess.CompletedProcess:
        """Run a jupyter command (e.g. "trust", paths...) with this server's data and config folders."""
        return subprocess.run([sys.executable, "-m", "jupyter", *args], env=self.env, capture_output=True, text=True,
                              check=True)

    def start(self, timeout=90) -> None:
        args = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={self.port}", "--ServerApp.ip=127.0.0.1",
                f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
                "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
                f"--LabApp.user_settings_dir={self.state / 'settings'}",
                f"--LabApp.workspaces_dir={self.state / 'workspaces'}"]
        if os.getuid() == 0:
            args.append("--allow-root")
        self.state.mkdir(parents=True, exist_ok=True)
        self.log_file = open(self.log, "w")
        self.process = subprocess.Popen(args, env=self.env, stdout=self.log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2)
                return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"JupyterLab did not answer within {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """Shut the server (and its kernels) down."""
        if self.process and self.process.poll() is None:
            self.process.terminate()  # the server shuts its kernels down on SIGTERM
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.process:
            self.log_file.close()


class Page:
    """One Chromium tab on a JupyterLab: open notebooks, run them, read cells, move sliders, take screenshots."""

    def __init__(self, lab: JupyterLab, screenshots: Path):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS + [f"--user-data-dir={lab.state / 'chromium'}"]:
            options.add_argument(flag)
        self.lab, self.screenshots = lab, Path(screenshots)
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_script_timeout(60)

    def close(self) -> None:
        self.driver.quit()

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def wait(self, condition, timeout=60, what="a condition", poll=0.25):
        """Poll `condition()` until it is truthy; its value, or TimeoutError saying `what` never happened."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = condition()
            except Exception:  # the page is still changing under us (stale elements, app not loaded yet)
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                self.screenshot(f"timeout-{what[:40].replace(' ', '-')}")
                raise TimeoutError(f"waited {timeout} s for {what}")
            time.sleep(poll)

    def load(self, timeout=90) -> None:
        """Load JupyterLab (a fresh workspace) and wait until the app is up."""
        self.driver.get(f"{self.lab.url}/lab?reset&token={self.lab.token}")
        self.wait(lambda: self.js("return !!(window.jupyterapp && window.jupyterapp.serviceManager"
                                  " && document.querySelector('#jp-main-dock-panel'))"), timeout, "JupyterLab to load")

    def open(self, path: str, timeout=90) -> None:
        """Open notebook `path` (relative to the server's root) as a student would (File > Open), make it the
        current tab, and wait until its kernel is idle."""
        self.command("docmanager:open", {"path": path})
        self.activate(path)
        self.wait(lambda: self.js("return window.jupyterapp.shell.currentWidget.context.isReady"), timeout,
                  f"{path} to open")
        self.wait(lambda: self.kernel_status() == "idle", timeout, f"the kernel of {path} to start")

    def activate(self, path: str) -> None:
        """Make the open notebook `path` the current tab."""
        found = self.js("for (const w of window.jupyterapp.shell.widgets('main')) {"
                        "  if (w.context && w.context.path === arguments[0]) {"
                        "    window.jupyterapp.shell.activateById(w.id); return true; } }"
                        "return false;", path)
        assert found, f"{path} is not open"
        self.wait(lambda: self.js("return window.jupyterapp.shell.currentWidget.context.path") == path, 10,
                  f"{path} to come to the front")

    def command(self, name: str, args: dict | None = None):
        """Run a JupyterLab command (what a menu entry or a shortcut runs), e.g. notebook:run-all-cells."""
        result = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "window.jupyterapp.commands.execute(arguments[0], arguments[1] || {})"
            ".then(() => done(true), e => done(String(e)));", name, args)
        if result is not True:
            raise RuntimeError(f"JupyterLab command {name} failed: {result}")

    def kernel_status(self) -> str:
        """The current notebook's kernel: idle, busy, starting... (what its toolbar's indicator shows)."""
        return self.js("const s = window.jupyterapp.shell.currentWidget.sessionContext;"
                       "return s && s.session && s.session.kernel ? s.session.kernel.status : null;")

    def run_all(self) -> None:
        """Run > Run All Cells, on the current notebook."""
        self.command("notebook:run-all-cells")

    def wait_until_run(self, timeout) -> None:
        """Wait until the current notebook has no cell queued or running and its kernel has stayed idle a moment."""
        quiet = []
        def settled():
            quiet.append(not self.running())
            return len(quiet) >= 3 and all(quiet[-3:])
        self.wait(settled, timeout, "Run All to finish", poll=1)

    def running(self) -> bool:
        """Whether a cell of the current notebook is queued or running ([*]), or its kernel is busy."""
        return self.js("const nb = window.jupyterapp.shell.currentWidget.content;"
                       "return nb.widgets.some(c => c.model.type === 'code' && (c.model.executionState === 'running'"
                       " || (c.promptNode && c.promptNode.textContent.includes('*'))));") \
            or self.kernel_status() != "idle"

    def errors(self) -> list[int]:
        """The cells of the current notebook whose output holds an error."""
        return self.js("const nb = window.jupyterapp.shell.currentWidget.content; const found = [];"
                       "nb.widgets.forEach((c, i) => { if (c.model.type === 'code') {"
                       "  for (let k = 0; k < c.model.outputs.length; k++) {"
                       "    if (c.model.outputs.get(k).type === 'error') { found.push(i); break; } } } });"
                       "return found;")

    def cell_count(self) -> int:
        return self.js("return window.jupyterapp.shell.currentWidget.content.widgets.length")

    def cell_source(self, index: int) -> str:
        return self.js("return window.jupyterapp.shell.currentWidget.content.widgets[arguments[0]]"
                       ".model.sharedModel.getSource()", index)

    def show_cell(self, index: int):
        """Scroll cell `index` into view (the notebook is windowed: cells off screen are not in the DOM) and
        return its DOM node."""
        self.js("const nb = window.jupyterapp.shell.currentWidget.content;"
                "nb.activeCellIndex = arguments[0]; nb.scrollToItem(arguments[0], 'start');", index)
        script = ("const c = window.jupyterapp.shell.currentWidget.content.widgets[arguments[0]];"
                  "return c.node.isConnected && c.node.offsetHeight > 0 ? c.node : null;")
        return self.wait(lambda: self.js(script, index), 20, f"cell {index} to render")

    def screenshot(self, name: str, node=None) -> Path:
        """Save what the browser shows as <screenshots>/<name>.png, with `node` (an output area) centred if given."""
        if node is not None:
            self.js("arguments[0].scrollIntoView({block: 'center'})", node)
            time.sleep(0.3)
        self.screenshots.mkdir(parents=True, exist_ok=True)
        path = self.screenshots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def is_dirty(self) -> bool:
        """Whether the notebook's tab says it has unsaved changes (the dot on the tab)."""
        return self.js("return window.jupyterapp.shell.currentWidget.context.model.dirty")

    def outputs(self, index: int):
        """The DOM node of cell `index`'s output area (scrolled into view)."""
        return self.js("return arguments[0].querySelector('.jp-OutputArea')", self.show_cell(index))
