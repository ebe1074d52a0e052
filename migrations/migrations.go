// Package migrations holds Pier's database schema as plain SQL files, in
// goose's format, embedded so that every binary carries the schema it needs.
// The postgres package applies them.
package migrations

import "embed"

// FS holds the migration files, named NNNN_what.sql.
//
//go:embed *.sql
var FS embed.FS
