package postgres

import (
	"strconv"

	"github.com/pierpaas/pier"
)

// A page is fetched with one row more than asked for: its presence says
// there is a next page, without a count.

// cutPage trims items to limit and returns the cursor of the next page ("" if
// this is the last one).
func cutPage[T any](items []T, limit int, cursor func(T) string) ([]T, string) {
	if len(items) <= limit {
		return items, ""
	}
	items = items[:limit]
	return items, cursor(items[limit-1])
}

func badCursor(after string) error {
	if len(after) > 40 {
		after = after[:40] + "…"
	}
	return pier.Errorf(pier.EINVALID, "page cursor %q is invalid: pass the \"next\" value of the previous page", after)
}

// idCursor parses a cursor that is a positive integer (a version or an ID);
// 0 means "from the start".
func idCursor(after string) (int64, error) {
	if after == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(after, 10, 64)
	if err != nil || n < 1 {
		return 0, badCursor(after)
	}
	return n, nil
}

// nameCursor checks a cursor that is a name (of an app or a user): short and
// of the characters names are made of, so nothing else is ever compared.
func nameCursor(after string) (string, error) {
	if len(after) > 64 {
		return "", badCursor(after)
	}
	for i := 0; i < len(after); i++ {
		c := after[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return "", badCursor(after)
		}
	}
	return after, nil
}
