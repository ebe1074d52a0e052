package local

// ForceRlimits makes the schedulers created next use rlimits even as
// root, so that the non-root path is tested where the tests run as root.
func ForceRlimits(on bool) (restore func()) {
	was := forceRlimits
	forceRlimits = on
	return func() { forceRlimits = was }
}
