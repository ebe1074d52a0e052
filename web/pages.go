package web

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pierpaas/pier"
)

// view is what every page's template gets.
type view struct {
	Title string
	User  *pier.User
	CSRF  string
	Flash string
	Err   string   // what went wrong, shown where it happened
	App   *appView // on an app's pages
	Tab   string
	D     any // the page's own data
}

// appView is an app as its pages show it.
type appView struct {
	pier.AppInfo
	Status status
	Types  []string // process types: formation and current build
	Up     int      // processes up
	Want   int      // processes wanted (formation)
	Procs  []pier.Process
}

// status is an app's state in a word, with the CSS class of its colour.
type status struct{ Word, Class, Why string }

var (
	stRunning     = status{"Running", "ok", ""}
	stDeploying   = status{"Deploying", "busy", ""}
	stFailed      = status{"Failed", "bad", ""}
	stCrashed     = status{"Crashed", "bad", ""}
	stStopped     = status{"Stopped", "idle", "scaled to zero"}
	stNotDeployed = status{"Not deployed", "idle", "no build yet: git push to deploy"}
	stUnknown     = status{"Unknown", "idle", ""}
)

// appStatus says how an app is from its info, its processes, its newest
// build and its newest release.
func appStatus(info *pier.AppInfo, procs []pier.Process, procsErr error, build *pier.Build, rel *pier.Release) (status, int, int) {
	want := 0
	for _, n := range info.Formation {
		want += n
	}
	up := 0
	crashed := 0
	for _, p := range procs {
		if info.Release != nil && p.Release != info.Release.Version {
			continue
		}
		switch p.State {
		case pier.ProcessUp:
			up++
		case pier.ProcessCrashed:
			crashed++
		}
	}
	switch {
	case build != nil && build.Status == pier.BuildPending, info.Release != nil && info.Release.Status == pier.ReleasePending && info.Release.Build != nil:
		return stDeploying, up, want
	case crashed > 0:
		s := stCrashed
		s.Why = fmt.Sprintf("%d process(es) crashed: see the logs", crashed)
		return s, up, want
	case rel != nil && rel.Status == pier.ReleaseFailed:
		s := stFailed
		s.Why = fmt.Sprintf("v%d did not start: %s", rel.Version, clip(rel.Failure))
		return s, up, want
	case build != nil && build.Status == pier.BuildFailed && (info.Release == nil || info.Release.Build == nil || info.Release.Build.ID < build.ID):
		s := stFailed
		s.Why = fmt.Sprintf("build %d failed: see its log", build.ID)
		return s, up, want
	case info.Release == nil || info.Release.Build == nil:
		return stNotDeployed, up, want
	case procsErr != nil:
		return stUnknown, up, want
	case want == 0:
		return stStopped, up, want
	case up >= want:
		return stRunning, up, want
	}
	return stDeploying, up, want
}

// loadApp loads what every page of an app shows in its header.
func (h *Handler) loadApp(ctx context.Context, s *session, name string, withProcs bool) (*appView, error) {
	info, err := s.api.App(ctx, name)
	if err != nil {
		return nil, err
	}
	v := &appView{AppInfo: *info}
	var procsErr error
	var procs *pier.List[pier.Process]
	if procs, procsErr = s.api.Processes(ctx, name); procsErr == nil {
		v.Procs = procs.Items
		sort.Slice(v.Procs, func(i, j int) bool {
			a, b := v.Procs[i], v.Procs[j]
			if a.Type != b.Type {
				return a.Type < b.Type
			}
			return a.Index < b.Index
		})
	}
	var build *pier.Build
	if bs, err := s.api.Builds(ctx, name, pier.Page{Limit: 1}); err == nil && len(bs.Items) > 0 {
		build = &bs.Items[0]
	}
	var rel *pier.Release
	if rs, err := s.api.Releases(ctx, name, pier.Page{Limit: 1}); err == nil && len(rs.Items) > 0 {
		rel = &rs.Items[0]
	}
	v.Status, v.Up, v.Want = appStatus(info, v.Procs, procsErr, build, rel)
	types := map[string]bool{}
	for t := range info.Formation {
		types[t] = true
	}
	if info.Release != nil && info.Release.Build != nil {
		for t := range info.Release.Build.ProcessTypes {
			types[t] = true
		}
	}
	for t := range types {
		v.Types = append(v.Types, t)
	}
	sort.Strings(v.Types)
	return v, nil
}

func (h *Handler) newView(w http.ResponseWriter, r *http.Request, s *session, title string) *view {
	v := &view{Title: title, Flash: h.takeFlash(w, r)}
	if s != nil {
		v.User, v.CSRF = s.user, s.csrf()
	}
	return v
}

// render writes a page. Pages are never cached: they hold a user's data.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name string, v *view) {
	t := h.pages[name]
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		h.log.ErrorContext(r.Context(), "dashboard template", "page", name, "err", err)
		http.Error(w, "The page could not be made: this is a bug in Pier.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// errorPage shows an error as a page of its own (403, 404...).
func (h *Handler) errorPage(w http.ResponseWriter, r *http.Request, s *session, err error) {
	code := statusOf(err)
	if code == http.StatusUnauthorized {
		setCookie(w, r, sessionCookie, "", time.Time{})
		h.toLogin(w, r, message(err))
		return
	}
	if code == http.StatusInternalServerError {
		h.log.ErrorContext(r.Context(), "dashboard", "path", r.URL.Path, "err", err)
	}
	v := h.newView(w, r, s, http.StatusText(code))
	title := map[int]string{403: "You do not have access to this", 404: "Not found"}[code]
	if title == "" {
		title = "That did not work"
	}
	v.D = struct {
		Code    int
		Heading string
		Message string
	}{code, title, message(err)}
	h.render(w, r, code, "error.html", v)
}

func (h *Handler) csrfRejected(w http.ResponseWriter, r *http.Request) {
	v := &view{Title: "Form refused"}
	v.D = struct {
		Code    int
		Heading string
		Message string
	}{403, "This form was refused", "The form did not carry this session's security token, so Pier did not act on it: it may be old, or it may have come from another site. Go back, reload the page, and submit it again."}
	h.render(w, r, http.StatusForbidden, "error.html", v)
}

// done redirects after a change, with a message for the next page.
func (h *Handler) done(w http.ResponseWriter, r *http.Request, msg, to string) {
	if msg != "" {
		h.flash(w, r, msg)
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

func (h *Handler) home(w http.ResponseWriter, r *http.Request) {
	if cookieValue(r, sessionCookie) == "" {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/apps", http.StatusSeeOther)
}

// Login and logout.

type loginData struct {
	Username, Next string
}

func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	h.showLogin(w, r, http.StatusOK, loginData{Next: r.URL.Query().Get("next")}, "")
}

func (h *Handler) showLogin(w http.ResponseWriter, r *http.Request, code int, d loginData, errMsg string) {
	secret := cookieValue(r, loginCookie)
	if secret == "" {
		secret = randomValue()
		setCookie(w, r, loginCookie, secret, time.Time{})
	}
	v := h.newView(w, r, nil, "Log in")
	v.CSRF = csrfToken(secret, "login")
	v.Err = errMsg
	v.D = d
	h.render(w, r, code, "login.html", v)
}

func (h *Handler) loginPost(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	d := loginData{Username: strings.TrimSpace(r.PostFormValue("username")), Next: r.PostFormValue("next")}
	secret := cookieValue(r, loginCookie)
	if secret == "" {
		h.showLogin(w, r, http.StatusForbidden, d, "Your browser did not send back the login cookie: allow cookies for this site, then log in again.")
		return
	}
	if !sameOrigin(r) || !validCSRF(r, secret, "login") {
		h.csrfRejected(w, r)
		return
	}
	sess, err := h.client("").Login(r.Context(), d.Username, r.PostFormValue("password"))
	if err != nil {
		h.showLogin(w, r, statusOf(err), d, message(err))
		return
	}
	setCookie(w, r, loginCookie, "", time.Time{})
	setCookie(w, r, sessionCookie, sess.Token, sess.ExpiresAt)
	http.Redirect(w, r, safeNext(d.Next), http.StatusSeeOther)
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request, s *session) {
	if err := s.api.Logout(r.Context()); err != nil && pier.ErrorCode(err) != pier.EUNAUTHORIZED {
		h.errorPage(w, r, s, err)
		return
	}
	setCookie(w, r, sessionCookie, "", time.Time{})
	h.done(w, r, "You are logged out.", "/login")
}

// The apps list.

type appRow struct {
	Name, Owner, URL string
	Status           status
	Up, Want         int
	Release          *pier.Release
}

func (h *Handler) appsPage(w http.ResponseWriter, r *http.Request, s *session) {
	h.showApps(w, r, s, http.StatusOK, "", "")
}

func (h *Handler) showApps(w http.ResponseWriter, r *http.Request, s *session, code int, errMsg, name string) {
	ctx := r.Context()
	list, err := s.api.ListApps(ctx, pier.Page{Limit: 100})
	if err != nil {
		h.errorPage(w, r, s, err)
		return
	}
	rows := make([]appRow, len(list.Items))
	for i, a := range list.Items {
		rows[i] = appRow{Name: a.Name, Owner: a.Owner, Status: stUnknown}
		if av, err := h.loadApp(ctx, s, a.Name, true); err == nil {
			rows[i] = appRow{Name: a.Name, Owner: a.Owner, URL: av.URL, Status: av.Status, Up: av.Up, Want: av.Want, Release: av.Release}
		}
	}
	v := h.newView(w, r, s, "Apps")
	v.Err = errMsg
	v.D = struct {
		Apps    []appRow
		More    bool
		NewName string
	}{rows, list.Next != "", name}
	h.render(w, r, code, "apps.html", v)
}

func (h *Handler) createApp(w http.ResponseWriter, r *http.Request, s *session) {
	name := strings.TrimSpace(r.PostFormValue("name"))
	info, err := s.api.CreateApp(r.Context(), name)
	if err != nil {
		h.showApps(w, r, s, statusOf(err), message(err), name)
		return
	}
	h.done(w, r, fmt.Sprintf("Created %s. Deploy it with git push (see below).", info.Name), "/apps/"+info.Name)
}

// An app's pages.

// appPage loads the app, or shows why not (403 for a non-member).
func (h *Handler) appPage(w http.ResponseWriter, r *http.Request, s *session, tab string) (*view, bool) {
	av, err := h.loadApp(r.Context(), s, r.PathValue("app"), true)
	if err != nil {
		h.errorPage(w, r, s, err)
		return nil, false
	}
	v := h.newView(w, r, s, av.Name)
	v.App, v.Tab = av, tab
	return v, true
}

func (h *Handler) overview(w http.ResponseWriter, r *http.Request, s *session) {
	h.showOverview(w, r, s, http.StatusOK, "")
}

func (h *Handler) showOverview(w http.ResponseWriter, r *http.Request, s *session, code int, errMsg string) {
	v, ok := h.appPage(w, r, s, "overview")
	if !ok {
		return
	}
	v.Err = errMsg
	h.render(w, r, code, "overview.html", v)
}

func (h *Handler) scale(w http.ResponseWriter, r *http.Request, s *session) {
	app := r.PathValue("app")
	typ := r.PostFormValue("type")
	n, err := strconv.Atoi(strings.TrimSpace(r.PostFormValue("quantity")))
	if err != nil || n < 0 {
		h.showOverview(w, r, s, http.StatusUnprocessableEntity, fmt.Sprintf("Scale %s: give a whole number of processes from 0 to %d.", typ, pier.ScaleMax))
		return
	}
	if _, err := s.api.Scale(r.Context(), app, pier.Formation{typ: n}); err != nil {
		h.showOverview(w, r, s, statusOf(err), "Scale "+typ+": "+message(err))
		return
	}
	h.done(w, r, fmt.Sprintf("Scaled %s to %d.", typ, n), "/apps/"+app)
}

func (h *Handler) restart(w http.ResponseWriter, r *http.Request, s *session) {
	app := r.PathValue("app")
	typ := r.PostFormValue("type")
	if err := s.api.Restart(r.Context(), app, typ); err != nil {
		h.showOverview(w, r, s, statusOf(err), "Restart: "+message(err))
		return
	}
	what := "all processes"
	if typ != "" {
		what = typ + " processes"
	}
	h.done(w, r, "Restarted "+what+".", "/apps/"+app)
}

// Releases.

func (h *Handler) releasesPage(w http.ResponseWriter, r *http.Request, s *session) {
	v, ok := h.appPage(w, r, s, "releases")
	if !ok {
		return
	}
	rels, err := s.api.Releases(r.Context(), v.App.Name, pier.Page{Limit: 50})
	if err != nil {
		h.errorPage(w, r, s, err)
		return
	}
	v.D = rels
	h.render(w, r, http.StatusOK, "releases.html", v)
}

func (h *Handler) rollbackPage(w http.ResponseWriter, r *http.Request, s *session) {
	h.showRollback(w, r, s, http.StatusOK, "")
}

func (h *Handler) showRollback(w http.ResponseWriter, r *http.Request, s *session, code int, errMsg string) {
	v, ok := h.appPage(w, r, s, "releases")
	if !ok {
		return
	}
	version, err := pier.ParseVersion(r.PathValue("version"))
	if err != nil {
		h.errorPage(w, r, s, err)
		return
	}
	rel, err := s.api.Release(r.Context(), v.App.Name, version)
	if err != nil {
		h.errorPage(w, r, s, err)
		return
	}
	rel.Config = nil // never on the page
	v.Err = errMsg
	v.D = rel
	h.render(w, r, code, "rollback.html", v)
}

func (h *Handler) rollback(w http.ResponseWriter, r *http.Request, s *session) {
	app := r.PathValue("app")
	version, err := pier.ParseVersion(r.PathValue("version"))
	if err != nil {
		h.errorPage(w, r, s, err)
		return
	}
	rel, err := s.api.Rollback(r.Context(), app, version)
	if err != nil {
		h.showRollback(w, r, s, statusOf(err), message(err))
		return
	}
	h.done(w, r, fmt.Sprintf("Rolled back to v%d: released v%d.", version, rel.Version), "/apps/"+app+"/releases")
}

// Config.

type configRow struct {
	Key, Value       string
	Revealed, Edited bool
}

func (h *Handler) configPage(w http.ResponseWriter, r *http.Request, s *session) {
	h.showConfig(w, r, s, http.StatusOK, "", "", "")
}

func (h *Handler) showConfig(w http.ResponseWriter, r *http.Request, s *session, code int, errMsg, key, value string) {
	v, ok := h.appPage(w, r, s, "config")
	if !ok {
		return
	}
	cfg, err := s.api.Config(r.Context(), v.App.Name)
	if err != nil {
		h.errorPage(w, r, s, err)
		return
	}
	q := r.URL.Query()
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	rows := make([]configRow, len(keys))
	for i, k := range keys {
		rows[i] = configRow{Key: k, Revealed: q.Get("reveal") == k || q.Get("reveal") == "*", Edited: q.Get("edit") == k}
		if rows[i].Revealed || rows[i].Edited {
			rows[i].Value = cfg[k] // masked unless asked for
		}
	}
	v.Err = errMsg
	v.D = struct {
		Rows       []configRow
		Key, Value string
	}{rows, key, value}
	h.render(w, r, code, "config.html", v)
}

func (h *Handler) setConfig(w http.ResponseWriter, r *http.Request, s *session) {
	app := r.PathValue("app")
	key := strings.TrimSpace(r.PostFormValue("key"))
	value := r.PostFormValue("value")
	if key == "" {
		h.showConfig(w, r, s, http.StatusUnprocessableEntity, "Give the config var a name, such as DATABASE_URL.", key, value)
		return
	}
	rel, err := s.api.SetConfig(r.Context(), app, map[string]string{key: value}, nil)
	if err != nil {
		h.showConfig(w, r, s, statusOf(err), message(err), key, value)
		return
	}
	h.done(w, r, fmt.Sprintf("Set %s: released v%d.", key, rel.Version), "/apps/"+app+"/config")
}

func (h *Handler) unsetConfig(w http.ResponseWriter, r *http.Request, s *session) {
	app := r.PathValue("app")
	key := r.PostFormValue("key")
	rel, err := s.api.SetConfig(r.Context(), app, nil, []string{key})
	if err != nil {
		h.showConfig(w, r, s, statusOf(err), message(err), "", "")
		return
	}
	h.done(w, r, fmt.Sprintf("Removed %s: released v%d.", key, rel.Version), "/apps/"+app+"/config")
}

// Domains.

func (h *Handler) domainsPage(w http.ResponseWriter, r *http.Request, s *session) {
	h.showDomains(w, r, s, http.StatusOK, "", "")
}

func (h *Handler) showDomains(w http.ResponseWriter, r *http.Request, s *session, code int, errMsg, hostname string) {
	v, ok := h.appPage(w, r, s, "domains")
	if !ok {
		return
	}
	ds, err := s.api.Domains(r.Context(), v.App.Name)
	if err != nil {
		h.errorPage(w, r, s, err)
		return
	}
	v.Err = errMsg
	v.D = struct {
		Domains  []pier.Domain
		Hostname string
	}{ds.Items, hostname}
	h.render(w, r, code, "domains.html", v)
}

func (h *Handler) addDomain(w http.ResponseWriter, r *http.Request, s *session) {
	app := r.PathValue("app")
	host := strings.TrimSpace(r.PostFormValue("hostname"))
	d, err := s.api.AddDomain(r.Context(), app, host)
	if err != nil {
		h.showDomains(w, r, s, statusOf(err), message(err), host)
		return
	}
	h.done(w, r, "Added "+d.Hostname+". Point its DNS at this platform's router.", "/apps/"+app+"/domains")
}

func (h *Handler) removeDomain(w http.ResponseWriter, r *http.Request, s *session) {
	app := r.PathValue("app")
	host := r.PostFormValue("hostname")
	if err := s.api.RemoveDomain(r.Context(), app, host); err != nil {
		h.showDomains(w, r, s, statusOf(err), message(err), "")
		return
	}
	h.done(w, r, "Removed "+host+".", "/apps/"+app+"/domains")
}

// Builds.

func (h *Handler) buildsPage(w http.ResponseWriter, r *http.Request, s *session) {
	v, ok := h.appPage(w, r, s, "builds")
	if !ok {
		return
	}
	bs, err := s.api.Builds(r.Context(), v.App.Name, pier.Page{Limit: 50})
	if err != nil {
		h.errorPage(w, r, s, err)
		return
	}
	v.D = bs.Items
	h.render(w, r, http.StatusOK, "builds.html", v)
}

// buildLogShown bounds the log on a build's page (a log may be 1 MiB; a
// page stays under 100 KB): its end, where a failure is.
const buildLogShown = 60 << 10

func (h *Handler) buildPage(w http.ResponseWriter, r *http.Request, s *session) {
	v, ok := h.appPage(w, r, s, "builds")
	if !ok {
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		h.errorPage(w, r, s, pier.Errorf(pier.ENOTFOUND, "there is no build %q: pick one from the list of builds", clip(r.PathValue("id"))))
		return
	}
	b, err := s.api.Build(r.Context(), v.App.Name, id)
	if err != nil {
		h.errorPage(w, r, s, err)
		return
	}
	cut := 0
	if len(b.Log) > buildLogShown {
		cut = len(b.Log) - buildLogShown
		b.Log = strings.ToValidUTF8(b.Log[cut:], "")
	}
	v.Title = fmt.Sprintf("Build %d of %s", b.ID, v.App.Name)
	v.D = struct {
		Build *pier.Build
		Cut   int
	}{b, cut}
	h.render(w, r, http.StatusOK, "build.html", v)
}

// Logs.

func (h *Handler) logsPage(w http.ResponseWriter, r *http.Request, s *session) {
	v, ok := h.appPage(w, r, s, "logs")
	if !ok {
		return
	}
	typ := r.URL.Query().Get("type")
	if typ != "" && !slices.Contains(v.App.Types, typ) {
		typ = ""
	}
	v.D = struct{ Type string }{typ}
	h.render(w, r, http.StatusOK, "logs.html", v)
}

// Access.

func (h *Handler) accessPage(w http.ResponseWriter, r *http.Request, s *session) {
	h.showAccess(w, r, s, http.StatusOK, "", "")
}

func (h *Handler) showAccess(w http.ResponseWriter, r *http.Request, s *session, code int, errMsg, username string) {
	v, ok := h.appPage(w, r, s, "access")
	if !ok {
		return
	}
	ms, err := s.api.Perms(r.Context(), v.App.Name)
	if err != nil {
		h.errorPage(w, r, s, err)
		return
	}
	v.Err = errMsg
	v.D = struct {
		Members  []pier.Member
		CanEdit  bool
		Username string
	}{ms.Items, s.user.Admin || v.App.Owner == s.user.Username, username}
	h.render(w, r, code, "access.html", v)
}

func (h *Handler) addMember(w http.ResponseWriter, r *http.Request, s *session) {
	app := r.PathValue("app")
	user := strings.TrimSpace(r.PostFormValue("username"))
	if _, err := s.api.AddPerm(r.Context(), app, user); err != nil {
		h.showAccess(w, r, s, statusOf(err), message(err), user)
		return
	}
	h.done(w, r, user+" is now a collaborator.", "/apps/"+app+"/access")
}

func (h *Handler) removeMember(w http.ResponseWriter, r *http.Request, s *session) {
	app := r.PathValue("app")
	user := r.PostFormValue("username")
	if err := s.api.RemovePerm(r.Context(), app, user); err != nil {
		h.showAccess(w, r, s, statusOf(err), message(err), "")
		return
	}
	h.done(w, r, user+" no longer has access.", "/apps/"+app+"/access")
}

// Activity.

func (h *Handler) activityPage(w http.ResponseWriter, r *http.Request, s *session) {
	v, ok := h.appPage(w, r, s, "activity")
	if !ok {
		return
	}
	ev, err := s.api.Events(r.Context(), v.App.Name, pier.Page{Limit: 100})
	if err != nil {
		h.errorPage(w, r, s, err)
		return
	}
	v.D = ev.Items
	h.render(w, r, http.StatusOK, "activity.html", v)
}

// Destroy.

func (h *Handler) destroyPage(w http.ResponseWriter, r *http.Request, s *session) {
	h.showDestroy(w, r, s, http.StatusOK, "")
}

func (h *Handler) showDestroy(w http.ResponseWriter, r *http.Request, s *session, code int, errMsg string) {
	v, ok := h.appPage(w, r, s, "overview")
	if !ok {
		return
	}
	v.Err = errMsg
	h.render(w, r, code, "destroy.html", v)
}

func (h *Handler) destroy(w http.ResponseWriter, r *http.Request, s *session) {
	app := r.PathValue("app")
	if got := strings.TrimSpace(r.PostFormValue("confirm")); got != app {
		h.showDestroy(w, r, s, http.StatusUnprocessableEntity, fmt.Sprintf("Nothing was destroyed: type the app's name, %s, exactly, to confirm.", app))
		return
	}
	if err := s.api.DestroyApp(r.Context(), app); err != nil {
		h.showDestroy(w, r, s, statusOf(err), message(err))
		return
	}
	h.done(w, r, "Destroyed "+app+".", "/apps")
}

// Account.

func (h *Handler) accountPage(w http.ResponseWriter, r *http.Request, s *session) {
	h.showAccount(w, r, s, http.StatusOK, "", "", "")
}

func (h *Handler) showAccount(w http.ResponseWriter, r *http.Request, s *session, code int, errMsg, name, key string) {
	keys, err := s.api.ListKeys(r.Context())
	if err != nil {
		h.errorPage(w, r, s, err)
		return
	}
	v := h.newView(w, r, s, "Account")
	v.Err = errMsg
	v.D = struct {
		Keys      []pier.Key
		Name, Key string
	}{keys.Items, name, key}
	h.render(w, r, code, "account.html", v)
}

func (h *Handler) addKey(w http.ResponseWriter, r *http.Request, s *session) {
	name := strings.TrimSpace(r.PostFormValue("name"))
	key := strings.TrimSpace(r.PostFormValue("public_key"))
	if key == "" {
		h.showAccount(w, r, s, http.StatusUnprocessableEntity, "Paste a public key: the one line in a file such as ~/.ssh/id_ed25519.pub.", name, key)
		return
	}
	k, err := s.api.AddKey(r.Context(), name, key)
	if err != nil {
		h.showAccount(w, r, s, statusOf(err), message(err), name, key)
		return
	}
	h.done(w, r, fmt.Sprintf("Added key %s (%s).", k.Name, k.Fingerprint), "/account")
}

func (h *Handler) removeKey(w http.ResponseWriter, r *http.Request, s *session) {
	fp := r.PostFormValue("fingerprint")
	if err := s.api.RemoveKey(r.Context(), fp); err != nil {
		h.showAccount(w, r, s, statusOf(err), message(err), "", "")
		return
	}
	h.done(w, r, "Removed key "+fp+".", "/account")
}
