package pgroup

// Members lists the live (not zombie) processes of the group, its leader
// first when it is one of them. A process that left the group (setpgid,
// setsid) is not a member any more. Outside Linux the list is empty.
func (g *Group) Members() []int {
	var out []int
	if st, err := readStat(g.pid); err == nil && st.pgid == g.pid && st.state != 'Z' && st.state != 'X' {
		out = append(out, g.pid)
	}
	for _, pid := range listPIDs() {
		if pid == g.pid {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.pgid != g.pid || st.state == 'Z' || st.state == 'X' {
			continue
		}
		out = append(out, pid)
	}
	return out
}
