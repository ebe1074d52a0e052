package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

// printJSON prints v as the API sends it, indented for people and jq.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table aligns tab-separated columns.
func table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
}

// row writes one table row, cleaning each cell of control characters so
// that a name or note from the server cannot move the cursor or break the
// columns.
func row(w io.Writer, cells ...string) {
	for i := range cells {
		cells[i] = clean(cells[i])
	}
	fmt.Fprintln(w, strings.Join(cells, "\t"))
}

// clean replaces control characters (terminal escapes, tabs, newlines)
// with '?'. Config values, which the user asked to see, are not cleaned.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}

// cleanLines is clean for text of several lines: it keeps the newlines.
func cleanLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = clean(l)
	}
	return strings.Join(lines, "\n")
}

// when renders t in local time with how long ago it was, such as
// "2026-11-23 20:41 (2 minutes ago)".
func (c *cli) when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04") + " (" + ago(c.now().Sub(t)) + ")"
}

// age renders how long ago t was, such as "2 minutes ago".
func (c *cli) age(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return ago(c.now().Sub(t))
}

// date renders t as a local date and time, without the "ago".
func date(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}

func ago(d time.Duration) string {
	if d < 0 {
		return "in the future" // clocks disagree; say so rather than lie
	}
	unit := func(n int, name string) string {
		if n == 1 {
			return "1 " + name + " ago"
		}
		return fmt.Sprintf("%d %ss ago", n, name)
	}
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return unit(int(d/time.Minute), "minute")
	case d < 24*time.Hour:
		return unit(int(d/time.Hour), "hour")
	case d < 60*24*time.Hour:
		return unit(int(d/(24*time.Hour)), "day")
	case d < 2*365*24*time.Hour:
		return unit(int(d/(30*24*time.Hour)), "month")
	default:
		return unit(int(d/(365*24*time.Hour)), "year")
	}
}

// shellQuote quotes s for a POSIX shell: in single quotes, where nothing is
// special, with each embedded single quote written as quote, backslash,
// quote, quote (close, escaped quote, reopen). Any value (newlines, $,
// backquotes) survives `eval` or `source` intact.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// joinAnd joins names as "A", "A and B", "A, B and C".
func joinAnd(names []string) string {
	switch len(names) {
	case 0:
		return ""
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// plural returns "1 app", "2 apps".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
