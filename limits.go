package pier

import (
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Bounds of limits: a process needs a few MiB to start at all, and no
// machine Pier runs on offers a process more than these.
const (
	MemoryMin   = 4 << 20 // 4Mi
	MemoryMax   = 1 << 40 // 1Ti
	CPUMaxMilli = 256000  // 256 cores
)

var (
	memoryRE = regexp.MustCompile(`^([1-9][0-9]{0,15}|0)(Ki|Mi|Gi|Ti|k|M|G|T)?$`)
	cpuRE    = regexp.MustCompile(`^(?:([1-9][0-9]{0,8}|0)m|([1-9][0-9]{0,5}|0)(?:\.([0-9]{1,3}))?)$`)
)

var memoryUnits = map[string]int64{
	"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
	"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
}

// ValidateMemory checks a memory limit in Kubernetes quantity syntax: a
// whole number of bytes with an optional suffix, Ki, Mi, Gi, Ti (powers of
// 1024) or k, M, G, T (powers of 1000), from 4Mi to 1Ti.
func ValidateMemory(q string) error {
	const form = "use a number of bytes with a suffix, such as 512Mi or 1Gi (Ki, Mi, Gi, Ti: powers of 1024; k, M, G, T: powers of 1000)"
	m := memoryRE.FindStringSubmatch(q)
	if m == nil {
		hint := form
		switch {
		case strings.HasSuffix(q, "m") && memoryRE.MatchString(strings.TrimSuffix(q, "m")):
			hint = "in Kubernetes' notation m is a thousandth (of a byte): for megabytes write " + strings.TrimSuffix(q, "m") + "M or " + strings.TrimSuffix(q, "m") + "Mi"
		case strings.HasSuffix(q, "B") && memoryRE.MatchString(strings.TrimSuffix(q, "B")):
			hint = "write it without the B, such as " + strings.TrimSuffix(q, "B")
		case strings.HasSuffix(q, "K") && memoryRE.MatchString(strings.TrimSuffix(q, "K")):
			hint = "write kilobytes as " + strings.TrimSuffix(q, "K") + "k (1000 bytes) or " + strings.TrimSuffix(q, "K") + "Ki (1024 bytes)"
		}
		return Errorf(EINVALID, "memory limit %q is invalid: %s", clip(q), hint)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	unit := memoryUnits[m[2]]
	switch {
	case n > MemoryMax/unit:
		return Errorf(EINVALID, "memory limit %s is too large: at most 1Ti", q)
	case n*unit < MemoryMin:
		return Errorf(EINVALID, "memory limit %s is too small: at least 4Mi", q)
	}
	return nil
}

// ValidateCPU checks a CPU limit in Kubernetes quantity syntax: millicores
// (500m) or cores with up to three decimals (1, 1.5), from 1m to 256 cores.
func ValidateCPU(q string) error {
	m := cpuRE.FindStringSubmatch(q)
	if m == nil {
		return Errorf(EINVALID, "cpu limit %q is invalid: use millicores such as 500m, or cores such as 1 or 1.5", clip(q))
	}
	var milli int64
	if m[1] != "" {
		milli, _ = strconv.ParseInt(m[1], 10, 64)
	} else {
		cores, _ := strconv.ParseInt(m[2], 10, 64)
		frac, _ := strconv.ParseInt((m[3] + "000")[:3], 10, 64)
		milli = cores*1000 + frac
	}
	switch {
	case milli == 0:
		return Errorf(EINVALID, "cpu limit %s is zero: give at least 1m (a thousandth of a core)", q)
	case milli > CPUMaxMilli:
		return Errorf(EINVALID, "cpu limit %s is too large: at most %d cores", q, CPUMaxMilli/1000)
	}
	return nil
}

// LimitsChange sets and unsets limits of process types, as
// `pier limits:set web=512Mi --cpu web=500m` asks: by kind, process type
// → a value to set, or nil to unset.
type LimitsChange struct {
	Memory map[string]*string `json:"memory,omitempty"`
	CPU    map[string]*string `json:"cpu,omitempty"`
}

// Validate checks every type and value.
func (c LimitsChange) Validate() error {
	if len(c.Memory) == 0 && len(c.CPU) == 0 {
		return Errorf(EINVALID, "no limits given: set TYPE=VALUE, such as web=512Mi (memory) or web=500m (cpu)")
	}
	for _, kind := range []struct {
		m     map[string]*string
		check func(string) error
	}{{c.Memory, ValidateMemory}, {c.CPU, ValidateCPU}} {
		for _, t := range sortedKeys(kind.m) {
			if err := ValidateProcessType(t); err != nil {
				return err
			}
			if v := kind.m[t]; v != nil {
				if err := kind.check(*v); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Set returns the process types the change sets a limit of, sorted.
func (c LimitsChange) Set() []string {
	seen := map[string]bool{}
	for _, m := range []map[string]*string{c.Memory, c.CPU} {
		for t, v := range m {
			if v != nil {
				seen[t] = true
			}
		}
	}
	return sortedKeys(seen)
}

// Apply returns base with the change applied (types left with no limit
// are dropped) and the audit detail, such as "web memory=512Mi cpu=500m;
// worker memory unset". Unsetting only limits that are not set is refused.
func (c LimitsChange) Apply(base map[string]Limits) (map[string]Limits, string, error) {
	next := make(map[string]Limits, len(base))
	for t, l := range base {
		next[t] = l
	}
	changes := map[string][]string{}
	var notSet []string
	apply := func(kind string, m map[string]*string, field func(*Limits) *string) {
		for _, t := range sortedKeys(m) {
			l := next[t]
			f := field(&l)
			switch v := m[t]; {
			case v != nil:
				*f = *v
				changes[t] = append(changes[t], kind+"="+*v)
			case *f == "":
				notSet = append(notSet, t+" has no "+kind+" limit")
			default:
				*f = ""
				changes[t] = append(changes[t], kind+" unset")
			}
			next[t] = l
		}
	}
	apply("memory", c.Memory, func(l *Limits) *string { return &l.Memory })
	apply("cpu", c.CPU, func(l *Limits) *string { return &l.CPU })
	if len(changes) == 0 {
		sort.Strings(notSet)
		return nil, "", Errorf(EINVALID, "%s: nothing to unset (see `pier limits`)", strings.Join(notSet, ", "))
	}
	for t, l := range next {
		if l == (Limits{}) {
			delete(next, t)
		}
	}
	var parts []string
	for _, t := range sortedKeys(changes) {
		parts = append(parts, t+" "+strings.Join(changes[t], " "))
	}
	return next, strings.Join(parts, "; "), nil
}
