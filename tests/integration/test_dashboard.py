"""The web dashboard in a real browser (headless Chromium driven by Selenium).

A real broker (--http) and agent daemon with the scripted model server. The
browser opens the address `cadre dashboard` prints and checks what a team lead
would: the agent list updates while a sub-agent streams, a plan approved from
the page runs and its steps turn ✓; and a request without the token gets 401.
Screenshots of each page go to $CADRE_SCREENSHOTS (default: a temporary
directory); `CADRE_SCREENSHOTS=docs meson test -C build test_dashboard`
refreshes the README's.

Selenium and Chromium are Debian's (python3-selenium, chromium,
chromium-driver: scripts/install-deps --test), so this file runs under
/usr/bin/python3 whatever python started it.
"""
import json
import os
import socket
import sys
import unittest
import urllib.error
import urllib.request

if __name__ == "__main__" and sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
    try:
        import selenium  # noqa: F401
    except ImportError:
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, SOURCE_ROOT, wait_until  # noqa: E402
from test_workflow import PASS, plan_text  # noqa: E402

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


def browser():
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        opts.add_argument(a)
    opts.binary_location = "/usr/bin/chromium"
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


class Dashboard(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(nodes=(("n1", 4),), broker_args=("--http", "127.0.0.1:0"))
        cls.base, cls.token = cls.c.http()
        r = cls.c.cadre("dashboard", check=True)
        cls.link = r.stdout.strip()
        cls.shots = os.environ.get("CADRE_SCREENSHOTS") or os.path.join(cls.c.tmp, "shots")
        if not os.path.isabs(cls.shots):
            cls.shots = os.path.join(SOURCE_ROOT, cls.shots)
        os.makedirs(cls.shots, exist_ok=True)
        cls.b = browser()
        cls.b.set_page_load_timeout(30)

    @classmethod
    def tearDownClass(cls):
        cls.b.quit()
        cls.c.close()

    def shot(self, page):
        self.b.save_screenshot(os.path.join(self.shots, f"dashboard-{page}.png"))

    def wait(self, fn, what, timeout=30):
        return wait_until(fn, timeout=timeout, what=what, interval=0.1)

    def css(self, sel):
        return self.b.find_elements(By.CSS_SELECTOR, sel)

    def texts(self, sel, attr=None):
        """The text (or an attribute) of every element sel matches, read at once: pages re-render live."""
        return self.b.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map(e => arguments[1] ? e.getAttribute(arguments[1])"
            " : e.textContent)", sel, attr)

    def click(self, sel):
        """Clicks the element sel matches now (found and clicked at once: pages re-render live)."""
        return self.b.execute_script("const e = document.querySelector(arguments[0]); if (e) e.click(); return !!e", sel)

    def open(self, page):
        self.b.execute_script(f"location.hash = '{page}'")
        self.wait(lambda: self.css(f"#page-{page}.on"), f"the {page} page")
        self.wait(lambda: self.css("#live.on"), "the live event stream")

    def test_1_the_token_is_needed(self):
        self.assertTrue(self.link.startswith(self.base + "/?token="), self.link)
        for path in ("/", "/api/agents", "/api/events", "/metrics", "/app.js"):
            with self.assertRaises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(self.base + path, timeout=10)
            self.assertEqual(e.exception.code, 401, path)
        self.b.get(self.base + "/")
        self.assertIn("401", self.b.find_element(By.TAG_NAME, "body").text)
        # The page may reach nothing but the broker.
        req = urllib.request.Request(self.base + "/", headers={"Authorization": "Bearer " + self.token})
        with urllib.request.urlopen(req, timeout=10) as r:
            self.assertIn("default-src 'self'", r.headers["Content-Security-Policy"])
            self.assertIn(b"/app.js", r.read())
        # With it, the page loads and its own requests carry the cookie it set.
        self.b.get(self.link)
        self.assertNotIn("token=", self.b.current_url)  # it moved into an HttpOnly cookie
        cookie = self.b.get_cookie("cadre_token")
        self.assertTrue(cookie["httpOnly"])
        self.assertEqual(cookie["sameSite"], "Strict")
        self.assertEqual(self.b.execute_script("return document.cookie"), "")
        self.open("nodes")
        self.wait(lambda: self.css("#nodes tr[data-node='n1']"), "node n1 listed")
        self.shot("nodes")

    def test_2_agents_update_while_a_sub_agent_streams(self):
        self.b.get(self.link)
        self.open("agents")
        self.c.model.script([{"chunks": ["reading ", "the ", "code ", "now "] * 8 + [PASS], "delay_ms": 120,
                              "thinking": "let me think about it"}])
        r, out = self.c.cadre_json("spawn", "reviewer", "Review the auth module")
        self.assertEqual(r.returncode, 0, r.stderr)
        aid = out[-1]["id"]
        row = f"li[data-agent='{aid}']"
        self.wait(lambda: self.css(row), f"{aid} in the agent list")
        # The stream arrives while the agent runs: text grows, the status says running.
        stream = lambda: (self.texts(f"#stream-{aid}") or [""])[0]  # noqa: E731
        first = self.wait(lambda: "reading" in stream() and stream(), "the agent's stream")
        self.assertEqual(self.texts(f"{row} > .agent .status"), ["running"])
        self.assertIn("let me think", "".join(self.texts(f"#stream-{aid} .thinking")))  # dimmed
        self.wait(lambda: len(stream()) > len(first), "more of the stream")
        self.assertEqual(self.texts(f"{row} > .agent .status"), ["running"])
        self.shot("agents")
        self.wait(lambda: self.texts(f"{row} > .agent .status") not in ([], ["running"]), "the agent to finish")
        self.assertIn(aid, self.b.find_element(By.ID, "agents").text)
        # Its performance row (turns per role) is there too.
        self.wait(lambda: "role: reviewer" in self.b.find_element(By.ID, "perf").text, "the reviewer's figures")

    def test_3_a_plan_approved_from_the_page_runs(self):
        self.c.model.script([{"match": "Make a plan", "text": plan_text("Diamond", [
            {"title": "Start", "agent": "researcher"},
            {"title": "Left branch", "agent": "reviewer", "deps": [1]},
            {"title": "Right branch", "agent": "tester", "deps": [1]},
            {"title": "Join", "agent": "optimizer", "deps": [2, 3]}])}],
            default={"chunks": ["working "] * 3 + [PASS], "delay_ms": 100})
        self.c.cadre("ask", "Make a plan", check=True)
        self.b.get(self.link)
        self.open("plans")
        pid = self.wait(lambda: self.texts("#plans tr[data-plan]", "data-plan"), "a plan")[0]
        self.wait(lambda: self.click(f"#plans tr[data-plan='{pid}'] a"), "the plan's link")
        self.wait(lambda: len(self.css("#dag g.step")) == 4, "the DAG")
        self.assertTrue(all("○" in t for t in self.texts("#dag g.step")))
        self.shot("plan-pending")
        self.wait(lambda: self.click("#plan button.approve"), "the approve button")
        self.wait(lambda: self.texts("#dag g.step", "data-status") == ["done"] * 4, "every step done", timeout=60)
        self.assertTrue(all("✓" in t for t in self.texts("#dag g.step")))
        self.assertEqual(len(self.texts("#dag path.edge")), 4)
        # What cadre shows: the same plan, done.
        r, out = self.c.cadre_json("plan", pid)
        self.assertEqual([s["status"] for s in out[-1]["steps"]], ["done"] * 4)
        self.wait(lambda: self.texts("#plan-status") == ["done"], "the plan done")
        self.shot("plans")

    def test_4_history_and_costs(self):
        self.c.model.script([{"text": "the answer is forty-two"}])
        self.c.cadre("ask", "--session", "h1", "what is the answer?", check=True)
        self.b.get(self.link)
        self.open("history")
        self.wait(lambda: self.b.execute_script(
            "const e = [...document.querySelectorAll('#sessions li')].find(e => e.textContent.startsWith('h1 '));"
            " if (e) e.click(); return !!e"), "session h1")
        self.wait(lambda: "forty-two" in self.b.find_element(By.ID, "messages").text, "its messages")
        box = self.b.find_element(By.ID, "search")
        box.send_keys("forty")
        self.wait(lambda: self.texts("#messages mark") == ["forty"], "a match")
        self.assertEqual(len(self.texts("#messages .msg")), 1)
        # The other conversations are searched too (by the broker, in its store).
        box.clear()
        box.send_keys("auth module")
        self.wait(lambda: any(t.startswith("reviewer-1") for t in self.texts("#found .msg .who")), "a match elsewhere")
        self.shot("history")
        self.open("costs")
        self.wait(lambda: len(self.texts("#costs-svg polyline")) >= 2, "the cost plot")
        self.assertIn("saved", self.b.find_element(By.ID, "saving").text)
        self.b.find_element(By.CSS_SELECTOR, "#cost-by option[value='role']").click()
        self.wait(lambda: "reviewer" in self.b.find_element(By.ID, "cost-plot").text, "costs by role")
        self.shot("costs")

    def test_5_api_writes_need_post_and_the_token(self):
        tok = self.token
        req = urllib.request.Request(self.base + "/api/plans/1/approve", headers={"Authorization": "Bearer " + tok})
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        self.assertEqual(e.exception.code, 405)
        req = urllib.request.Request(self.base + "/api/plans/999/approve", method="POST",
                                     headers={"Authorization": "Bearer " + tok})
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        self.assertEqual(e.exception.code, 409)
        self.assertIn("no plan 999", json.loads(e.exception.read())["detail"])

    def test_6_a_client_that_falls_behind_is_dropped(self):
        tok = self.token
        host, port = self.base[len("http://"):].split(":")
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the broker's buffer fills
        slow.connect((host, int(port)))
        slow.sendall(f"GET /api/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n\r\n".encode())
        slow.settimeout(60)  # under ASan on a loaded machine the broker drains the stream slowly
        head = slow.recv(4096)
        self.assertIn(b"200", head.split(b"\r\n")[0])
        # About 4 MB of deltas that the slow client does not read.
        self.c.model.script([{"chunks": ["y" * 1000] * 4000}])
        self.c.cadre("ask", "--session", "big", "say a lot", check=True, timeout=120)
        got = b""
        while True:
            data = slow.recv(1 << 16)
            if not data:
                break
            got += data
        slow.close()
        self.assertIn(b"event: dropped", got)
        self.assertIn(b"fell behind", got)
        # The broker is well and a new stream works.
        with urllib.request.urlopen(self.base + "/healthz", timeout=10) as r:
            self.assertEqual(r.status, 200)
        self.assertIn("an event stream fell behind", self.c.logs())

    def test_7_pages_stay_responsive(self):
        """200 agents and 10,000 history messages, rendered and searched in the page: the figures are printed."""
        self.b.get(self.link)
        self.open("agents")
        took = self.b.execute_script("""
          const sessions = [{id: "main", role: "main", status: "running", usage: {}, messages: 10000}];
          for (let i = 1; i <= 200; i++)
            sessions.push({id: "worker-" + i, role: "tester", parent: i > 20 ? "worker-" + (i % 20 + 1) : "main",
                           status: i % 3 ? "running" : "idle", usage: {prompt_tokens: i, completion_tokens: i,
                           cost: i / 1000}, messages: i, task: "task " + i});
          S.sessions = sessions;
          let t = performance.now();
          renderAgents();
          const agents = performance.now() - t;
          t = performance.now();
          for (let k = 0; k < 2000; k++)
            onDelta({type: "delta", session: "worker-" + (k % 200 + 1), kind: k % 5 ? "text" : "thinking",
                     text: "token " + k + " "});
          flushStreams(); // what the next animation frame does
          document.body.offsetHeight; // and its layout
          const deltas = performance.now() - t;
          S.history = [];
          for (let i = 0; i < 10000; i++)
            S.history.push({role: i % 2 ? "assistant" : "user", content: "message number " + i + " about things"});
          S.historyId = "main";
          location.hash = "history";
          t = performance.now();
          renderMessages();
          const history = performance.now() - t;
          document.getElementById("search").value = "number 9999";
          t = performance.now();
          renderMessages();
          const search = performance.now() - t;
          return {agents, deltas, history, search, shown: document.querySelectorAll("#messages .msg").length,
                  rows: document.querySelectorAll("#agents li").length};
        """)
        print(f"\n200 agents rendered in {took['agents']:.0f} ms; 2000 deltas appended in {took['deltas']:.0f} ms; "
              f"10,000 messages: rendered (the last 500) in {took['history']:.0f} ms, searched in "
              f"{took['search']:.0f} ms", file=sys.stderr)
        self.assertEqual(took["rows"], 201)
        self.assertEqual(took["shown"], 1)
        for k in ("agents", "deltas", "history", "search"):
            self.assertLess(took[k], 1000, k)


if __name__ == "__main__":
    unittest.main()
