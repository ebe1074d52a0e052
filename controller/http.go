package controller

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"

	"github.com/pierpaas/pier"
)

// MaxBodyBytes bounds every request body; the largest legitimate one is a
// config change at pier.ConfigTotalMax plus JSON overhead.
const MaxBodyBytes = 1 << 20

// statusOf is the one place where domain error codes become HTTP statuses.
func statusOf(code string) int {
	switch code {
	case pier.EINVALID:
		return http.StatusBadRequest
	case pier.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case pier.EFORBIDDEN:
		return http.StatusForbidden
	case pier.ENOTFOUND:
		return http.StatusNotFound
	case pier.ECONFLICT:
		return http.StatusConflict
	case pier.ETOOLARGE:
		return http.StatusRequestEntityTooLarge
	case pier.ETOOMANY:
		return http.StatusTooManyRequests
	case pier.EUNAVAILABLE:
		return http.StatusServiceUnavailable
	case pier.EROLLOUT:
		return http.StatusUnprocessableEntity
	case pier.ENOSPACE:
		// Not 500 (nothing is broken in Pier) nor 503 (which says "try
		// again soon"): the request is fine, and the server cannot store
		// it until the operator frees space.
		return http.StatusInsufficientStorage
	default:
		return http.StatusInternalServerError
	}
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// writeError answers with err's code and message. Internal errors are
// logged with their detail and answered with a generic message, so that no
// SQL, path or secret leaks to the caller.
//
// An error met while the database is not answering (see withHealth) is
// answered 503 with Retry-After and a message naming the cause, whatever
// it was in detail: a lost connection is not a bug of the caller or of
// Pier. Its detail goes to the debug log.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	if outage(r.Context(), err) {
		log.DebugContext(r.Context(), "database outage", "method", r.Method, "path", r.URL.Path, "err", err)
		var body errorBody
		body.Error.Code = pier.EUNAVAILABLE
		body.Error.Message = pier.OutageMessage
		w.Header().Set("Retry-After", outageRetryAfter)
		writeJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	code := pier.ErrorCode(err)
	switch code {
	case pier.EINTERNAL:
		log.ErrorContext(r.Context(), "internal error", "method", r.Method, "path", r.URL.Path, "err", err)
	case pier.ENOSPACE:
		// The operator's to fix: the log has what could not be written.
		log.ErrorContext(r.Context(), "disk full", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	var body errorBody
	body.Error.Code = code
	body.Error.Message = pier.ErrorMessage(err)
	if code == pier.EUNAUTHORIZED {
		w.Header().Set("WWW-Authenticate", `Bearer realm="pier"`)
	}
	writeJSON(w, statusOf(code), body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if v != nil {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(true)
		_ = enc.Encode(v)
	}
}

// decode reads one JSON value into v. The body must be JSON, at most
// MaxBodyBytes, with no unknown fields and nothing after the value.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	body := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			return pier.Errorf(pier.EINVALID, "request body has more than one JSON value: send exactly one object")
		}
		return nil
	}
	var maxErr *http.MaxBytesError
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &maxErr):
		return pier.Errorf(pier.ETOOLARGE, "request body is over %d bytes: send less", MaxBodyBytes)
	case errors.Is(err, io.EOF):
		return pier.Errorf(pier.EINVALID, "request body is empty: send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return pier.Errorf(pier.EINVALID, "request body is truncated JSON: send a complete JSON object")
	case errors.As(err, &syntaxErr):
		return pier.Errorf(pier.EINVALID, "request body is not valid JSON (at byte %d): %v", syntaxErr.Offset, syntaxErr)
	case errors.As(err, &typeErr):
		if typeErr.Field != "" {
			return pier.Errorf(pier.EINVALID, "field %q must be a %s, not a JSON %s", typeErr.Field, jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
		}
		return pier.Errorf(pier.EINVALID, "request body must be a JSON %s, not a JSON %s", jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
	default:
		// Unknown fields and similar: encoding/json's message names the field.
		return pier.Errorf(pier.EINVALID, "request body is invalid: %v", err)
	}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "map", "struct":
		return "object"
	case "slice", "array":
		return "array"
	case "int", "int64", "int32", "uint", "uint64", "float64":
		return "number"
	case "bool":
		return "boolean"
	case "ptr":
		return "string or null"
	}
	return goKind
}

// page reads ?limit= and ?after=.
func page(r *http.Request) (pier.Page, error) {
	var p pier.Page
	q := r.URL.Query()
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > pier.PageMax {
			return p, pier.Errorf(pier.EINVALID, "limit %q is invalid: use 1 to %d", s, pier.PageMax)
		}
		p.Limit = n
	}
	p.After = q.Get("after")
	if len(p.After) > 256 {
		return p, pier.Errorf(pier.EINVALID, "cursor is too long: pass back the 'next' value of the previous page")
	}
	return p.Normalized(), nil
}

// list wraps a page of items in the API's list shape. A nil slice is sent as
// [] so that clients never see null.
func list[T any](items []T, next string) pier.List[T] {
	if items == nil {
		items = []T{}
	}
	return pier.List[T]{Items: items, Next: next}
}

// decodeQuery reads query parameters into the struct v points to: each
// field tagged `query:"name"` (a string, an integer or a boolean, or a
// pointer to one, set only when the parameter is present). Other
// parameters are ignored. The same struct, as a GET route's in, documents
// the parameters in the OpenAPI document.
func decodeQuery(r *http.Request, v any) error {
	q := r.URL.Query()
	rv := reflect.ValueOf(v).Elem()
	for i := 0; i < rv.NumField(); i++ {
		f := rv.Type().Field(i)
		name := f.Tag.Get("query")
		if name == "" || !q.Has(name) {
			continue
		}
		raw := q.Get(name)
		fv := rv.Field(i)
		if fv.Kind() == reflect.Pointer {
			fv.Set(reflect.New(fv.Type().Elem()))
			fv = fv.Elem()
		}
		shown := raw
		if len(shown) > 40 {
			shown = shown[:40] + "…"
		}
		switch fv.Kind() {
		case reflect.String:
			fv.SetString(raw)
		case reflect.Int:
			n, err := strconv.Atoi(raw)
			if err != nil {
				return pier.Errorf(pier.EINVALID, "query parameter %s=%q is not a whole number", name, shown)
			}
			fv.SetInt(int64(n))
		case reflect.Bool:
			b, err := strconv.ParseBool(raw)
			if raw == "" {
				b, err = true, nil // ?follow alone means yes
			}
			if err != nil {
				return pier.Errorf(pier.EINVALID, "query parameter %s=%q is not true or false", name, shown)
			}
			fv.SetBool(b)
		default:
			panic("decodeQuery: unsupported field type " + fv.Type().String())
		}
	}
	return nil
}
