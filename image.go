package pier

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Bounds of an image reference: Docker's limit on the name (registry and
// path), a tag of at most 128 characters, and a sha256 digest.
const (
	ImageNameMax = 255
	ImageRefMax  = ImageNameMax + 1 + 128 + 1 + 71
)

// imageForm is what every image reference error shows.
const imageForm = "use [registry[:port]/]path[:tag][@sha256:digest], such as nginx:1.27 or registry.example.com:5000/team/app:v2"

var (
	imageDomainRE    = regexp.MustCompile(`^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*$`)
	imagePathRE      = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	imageTagRE       = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	imageDigestRE    = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
	imageUpperPathRE = regexp.MustCompile(`^[A-Za-z0-9]+(?:(?:[._]|__|-+)[A-Za-z0-9]+)*$`)
)

// ValidateImage checks an image reference against Docker's grammar:
// [registry[:port]/]path[:tag][@sha256:digest], with a lowercase path. The
// first component is a registry if it has a '.' or a ':', or is localhost.
// Short names (nginx) are kept as given; the scheduler's runtime completes
// them (docker.io/library/nginx:latest).
func ValidateImage(ref string) error {
	bad := func(format string, args ...any) error {
		return Errorf(EINVALID, "image reference %q is invalid: %s; %s", clip(ref), fmt.Sprintf(format, args...), imageForm)
	}
	switch {
	case ref == "":
		return Errorf(EINVALID, "no image reference given: %s", imageForm)
	case len(ref) > ImageRefMax:
		return Errorf(EINVALID, "image reference %q is %d characters: at most %d; %s", clip(ref), len(ref), ImageRefMax, imageForm)
	case !utf8.ValidString(ref):
		return Errorf(EINVALID, "image reference is not UTF-8 text: %s", imageForm)
	}
	for _, r := range ref {
		if r <= ' ' || r == 0x7f || r > 0x7e {
			return Errorf(EINVALID, "image reference %q is invalid: it holds a space, a control or a non-ASCII character; %s", clip(strings.Map(printable, ref)), imageForm)
		}
	}
	name, digest, hasDigest := strings.Cut(ref, "@")
	if hasDigest && !imageDigestRE.MatchString(digest) {
		return bad("the digest must be sha256: and 64 lowercase hex digits")
	}
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		tag := name[i+1:]
		name = name[:i]
		if !imageTagRE.MatchString(tag) {
			return bad("the tag %q must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'", clip(tag))
		}
	}
	if name == "" {
		return bad("it has no path")
	}
	if len(name) > ImageNameMax {
		return bad("the registry and path are %d characters: at most %d", len(name), ImageNameMax)
	}
	path := name
	if first, rest, ok := strings.Cut(name, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		host, port, hasPort := strings.Cut(first, ":")
		if !imageDomainRE.MatchString(host) {
			return bad("the registry %q is not a host name", clip(first))
		}
		if hasPort {
			n, err := strconv.Atoi(port)
			if err != nil || n < 1 || n > 65535 || port[0] == '0' {
				return bad("the registry's port %q is not a port number (1 to 65535)", clip(port))
			}
		}
		path = rest
	}
	for _, c := range strings.Split(path, "/") {
		switch {
		case c == "":
			return bad("the path has an empty component")
		case imagePathRE.MatchString(c):
		case imageUpperPathRE.MatchString(c):
			return bad("the path must be lowercase")
		default:
			return bad("path component %q must be lowercase letters and digits, separated by '.', '_', '__' or dashes", clip(c))
		}
	}
	return nil
}

// printable replaces control characters, so that an error message can
// show where a bad reference went wrong without echoing terminal escapes.
func printable(r rune) rune {
	if r < ' ' || r == 0x7f {
		return '?'
	}
	return r
}

// Bounds of a Procfile.
const (
	ProcfileMax      = 64 << 10
	ProcfileTypesMax = 50
)

// ParseProcfile reads process types from the text of a Procfile, as
// Heroku and Pier's Procfile buildpack read it: one "type: command" line
// per process type, blank lines and lines starting with '#' ignored. Types
// must be valid process type names (see ValidateProcessType) and given
// once; commands must not be empty. Messages name the line, never echo a
// command.
func ParseProcfile(text string) (map[string]string, error) {
	if len(text) > ProcfileMax {
		return nil, Errorf(ETOOLARGE, "the Procfile is %d bytes: at most %d", len(text), ProcfileMax)
	}
	if !utf8.ValidString(text) {
		return nil, Errorf(EINVALID, "the Procfile is not UTF-8 text")
	}
	procs := map[string]string{}
	lineOf := map[string]int{}
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		t, cmd, ok := strings.Cut(line, ":")
		if !ok {
			return nil, Errorf(EINVALID, "Procfile line %d is not \"type: command\": write it such as \"web: ./server\"", n)
		}
		if err := ValidateProcessType(t); err != nil {
			return nil, Errorf(EINVALID, "Procfile line %d: %s", n, ErrorMessage(err))
		}
		if prev, dup := lineOf[t]; dup {
			return nil, Errorf(EINVALID, "Procfile line %d: process type %s is defined twice (first on line %d): define it once", n, t, prev)
		}
		cmd = strings.TrimSpace(cmd)
		if cmd == "" {
			return nil, Errorf(EINVALID, "Procfile line %d: process type %s has no command: write it such as \"%s: ./server\"", n, t, t)
		}
		for _, r := range cmd {
			if r < ' ' && r != '\t' || r == 0x7f {
				return nil, Errorf(EINVALID, "Procfile line %d: the command of %s holds a control character", n, t)
			}
		}
		if len(procs) == ProcfileTypesMax {
			return nil, Errorf(ETOOLARGE, "the Procfile defines more than %d process types", ProcfileTypesMax)
		}
		procs[t], lineOf[t] = cmd, n
	}
	if len(procs) == 0 {
		return nil, Errorf(EINVALID, "the Procfile defines no process types: add a line such as \"web: ./server\"")
	}
	return procs, nil
}

// BuildMetadataLabel is where a Cloud Native Buildpacks lifecycle records,
// on each image it exports, what the build made (its processes among it).
const BuildMetadataLabel = "io.buildpacks.build.metadata"

// ImageProcessTypes returns the process types (type → command line) that a
// CNB-built image's labels declare, checked as Pier runs them: at least
// one, each a valid process type name.
func ImageProcessTypes(labels map[string]string) (map[string]string, error) {
	var md struct {
		Processes []struct {
			Type    string   `json:"type"`
			Command []string `json:"command"`
			Args    []string `json:"args"`
		} `json:"processes"`
	}
	if raw := labels[BuildMetadataLabel]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &md); err != nil {
			return nil, fmt.Errorf("the built image's build metadata: %w", err)
		}
	}
	procs := map[string]string{}
	for _, p := range md.Processes {
		if err := ValidateProcessType(p.Type); err != nil {
			return nil, Errorf(EINVALID, "the buildpacks defined a process type Pier cannot run: %s", ErrorMessage(err))
		}
		procs[p.Type] = strings.Join(append(append([]string(nil), p.Command...), p.Args...), " ")
	}
	if len(procs) == 0 {
		return nil, Errorf(EINVALID, "the build defined no process types: add a Procfile, such as \"web: ./server\"")
	}
	return procs, nil
}
