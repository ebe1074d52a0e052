package main_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's chromium (apt-get install chromium).
const chromiumPath = "/usr/bin/chromium"

// artifactsDir is where browser tests leave screenshots: $PIER_TEST_ARTIFACTS,
// else .pier/test-artifacts/ at the repository's root (gitignored).
func artifactsDir(t *testing.T, name string) string {
	t.Helper()
	dir := os.Getenv("PIER_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", ".pier", "test-artifacts")
	}
	dir, err := filepath.Abs(filepath.Join(dir, name))
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// chrome is one headless Chromium page driven by chromedp.
type chrome struct {
	t   *testing.T
	ctx context.Context
}

func startChrome(t *testing.T) *chrome {
	t.Helper()
	path := chromiumPath
	if _, err := os.Stat(path); err != nil {
		if p, err := exec.LookPath("chromium"); err == nil {
			path = p
		} else if os.Getenv("CI") == "true" {
			t.Fatalf("chromium is not installed (apt-get install chromium): the dashboard's browser tests need it")
		} else {
			t.Skip("chromium is not installed (apt-get install chromium)")
		}
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// Chromium resolves *.localhost to loopback itself; no other name
		// is ever dialled.
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelC(); cancelA() })
	// The first action starts the browser, bound to the context it gets:
	// ctx itself, not a shorter one.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &chrome{t: t, ctx: ctx}
}

func (c *chrome) do(steps ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 3*time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		c.t.Fatalf("browser: %v\npage text:\n%s", err, c.text())
	}
}

// open navigates to url and returns the answer's HTTP status.
func (c *chrome) open(url string) int {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, time.Minute)
	defer cancel()
	res, err := chromedp.RunResponse(ctx, chromedp.Navigate(url))
	if err != nil {
		c.t.Fatalf("open %s: %v", url, err)
	}
	if res == nil {
		return 0
	}
	return int(res.Status)
}

func eval[T any](c *chrome, js string) T {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		c.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// text is the page's visible text (for failure messages).
func (c *chrome) text() string {
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + (document.body ? document.body.innerText : "")`))
	if err != nil {
		return err.Error()
	}
	return s
}

// waitFor waits until the loaded page's text holds want (a form's answer
// comes as a redirect to a page that says what happened).
func (c *chrome) waitFor(want string, timeout time.Duration) {
	c.t.Helper()
	c.waitJS(fmt.Sprintf(`document.readyState === "complete" && document.body.innerText.includes(%q)`, want), timeout, "the page to say "+want)
}

func (c *chrome) waitJS(js string, timeout time.Duration, what string) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		cancel()
		if err == nil && ok {
			return
		}
		time.Sleep(150 * time.Millisecond)
	}
	c.t.Fatalf("timed out after %s waiting for %s; page text:\n%s", timeout, what, c.text())
}

func (c *chrome) screenshot(path string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, time.Minute)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// pageWeight is what the page cost to load, in bytes: the document and
// every resource (stylesheet, script), uncompressed sizes of bodies.
const pageWeightJS = `(() => {
  let n = performance.getEntriesByType("navigation")[0];
  let total = n ? n.decodedBodySize : 0;
  for (const r of performance.getEntriesByType("resource")) total += r.decodedBodySize;
  return total;
})()`

// controlsUsable lists the controls that are off-screen sideways or too
// small to use at the current width.
const controlsUsableJS = `(() => {
  const bad = [];
  const w = document.documentElement.clientWidth;
  for (const el of document.querySelectorAll("main a, main button, main input:not([type=hidden]), main select, main textarea, header a, header button")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue; // not shown (such as inside a closed element)
    if (r.left < -0.5 || r.right > w + 0.5 || r.width < 16 || r.height < 16) bad.push((el.id || el.textContent.trim().slice(0, 30) || el.tagName) + " " + Math.round(r.left) + ".." + Math.round(r.right) + " x" + Math.round(r.height));
  }
  for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
    if (!el.labels || el.labels.length === 0) bad.push("no label: " + (el.id || el.name));
  }
  return bad.join("; ");
})()`

// TestDashboard drives the web dashboard in Chromium against `pierd all`
// with an app deployed by git push: log in; create an app; set, edit and
// remove a config var (a release each); scale web to 2; roll back; follow
// the live log; add and remove an SSH key; a non-member gets a 403 page;
// forms without the CSRF token are refused; cookies are HttpOnly and
// SameSite=Strict; screenshots at 1280 and 390 px, no sideways scrolling
// at 390 px, and every page under 100 KB.
func TestDashboard(t *testing.T) {
	if testing.Short() {
		t.Skip("starts pierd, builds an app and drives Chromium")
	}
	start := time.Now()
	c := startChrome(t)
	s := startStack(t)
	base := "http://pier.localhost:" + s.httpPort()
	shots := artifactsDir(t, "dashboard")

	// Another user, with an app of her own (through the API).
	s.c.must("eve's password\n", "register", s.d.url, "--username", "eve", "--password-stdin")
	eveCLI := newCLI(t)
	eveCLI.must("eve's password\n", "login", s.d.url, "--username", "eve", "--password-stdin")
	eveCLI.must("", "apps:create", "eves-app")

	// Log in: the login page, then the apps list.
	if code := c.open(base + "/"); code != 200 {
		t.Fatalf("GET / answered %d", code)
	}
	c.waitFor("Log in to Pier", 10*time.Second)
	c.do(chromedp.SendKeys(chromedp.ID("username"), "dev"),
		chromedp.SendKeys(chromedp.ID("password"), "push test password\n")) // Enter submits
	c.waitJS(`location.pathname === "/apps" && document.readyState === "complete"`, 20*time.Second, "the apps list")

	// The cookies Chromium keeps: a __Host- session cookie, HttpOnly,
	// SameSite=Strict, Secure (Chromium takes Secure cookies from
	// http://*.localhost, a secure context), and none readable by scripts.
	cookies, err := chromedp.Call(c.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
	if err != nil {
		t.Fatal(err)
	}
	var session *network.Cookie
	for _, ck := range cookies.Cookies {
		if !ck.HTTPOnly || ck.SameSite != network.CookieSameSiteStrict {
			t.Errorf("cookie %s: HttpOnly %v, SameSite %q", ck.Name, ck.HTTPOnly, ck.SameSite)
		}
		if ck.Name == "__Host-pier_session" {
			session = ck
		}
	}
	if session == nil || !session.Secure || session.Path != "/" || session.Domain != "pier.localhost" {
		t.Fatalf("no __Host-pier_session cookie as wanted in Chromium: %+v", cookies.Cookies)
	}
	if js := eval[string](c, `document.cookie`); js != "" {
		t.Fatalf("scripts can read cookies: %q", js)
	}
	// The admin sees every app, eve's too.
	c.waitFor("eves-app", 5*time.Second)

	// Create an app with the form (keyboard: type, then Enter).
	c.do(chromedp.SendKeys(chromedp.ID("new-app"), "weblog\n"))
	c.waitFor("Created weblog", 20*time.Second)
	c.waitJS(`location.pathname === "/apps/weblog"`, 5*time.Second, "the app's page")

	// CSRF: a form post without the token (as another site's form would
	// send, cookies and all) is refused with a 403 page, and changes nothing.
	status := eval[int](c, `fetch("/apps", {method: "POST", body: new URLSearchParams({name: "forged-app"})}).then(r => r.status)`)
	if status != 403 {
		t.Fatalf("POST /apps without a CSRF token answered %d", status)
	}
	status = eval[int](c, `fetch("/apps/weblog/config", {method: "POST", body: new URLSearchParams({key: "X", value: "1", csrf: "forged"})}).then(r => r.status)`)
	if status != 403 {
		t.Fatalf("POST config with a forged CSRF token answered %d", status)
	}
	if out := s.c.must("", "apps"); strings.Contains(out, "forged-app") {
		t.Fatalf("a forged post created an app:\n%s", out)
	}
	t.Logf("logged in, created an app, CSRF refused: %s", time.Since(start).Round(time.Millisecond))

	// Deploy it with git push (the page said how).
	r := &repo{s: s, dir: t.TempDir(), app: "weblog"}
	copyTree(t, "testdata/weblog", r.dir)
	r.git("init", "-q", "-b", "main")
	r.git("add", ".")
	r.git("commit", "-q", "-m", "first")
	r.git("remote", "add", "pier", "ssh://git@localhost:"+s.sshPort+"/weblog.git")
	if out := r.mustPush(); !strings.Contains(out, "Released v2") {
		t.Fatalf("push:\n%s", out)
	}
	c.open(base + "/apps/weblog")
	c.waitFor("Running", 10*time.Second)
	c.waitFor("web.1", 10*time.Second)
	pushed := time.Now()
	t.Logf("deployed by git push: %s", time.Since(start).Round(time.Millisecond))

	// Config: set, hidden until revealed, edit, remove; a release each.
	c.open(base + "/apps/weblog/config")
	c.do(chromedp.SendKeys(chromedp.ID("cfg-key"), "GREETING"), chromedp.SendKeys(chromedp.ID("cfg-value"), "hi-there-1234"), chromedp.Submit(chromedp.ID("cfg-key")))
	c.waitFor("Set GREETING: released v3", time.Minute)
	if strings.Contains(c.text(), "hi-there-1234") || strings.Contains(eval[string](c, `document.documentElement.outerHTML`), "hi-there-1234") {
		t.Fatal("the config value is in the page before it is revealed")
	}
	c.do(chromedp.Click(chromedp.CSS(`a[aria-label="Reveal GREETING"]`)))
	c.waitFor("hi-there-1234", 10*time.Second)
	c.do(chromedp.Click(chromedp.CSS(`a[aria-label="Edit GREETING"]`)))
	c.waitJS(`!!document.getElementById("edit-value")`, 10*time.Second, "the edit form")
	c.do(chromedp.SetValue(chromedp.ID("edit-value"), "edited-5678"), chromedp.Submit(chromedp.ID("edit-value")))
	c.waitFor("Set GREETING: released v4", time.Minute)
	if got := s.body("weblog", "/"); got != "weblog says edited-5678" {
		t.Fatalf("the app serves %q after the edit", got)
	}
	c.do(chromedp.Click(chromedp.CSS(`button[aria-label="Remove GREETING"]`)))
	c.waitFor("Removed GREETING: released v5", time.Minute)
	c.open(base + "/apps/weblog/releases")
	for _, want := range []string{"v5 Unset GREETING", "v4 Set GREETING", "v3 Set GREETING", "v2 Deploy"} {
		c.waitFor(want, 5*time.Second)
	}
	t.Logf("config set, edited, removed (v3-v5): %s", time.Since(pushed).Round(time.Millisecond))

	// Scale web to 2: two processes up.
	mark := time.Now()
	c.open(base + "/apps/weblog")
	c.do(chromedp.SetValue(chromedp.ID("scale-web"), "2"), chromedp.Click(chromedp.ID("scale-web-button")))
	c.waitFor("Scaled web to 2", time.Minute)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c.open(base + "/apps/weblog")
		n := eval[int](c, `[...document.querySelectorAll("#processes li")].filter(li => /web\.[12]\s+Up/.test(li.innerText)).length`)
		if n == 2 && strings.Contains(c.text(), "2 of 2 up") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("web=2 did not show two processes up:\n%s", c.text())
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("scaled to two processes, both up: %s", time.Since(mark).Round(time.Millisecond))

	// Roll back to v3 (GREETING=hi-there-1234), with confirmation.
	mark = time.Now()
	c.open(base + "/apps/weblog/releases")
	c.do(chromedp.Click(chromedp.CSS(`a[href="/apps/weblog/releases/v3/rollback"]`)))
	c.waitFor("Roll back to v3?", 10*time.Second)
	c.do(chromedp.Click(chromedp.ID("confirm-rollback")))
	c.waitFor("Rolled back to v3: released v6", time.Minute)
	c.waitFor("Rollback to v3", 5*time.Second)
	if got := s.body("weblog", "/"); got != "weblog says hi-there-1234" {
		t.Fatalf("the app serves %q after the rollback", got)
	}
	t.Logf("rolled back: %s", time.Since(mark).Round(time.Millisecond))

	// Live logs, web only: a request to the app shows up as it happens.
	mark = time.Now()
	c.open(base + "/apps/weblog/logs?type=web")
	c.waitFor("Following", 15*time.Second)
	marker := fmt.Sprintf("/live-%d", time.Now().UnixNano())
	if code, _, err := s.get(http.DefaultClient, "weblog", marker); err != nil || code != 200 {
		t.Fatalf("GET %s: %d %v", marker, code, err)
	}
	c.waitJS(fmt.Sprintf(`document.getElementById("log").innerText.includes(%q)`, "request GET "+marker), 15*time.Second, "the request's log line")
	if procs := eval[string](c, `[...new Set([...document.querySelectorAll("#log .proc")].map(e => e.textContent.split(".")[0]))].join(",")`); procs != "web" {
		t.Fatalf("the web filter shows lines of %q", procs)
	}
	t.Logf("a request's log line appeared live in %s", time.Since(mark).Round(time.Millisecond))

	// SSH keys: add one, see it, remove it.
	mark = time.Now()
	key := filepath.Join(t.TempDir(), "laptop")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dev@laptop", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, _ := os.ReadFile(key + ".pub")
	c.open(base + "/account")
	c.do(chromedp.SendKeys(chromedp.ID("key-name"), "laptop"), chromedp.SetValue(chromedp.ID("key-text"), strings.TrimSpace(string(pub))), chromedp.Submit(chromedp.ID("key-name")))
	c.waitFor("Added key laptop", 20*time.Second)
	c.waitJS(`document.getElementById("keys").innerText.includes("laptop")`, 5*time.Second, "the key in the list")
	c.do(chromedp.Click(chromedp.CSS(`button[aria-label="Remove key laptop"]`)))
	c.waitFor("Removed key", 20*time.Second)
	if strings.Contains(eval[string](c, `document.getElementById("keys") ? document.getElementById("keys").innerText : ""`), "laptop") {
		t.Fatal("the removed key is still listed")
	}
	if out := s.c.must("", "keys"); strings.Contains(out, "laptop") {
		t.Fatalf("pier keys still lists the removed key:\n%s", out)
	}
	t.Logf("SSH key added and removed: %s", time.Since(mark).Round(time.Millisecond))

	// Screenshots, layout at 1280 and 390 px, and page weight.
	mark = time.Now()
	pages := []string{"/apps", "/apps/weblog", "/apps/weblog/releases", "/apps/weblog/config", "/apps/weblog/domains", "/apps/weblog/builds",
		"/apps/weblog/builds/1", "/apps/weblog/logs", "/apps/weblog/access", "/apps/weblog/activity", "/apps/weblog/destroy", "/account"}
	var weights []string
	for _, width := range []int64{1280, 390} {
		c.do(chromedp.EmulateViewport(width, 844))
		for _, p := range pages {
			if code := c.open(base + p); code != 200 {
				t.Fatalf("%s answered %d", p, code)
			}
			c.waitJS(`document.readyState === "complete"`, 10*time.Second, p+" to load")
			if sw := eval[int](c, `document.documentElement.scrollWidth`); sw > int(width) {
				t.Errorf("%s at %d px: the document is %d px wide (it scrolls sideways)", p, width, sw)
			}
			if bad := eval[string](c, controlsUsableJS); bad != "" {
				t.Errorf("%s at %d px: controls not usable: %s", p, width, bad)
			}
			if width == 1280 {
				w := eval[int](c, pageWeightJS)
				weights = append(weights, fmt.Sprintf("%s %d B", p, w))
				if w > 100<<10 {
					t.Errorf("%s weighs %d bytes, over 100 KB", p, w)
				}
			}
			switch p {
			case "/apps":
				c.screenshot(filepath.Join(shots, fmt.Sprintf("apps-%d.png", width)))
			case "/apps/weblog":
				c.screenshot(filepath.Join(shots, fmt.Sprintf("app-%d.png", width)))
			}
		}
	}
	c.do(chromedp.EmulateViewport(1280, 900))
	t.Logf("page weights (document + assets): %s", strings.Join(weights, ", "))
	t.Logf("layout checked at 1280 and 390 px, screenshots in %s: %s", shots, time.Since(mark).Round(time.Millisecond))

	// Log out; log in as eve, who is not a member of weblog: a 403 page.
	c.open(base + "/apps")
	c.do(chromedp.Click(chromedp.CSS(`header button[type=submit]`)))
	c.waitFor("You are logged out", 10*time.Second)
	c.do(chromedp.SendKeys(chromedp.ID("username"), "eve"), chromedp.SendKeys(chromedp.ID("password"), "eve's password\n"))
	c.waitJS(`location.pathname === "/apps" && document.readyState === "complete"`, 20*time.Second, "eve's apps list")
	if txt := c.text(); strings.Contains(txt, "weblog") || !strings.Contains(txt, "eves-app") {
		t.Fatalf("eve's apps list:\n%s", txt)
	}
	if code := c.open(base + "/apps/weblog"); code != 403 {
		t.Fatalf("eve opening weblog got %d, want 403:\n%s", code, c.text())
	}
	c.waitFor("You do not have access", 5*time.Second)
	if code := c.open(base + "/apps/weblog/config?reveal=*"); code != 403 {
		t.Fatalf("eve opening weblog's config got %d", code)
	}
	var info struct{ Formation map[string]int }
	jsonOut(t, s.c.must("", "apps:info", "-a", "weblog", "--json"), &info)
	if info.Formation["web"] != 2 {
		t.Fatalf("formation after the browser session: %v", info.Formation)
	}
	// Config values and passwords typed in the browser reach no log line.
	for _, secret := range []string{"hi-there-1234", "edited-5678", "push test password", "eve's password"} {
		if strings.Contains(s.d.out.String(), secret) {
			t.Errorf("pierd's output holds a secret typed in the dashboard (%.6s...)", secret)
		}
	}
	t.Logf("TestDashboard took %s", time.Since(start).Round(time.Millisecond))
}
