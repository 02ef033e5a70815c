"""The interactive console, used as a person uses it: `cadre` in a terminal
(tmux, a known size), keys sent, the screen read back with capture-pane.

Every wait is on what the screen shows, with a deadline. Each test has its own
tmux server (-L) so parallel runs cannot collide; it is killed at the end.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import CTL, Cluster, wait_until  # noqa: E402
from test_workflow import plan_text  # noqa: E402

WIDTH, HEIGHT = 120, 40
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
PROMPT = "you › "
DECISION = "Your decision [A]pprove / [R]eject / [M]odify / [V]iew: "


def summary_text(status, points, rec, before="Work done."):
    bullets = "\n".join(f"- {p}" for p in points)
    return f"{before}\n[SUMMARY]\nStatus: {status}\nKey Points:\n{bullets}\nRecommendation: {rec}\n[/SUMMARY]"


class Terminal:
    """One `cadre` console in its own tmux server."""

    def __init__(self, cluster, name, color=False, args=(), extra_env=None):
        self.sock = f"cadre-test-{os.getpid()}-{name}-{uuid.uuid4().hex[:6]}"
        conf = os.path.join(cluster.tmp, f"tmux-{name}.conf")
        with open(conf, "w") as f:
            f.write("set -g remain-on-exit on\nset -g history-limit 5000\n")
        env = cluster.env()
        env.update({"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TERM": "xterm-256color"})
        if color:
            env.pop("NO_COLOR", None)
        env.update(extra_env or {})
        self.env = env
        # The shell around cadre shows its exit status on the screen when it leaves
        # (and ignores Ctrl-C itself; cadre sets its own handler).
        cmd = ["sh", "-c", 'trap "" INT; "$0" "$@"; echo "[exit status $?]"', CTL(), *args]
        subprocess.run(["tmux", "-L", self.sock, "-f", conf, "new-session", "-d", "-s", "t", "-x", str(WIDTH),
                        "-y", str(HEIGHT), *cmd], env=env, check=True)
        self.socket_path = self.tmux("display", "-p", "#{socket_path}").stdout.strip()

    def tmux(self, *args):
        return subprocess.run(["tmux", "-L", self.sock, *args], env=self.env, capture_output=True, text=True,
                              timeout=10)

    def keys(self, *keys):
        self.tmux("send-keys", "-t", "t", *keys)

    def type(self, text, enter=True):
        self.tmux("send-keys", "-t", "t", "-l", text)
        if enter:
            self.keys("Enter")

    def screen(self, escapes=False):
        args = ["capture-pane", "-p", "-t", "t", "-J"] + (["-e"] if escapes else [])
        return self.tmux(*args).stdout

    def history(self):
        """Everything printed so far, scrollback included."""
        return self.tmux("capture-pane", "-p", "-t", "t", "-J", "-S", "-5000").stdout

    def lines(self):
        return [l.rstrip() for l in self.history().splitlines()]

    def last_line(self):
        lines = [l for l in self.screen().splitlines() if l.strip()]
        return lines[-1].rstrip() if lines else ""

    def cursor(self):
        x, y = self.tmux("display", "-p", "-t", "t", "#{cursor_x} #{cursor_y}").stdout.split()
        return int(x), int(y)

    def wait_exit(self, timeout=20):
        """Waits for cadre to leave; returns its exit status."""
        m = self.wait("cadre to leave", lambda: re.search(r"\[exit status (\d+)\]", self.history()), timeout)
        return int(m.group(1))

    def dead(self):
        return self.tmux("display", "-p", "-t", "t", "#{pane_dead}").stdout.strip() == "1"

    def wait(self, what, fn, timeout=20):
        try:
            return wait_until(fn, timeout, what, interval=0.05)
        except AssertionError:
            raise AssertionError(f"timed out waiting for {what}; the screen:\n{self.history()}")

    def wait_text(self, text, timeout=20):
        return self.wait(repr(text), lambda: text in self.history(), timeout)

    def has_line(self, agent, text):
        """A line of agent's (its prefix, whatever the padding) that is exactly text."""
        pat = rf"^\S+ +{re.escape(agent)} +│ {re.escape(text)} *$"
        return re.search(pat, self.history(), re.M) is not None

    def wait_line(self, agent, text, timeout=20):
        return self.wait(f"{agent}: {text!r}", lambda: self.has_line(agent, text), timeout)

    def wait_prompt(self, typed="", timeout=20):
        return self.wait(f"the prompt {typed!r}", lambda: self.last_line() == (PROMPT + typed).rstrip(), timeout)

    def close(self):
        self.tmux("kill-server")
        if self.socket_path and os.path.basename(self.socket_path) == self.sock:
            try:
                os.unlink(self.socket_path)
            except FileNotFoundError:
                pass


class ConsoleTest(unittest.TestCase):
    """A fresh cluster per test, so agent ids (reviewer-1, ...) are known."""

    @classmethod
    def setUpClass(cls):
        if not shutil.which("tmux"):
            raise unittest.SkipTest("tmux is not installed")

    @staticmethod
    def config_extra(cfg):
        pass

    def setUp(self):
        self.c = Cluster(nodes=(("t1", 4), ("t2", 4)), config_extra=self.config_extra)
        self.terms = []

    def tearDown(self):
        screens = []
        for t in self.terms:
            screens.append(t.history())
            if os.environ.get("CADRE_SHOW_SCREENS"):
                print(f"\n--- {self.id()} ---\n{screens[-1]}", file=sys.stderr)
            t.close()
        self.c.close()
        for screen in screens:  # the sanitizer build reports on the terminal
            for marker in SANITIZER_MARKERS:
                self.assertNotIn(marker, screen, screen)

    def term(self, name="main", **kw):
        t = Terminal(self.c, name, **kw)
        self.terms.append(t)
        t.wait_prompt()
        return t

    def agent_lines(self, t, agent):
        return [l.split("│", 1)[1][1:] for l in t.lines() if re.match(rf"^\S+ +{re.escape(agent)} +│", l)]


class Console(ConsoleTest):
    def test_answer_and_two_sub_agents(self):
        self.c.model.script([
            {"match": "plan the auth", "chunks": ["First, we hash ", "passwords with argon2.\n",
                                                   "Then we add sessions."], "delay_ms": 20},
            {"match": "Review the auth", "text": summary_text("PASS", ["argon2 is right", "add rate limits"],
                                                              "go ahead", before="Reading the plan.")},
            {"match": "Test the login", "text": summary_text("FAIL", ["lockout missing"], "add a lockout",
                                                             before="Running the login tests.")},
        ])
        t = self.term()
        t.type("Let us plan the auth module")
        t.wait_text("Then we add sessions.")
        t.type("/spawn reviewer Review the auth plan")
        t.type("/spawn tester Test the login flow")
        t.wait_text("── summary: ✓ PASS ──")
        t.wait_text("── summary: ✗ FAIL ──")
        t.wait_prompt()
        self.assertIn("First, we hash passwords with argon2.", self.agent_lines(t, "main"))
        self.assertIn("Then we add sessions.", self.agent_lines(t, "main"))
        rev = self.agent_lines(t, "reviewer-1")
        self.assertIn("Reading the plan.", rev)
        self.assertIn("  • argon2 is right", rev)
        self.assertIn("  • add rate limits", rev)
        self.assertIn("  → Recommendation: go ahead", rev)
        tes = self.agent_lines(t, "tester-1")
        self.assertIn("Running the login tests.", tes)
        self.assertIn("  • lockout missing", tes)
        screen = t.history()
        self.assertRegex(screen, r"\n🔍 reviewer-1 +│ ")
        self.assertRegex(screen, r"\n🧪 tester-1 +│ ")
        self.assertRegex(screen, r"\n🧠 main +│ ")
        self.assertIn(PROMPT + "Let us plan the auth module", screen)  # what the user typed stays

    def test_prompt_and_typed_text_survive_output(self):
        self.c.model.script([{"match": "Slow research", "delay_ms": 60,
                              "chunks": [f"finding {i} " + ("\n" if i % 3 == 2 else "") for i in range(24)]
                              + ["\n" + summary_text("PASS", ["done"], "none")]}])
        t = self.term()
        t.type("/spawn researcher Slow research task")
        t.wait_text("finding 2")
        t.type("abc", enter=False)
        t.wait_text("finding 14")
        self.assertEqual(t.last_line(), PROMPT + "abc")
        t.wait_text("── summary: ✓ PASS ──")
        self.assertEqual(t.last_line(), PROMPT + "abc")
        self.assertEqual(t.cursor()[0], len(PROMPT + "abc"))
        # The line is still being edited: finish it and it is a question to the main agent.
        t.keys("BSpace")
        t.type("x")
        t.wait_text(PROMPT + "abx")
        t.wait_text("Hello from the scripted model.")

    def test_main_streams_token_by_token_above_the_prompt(self):
        self.c.model.script([{"match": "stream it", "chunks": ["Partial ", "words ", "arrive", " slowly.\n", "Done."],
                              "delay_ms": 400}])
        t = self.term()
        t.type("stream it please")
        # The unfinished line is shown as it grows, just above the prompt.
        t.wait("the unfinished line", lambda: t.has_line("main", "Partial words"))
        lines = [l.rstrip() for l in t.screen().splitlines() if l.strip()]
        self.assertRegex(lines[-2], r"^🧠 main +│ Partial words")
        self.assertEqual(lines[-1], PROMPT.rstrip())
        t.type("typing meanwhile", enter=False)
        t.wait_line("main", "Done.")
        t.wait_prompt("typing meanwhile")
        self.assertTrue(t.has_line("main", "Partial words arrive slowly."))
        self.assertEqual(len([l for l in t.lines() if "Partial" in l]), 1, t.history())

    def test_follows_again_after_a_broker_restart(self):
        t = self.term()
        self.c.stop_broker()
        self.c.start_broker()
        self.c.wait_nodes(2)
        t.wait_text("[the broker restarted; following every agent again]")
        self.c.model.script([{"match": "after the restart", "text": "Still streaming to you."}])
        self.c.cadre("ask", "after the restart", check=True)  # asked elsewhere: seen here
        t.wait_line("main", "Still streaming to you.")
        t.type("/agents")
        t.wait_text("AGENT")

    def test_streams_never_share_a_line(self):
        def words(tag):
            return [f"{tag}{i} " + ("\n" if i % 5 == 4 else "") for i in range(30)]
        self.c.model.script([
            {"match": "interleave main", "chunks": words("m"), "delay_ms": 7},
            {"match": "Stream alpha", "chunks": words("a") + ["\n" + summary_text("PASS", ["a"], "a")], "delay_ms": 5},
            {"match": "Stream beta", "chunks": words("b") + ["\n" + summary_text("PASS", ["b"], "b")], "delay_ms": 6},
        ])
        t = self.term()
        t.type("/spawn reviewer Stream alpha")
        t.type("/spawn optimizer Stream beta")
        t.type("interleave main please")
        t.wait("two summaries", lambda: t.history().count("── summary: ✓ PASS ──") == 2)
        t.wait_text("m29")
        for agent, tag in (("main", "m"), ("reviewer-1", "a"), ("optimizer-1", "b")):
            got = [w for l in self.agent_lines(t, agent) for w in re.findall(r"\b[mab]\d+\b", l)]
            self.assertEqual(got, [f"{tag}{i}" for i in range(30)], f"{agent}'s words:\n{t.history()}")

    def test_commands(self):
        self.c.model.script([
            {"match": "Audit the cache", "text": summary_text("PASS", ["fine"], "keep"),
             "usage": {"prompt_tokens": 500, "completion_tokens": 50, "total_tokens": 550}},
            {"match": "What did you find", "text": "Only the cache is slow."},
            {"match": "hello there", "text": "Hi!",
             "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}},
            {"match": "quietly", "chunks": ["Whole ", "answer ", "at once."], "delay_ms": 30},
        ])
        t = self.term()
        t.type("/help")
        t.wait_text("@<agent id> <message>")
        for cmd in ("/spawn", "/agents", "/stop", "/stop_all", "/config", "/stats", "/stream", "/thinking",
                    "/reset", "/help", "/exit"):
            self.assertIn(cmd, t.history())
        t.type("hello there")
        t.wait_line("main", "Hi!")
        t.type("/spawn researcher Audit the cache")
        t.wait_text("── summary: ✓ PASS ──")
        t.type("@researcher-1 What did you find?")
        t.wait_text("│ Only the cache is slow.")
        self.assertTrue(any("Only the cache is slow." in l for l in self.agent_lines(t, "researcher-1")))
        t.type("/agents")
        t.wait("the agents table", lambda: re.search(r"📚 researcher-1\s+researcher\s+small-model", t.history()))
        self.assertRegex(t.history(), r"AGENT\s+ROLE\s+MODEL\s+STATUS\s+MESSAGES\s+TOKENS IN\s+TOKENS OUT\s+COST")
        t.type("/stats")
        t.wait_text("The same tokens on the main model")
        self.assertRegex(t.history(), r"TEAM\s+\d+\s+\d+\s+\d+\s+\$")
        t.type("/config")
        t.wait_text('"reviewer_agent": {')
        t.type("/stream")
        t.wait_text("streaming of the main agent: off (the model is asked for whole answers)")
        t.type("say it quietly")
        t.wait_line("main", "Whole answer at once.")
        quiet = [q for q in self.c.model.requests() if "say it quietly" in json.dumps(q["body"]["messages"])]
        self.assertEqual([q["body"]["stream"] for q in quiet], [False])  # a request for the whole answer
        t.type("/stream")
        t.wait_text("streaming of the main agent: on")
        t.type("/thinking")
        t.wait_text("thinking display: off")
        t.type("/reset")
        t.wait_text("the main agent's conversation is cleared")
        r, h = self.c.cadre_json("history")
        self.assertEqual(h[0]["messages"], [])
        t.type("/nosuch")
        t.wait_text("unknown command /nosuch")
        t.type("/exit")
        self.assertEqual(t.wait_exit(), 0)
        self.assertEqual(len(self.c.nodes()), 2, "the cluster keeps running")

    def test_thinking_shown_then_toggled_off(self):
        self.c.model.script([{"match": "think first", "thinking": "weighing the options", "text": "Option B."},
                             {"match": "again please", "thinking": "hidden reasoning", "text": "Still B."}])
        t = self.term()
        t.type("think first")
        t.wait_line("main", "Option B.")
        self.assertTrue(t.has_line("main", "[thinking] weighing the options"), t.history())  # NO_COLOR: marked
        t.type("/thinking")
        t.wait_text("thinking display: off")
        t.type("again please")
        t.wait_line("main", "Still B.")
        self.assertNotIn("hidden reasoning", t.history())

    def test_tab_completion(self):
        self.c.model.script([{"match": "Complete me", "text": summary_text("PASS", ["x"], "y")}])
        t = self.term()
        t.type("/sp", enter=False)
        t.keys("Tab")
        t.wait_prompt("/spawn")
        t.type("rev", enter=False)
        t.keys("Tab")
        t.wait_prompt("/spawn reviewer")
        t.type("Complete me")
        t.wait_text("── summary: ✓ PASS ──")
        t.wait_prompt()
        t.type("@rev", enter=False)
        t.keys("Tab")
        t.wait_prompt("@reviewer-1")
        t.keys("C-u")
        t.wait_prompt()
        t.type("/st", enter=False)
        t.keys("Tab")  # /stop /stop_all /stats /stream: the common prefix is all there is
        t.wait_prompt("/st")
        t.keys("Tab")
        t.wait_text("/stop  /stop_all  /stats  /stream")
        t.wait_prompt("/st")

    def test_ctrl_c_cancels_a_hanging_turn_then_leaves(self):
        self.c.model.script([{"match": "Hang on", "hang": True}])
        t = self.term()
        t.type("Hang on a moment")
        t.wait("the model request", lambda: self.c.model.requests())
        t.keys("C-c")
        t.wait_text("cancelled (cancelled by the user)")
        wait_until(lambda: self.c.model.requests()[-1]["t_end"] is not None, 5, "the model request to be dropped")
        t.wait_prompt()
        self.assertNotIn("[exit status", t.history(), "one Ctrl-C only cancels")
        t.type("still here?")
        t.wait_text("Hello from the scripted model.")
        t.wait_text("tokens in")  # the turn is over
        t.keys("C-c")  # no turn is running: a warning first
        t.wait_text("[Ctrl-C again to leave; /exit leaves too]")
        t.keys("C-c")  # again: leave
        self.assertEqual(t.wait_exit(), 0)
        self.assertEqual(len(self.c.nodes()), 2, "the cluster keeps running")

    def test_history_and_line_editing(self):
        t = self.term()
        t.type("first question")
        t.wait_text("Hello from the scripted model.")
        t.wait_prompt()
        t.keys("Up")
        t.wait_prompt("first question")
        t.keys("C-a")
        t.type("my ", enter=False)
        t.wait_prompt("my first question")
        t.keys("C-u")
        t.type("/exit")
        self.assertEqual(t.wait_exit(), 0)
        hist = os.path.join(self.c.env()["XDG_STATE_HOME"], "cadre", "console_history")
        self.assertIn("first question", open(hist).read().replace("\\040", " "))  # libedit's vis(3) encoding

    def test_colour_only_on_a_terminal_without_no_color(self):
        self.c.model.script([{"match": "Colour check", "text": summary_text("PASS", ["green"], "none")}])
        t = self.term("colour", color=True)
        t.type("/spawn reviewer Colour check")
        t.wait_text("── summary: ✓ PASS ──")
        esc = t.screen(escapes=True)
        self.assertRegex(esc, r"\x1b\[33m🔍 reviewer-\d+", "reviewer prefix in yellow")
        self.assertRegex(esc, r"\x1b\[1myou ›", "the prompt in bold")
        self.assertRegex(esc, r"\x1b\[32m── summary: ✓ PASS ──", "PASS in green")
        plain = self.term("plain")
        plain.type("/agents")
        plain.wait_text("AGENT")
        self.assertNotIn("\x1b[", plain.screen(escapes=True))

    def test_two_consoles_see_the_same_streams(self):
        self.c.model.script([{"match": "Shared question", "chunks": ["Seen ", "by ", "both."], "delay_ms": 20},
                             {"match": "Shared task", "text": summary_text("PASS", ["both saw it"], "none")}])
        a, b = self.term("a"), self.term("b")
        a.type("Shared question")
        a.wait_line("main", "Seen by both.")
        b.wait_line("main", "Seen by both.")
        b.type("/spawn tester Shared task")
        a.wait_text("• both saw it")
        b.wait_text("• both saw it")


class Input(ConsoleTest):
    """Several lines make one message: a bracketed paste, Alt-Enter, a line ending in a backslash."""

    def paste(self, t, text):
        t.tmux("set-buffer", "-b", "p", text)
        t.tmux("paste-buffer", "-p", "-d", "-b", "p", "-t", "t")

    def sent_messages(self):
        """The text of the last user message of each model request."""
        out = []
        for r in self.c.model.requests():
            users = [m for m in r["body"].get("messages", []) if m.get("role") == "user"]
            out.append(users[-1]["content"] if users else None)
        return out

    def test_a_pasted_block_is_one_message_with_its_indentation(self):
        self.c.model.script([{"match": "def area", "text": "A function."}])
        t = self.term()
        block = "  Explain this:\ndef area(r):\n    if r < 0:\n\treturn 0\n    return 3.14 * r * r"
        self.paste(t, block)
        # the last line is edited; the others wait above it
        t.wait("the last line", lambda: t.last_line() == "    …     return 3.14 * r * r")
        screen = t.screen()
        self.assertIn(PROMPT + "  Explain this:", screen)
        self.assertIn("    … def area(r):", screen)
        self.assertIn("    …     return 0", screen)  # a tab is shown as 4 spaces
        self.assertEqual(self.c.model.requests(), [], "nothing is sent before Enter")
        t.keys("Enter")
        t.wait_line("main", "A function.")
        self.assertEqual(self.sent_messages(), [block])

    def test_a_long_pasted_block_is_shortened_on_screen_but_sent_whole(self):
        t = self.term()
        block = "\n".join(f"line {i:02d} of the log" for i in range(1, 31))
        self.paste(t, block)
        t.wait("the last line", lambda: t.last_line() == "    … line 30 of the log")
        rows = [l.rstrip() for l in t.screen().splitlines() if l.strip()]
        self.assertEqual(rows[-9:], [PROMPT + "line 01 of the log"]
                         + [f"    … line {i:02d} of the log" for i in range(2, 7)]
                         + ["    … … 22 more lines …", "    … line 29 of the log", "    … line 30 of the log"])
        t.keys("Enter")
        t.wait("the message", lambda: self.sent_messages() == [block])
        t.wait_text("Hello from the scripted model.")
        self.assertIn("    … line 06 of the log\n    … … 23 more lines …\n    … line 30 of the log\n", t.history())  # the echo too

    def test_pasting_12000_characters_takes_well_under_a_second(self):
        t = self.term()
        text = ("0123456789abcdefghi " * 600)[:11999] + "Z"
        t.tmux("set-buffer", "-b", "p", text)
        start = time.monotonic()
        t.tmux("paste-buffer", "-p", "-d", "-b", "p", "-t", "t")
        t.keys("Enter")
        t.wait("the message", lambda: text in self.sent_messages(), timeout=60)
        seconds = time.monotonic() - start
        print(f"\n[12,000 characters pasted and sent in {seconds:.2f} s]", file=sys.stderr)
        self.assertLess(seconds, 1.0)
        t.wait_text("Hello from the scripted model.")
        echo = [l for l in t.lines() if l.startswith(PROMPT + "0123456789")]
        self.assertEqual(len(echo), 1, "the echo is one row, cut to the screen's width")
        self.assertTrue(echo[0].endswith("…") and len(echo[0]) <= WIDTH, echo)

    def test_typing_12000_characters_takes_well_under_a_second(self):
        """Keys sent by a program (no bracketed paste): one insertion per burst, not a redraw per key."""
        t = self.term()
        text = ("typed words, é → ü " * 700)[:11999] + "Z"
        start = time.monotonic()
        t.type(text)
        t.wait("the message", lambda: text in self.sent_messages(), timeout=60)
        seconds = time.monotonic() - start
        print(f"\n[12,000 characters typed and sent in {seconds:.2f} s]", file=sys.stderr)
        self.assertLess(seconds, 1.0)
        self.assertEqual(self.sent_messages(), [text], "one message, every character")

    def test_alt_enter_and_a_backslash_continue_the_message(self):
        self.c.model.script([{"match": "three lines", "text": "Got three lines."}])
        t = self.term()
        t.type("three lines:", enter=False)
        t.keys("M-Enter")
        t.wait("the continuation prompt", lambda: t.last_line() == "    …")
        t.type("  indented\\")  # ends in one backslash: Enter continues
        t.wait("the second line to wait", lambda: "    …   indented" in t.screen())
        self.assertEqual(self.c.model.requests(), [])
        t.type("last")
        t.wait_line("main", "Got three lines.")
        self.assertEqual(self.sent_messages(), ["three lines:\n  indented\nlast"])
        t.wait_prompt()
        t.type("a \\\\")  # two backslashes: not a continuation
        t.wait("the second message", lambda: len(self.sent_messages()) == 2)
        self.assertEqual(self.sent_messages()[1], "a \\\\")

    def test_keys_typed_while_a_command_runs_wait_for_the_prompt(self):
        self.c.model.script([{"match": "Type ahead one", "text": summary_text("PASS", ["a"], "b")},
                             {"match": "Type ahead two", "text": summary_text("PASS", ["c"], "d")}])
        t = self.term()
        t.type("/spawn reviewer Type ahead one")
        t.type("/spawn tester Type ahead two")  # sent while the first one runs
        t.wait("two summaries", lambda: t.history().count("── summary: ✓ PASS ──") == 2)
        t.wait_prompt()
        lines = t.lines()
        self.assertIn(PROMPT + "/spawn reviewer Type ahead one", lines)
        self.assertIn(PROMPT + "/spawn tester Type ahead two", lines)
        self.assertFalse([l for l in lines if "Type ahead two" in l and not l.startswith(PROMPT)
                          and "task: Type ahead two" not in l], t.history())

    def test_ctrl_c_clears_a_waiting_block(self):
        t = self.term()
        self.paste(t, "one\ntwo\nthree")
        t.wait("the last line", lambda: t.last_line() == "    … three")
        t.keys("C-c")
        t.wait_prompt()
        self.assertNotIn("[exit status", t.history())
        t.type("fresh")
        t.wait("the message", lambda: self.sent_messages() == ["fresh"])

    def test_ctrl_c_warns_while_sub_agents_run(self):
        self.c.model.script([{"match": "Hang around", "hang": True}])
        t = self.term()
        t.type("/spawn researcher Hang around please")
        t.wait("the model request", lambda: self.c.model.requests())
        t.keys("C-c")
        t.wait_text("[Ctrl-C again to leave; 1 sub-agent still running; /exit leaves too]")
        time.sleep(2.2)  # a second Ctrl-C only counts within 2 s
        t.keys("C-c")
        t.wait("the warning again", lambda: t.history().count("Ctrl-C again to leave; 1 sub-agent") == 2)
        self.assertNotIn("[exit status", t.history())
        t.keys("C-c")
        self.assertEqual(t.wait_exit(), 0)


class Display(ConsoleTest):
    """A calm, complete display: live status rows, summaries once, the summary nudge, stops, tool output."""

    def test_two_sub_agents_stream_with_a_live_status_row_each(self):
        def slow(tag, n):
            return ([f"{tag} word {i} " + ("\n" if i % 12 == 11 else "") for i in range(n)]
                    + ["\n" + summary_text("PASS", [tag], "none")])
        self.c.model.script([
            {"match": "Stream alpha", "chunks": slow("alpha", 40), "delay_ms": 150},
            {"match": "Stream beta", "chunks": slow("beta", 40), "delay_ms": 150},
        ])
        t = self.term()
        t.type("/spawn reviewer Stream alpha")
        t.wait_line("reviewer-1", "▶ running")
        t.type("/spawn tester Stream beta")
        t.wait_line("tester-1", "▶ running")
        t.type("typing", enter=False)

        def both_live():
            rows = [l.rstrip() for l in t.screen().splitlines() if l.strip()]
            if len(rows) < 3 or rows[-1] != PROMPT + "typing":
                return None
            live = rows[-3:-1]  # unfinished lines: a whole one ends with word 11, 23, ...
            a = re.match(r"^🔍 reviewer-1 +│ .*alpha word (\d+)$", live[0])
            b = re.match(r"^🧪 tester-1 +│ .*beta word (\d+)$", live[1])
            ok = a and b and int(a.group(1)) % 12 != 11 and int(b.group(1)) % 12 != 11
            return live if ok and t.has_line("tester-1", " ".join(f"beta word {i}" for i in range(12))) else None
        rows = t.wait("two live status rows above the prompt", both_live)
        shot = os.environ.get("CADRE_SCREEN_SHOT")
        if shot:
            with open(shot, "w") as f:
                f.write(t.screen())
        self.assertTrue(all(len(r) <= WIDTH for r in rows))
        t.wait("two summaries", lambda: t.history().count("── summary: ✓ PASS ──") == 2)
        t.wait_prompt("typing")  # the line being typed survived
        # Once their lines are whole they are printed once each, never cut by the status rows.
        for agent, tag in (("reviewer-1", "alpha"), ("tester-1", "beta")):
            words = [w for l in self.agent_lines(t, agent) for w in re.findall(tag + r" word (\d+)", l)]
            self.assertEqual(words, [str(i) for i in range(40)], t.history())

    def test_a_summary_is_shown_once_formatted(self):
        self.c.model.script([{"match": "Check once", "text": summary_text("PASS", ["only once"], "ship it")}])
        t = self.term()
        t.type("/spawn reviewer Check once")
        t.wait_text("→ Recommendation: ship it")
        t.wait_prompt()
        h = t.history()
        self.assertEqual(h.count("only once"), 1, h)
        self.assertNotIn("[SUMMARY]", h)
        self.assertNotIn("Status: PASS", h)
        self.assertTrue(t.has_line("reviewer-1", "Work done."), h)  # the text before the block stays

    def test_the_reply_to_the_summary_nudge_says_why_it_appears(self):
        self.c.model.script([
            {"match": "Forgetful task", "text": "I looked at it and forgot the block."},
            {"match": "Please finish now", "text": summary_text("PASS", ["nudged"], "none", before="Here it is.")},
        ])
        t = self.term()
        t.type("/spawn researcher Forgetful task")
        t.wait_text("• nudged")
        h = t.history()
        nudge = ("↻ its answer had no readable [SUMMARY] block: asked once for its [SUMMARY]; "
                 "what follows is its reply to that")
        self.assertTrue(t.has_line("researcher-1", nudge), h)
        self.assertLess(h.index("forgot the block."), h.index(nudge))
        self.assertLess(h.index(nudge), h.index("Here it is."))

    def test_stopped_is_said_once(self):
        self.c.model.script([{"match": "Hang forever", "hang": True}])
        t = self.term()
        t.type("/spawn researcher Hang forever")
        t.wait("the model request", lambda: self.c.model.requests())
        t.type("/stop researcher-1")
        t.wait_text("• stopped by the user")
        time.sleep(1.0)  # every event of the stop has arrived
        t.wait_prompt()
        self.assertEqual(t.history().count("■ stopped"), 1, t.history())
        self.assertNotIn("researcher-1: stopped", t.history())

    def test_a_tool_result_shows_a_preview_of_its_output(self):
        with open(os.path.join(self.c.workspace, "notes.md"), "w") as f:
            f.write("alpha line\nbeta line\n\ngamma line\ndelta line\nepsilon line\n")
        self.c.model.script([
            {"tool_calls": [{"id": "r1", "name": "read_file", "arguments": {"path": "notes.md"}}]},
            {"text": "Read it."},
        ])
        t = self.term()
        t.type("read notes.md please")
        t.wait_line("main", "Read it.")
        lines = self.agent_lines(t, "main")
        i = next(i for i, l in enumerate(lines) if l.startswith("← ✓ read_file"))
        # read_file numbers the lines; the preview shows the first three and counts the others
        self.assertEqual(lines[i + 1:i + 5], ["  │  1 alpha line", "  │  2 beta line", "  │  3", "  │ … 3 more lines"],
                         t.history())


class Delegation(ConsoleTest):
    @staticmethod
    def config_extra(cfg):
        cfg["spawning_rules"].update({"auto_spawn_on_keywords": True, "require_confirmation": True})

    def test_main_delegates_and_continues(self):
        self.c.model.script([
            {"match": "Ship the login", "tool_calls": [
                {"id": "call_1", "name": "spawn_agent",
                 "arguments": {"role": "tester", "task": "Run the login suite"}}]},
            {"match": "Run the login suite", "text": summary_text("PASS", ["12 tests pass"], "ship")},
        ], default={"text": "The tester says all 12 tests pass: shipping."})
        t = self.term()
        t.type("Ship the login feature")
        t.wait_text("→ spawn_agent tester: Run the login suite")
        t.wait_text("• 12 tests pass")
        t.wait_text("continues with the sub-agents' summaries")
        t.wait_line("main", "The tester says all 12 tests pass: shipping.")
        t.wait_prompt()

    def test_keyword_proposal_asks_and_confirm_spawns(self):
        self.c.model.script([
            {"match": "review the parser", "text": "Sure, a reviewer can look at it."},
            {"match": "Please review the parser", "text": summary_text("PASS", ["parser ok"], "none")},
        ])
        t = self.term()
        t.type("Please review the parser")
        t.wait_text('keyword "review"')
        t.wait("the question", lambda: t.last_line() == "spawn it? [y/n]")
        t.type("maybe")
        t.wait_text("please answer y or n")
        t.type("y")
        t.wait_text("• parser ok")
        t.wait_prompt()
        r, out = self.c.cadre_json("agents")
        self.assertIn("reviewer-1", [a["id"] for a in out[0]])


class Plans(ConsoleTest):
    def test_a_proposed_plan_is_shown_then_approved(self):
        plan = ("I propose this.\n[PLAN]\n## Workflow: Write the notes\n"
                "### Step 1: Write notes\n- Agent: implementer\n- Tool: write_file_tool\n"
                '- Arguments: {"path": "notes.txt", "content": "hello"}\n- Dependencies: none\n'
                "- Estimated Time: 30s\n\n## Total Estimated Time: 30s\n## Cost Estimate: $0.01\n[/PLAN]\n")
        self.c.model.script([{"match": "Make a plan", "text": plan}])
        t = self.term()
        t.type("Make a plan for the notes")
        t.wait_text('📋 plan 1 "Write the notes": proposed')
        t.wait("the decision", lambda: t.last_line() == DECISION.rstrip())
        t.type("/plans")  # commands still run while the decision is asked
        t.wait("the plan list", lambda: re.search(r'📋 plan 1 "Write the notes" \[\w+\] · 1 steps', t.history()))
        t.type("/plan 1")
        t.wait_text("Write notes")
        t.type("/approve 1")
        t.wait_text("plan 1 approved")
        t.wait("the step's result", lambda: re.search(r"✓ plan 1 step 1 done · Write notes · [\d.]+ s → \S", t.history()))
        wait_until(lambda: os.path.exists(os.path.join(self.c.workspace, "notes.txt")), 10, "the step's file")
        r = self.c.cadre("plan", "1", check=True)
        self.assertRegex(r.stdout, r"\n       result: \S")
        t.type("/approve")
        t.wait_text("usage: /approve <plan id>")


class Approval(ConsoleTest):
    def test_plan_is_decided_then_runs_with_progress_marks(self):
        self.c.model.script([{"match": "Plan the release", "text": plan_text("Release notes", [
            {"title": "Collect the changes", "agent": "researcher", "time": "30s"},
            {"title": "Review the notes", "agent": "reviewer", "deps": [1], "time": "45s"}])}],
            default={"text": summary_text("PASS", ["ok"], "go on"), "delay_ms": 100})
        t = self.term()
        t.type("Plan the release notes")
        t.wait_text("WORKFLOW PLAN: Release notes")
        t.wait("the decision", lambda: t.last_line() == DECISION.rstrip())
        screen = t.history()
        self.assertIn("📊 Summary:", screen)
        self.assertIn("   1. Collect the changes (researcher, 30s)", screen)
        self.assertIn("   2. Review the notes (reviewer, 45s) ← 1", screen)
        t.type("x")
        t.wait_text("please answer a (approve), r (reject), m (modify) or v (view) for plan 1")
        t.type("v")  # the plan again, with each step's details; then the same question
        t.wait_text("○ 2. Review the notes (reviewer) after step 1")
        t.wait("the decision again", lambda: t.last_line() == DECISION.rstrip())
        t.type("a")
        t.wait_text("plan 1 approved")
        t.wait_text("⟳ plan 1 step 1 Collect the changes (researcher) running as researcher-")
        t.wait_text("✓ plan 1 step 1 done")
        t.wait_text("✓ plan 1 step 2 done")
        t.wait_text('✓ plan 1 "Release notes" finished: done')
        t.wait("the summary's steps", lambda: re.search(
            r"^  ✓ 1\. Collect the changes \(researcher\) · \d+\.\d s · \$[\d.]+\n"
            r"  ✓ 2\. Review the notes \(reviewer\) · \d+\.\d s · \$[\d.]+$", t.history(), re.M))
        t.wait_prompt()
        r, out = self.c.cadre_json("plan", "1")
        self.assertEqual(out[-1]["status"], "done")

    def editor(self, name, script):
        """An $EDITOR: a shell script run on the plan's file ($1)."""
        path = os.path.join(self.c.tmp, name)
        with open(path, "w") as f:
            f.write("#!/bin/sh\n" + script + "\n")
        os.chmod(path, 0o755)
        return path

    def test_modify_opens_the_plan_in_the_editor_and_validates_it_again(self):
        self.c.model.script([{"match": "Plan the release", "text": plan_text("Release notes", [
            {"title": "Collect the changes", "agent": "researcher", "time": "30s"},
            {"title": "Review the notes", "agent": "reviewer", "deps": [1], "time": "45s"}])}])
        log = os.path.join(self.c.tmp, "editor.log")
        ed = self.editor("edit.sh", f'cp "$1" {log}; '
                         'sed -i "s/Review the notes/Proofread the notes/; s/- Agent: reviewer/- Agent: tester/" "$1"')
        t = self.term(extra_env={"EDITOR": ed, "VISUAL": ""})
        t.type("Plan the release notes")
        t.wait("the decision", lambda: t.last_line() == DECISION.rstrip())
        t.type("m")
        t.wait_text('📋 plan 1 "Release notes": modified, now pending')
        t.wait("the decision again", lambda: t.last_line() == DECISION.rstrip())
        with open(log) as f:  # what the editor was given: the plan as a [PLAN] block
            shown = f.read()
        self.assertIn("[PLAN]\n## Workflow: Release notes\n", shown)
        self.assertIn("### Step 2: Review the notes\n- Agent: reviewer\n- Dependencies: Step 1\n", shown)
        r, out = self.c.cadre_json("plan", "1")
        steps = out[-1]["steps"]
        self.assertEqual([(s["title"], s["agent"]) for s in steps],
                         [("Collect the changes", "researcher"), ("Proofread the notes", "tester")])
        self.assertEqual(steps[1]["dependencies"], [1])
        self.assertEqual(out[-1]["status"], "pending")

    def test_an_edit_that_breaks_the_plan_is_reported_invalid(self):
        self.c.model.script([{"match": "Plan the docs", "text": plan_text("Docs", [
            {"title": "Draw it", "agent": "researcher"}, {"title": "Check it", "agent": "tester", "deps": [1]}])}])
        ed = self.editor("break.sh", 'sed -i "s/- Agent: tester/- Agent: astronaut/" "$1"')
        t = self.term(extra_env={"EDITOR": ed, "VISUAL": ""})
        t.type("Plan the docs")
        t.wait("the decision", lambda: t.last_line() == DECISION.rstrip())
        t.type("m")
        t.wait_text('📋 plan 1 "Docs": modified, now invalid')
        t.wait_text("astronaut")
        t.wait_text("plan 1 is not valid yet: fix it with /modify 1")
        t.wait_prompt()
        self.assertEqual(self.c.cadre_json("plan", "1")[1][-1]["status"], "invalid")

    def test_an_editor_that_fails_leaves_the_plan_as_it_was(self):
        self.c.model.script([{"match": "Plan the docs", "text": plan_text("Docs", [
            {"title": "Draw it", "agent": "researcher"}])}])
        ed = self.editor("fail.sh", 'echo "x" >> "$1"; exit 3')
        t = self.term(extra_env={"EDITOR": ed, "VISUAL": ""})
        t.type("Plan the docs")
        t.wait("the decision", lambda: t.last_line() == DECISION.rstrip())
        t.type("m")
        t.wait_text("plan 1 stays pending: the editor")
        t.wait_text("did not finish cleanly (status 3)")
        t.wait("the decision again", lambda: t.last_line() == DECISION.rstrip())
        self.assertNotIn("modified", t.history())

    def test_an_invalid_plan_is_fixed_with_modify(self):
        self.c.model.script([{"match": "Plan the docs", "text": plan_text("Docs", [
            {"title": "Draw it", "agent": "designer"}, {"title": "Check it", "agent": "tester", "deps": [1]}])}])
        t = self.term()
        t.type("Plan the docs")
        t.wait_text("plan 1 is not valid yet: fix it with /modify 1")
        t.wait_prompt()
        t.type("/modify 1 set_agent 1 researcher")
        t.wait_text('📋 plan 1 "Docs": modified, now pending')
        t.wait_text("plan 1 is valid: /approve 1 runs it")
        t.type("/modify 1 remove_step 2")
        t.wait("the plan with one step", lambda: self.c.cadre_json("plan", "1")[1][-1]["steps"].__len__() == 1)
        t.type("/modify 1")
        t.wait_text("usage: /modify <plan id> <op> <step> [value]")
        t.type("/reject 1")
        t.wait_text("plan 1: rejected")

    def test_modify_set_profile_shows_the_estimate_before_and_after_and_approve_takes_a_budget(self):
        self.c.model.script([{"match": "Plan the audit", "text": plan_text("Audit", [
            {"title": "Look around", "agent": "researcher", "time": "30s"}])}],
            default={"text": summary_text("PASS", ["ok"], "go on")})
        t = self.term()
        t.type("Plan the audit")
        t.wait_text("WORKFLOW PLAN: Audit")
        t.wait("the decision", lambda: t.last_line() == DECISION.rstrip())
        screen = t.history()
        self.assertIn(" Estimate by step (profile, model, tokens, time, cost):", screen)
        self.assertIn("   1. researcher_agent   small-model             5000     30s  $0.0060", screen)
        self.assertIn("Budget (the estimate: 5000 tokens, $0.006000):", screen)
        self.assertIn("  workflow:1: none of its own (approve 1 --budget-tokens N --budget-cost USD sets one)", screen)
        t.type("/modify 1 set_profile 1 implementer_agent")
        t.wait_text("Estimate before -> after:")
        t.wait_text("  step 1: researcher_agent (small-model) 5000 tokens, 30s, $0.006000 -> implementer_agent "
                    "(small-model) 5000 tokens, 30s, $0.006000")
        t.wait_text("   1. Look around (implementer on implementer_agent, 30s)")
        t.type("/modify 1 set_profile 1 nobody")
        t.wait_text('step 1 names a profile that is not in the config: "nobody"')
        t.type("/approve 1 budget_tokens 90000 budget_cost $0.5")
        t.wait_text("plan 1 approved")
        t.wait_text('✓ plan 1 "Audit" finished: done')
        t.type("/budget workflow:1")
        t.wait("the workflow's budget", lambda: re.search(
            r"workflow:1: \d+ of 90000 tokens used \(\d+ left\); \$[\d.]+ of \$0\.5000 used", t.history()))


class Tools(ConsoleTest):
    @staticmethod
    def config_extra(cfg):
        cfg["tools"] = {"approval": "mutating"}

    def call(self, name, args, cid):
        return {"tool_calls": [{"id": cid, "name": name, "arguments": args}]}

    def test_tool_calls_are_shown_and_approved_here(self):
        self.c.model.script([
            self.call("write_file_tool", {"path": "yes.txt", "content": "allowed"}, "w1"),
            {"text": "Written, as you allowed."},
        ])
        t = self.term()
        t.type("write yes.txt please")
        t.wait_text("wants to run write_file_tool")
        t.wait("the question", lambda: t.last_line() == "allow it? [y] once, [a] this session, [n] no:")
        self.assertFalse(os.path.exists(os.path.join(self.c.workspace, "yes.txt")))
        t.type("y")
        t.wait_line("main", "Written, as you allowed.")
        self.assertEqual(open(os.path.join(self.c.workspace, "yes.txt")).read(), "allowed")
        self.assertTrue(any(l.startswith("→ write_file_tool {") for l in self.agent_lines(t, "main")), t.history())
        self.assertTrue(any(l.startswith("← ✓ write_file_tool") for l in self.agent_lines(t, "main")), t.history())
        t.wait_prompt()

    def test_a_refused_call_does_not_run(self):
        self.c.model.script([
            self.call("write_file_tool", {"path": "no.txt", "content": "refused"}, "w2"),
            {"text": "I did not write it."},
        ])
        t = self.term()
        t.type("write no.txt please")
        t.wait("the question", lambda: t.last_line() == "allow it? [y] once, [a] this session, [n] no:")
        t.type("n")
        t.wait_line("main", "I did not write it.")
        self.assertFalse(os.path.exists(os.path.join(self.c.workspace, "no.txt")))
        self.assertTrue(any(l.startswith("← ✗ write_file_tool") for l in self.agent_lines(t, "main")), t.history())


    def test_the_prompt_shows_the_command_and_allow_for_this_session_asks_once(self):
        self.c.model.script([
            self.call("execute_bash", {"command": "echo one > one.txt"}, "b1"),
            self.call("execute_bash", {"command": "echo two > two.txt"}, "b2"),
            {"text": "Both written."},
        ])
        t = self.term()
        t.type("write one.txt and two.txt")
        t.wait_text("wants to run execute_bash")
        t.wait_text("$ echo one > one.txt")
        t.wait("the question", lambda: t.last_line() == "allow it? [y] once, [a] this session, [n] no:")
        t.type("a")
        t.wait_text("execute_bash may run without asking for the rest of main's session")
        t.wait_line("main", "Both written.")
        self.assertTrue(os.path.exists(os.path.join(self.c.workspace, "two.txt")))
        self.assertEqual(t.history().count("(waiting for approval)"), 1, t.history())

    def test_cadre_ask_on_a_terminal_asks_there(self):
        self.c.model.script([
            self.call("execute_bash", {"command": "echo hi > f.txt"}, "f1"),
            {"text": "Made it."},
        ])
        t = Terminal(self.c, "ask", args=("ask", "make f.txt"))
        self.terms.append(t)
        t.wait_text("$ echo hi > f.txt")
        t.wait("the question", lambda: t.last_line() == "Allow? [y] once, [a] execute_bash for this session, [N] no:")
        self.assertFalse(os.path.exists(os.path.join(self.c.workspace, "f.txt")))
        t.type("y")
        t.wait_text("Made it.")
        t.wait_text("[exit status 0]")
        self.assertTrue(os.path.exists(os.path.join(self.c.workspace, "f.txt")))

    def test_the_prompt_shows_a_diff_of_the_edit(self):
        with open(os.path.join(self.c.workspace, "e.txt"), "w") as f:
            f.write("alpha\nbeta\n")
        self.c.model.script([
            self.call("edit_file", {"path": "e.txt", "old_string": "beta", "new_string": "gamma"}, "e1"),
            {"text": "Not edited."},
        ])
        t = self.term()
        t.type("edit e.txt")
        t.wait_text("edit e.txt")
        t.wait_text("- beta")
        t.wait_text("+ gamma")
        t.wait("the question", lambda: t.last_line() == "allow it? [y] once, [a] this session, [n] no:")
        t.type("x")
        t.wait_text("please answer y (once), a (this tool for the rest of the session) or n")
        t.type("n")
        t.wait_line("main", "Not edited.")
        with open(os.path.join(self.c.workspace, "e.txt")) as f:
            self.assertEqual(f.read(), "alpha\nbeta\n")

class Piped(unittest.TestCase):
    """Not a terminal: no colour, no line editing; lines from stdin; leaves at EOF."""

    @classmethod
    def setUpClass(cls):
        cls.c = Cluster(nodes=(("p1", 2),))

    @classmethod
    def tearDownClass(cls):
        cls.c.close()

    def run_console(self, text, timeout=60):
        env = self.c.env()
        env.pop("NO_COLOR", None)  # not a terminal is enough to turn colour off
        r = subprocess.run([CTL()], input=text, env=env, capture_output=True, text=True, timeout=timeout)
        for marker in SANITIZER_MARKERS:
            self.assertNotIn(marker, r.stderr, r.stderr)
        return r

    def test_help_then_a_question(self):
        self.c.model.script([{"match": "hello", "chunks": ["Hello ", "back."]}])
        r = self.run_console("/help\nhello\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("/spawn <role> <task>", r.stdout)
        self.assertIn("🧠 main │ Hello back.\n", r.stdout)
        self.assertNotIn("\x1b", r.stdout)
        self.assertLess(r.stdout.index("/spawn <role>"), r.stdout.index("Hello back."))

    def test_an_unknown_role_lists_the_roles_without_codes(self):
        r = self.run_console("/spawn juggler Juggle\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('no sub-agent role "juggler" in the config; the roles are: reviewer, researcher, implementer, '
                      'tester, optimizer', r.stdout)
        self.assertNotIn("spawn_failed", r.stdout + r.stderr)

    def test_lines_wait_for_the_answer_and_sub_agents_report(self):
        self.c.model.script([
            {"match": "first", "text": "One.", "delay_ms": 100},
            {"match": "second", "text": "Two."},
            {"match": "Piped task", "text": summary_text("PASS", ["piped"], "none")},
        ])
        r = self.run_console("first\nsecond\n/spawn tester Piped task\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout
        self.assertLess(out.index("🧠 main │ One."), out.index("🧠 main │ Two."))
        self.assertIn("── summary: ✓ PASS ──", out)  # it waited for the sub-agent it spawned

    def test_errors_are_shown(self):
        r = self.run_console("/stop nobody-1\n/spawn\n@ghost-3 hi\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("nobody-1", r.stdout)
        self.assertIn("usage: /spawn <role> <task>", r.stdout)
        self.assertIn("ghost-3", r.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
