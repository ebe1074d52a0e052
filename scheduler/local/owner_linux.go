package local

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/pierpaas/pier/internal/pgroup"
)

// A port handed to a process is only free when it is handed out: between
// a crash and the restart, or before the process binds, anyone may listen
// there. Readiness and routing therefore ask the kernel who holds the
// listener (/proc/net/tcp and tcp6 name its socket's inode and uid) and
// whether that socket is open in a process of the group Pier started.

// listener is one LISTEN socket as /proc/net/tcp{,6} shows it.
type listener struct {
	addr  netip.AddrPort
	uid   int
	inode uint64
}

// reachable are the local addresses whose listener on a port receives
// what is sent to 127.0.0.1 or ::1 on that port: the router dials
// 127.0.0.1, and a neighbour on any of these would take the traffic.
var reachable = []netip.Addr{
	netip.MustParseAddr("127.0.0.1"),
	netip.MustParseAddr("0.0.0.0"),
	netip.MustParseAddr("::1"),
	netip.MustParseAddr("::"),
	netip.MustParseAddr("::ffff:127.0.0.1"),
	netip.MustParseAddr("::ffff:0.0.0.0"),
}

// portListeners returns the LISTEN sockets on port at a loopback or
// wildcard address. A file that does not exist (no IPv6) holds none.
func portListeners(port int) ([]listener, error) {
	var out []listener
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		ls, err := parseListeners(b, port)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, ls...)
	}
	return out, nil
}

// parseListeners reads the lines of /proc/net/tcp or tcp6:
// "sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...".
func parseListeners(b []byte, port int) ([]listener, error) {
	var out []listener
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	first := true
	for sc.Scan() {
		if first { // the header
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[3] != "0A" { // 0A: TCP_LISTEN
			continue
		}
		ap, err := parseHexAddr(f[1])
		if err != nil {
			return nil, err
		}
		if int(ap.Port()) != port || !isReachable(ap.Addr()) {
			continue
		}
		uid, err := strconv.Atoi(f[7])
		if err != nil {
			return nil, fmt.Errorf("uid %q: %w", f[7], err)
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("inode %q: %w", f[9], err)
		}
		out = append(out, listener{addr: ap, uid: uid, inode: inode})
	}
	return out, sc.Err()
}

func isReachable(a netip.Addr) bool {
	for _, r := range reachable {
		if a == r {
			return true
		}
	}
	return false
}

// parseHexAddr reads "0100007F:1F90": the address as 32-bit words printed
// in the host's byte order, then the port.
func parseHexAddr(s string) (netip.AddrPort, error) {
	h, p, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil || (len(h) != 8 && len(h) != 32) {
		return netip.AddrPort{}, fmt.Errorf("malformed address %q", s)
	}
	raw, err := hex.DecodeString(h)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("malformed address %q", s)
	}
	ip := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(ip[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a, uint16(port)), nil
}

// socketInodes returns the inodes of the sockets pid holds open. A process
// that is gone holds none.
func socketInodes(pid int) map[uint64]bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	out := map[uint64]bool{}
	for _, e := range ents {
		l, err := os.Readlink(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		if s, ok := strings.CutPrefix(l, "socket:["); ok {
			if n, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64); err == nil {
				out[n] = true
			}
		}
	}
	return out
}

// checkPort says who listens on port: nobody yet, only sockets that a
// process of group g holds and that uid created, or someone else (then
// their uid). Every listener that could take the port's traffic must be
// the group's: a stranger beside our own socket (SO_REUSEPORT) would get a
// share of it.
func checkPort(port int, g *pgroup.Group, uid int) (portHolder, error) {
	ls, err := portListeners(port)
	if err != nil || len(ls) == 0 {
		return portHolder{}, err
	}
	for _, l := range ls {
		if l.uid != uid {
			return portHolder{stranger: true, uid: l.uid}, nil
		}
	}
	// The leader usually holds the socket itself; the whole group (npm's
	// node, a shell's python) is read only when it does not.
	held := socketInodes(g.Pid())
	if !holdsAll(held, ls) {
		held = map[uint64]bool{}
		for _, pid := range g.Members() {
			for n := range socketInodes(pid) {
				held[n] = true
			}
		}
	}
	own := portHolder{own: true}
	for _, l := range ls {
		if !held[l.inode] {
			return portHolder{stranger: true, uid: l.uid}, nil
		}
		own.sockets = append(own.sockets, l.inode)
	}
	return own, nil
}

// groupHolds says whether processes of g still hold every one of sockets.
func groupHolds(g *pgroup.Group, sockets []uint64) bool {
	has := func(held map[uint64]bool) bool {
		for _, n := range sockets {
			if !held[n] {
				return false
			}
		}
		return true
	}
	if has(socketInodes(g.Pid())) {
		return true
	}
	held := map[uint64]bool{}
	for _, pid := range g.Members() {
		for n := range socketInodes(pid) {
			held[n] = true
		}
	}
	return has(held)
}

func holdsAll(held map[uint64]bool, ls []listener) bool { // every listener's socket
	for _, l := range ls {
		if !held[l.inode] {
			return false
		}
	}
	return true
}
