package web

import (
	"fmt"
	"html/template"
	"io/fs"
	"strings"
	"time"
)

var funcs = template.FuncMap{
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		d := time.Since(t)
		switch {
		case d < time.Minute:
			return "just now"
		case d < time.Hour:
			return fmt.Sprintf("%d min ago", int(d.Minutes()))
		case d < 48*time.Hour:
			return fmt.Sprintf("%d h ago", int(d.Hours()))
		}
		return t.UTC().Format("2 Jan 2006")
	},
	"iso":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"short": func(s string) string { return s[:min(len(s), 7)] },
	"procState": func(state string) string {
		return map[string]string{"up": "ok", "starting": "busy", "crashed": "bad", "stopping": "idle"}[state]
	},
	"relState": func(state string) string {
		return map[string]string{"succeeded": "ok", "pending": "busy", "failed": "bad"}[state]
	},
	"tabs": func() []tab { return appTabs },
	"title": func(s string) string {
		if s == "" {
			return s
		}
		return strings.ToUpper(s[:1]) + s[1:]
	},
}

// parsePages parses each page with the layout it fills in.
func parsePages() map[string]*template.Template {
	layout := template.Must(template.New("").Funcs(funcs).ParseFS(templateFS, "templates/_*.html"))
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		base := n[len("templates/"):]
		if strings.HasPrefix(base, "_") {
			continue
		}
		pages[base] = template.Must(template.Must(layout.Clone()).ParseFS(templateFS, n))
	}
	return pages
}

type tab struct{ Name, Label, Path string }

var appTabs = []tab{
	{"overview", "Overview", ""}, {"releases", "Releases", "/releases"}, {"config", "Config", "/config"},
	{"domains", "Domains", "/domains"}, {"builds", "Builds", "/builds"}, {"logs", "Logs", "/logs"},
	{"access", "Access", "/access"}, {"activity", "Activity", "/activity"},
}
