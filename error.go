// Package pier holds Pier's domain: the types every component shares, the
// interfaces that connect them, and the error codes they speak. It imports
// nothing but the standard library so that every other package can depend on
// it without dragging in a database driver or an HTTP stack.
package pier

import (
	"errors"
	"fmt"
	"syscall"
)

// Error codes. Every error that crosses a package boundary carries one, so the
// API can map it to an HTTP status in one place and the CLI can explain it.
const (
	ECONFLICT     = "conflict"       // the thing exists already, or changed under us
	EINTERNAL     = "internal"       // our fault; details are logged, not returned
	EINVALID      = "invalid"        // the input is wrong; the message says how
	ENOTFOUND     = "not_found"      // no such thing (or the caller may not know of it)
	EUNAUTHORIZED = "unauthorized"   // no valid credentials
	EFORBIDDEN    = "forbidden"      // valid credentials, but not allowed
	ETOOLARGE     = "too_large"      // a body, value or list is over its limit
	ETOOMANY      = "too_many"       // too many attempts; wait, then try again
	EUNAVAILABLE  = "unavailable"    // this server cannot do that (e.g. it runs no scheduler)
	EROLLOUT      = "rollout_failed" // the change was recorded, but its processes did not become available
	ENOSPACE      = "no_space"       // a disk of the server is full; nothing was changed
)

// NoSpace is the error of a change that failed because a disk Pier writes
// to is full. where names a directory on that disk (the operator frees
// space on the volume holding it) or, when no path is known, describes it
// ("the database server's data directory"). The message says that nothing
// was changed: whoever returns NoSpace must have undone its partial writes.
func NoSpace(where string) *Error {
	return Errorf(ENOSPACE, "no space left on device: Pier's disk is full, so nothing was changed; free space on the volume holding %s, then try again", where)
}

// NoSpaceAt is err as NoSpace(where), keeping err as its cause for the
// server log, when err says a disk is full and is not a NoSpace already
// (which names its own place); otherwise it is err, unchanged.
func NoSpaceAt(where string, err error) error {
	if err == nil || ErrorCode(err) == ENOSPACE || !IsNoSpace(err) {
		return err
	}
	return fmt.Errorf("%w (%w)", NoSpace(where), err)
}

// IsNoSpace reports whether err says a disk is full: an *Error of code
// ENOSPACE, or ENOSPC (or EDQUOT, a quota reached) from a system call
// anywhere in err's chain. Stores and strategies call it to turn their own
// errors into NoSpace; it does not read error text.
func IsNoSpace(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Code == ENOSPACE
	}
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// ErrRolloutFailed is what a Scheduler's Apply returns when the processes of
// a deployment did not become available: they crashed on boot, failed their
// readiness checks or missed the scheduler's deadline. errors.Is(err,
// ErrRolloutFailed) holds for it, for any error wrapping it, and for every
// *Error of code EROLLOUT, so a scheduler says why with
//
//	pier.Errorf(pier.EROLLOUT, "v%d did not come up: web: 0/1 new processes ready within 5m", v)
//
// Any other error of Apply (the API server unreachable, a cancelled
// context) is taken as transient: the controller marks no release failed
// for it. See Scheduler.
var ErrRolloutFailed = &Error{Code: EROLLOUT, Message: "the new processes did not become available"}

// Error is a domain error: a code for programs and a message for humans.
// The message must never contain a secret (a config value, a token).
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// Is makes every *Error of code EROLLOUT match ErrRolloutFailed, whoever
// made it: a scheduler, or the client decoding an API answer.
func (e *Error) Is(target error) bool {
	return target == ErrRolloutFailed && e.Code == EROLLOUT
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL
// for any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	default:
		return EINTERNAL
	}
}

// ErrorMessage returns the human message of the first *Error in err's chain,
// or a generic message for errors that are not ours to explain.
func ErrorMessage(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Message
	default:
		return "internal error; the server log has the details"
	}
}
